"""`make bench`: the service under gunicorn against a bare Flask app under the same settings.

Every figure is printed as a ratio to the bare app measured in the same run (the machine's
ceiling for the framework), beside the absolute numbers and the machine, and the table is
written to bench/results.md. wrk (Debian's package) drives the load from a separate process,
alternating between the two apps so drift hits both. `--only` (or `--scenarios`) runs a subset,
e.g. `make bench BENCH_ARGS="--only campaigns"` (bench/campaigns.py: 100,000 contacts imported,
dispatched by the worker and read back).
"""

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import FIXED_RATE, LATENCY_RUNS, THROUGHPUT, at_when, write  # noqa: E402
from bench.serving import TOKEN, open_loop, start, stop, wait_post, workers_rss, wrk  # noqa: E402
from tests.gunicorn_helpers import free_port, procfile_command, wait_until_up  # noqa: E402
from voice.at.simulated import SimulatedAT  # noqa: E402

SCENARIOS = ("instruct", "events", "mix", "latency", "slow", "metrics", "memory", "breakdown", "console", "campaigns")
SERVED = ("instruct", "events", "mix", "latency", "slow", "metrics", "memory")  # run on one served instance
KEY = "bench-key"
LATENCY_WARM_UP = 3  # seconds sent to each app, not counted, before the first of them


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per scenario")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--latency-seconds", type=int, default=6, help="length of each open-loop run")
    parser.add_argument("--memory-requests", type=int, default=100_000)
    parser.add_argument("--database-url", help="store to use instead of a fresh SQLite file (e.g. PostgreSQL)")
    parser.add_argument("--postgres-url", help="also run the throughput scenarios on this PostgreSQL database, "
                                               "reported beside SQLite's")
    parser.add_argument("--scenarios", "--only", default=",".join(SCENARIOS),
                        help="comma-separated subset to run (e.g. --only campaigns); results.md is written only "
                             "for a full run")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results.md"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("make bench needs wrk: apt-get install -y wrk")
    chosen = args.scenarios.split(",")
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        sys.exit(f"no scenario {', '.join(unknown)}; the scenarios are {', '.join(SCENARIOS)}")

    rows = run_store(args, args.database_url, chosen) if set(chosen) & set(SERVED) else []
    postgres = []
    if args.postgres_url and any(key in chosen for key, _, _ in THROUGHPUT):
        postgres = run_store(args, args.postgres_url, [key for key, _, _ in THROUGHPUT if key in chosen])
    if "breakdown" in chosen:
        from bench.breakdown import breakdown
        rows.append({"name": "breakdown", "stages": breakdown(), "line": "in-process breakdown measured"})
        for stage, figures in rows[-1]["stages"]:
            print(f"  {stage}: instruct {figures['instruct']:.0f} us, events {figures['events']:.0f} us")
    if "console" in chosen:
        from bench.console import TARGET_MS, measure
        pages, seeded, cold = measure(args.database_url)
        rows.append({"name": "console", "pages": pages, "cold": cold, "target": TARGET_MS,
                     "line": f"console pages measured with 100,000 calls (seeded in {seeded:.0f} s)"})
        for name, first, median, slowest in pages:
            print(f"  console {name}: first {first:.1f} ms, median {median:.1f} ms, slowest {slowest:.1f} ms")
    if "campaigns" in chosen:
        from bench import campaigns
        print("campaigns: 100,000 contacts imported, dispatched and read back", flush=True)
        result = campaigns.measure(args.database_url, args.seconds, args.rounds, args.connections)
        rows.append({"name": "campaigns", "result": result, "table": campaigns.table(result)})
        print("\n".join(rows[-1]["table"]))
    if set(chosen) >= set(SCENARIOS) and not args.database_url:
        write(args, rows, postgres)
    else:
        print(f"not written to {args.output}: that needs every scenario on the default SQLite store")


