"""Campaigns at scale: 100,000 contacts imported, dialled by the worker, and read back, all as deployed.

The service runs under gunicorn with the Procfile's `web:` command, the dispatcher with its
`worker:` command (the account's caps raised), and the simulated AT in this process plays every
callee against the service (answer_delay 0.05 s), so callbacks arrive while calls are placed. The
campaign is a reminder (REMINDER_FLOW): the callee hears "Hello {name}, ..." and the call ends, which
completes the contact: AT's callback, then its final notification to both URLs. Inbound calls (wrk's)
still get a menu.
A bare Flask app under the same gunicorn settings is the ceiling, as for the other scenarios.

1. Import: a CSV of 100,000 contacts POSTed to /voice/campaigns; the time until it answers 201,
   and the memory of the gunicorn worker that took it (its VmRSS sampled, and VmHWM after).
2. Dispatch: with the worker running, the calls started a second over a steady window, counted
   twice: the attempts' dialled_at in the store, and the simulated AT's /call requests.
3. Callbacks beside a campaign dispatching at the target's 50 calls a second (a second campaign of
   BESIDE_CONTACTS): /voice/instruct and /voice/events under wrk, as ratios to the bare app, and at
   LATENCY_RATE a second offered (open loop), p50 and p99; with the campaign paused and with it
   dispatching, the two alternated round by round (the bare app is measured under the same
   conditions, so only the service's own loss shows).
4. Reading: the campaign's page and its contacts (page 1, the last page, the first page of a status
   and the last page of `pending`) with 100,000 contacts, 20 requests each, median and p95.
The worker's CPU a call (and the service's, the simulated AT's, the rest of the machine's) is
printed beside the dispatch rate: on a shared machine it tells a slow worker from a busy machine.

Runs inside `make bench` (scenario `campaigns`; alone: BENCH_ARGS="--only campaigns") and as
`python -m bench.campaigns`.
"""

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving import (TOKEN, cpu_seconds, memory_of, open_loop, start, stop, wait_post,  # noqa: E402
                           worker_pids, wrk)
from tests.gunicorn_helpers import free_port, procfile_command, wait_until_up  # noqa: E402
from voice.at.simulated import SimulatedAT  # noqa: E402

KEY = "bench-campaigns-key-0123456789abcdef"
REMINDER_FLOW = """\
start:
  inbound: welcome
  outbound: reminder
steps:
  welcome:
    menu:
      prompt: {say: "Welcome. Press 1 to hear our opening hours."}
      options: {"1": hours}
  hours:
    - say: We are open Monday to Friday, from 8 in the morning to 5 in the evening.
  reminder:
    - say: "Hello {name}, this is a reminder of your appointment tomorrow at 9. Goodbye."
"""
CONTACTS = 100_000
PER_MINUTE = 6000          # the campaign's pacing: 100 new calls a second at most
MAX_CONCURRENT = 1000      # the most a campaign takes
WORKER_THREADS = 16
IMPORT_SECONDS, IMPORT_MB, DIAL_RATE, PAGE_MS = 30, 200, 50, 100
KEPT = 0.9                 # "the callbacks' figures do not fall": at least this share of the ratio without a campaign
BESIDE_CONTACTS = 20_000   # the campaign dispatching beside the callbacks, at DIAL_RATE a second
LATENCY_RATE = 100         # callbacks a second offered (open loop) beside the campaign: a busy line's inbound calls
LATENCY_KEPT = 2.0         # their p99 with a campaign dispatching at most this many times their p99 without
ROUTES = (("instruct", "/voice/instruct (menu step)", "instruct.lua"),
          ("events", "/voice/events (each stored)", "events.lua"))


def contacts_csv(count):
    """A CSV of `count` distinct Kenyan mobile numbers with a `name` variable each."""
    lines = ["phone,name"] + [f"+2547{10000000 + n:08d},Contact {n}" for n in range(count)]
    return ("\n".join(lines) + "\n").encode()


