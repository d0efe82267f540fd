"""`make bench`: the service under gunicorn against a bare Flask app under the same settings.

Every figure is printed as a ratio to the bare app measured in the same run (the machine's
ceiling for the framework), beside the absolute numbers and the machine, and the table is
written to bench/results.md. wrk (Debian's package) drives the load from a separate process,
alternating between the two apps so drift hits both.
"""

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gunicorn_helpers import free_port, procfile_command, wait_until_up  # noqa: E402
from voice.fake_at import FakeAT  # noqa: E402

TOKEN = "bench-token"
SCENARIOS = ("instruct", "events", "mix", "slow", "memory")
KEY = "bench-key"


def start(command, env, cwd):
    """A gunicorn process, its output in cwd/gunicorn.log."""
    with open(Path(cwd) / "gunicorn.log", "ab") as output:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def wrk(url, script, seconds, connections, run_id):
    """Run wrk; return (requests/s, p99 ms, errors)."""
    env = dict(os.environ, BENCH_TOKEN=TOKEN, BENCH_RUN=run_id)
    result = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env=env, check=True)
    out = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        found = re.search(pattern, out)
        if found:
            errors += sum(int(g) for g in found.groups())
    return rate, p99, errors


def _ms(text):
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def workers_rss(master_pid):
    """Resident memory (MB) of each worker of a gunicorn master."""
    children = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()
    sizes = []
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        sizes.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)
    return sizes


def machine():
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s+:\s+(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per scenario")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--memory-requests", type=int, default=100_000)
    parser.add_argument("--database-url", help="store to use instead of a fresh SQLite file (e.g. PostgreSQL)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated subset to run; results.md is written only for a full run")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results.md"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("make bench needs wrk: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="voice-bench-"))
    fake = FakeAT(hang_seconds=5).start()
    app_port, bare_port = free_port(), free_port()
    base_env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1"}
    app_env = dict(base_env, PORT=str(app_port), DATABASE_URL=args.database_url or f"sqlite:///{work / 'voice.sqlite3'}",
                   RATELIMIT_STORAGE_URI=f"sqlite:///{work / 'limits.sqlite3'}", VOICE_WEBHOOK_TOKEN=TOKEN,
                   VOICE_API_KEY=KEY, AT_USERNAME="bench", AT_API_KEY="bench", AT_VOICE_NUMBER="+254711000000",
                   AT_VOICE_API_URL=fake.url, LOG_LEVEL="WARNING",
                   VOICE_RATE_LIMIT_PER_KEY="1000000 per minute", VOICE_RATE_LIMIT_PER_DESTINATION="1000000 per hour")
    subprocess.run(procfile_command("release"), cwd=work, env=app_env, check=True, capture_output=True)
    bare_command = procfile_command()[:-1] + ["bench.bare_app:app"]
    bare_env = dict(base_env, PORT=str(bare_port))
    app = start(procfile_command(), app_env, work)
    bare = start(bare_command, bare_env, work)
    app_url, bare_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{bare_port}"
    rows = []
    try:
        wait_until_up(app_url + "/voice/", app)
        _wait_post(bare_url + "/voice/instruct")
        run = iter(range(1, 10**6))
        chosen = args.scenarios.split(",")
        for key, scenario, script in (("instruct", "/voice/instruct (menu step)", "instruct.lua"),
                                      ("events", "/voice/events (each stored)", "events.lua"),
                                      ("mix", "mix at AT's proportions", "mix.lua")):
            if key not in chosen:
                continue
            ours, ceiling = [], []
            for _ in range(args.rounds):
                ceiling.append(wrk(bare_url, ROOT / "bench" / script, args.seconds, args.connections, str(next(run))))
                ours.append(wrk(app_url, ROOT / "bench" / script, args.seconds, args.connections, str(next(run))))
            rows.append(_row(scenario, ours, ceiling))
            print(rows[-1]["line"], flush=True)

        for key, measure in (("slow", _slow_at), ("memory", lambda url, args: _memory(app, url, args))):
            if key in chosen:
                rows.append(measure(app_url, args))
                print(rows[-1]["line"], flush=True)
    finally:
        stop(app)
        stop(bare)
        fake.stop()
    if set(chosen) >= set(SCENARIOS) and not args.database_url:
        _write(args, rows)
    else:
        print(f"not written to {args.output}: that needs every scenario on the default SQLite store")