def run_store(args, database_url, chosen):
    """The service on one store (a fresh SQLite file when None) against the bare app: the chosen scenarios' rows."""
    work = Path(tempfile.mkdtemp(prefix="voice-bench-"))
    simulated_at = SimulatedAT(hang_seconds=5).start()
    app_port, bare_port = free_port(), free_port()
    base_env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1"}
    base_env.update({k: v for k, v in os.environ.items() if k in ("WEB_CONCURRENCY", "GUNICORN_THREADS")})
    app_env = dict(base_env, PORT=str(app_port), DATABASE_URL=database_url or f"sqlite:///{work / 'voice.sqlite3'}",
                   RATELIMIT_STORAGE_URI=f"sqlite:///{work / 'limits.sqlite3'}", VOICE_WEBHOOK_TOKEN=TOKEN,
                   VOICE_API_KEY=KEY, AT_USERNAME="bench", AT_API_KEY="bench", AT_VOICE_NUMBER="+254711000000",
                   AT_VOICE_API_URL=simulated_at.url,
                   VOICE_RATE_LIMIT_PER_KEY="1000000 per minute", VOICE_RATE_LIMIT_PER_DESTINATION="1000000 per hour")
    subprocess.run(procfile_command("release"), cwd=work, env=app_env, check=True, capture_output=True)
    bare_command = procfile_command()[:-1] + ["bench.bare_app:app"]
    bare_env = dict(base_env, PORT=str(bare_port))
    app = start(procfile_command(), app_env, work)
    # The Procfile's worker beside the web, as deployed: on SQLite it also copies the WAL into the database
    # file (voice.store.db.checkpoint), which the callbacks' commits would otherwise do in the write turn.
    worker = start(procfile_command("worker"), app_env, work, "worker.log")
    bare = start(bare_command, bare_env, work)
    app_url, bare_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{bare_port}"
    store = "PostgreSQL" if (database_url or "").startswith("postgres") else "SQLite"
    rows = []
    try:
        wait_until_up(app_url + "/voice/", app)
        wait_post(bare_url + "/voice/instruct")
        run = iter(range(1, 10**6))
        for key, scenario, script in THROUGHPUT:
            if key not in chosen:
                continue
            ours, ceiling = [], []
            for _ in range(args.rounds):
                ceiling.append(wrk(bare_url, ROOT / "bench" / script, args.seconds, args.connections, str(next(run))))
                ours.append(wrk(app_url, ROOT / "bench" / script, args.seconds, args.connections, str(next(run))))
            rows.append(_row(scenario, ours, ceiling))
            print(f"[{store}] {rows[-1]['line']}", flush=True)
        if "latency" in chosen:
            for route in ("instruct", "events"):
                rows.append(_fixed_rate(route, app_url, bare_url, args))
                print(rows[-1]["line"], flush=True)
        if "slow" in chosen:
            rows.append(_slow_at(app_url, bare_url, args))
            print(rows[-1]["line"], flush=True)
        if "metrics" in chosen:
            rows.append(_metrics_cost(app_env, work, args))
            print(rows[-1]["line"], flush=True)
        if "memory" in chosen:
            rows.append(_memory(app, app_url, args))
            print(rows[-1]["line"], flush=True)
    finally:
        stop(app)
        stop(worker)
        stop(bare)
        simulated_at.stop()
    return rows


def _row(name, ours, ceiling):
    rate = statistics.median(r for r, _, _ in ours)
    ceiling_rate = statistics.median(r for r, _, _ in ceiling)
    p99 = max(p for _, p, _ in ours)
    ceiling_p99 = max(p for _, p, _ in ceiling)
    errors = sum(e for _, _, e in ours)
    ratio = rate / ceiling_rate
    line = (f"{name}: {rate:.0f} req/s = {ratio:.2f} of the bare app's {ceiling_rate:.0f}; "
            f"p99 {p99:.1f} ms (bare {ceiling_p99:.1f} ms); errors {errors}")
    return {"name": name, "rate": rate, "ceiling": ceiling_rate, "ratio": ratio, "p99": p99,
            "ceiling_p99": ceiling_p99, "errors": errors, "line": line}


def _fixed_rate(route, app_url, bare_url, args):
    """Latency at a fixed offered rate (open loop), the service against the bare app in LATENCY_RUNS consecutive
    rounds, alternately, after a warm-up of each; every round must meet the targets (a stall is not averaged away)."""
    runs = []
    for n in range(LATENCY_RUNS):
        warm_up = LATENCY_WARM_UP if n == 0 else 0
        bare = open_loop(bare_url, route, args.latency_seconds, f"fb{route}{n}", FIXED_RATE, warm_up=warm_up)
        ours = open_loop(app_url, route, args.latency_seconds, f"fa{route}{n}", FIXED_RATE, warm_up=warm_up)
        runs.append({"ours": ours, "bare": bare, "p99_ratio": ours["p99"] / bare["p99"],
                     "p999_ratio": ours["p999"] / bare["p999"]})
        print(f"  /voice/{route} run {n + 1}: p50 {ours['p50']:.1f}, p99 {ours['p99']:.1f}, p99.9 {ours['p999']:.1f} ms "
              f"(bare {bare['p50']:.1f} / {bare['p99']:.1f} / {bare['p999']:.1f}) = {runs[-1]['p99_ratio']:.2f}x / "
              f"{runs[-1]['p999_ratio']:.2f}x; errors {ours['errors']}; slowest {at_when(ours['slowest'][:5])}; "
              f"generator's worst lag {at_when([ours['lag']])}", flush=True)
    errors = sum(run["ours"]["errors"] for run in runs)
    kinds = sum((collections.Counter(run["ours"]["kinds"]) for run in runs), collections.Counter())
    met = all(run["p99_ratio"] <= 2 and run["p999_ratio"] <= 3 for run in runs) and errors == 0
    p99s = ", ".join(f"{run['p99_ratio']:.2f}" for run in runs)
    p999s = ", ".join(f"{run['p999_ratio']:.2f}" for run in runs)
    line = (f"/voice/{route} at {FIXED_RATE} req/s offered (open loop), {LATENCY_RUNS} runs: p99 {p99s}x, "
            f"p99.9 {p999s}x the bare app's; errors {errors}"
            f"{f' {dict(kinds)}' if kinds else ''}")
    return {"name": f"latency {route}", "runs": runs, "errors": errors, "met": met, "line": line}