class Failures(logging.Handler):
    """Counts the simulated AT's warnings: callees that could not play their call to the end."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += 1


class Served:
    """The service, the bare app, the simulated AT playing the callees, and (when started) the worker."""

    def __init__(self, database_url=None):
        self.work = Path(tempfile.mkdtemp(prefix="voice-bench-campaigns-"))
        port, bare_port = free_port(), free_port()
        self.url, self.bare_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        self.simulated_at = SimulatedAT(service_url=self.url, token=TOKEN, digits=("3",), answer_delay=0.05,
                                        hang_seconds=5)
        self.database_url = database_url or f"sqlite:///{self.work / 'voice.sqlite3'}"
        (self.work / "reminder.yaml").write_text(REMINDER_FLOW)
        base = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1"}
        self.env = dict(
            base, PORT=str(port), DATABASE_URL=self.database_url, LOG_LEVEL="WARNING",
            RATELIMIT_STORAGE_URI=f"sqlite:///{self.work / 'limits.sqlite3'}", VOICE_WEBHOOK_TOKEN=TOKEN,
            VOICE_API_KEY=KEY, AT_USERNAME="bench", AT_API_KEY="bench", AT_VOICE_NUMBER="+254711000000",
            AT_VOICE_API_URL=self.simulated_at.url, VOICE_PUBLIC_URL=self.url,
            VOICE_FLOW_FILE=str(self.work / "reminder.yaml"),
            VOICE_RATE_LIMIT_PER_KEY="1000000 per minute", VOICE_RATE_LIMIT_PER_DESTINATION="1000000 per hour",
            VOICE_CAMPAIGN_PER_MINUTE="60000", VOICE_CAMPAIGN_MAX_CONCURRENT="2000",
            VOICE_MAX_DIALOUTS_IN_FLIGHT=str(WORKER_THREADS), VOICE_WORKER_THREADS=str(WORKER_THREADS))
        self.bare_env = dict(base, PORT=str(bare_port))
        self.app = self.bare = self.worker = None
        self.failures = Failures()
        self.engine = sa.create_engine(self.database_url)

    def __enter__(self):
        logging.getLogger("voice.at.simulated").addHandler(self.failures)
        self.simulated_at.start()
        subprocess.run(procfile_command("release"), cwd=self.work, env=self.env, check=True, capture_output=True)
        self.app = start(procfile_command(), self.env, self.work)
        self.bare = start(procfile_command()[:-1] + ["bench.bare_app:app"], self.bare_env, self.work, "bare.log")
        wait_until_up(self.url + "/voice/", self.app)
        wait_post(self.bare_url + "/voice/instruct")
        return self

    def __exit__(self, *exc):
        simulated = logging.getLogger("voice.at.simulated")
        simulated.removeHandler(self.failures)
        simulated.setLevel(logging.ERROR)  # callees cut off as the service stops are not news
        for process in (self.worker, self.app, self.bare):
            if process is not None:
                stop(process)
        self.simulated_at.stop()
        self.engine.dispose()

    def start_worker(self):
        """The Procfile's worker, dispatching."""
        self.worker = start(procfile_command("worker"), self.env, self.work, "worker.log")

    def api(self, method, path, **options):
        """A call to the service's API with the admin key; the JSON answer (raises on an error status)."""
        response = requests.request(method, self.url + path, headers={"X-API-Key": KEY}, timeout=120, **options)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def dialled(self, campaign_id):
        """(attempts dialled, attempts ended, the simulated AT's /call requests) so far."""
        with self.engine.connect() as connection:
            dialled, ended = connection.execute(sa.text(
                "SELECT count(dialled_at), sum(CASE WHEN status = 'ended' THEN 1 ELSE 0 END) "
                "FROM campaign_attempts WHERE campaign_id = :id"), {"id": campaign_id}).one()
        calls = sum(1 for request in list(self.simulated_at.requests) if request["path"] == "/call")
        return dialled, ended or 0, calls

    def last_attempt(self):
        """The highest attempt id so far (0 before the first)."""
        with self.engine.connect() as connection:
            return connection.execute(sa.text("SELECT coalesce(max(id), 0) FROM campaign_attempts")).scalar()

    def claims_since(self, attempt_id):
        """How the attempts after `attempt_id` were claimed: (ticks that claimed, median and slowest seconds from
        claim to dial)."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT claimed_at, dialled_at FROM campaign_attempts WHERE id > :id"),
                                      {"id": attempt_id}).all()
        waits = sorted((_moment(dialled) - _moment(claimed)).total_seconds() for claimed, dialled in rows if dialled)
        return len({claimed for claimed, _ in rows}), statistics.median(waits or [0]), max(waits or [0])


def _moment(value):
    """A datetime read back from the store: SQLite gives text, PostgreSQL a datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def import_contacts(served, count):
    """POST the CSV; (campaign id, accepted, seconds, worker MB before, peak MB, peak by VmHWM MB)."""
    body = contacts_csv(count)
    pids = worker_pids(served.app.pid)
    before = {pid: memory_of(pid) for pid in pids}
    peak = dict(before)
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.02):
            for pid in pids:
                peak[pid] = max(peak[pid], memory_of(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    begun = time.monotonic()
    answer = served.api("POST", "/voice/campaigns", files={"contacts": ("contacts.csv", body, "text/csv")},
                        data={"name": "bench", "perMinute": str(PER_MINUTE), "maxConcurrent": str(MAX_CONCURRENT),
                              "retry": "none"})
    seconds = time.monotonic() - begun
    sampling.set()
    sampler.join()
    hwm = {pid: memory_of(pid, "VmHWM") for pid in pids}
    taker = max(pids, key=lambda pid: hwm[pid] - before[pid])  # the worker that took the upload
    return (answer["campaign"]["id"], answer["accepted"], len(answer["refused"]), seconds, before[taker],
            peak[taker], hwm[taker])


def machine_busy():
    """CPU seconds the whole machine has spent busy so far (every core, every process), from /proc/stat."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def dispatch_rate(served, campaign_id, seconds):
    """Calls started a second over `seconds` (by dialled_at in the store and by the simulated AT's /call), calls
    settled a second, and the CPU each process spent a call started (ms)."""
    processes = {"worker": [served.worker.pid], "service": worker_pids(served.app.pid), "simulated AT": [os.getpid()]}

    def cpu():
        spent = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in processes.items()}
        return dict(spent, machine=machine_busy())

    first, first_cpu, begun = served.dialled(campaign_id), cpu(), time.monotonic()
    first_attempt = served.last_attempt()
    time.sleep(seconds)
    last, last_cpu = served.dialled(campaign_id), cpu()
    spent = time.monotonic() - begun
    ticks, wait, slowest = served.claims_since(first_attempt)
    dialled, settled, calls = ((b - a) / spent for a, b in zip(first, last))
    per_call = {name: (last_cpu[name] - first_cpu[name]) * 1000 / max(1, last[0] - first[0]) for name in last_cpu}
    per_call["others"] = per_call["machine"] - sum(per_call[name] for name in processes)
    return {"dialled": dialled, "calls": calls, "settled": settled, "cpu_ms": per_call,
            "machine_busy": (last_cpu["machine"] - first_cpu["machine"]) / spent / os.cpu_count(),
            "ticks": ticks, "wait": wait, "slowest_wait": slowest}


def drain(served, campaign_id, seconds=60):
    """Wait until the paused campaign has no call in progress, or `seconds` pass; the calls still in progress."""
    deadline = time.monotonic() + seconds
    while True:
        left = served.api("GET", f"/voice/campaigns/{campaign_id}")["inProgress"]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def callbacks_beside(served, campaign_id, args):
    """wrk on instruct and events, service and bare app, with the campaign paused and dispatching, alternated.

    Returns {route: {"quiet"|"busy": [(service rate, bare rate, service errors)]}}, the dispatch
    rates seen during the busy rounds, and the most calls still in progress as a paused round began.
    """
    figures = {route: {"quiet": [], "busy": []} for route, _, _ in ROUTES}
    latencies = {route: {"quiet": [], "busy": []} for route, _, _ in ROUTES}
    busy_rates, left = [], 0
    state = "running"
    run = iter(range(1, 10**6))
    for n in range(args.rounds):
        for condition in (("quiet", "busy") if n % 2 == 0 else ("busy", "quiet")):
            if condition == "quiet" and state == "running":
                served.api("POST", f"/voice/campaigns/{campaign_id}/pause")
                state = "paused"
                left = max(left, drain(served, campaign_id))
            elif condition == "busy" and state == "paused":
                served.api("POST", f"/voice/campaigns/{campaign_id}/resume")
                state = "running"
                time.sleep(3)  # the next ticks claim at the campaign's pace again
            first, begun = served.dialled(campaign_id), time.monotonic()
            for route, _, script in ROUTES:
                bare = wrk(served.bare_url, ROOT / "bench" / script, args.seconds, args.connections, f"cb{next(run)}")
                ours = wrk(served.url, ROOT / "bench" / script, args.seconds, args.connections, f"cs{next(run)}")
                figures[route][condition].append((ours[0], bare[0], ours[2]))
            for route, _, _ in ROUTES:
                latencies[route][condition].append(
                    open_loop(served.url, route, args.seconds, f"ol{next(run)}", LATENCY_RATE))
            if condition == "busy":
                busy_rates.append((served.dialled(campaign_id)[0] - first[0]) / (time.monotonic() - begun))
    if state == "paused":
        served.api("POST", f"/voice/campaigns/{campaign_id}/resume")
    return figures, latencies, busy_rates, left


def read_pages(served, campaign_id, repeats):
    """(name, median ms, p95 ms) for the campaign page and its contacts' pages, `repeats` requests each."""
    shown = served.api("GET", f"/voice/campaigns/{campaign_id}")
    counts = shown["counts"]
    pending_last = max(1, -(-counts["pending"] // 100))
    last = max(1, -(-shown["contacts"] // 100))
    settled = max(("completed", "breakoff", "unreached", "failed"), key=lambda status: counts[status])
    pages = [("the campaign (figures)", f"/voice/campaigns/{campaign_id}"),
             ("contacts, page 1", f"/voice/campaigns/{campaign_id}/contacts?page=1"),
             (f"contacts, page {last} (the last)", f"/voice/campaigns/{campaign_id}/contacts?page={last}"),
             (f"contacts {settled}, page 1", f"/voice/campaigns/{campaign_id}/contacts?status={settled}&page=1"),
             (f"contacts pending, page {pending_last} (the last)",
              f"/voice/campaigns/{campaign_id}/contacts?status=pending&page={pending_last}")]
    session = requests.Session()
    session.headers["X-API-Key"] = KEY
    rows = []
    for name, path in pages:
        times = []
        for _ in range(repeats + 1):  # the first opens the connection: not counted
            begun = time.perf_counter()
            response = session.get(served.url + path, timeout=30)
            times.append((time.perf_counter() - begun) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"GET {path}: {response.status_code} {response.text[:300]}")
        times = sorted(times[1:])
        rows.append((name, statistics.median(times), times[min(len(times) - 1, round(0.95 * len(times)) - 1)]))
    return rows, counts


def measure(database_url=None, seconds=10, rounds=3, connections=16, contacts=CONTACTS, window=15, repeats=20):
    """The whole scenario; a dict of its figures (see `table`)."""
    args = argparse.Namespace(seconds=seconds, rounds=max(1, rounds), connections=connections)
    with Served(database_url) as served:
        campaign_id, accepted, refused, took, before, peak, hwm = import_contacts(served, contacts)
        print(f"  import: {accepted} accepted, {refused} refused in {took:.1f} s; the worker that took it "
              f"{before:.0f} MB before, {max(peak, hwm):.0f} MB at its peak", flush=True)
        served.start_worker()
        time.sleep(5)  # the worker starts, its first ticks fill the pipeline
        dispatch = dispatch_rate(served, campaign_id, window)
        print(f"  dispatch: {dispatch['dialled']:.0f} calls started a second over {window} s (simulated AT /call "
              f"{dispatch['calls']:.0f}/s), {dispatch['settled']:.0f} settled a second; CPU ms a call: "
              + ", ".join(f"{name} {ms:.0f}" for name, ms in dispatch["cpu_ms"].items())
              + f"; machine {dispatch['machine_busy']:.0%} busy; claimed in {dispatch['ticks']} ticks, dialled "
              f"{dispatch['wait']:.1f} s after the claim (median; slowest {dispatch['slowest_wait']:.1f} s)",
              flush=True)
        # The callbacks beside a campaign at the dispatch target's pace (not the 100 a second above, which
        # with the simulated AT on the same two cores leaves them little of the machine).
        served.api("POST", f"/voice/campaigns/{campaign_id}/pause")
        drain(served, campaign_id)
        beside = served.api("POST", "/voice/campaigns", json={
            "name": "beside", "perMinute": DIAL_RATE * 60, "maxConcurrent": MAX_CONCURRENT, "retry": "none",
            "contacts": [{"phone": f"+2541{10000000 + n:08d}", "vars": {"name": f"Beside {n}"}}
                         for n in range(BESIDE_CONTACTS)]})["campaign"]["id"]
        time.sleep(3)
        callbacks, latencies, busy_rates, left = callbacks_beside(served, beside, args)
        served.api("POST", f"/voice/campaigns/{beside}/pause")
        drain(served, beside)
        stop(served.worker)
        served.worker = None
        pages, counts = read_pages(served, campaign_id, repeats)
        with served.engine.connect() as connection:
            outcomes = dict(connection.execute(sa.text(
                "SELECT coalesce(outcome, status), count(*) FROM campaign_attempts WHERE campaign_id = :id "
                "GROUP BY coalesce(outcome, status)"), {"id": campaign_id}).all())
        store = "PostgreSQL" if served.database_url.startswith("postgres") else "SQLite"
        failures = served.failures.count
    return {"contacts": contacts, "accepted": accepted, "import_seconds": took, "import_before": before,
            "import_peak": max(peak, hwm), "dispatch": dispatch, "window": window, "busy_rates": busy_rates,
            "left": left, "callbacks": callbacks, "latencies": latencies, "pages": pages,
            "counts": {status: n for status, n in counts.items() if n}, "outcomes": outcomes, "store": store,
            "failures": failures}


def _ratio(runs):
    """The service's median rate over the bare app's median rate, for a list of (service, bare, errors)."""
    return statistics.median(r for r, _, _ in runs) / statistics.median(b for _, b, _ in runs)


def verdict(ok):
    return "met" if ok else "**missed**"


def table(result):
    """The scenario's lines for bench/results.md (and the terminal): figures, targets and verdicts."""
    growth = result["import_peak"] - result["import_before"]
    dispatch = result["dispatch"]
    lines = [
        f"## Campaigns with {result['contacts']:,} contacts ({result['store']}, under gunicorn with the worker "
        "and the simulated AT)",
        "",
        "| Target | Figure | Verdict |",
        "|---|---|---|",
        f"| Import: {result['contacts']:,} contacts (CSV) accepted in under {IMPORT_SECONDS} s | "
        f"{result['accepted']:,} accepted in {result['import_seconds']:.1f} s | "
        f"{verdict(result['import_seconds'] < IMPORT_SECONDS and result['accepted'] == result['contacts'])} |",
        f"| Import: memory under {IMPORT_MB} MB (the gunicorn worker that took it, at its peak) | "
        f"{result['import_peak']:.0f} MB ({result['import_before']:.0f} MB before, +{growth:.0f} MB) | "
        f"{verdict(result['import_peak'] < IMPORT_MB)} |",
        f"| Dispatch: the worker starts at least {DIAL_RATE} calls a second (perMinute {PER_MINUTE}, "
        f"{result['window']} s steady) | {dispatch['dialled']:.0f}/s dialled (simulated AT: {dispatch['calls']:.0f} "
        f"/call a second; {dispatch['settled']:.0f} settled a second) | {verdict(dispatch['dialled'] >= DIAL_RATE)} |",
    ]
    for route, name, _ in ROUTES:
        quiet, busy = (_ratio(result["callbacks"][route][c]) for c in ("quiet", "busy"))
        errors = sum(e for c in ("quiet", "busy") for _, _, e in result["callbacks"][route][c])
        lines.append(f"| {name}: ratio to the bare app with a campaign dispatching ({DIAL_RATE} calls a second) at least "
                     f"{KEPT} of it without | "
                     f"{busy:.2f} against {quiet:.2f} = {busy / quiet:.2f}; errors {errors} | "
                     f"{verdict(busy / quiet >= KEPT and errors == 0)} |")
    for route, name, _ in ROUTES:
        runs = result["latencies"][route]
        quiet, busy = (statistics.median(r["p99"] for r in runs[c]) for c in ("quiet", "busy"))
        p50s = [statistics.median(r["p50"] for r in runs[c]) for c in ("quiet", "busy")]
        errors = sum(r["errors"] for c in ("quiet", "busy") for r in runs[c])
        lines.append(f"| {name} at {LATENCY_RATE} req/s offered (open loop): p99 with a campaign dispatching "
                     f"({DIAL_RATE} calls a second) at most "
                     f"{LATENCY_KEPT:g}x its p99 without | p99 {busy:.1f} ms against {quiet:.1f} ms = "
                     f"{busy / quiet:.2f}x (p50 {p50s[1]:.1f} against {p50s[0]:.1f} ms); errors {errors} | "
                     f"{verdict(busy <= LATENCY_KEPT * quiet and errors == 0)} |")
    for name, median, p95 in result["pages"]:
        lines.append(f"| GET {name} under {PAGE_MS} ms | median {median:.1f} ms, p95 {p95:.1f} ms | "
                     f"{verdict(p95 < PAGE_MS)} |")
    cpu = ", ".join(f"{name} {ms:.0f}" for name, ms in dispatch["cpu_ms"].items())
    busy_rates = ", ".join(f"{rate:.0f}" for rate in result["busy_rates"])
    counts = ", ".join(f"{status} {n:,}" for status, n in result["counts"].items())
    outcomes = ", ".join(f"{outcome} {n:,}" for outcome, n in sorted(result["outcomes"].items()))
    lines += [
        "",
        f"While it dispatched, the CPU a call started took (ms, all cores): {cpu} (the machine "
        f"{dispatch['machine_busy']:.0%} busy; `others` is what else ran on it). Claimed in {dispatch['ticks']} ticks "
        f"over the {result['window']} s; each call dialled {dispatch['wait']:.1f} s after its claim (median; slowest "
        f"{dispatch['slowest_wait']:.1f} s). Calls started a second in the rounds with wrk beside them: {busy_rates}; "
        f"calls still in progress as a paused round began: {result['left']} (the worker settles them meanwhile).",
        "",
        f"Contacts when read: {counts}; attempts by outcome: {outcomes}; simulated callees that could not play "
        f"their call to the end: {result['failures']}.",
        "",
    ]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of paused / dispatching, alternated")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--contacts", type=int, default=CONTACTS)
    parser.add_argument("--window", type=int, default=15, help="seconds over which the dispatch rate is counted")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    result = measure(args.database_url, args.seconds, args.rounds, args.connections, args.contacts, args.window)
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