def _wait_post(url, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.post(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def _row(name, ours, ceiling):
    rate = statistics.mean(r for r, _, _ in ours)
    ceiling_rate = statistics.mean(r for r, _, _ in ceiling)
    p99 = max(p for _, p, _ in ours)
    ceiling_p99 = max(p for _, p, _ in ceiling)
    errors = sum(e for _, _, e in ours)
    ratio = rate / ceiling_rate
    line = (f"{name}: {rate:.0f} req/s = {ratio:.2f} of the bare app's {ceiling_rate:.0f}; "
            f"p99 {p99:.1f} ms (bare {ceiling_p99:.1f} ms); errors {errors}")
    return {"name": name, "rate": rate, "ceiling": ceiling_rate, "ratio": ratio, "p99": p99,
            "ceiling_p99": ceiling_p99, "errors": errors, "line": line}


def _slow_at(app_url, args):
    """instruct's latency while 16 dial-outs at once hang 5 s on the fake AT."""
    results = []

    def dial():
        started = time.monotonic()
        response = requests.post(app_url + "/voice/invoke-call", data={"phone": "254700000504"},
                                 headers={"X-API-Key": KEY}, timeout=20)
        results.append((response.status_code, time.monotonic() - started))

    threads = [threading.Thread(target=dial) for _ in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    rate, p99, errors = wrk(app_url, ROOT / "bench" / "instruct.lua", 4, args.connections, "slow")
    for thread in threads:
        thread.join()
    refused = [t for s, t in results if s == 503]
    waited = [t for s, t in results if s != 503]
    line = (f"slow AT (16 dial-outs hanging 5 s): /voice/instruct p99 {p99:.1f} ms at {rate:.0f} req/s, errors {errors}; "
            f"{len(waited)} dial-outs waited on AT ({max(waited, default=0):.1f} s max), {len(refused)} refused at once "
            f"({max(refused, default=0) * 1000:.0f} ms max)")
    return {"name": "slow AT", "p99": p99, "rate": rate, "errors": errors, "waited": len(waited),
            "refused": len(refused), "refused_max_ms": max(refused, default=0) * 1000, "line": line}


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


def _write(args, rows):
    by_name = {row["name"]: row for row in rows}
    instruct, events, mix = (by_name[n] for n in ("/voice/instruct (menu step)", "/voice/events (each stored)",
                                                  "mix at AT's proportions"))
    slow, memory = by_name["slow AT"], by_name["memory"]

    def verdict(ok):
        return "met" if ok else "**missed**"

    lines = [
        "# Benchmark results",
        "",
        f"Made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `make bench` "
        f"(`python bench/run.py --seconds {args.seconds} --rounds {args.rounds} --connections {args.connections}`).",
        f"Machine: {machine()}. Load generator: wrk on the same machine, {args.connections} connections.",
        "The service runs under gunicorn with the project's gunicorn.conf.py and the default SQLite store; the",
        "ceiling is a bare Flask app returning a fixed XML body under the same gunicorn settings, measured",
        "alternately in the same run. Ratios are what count; absolute figures depend on the machine.",
        "",
        "| Scenario | Service req/s | Bare req/s | Ratio | Service p99 | Bare p99 | Errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in (instruct, events, mix):
        lines.append(f"| {row['name']} | {row['rate']:.0f} | {row['ceiling']:.0f} | {row['ratio']:.2f} | "
                     f"{row['p99']:.1f} ms | {row['ceiling_p99']:.1f} ms | {row['errors']} |")
    lines += [
        "",
        "| Target | Figure | Verdict |",
        "|---|---|---|",
        f"| /voice/instruct throughput at least 0.6 of the bare app's | {instruct['ratio']:.2f} | {verdict(instruct['ratio'] >= 0.6)} |",
        f"| /voice/instruct p99 under 25 ms at 16 connections | {instruct['p99']:.1f} ms | {verdict(instruct['p99'] < 25)} |",
        f"| /voice/events (each committed before OK) at least 0.5 of the bare app's | {events['ratio']:.2f} | {verdict(events['ratio'] >= 0.5)} |",
        f"| Slow AT: /voice/instruct p99 under 50 ms, no error | {slow['p99']:.1f} ms, {slow['errors']} errors | "
        f"{verdict(slow['p99'] < 50 and slow['errors'] == 0)} |",
        f"| Slow AT: dial-outs beyond the cap refused at once | {slow['refused']} refused, slowest {slow['refused_max_ms']:.0f} ms; "
        f"{slow['waited']} waited | {verdict(slow['refused'] > 0 and slow['refused_max_ms'] < 500)} |",
        f"| Memory: each worker under 80 MB after 100,000 requests, not growing | "
        f"{', '.join(f'{m:.0f}' for m in memory['before'])} MB -> {', '.join(f'{m:.0f}' for m in memory['after'])} MB "
        f"after {memory['requests']} requests | {verdict(max(memory['after']) < 80)} |",
        "",
    ]
    notes = Path(args.output).with_name("notes.md")
    if notes.exists():
        lines += [notes.read_text()]
    Path(args.output).write_text("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