def _slow_at(app_url, bare_url, args):
    """instruct's latency at the fixed rate while 16 dial-outs at once hang 5 s on the simulated AT."""
    results = []

    def dial():
        started = time.monotonic()
        response = requests.post(app_url + "/voice/invoke-call", data={"phone": "254700000504"},
                                 headers={"X-API-Key": KEY}, timeout=20)
        results.append((response.status_code, time.monotonic() - started))

    ceiling = open_loop(bare_url, "instruct", 4, "slowbare", FIXED_RATE)
    threads = [threading.Thread(target=dial) for _ in range(16)]
    for thread in threads:
        thread.start()
    # Measured while the dial-outs hang (from 0.5 s to 4.5 s of their 5 s), at the rate the bare app had.
    ours = open_loop(app_url, "instruct", 4, "slow", FIXED_RATE, warm_up=0.5)
    for thread in threads:
        thread.join()
    refused = [t for s, t in results if s == 503]
    waited = [t for s, t in results if s != 503]
    line = (f"slow AT (16 dial-outs hanging 5 s): /voice/instruct p99 {ours['p99']:.1f} ms at {FIXED_RATE} req/s "
            f"(bare {ceiling['p99']:.1f} ms), errors {ours['errors']}; {len(waited)} dial-outs waited on AT "
            f"({max(waited, default=0):.1f} s max), {len(refused)} refused at once ({max(refused, default=0) * 1000:.0f} ms max)")
    return {"name": "slow AT", "p99": ours["p99"], "ceiling_p99": ceiling["p99"], "errors": ours["errors"],
            "waited": len(waited), "refused": len(refused), "refused_max_ms": max(refused, default=0) * 1000,
            "line": line}


def _metrics_cost(app_env, work, args):
    """/voice/events throughput with metrics on against off: two fresh copies of the service, each first in turn."""
    instances = {}
    try:
        for name, flag in (("on", "1"), ("off", "0")):
            folder = work / f"metrics-{name}"
            folder.mkdir()
            env = dict(app_env, PORT=str(free_port()), VOICE_METRICS=flag,
                       DATABASE_URL=f"sqlite:///{folder / 'voice.sqlite3'}")
            subprocess.run(procfile_command("release"), cwd=folder, env=env, check=True, capture_output=True)
            instances[name] = (start(procfile_command(), env, folder), f"http://127.0.0.1:{env['PORT']}")
        for process, url in instances.values():
            wait_until_up(url + "/voice/", process)
        rates = {"on": [], "off": []}
        for n in range(args.rounds):
            for name in (("off", "on") if n % 2 == 0 else ("on", "off")):
                rates[name].append(wrk(instances[name][1], ROOT / "bench" / "events.lua", args.seconds,
                                       args.connections, f"m{name}{n}")[0])
    finally:
        for process, _ in instances.values():
            stop(process)
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    line = f"metrics: /voice/events {on:.0f} req/s with metrics on, {off:.0f} off = {on / off:.2f}"
    return {"name": "metrics", "ratio": on / off, "on": on, "off": off, "line": line}


def _memory(app, app_url, args):
    """Workers' resident memory early on and after args.memory_requests more requests."""
    before = workers_rss(app.pid)
    done, started = 0, time.monotonic()
    while done < args.memory_requests:
        rate, _, _ = wrk(app_url, ROOT / "bench" / "mix.lua", 10, args.connections, f"mem{done}")
        done += int(rate * 10)
    after = workers_rss(app.pid)
    line = (f"memory: workers {', '.join(f'{m:.0f}' for m in before)} MB before, "
            f"{', '.join(f'{m:.0f}' for m in after)} MB after {done} more requests ({time.monotonic() - started:.0f} s)")
    return {"name": "memory", "before": before, "after": after, "requests": done, "line": line}


if __name__ == "__main__":
    main()
