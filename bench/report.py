"""The table `make bench` writes to bench/results.md: every figure beside its target, and what was tried (notes.md)."""

import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

THROUGHPUT = (("instruct", "/voice/instruct (menu step)", "instruct.lua"),
              ("events", "/voice/events (each stored)", "events.lua"),
              ("mix", "mix at AT's proportions", "mix.lua"))
FIXED_RATE = 300  # requests a second offered in the open-loop scenarios
LATENCY_RUNS = 5  # consecutive open-loop runs of each route, each held to the targets


def at_when(moments):
    """Open-loop moments, each (ms, ms after the run's start), as `12 ms at 3.20 s, ...`."""
    return ", ".join(f"{ms:.0f} ms at {after / 1000:.2f} s" for ms, after in moments)


def machine():
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s+:\s+(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def write(args, rows, postgres):
    by_name = {row["name"]: row for row in rows}
    instruct, events, mix = (by_name[name] for _, name, _ in THROUGHPUT)
    slow, memory, cost = by_name["slow AT"], by_name["memory"], by_name["metrics"]
    fixed = {route: by_name[f"latency {route}"] for route in ("instruct", "events")}
    on_postgres = {row["name"]: row for row in postgres}

    def verdict(ok):
        return "met" if ok else "**missed**"

    lines = [
        "# Benchmark results",
        "",
        f"Made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `make bench` (`python bench/run.py "
        f"--seconds {args.seconds} --rounds {args.rounds} --connections {args.connections}"
        f"{' --postgres-url ...' if postgres else ''}`).",
        f"Machine: {machine()}. Load generator: wrk on the same machine, {args.connections} connections; the "
        f"fixed-rate scenarios use bench/openloop.py ({FIXED_RATE} requests a second, open loop).",
        "The service runs under gunicorn with the project's gunicorn.conf.py; the ceiling is a bare Flask app",
        "returning a fixed XML body under the same gunicorn settings, measured alternately in the same run",
        "(medians of the rounds). Ratios are what count; absolute figures depend on the machine.",
        "",
        "| Scenario | Service req/s | Bare req/s | Ratio (SQLite) | Ratio (PostgreSQL) | Service p99 | Bare p99 | Errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in (instruct, events, mix):
        pg = on_postgres.get(row["name"])
        pg_ratio = f"{pg['ratio']:.2f}" if pg else "not run"
        lines.append(f"| {row['name']} | {row['rate']:.0f} | {row['ceiling']:.0f} | {row['ratio']:.2f} | {pg_ratio} | "
                     f"{row['p99']:.1f} ms | {row['ceiling_p99']:.1f} ms | {row['errors']} |")
    lines += [
        "",
        f"| At {FIXED_RATE} req/s offered (open loop), run | Service p50 / p99 / p99.9 | Bare p50 / p99 / p99.9 | "
        "p99 ratio | p99.9 ratio | Slowest (latency at when it was due) | Generator's worst lag | Errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for route, row in fixed.items():
        for number, run in enumerate(row["runs"], start=1):
            ours, bare = run["ours"], run["bare"]
            lines.append(f"| /voice/{route}, {number} | {ours['p50']:.1f} / {ours['p99']:.1f} / {ours['p999']:.1f} ms | "
                         f"{bare['p50']:.1f} / {bare['p99']:.1f} / {bare['p999']:.1f} ms | {run['p99_ratio']:.2f} | "
                         f"{run['p999_ratio']:.2f} | {at_when(ours['slowest'][:3])} | {at_when([ours['lag']])} | "
                         f"{ours['errors']} |")
    slow_ratio = slow["p99"] / slow["ceiling_p99"]
    lines += [
        "",
        "| Target | Figure | Verdict |",
        "|---|---|---|",
        f"| /voice/instruct throughput at least 0.5 of the bare app's | {instruct['ratio']:.2f} | "
        f"{verdict(instruct['ratio'] >= 0.5)} |",
        f"| /voice/events (each committed before OK) at least 0.5 | {events['ratio']:.2f} | "
        f"{verdict(events['ratio'] >= 0.5)} |",
        f"| mix at AT's proportions at least 0.5 | {mix['ratio']:.2f} | {verdict(mix['ratio'] >= 0.5)} |",
    ]
    for route, row in fixed.items():
        worst_p99 = max(run["p99_ratio"] for run in row["runs"])
        worst_p999 = max(run["p999_ratio"] for run in row["runs"])
        lines.append(f"| /voice/{route} at {FIXED_RATE} req/s, each of {LATENCY_RUNS} runs: p99 at most 2x the bare "
                     f"app's, p99.9 at most 3x, no error | worst run {worst_p99:.2f}x / {worst_p999:.2f}x, "
                     f"{row['errors']} errors | {verdict(row['met'])} |")
    lines += [
        f"| Slow AT: /voice/instruct p99 at {FIXED_RATE} req/s at most 2x the bare app's, no error | "
        f"{slow['p99']:.1f} ms = {slow_ratio:.2f}x, {slow['errors']} errors | "
        f"{verdict(slow_ratio <= 2 and slow['errors'] == 0)} |",
        f"| Slow AT: dial-outs beyond the cap refused at once | {slow['refused']} refused, slowest "
        f"{slow['refused_max_ms']:.0f} ms; {slow['waited']} waited | "
        f"{verdict(slow['refused'] > 0 and slow['refused_max_ms'] < 500)} |",
        f"| Metrics cost under 5% of /voice/events throughput (on against off) | {cost['on']:.0f} against "
        f"{cost['off']:.0f} req/s = {cost['ratio']:.2f} | {verdict(cost['ratio'] >= 0.95)} |",
        f"| Memory: each worker under 80 MB after 100,000 requests, not growing | "
        f"{', '.join(f'{m:.0f}' for m in memory['before'])} MB -> {', '.join(f'{m:.0f}' for m in memory['after'])} MB "
        f"after {memory['requests']} requests | {verdict(max(memory['after']) < 80)} |",
        "",
    ]
    if "console" in by_name:
        console = by_name["console"]
        lines += [
            "## The console with 100,000 calls in the store (SQLite, in-process, signed in)",
            "",
            "| Page | First answer | Median | Slowest | Under 100 ms |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {name} | {first:.1f} ms | {median:.1f} ms | {slowest:.1f} ms | "
                  f"{verdict(max(first, slowest) < console['target'])} |"
                  for name, first, median, slowest in console["pages"]]
        lines += ["", f"A process's first read of 30 days of calls takes {console['cold']:.0f} ms; the calls page starts it "
                  "in the background (whole past days are then kept per process), so the overview finds it done.", ""]
    if "campaigns" in by_name:
        lines += by_name["campaigns"]["table"]
    if "breakdown" in by_name:
        lines += [
            "## Where a callback's time goes (in-process, microseconds a request)",
            "",
            "| Stage | /voice/instruct | /voice/events |",
            "|---|---|---|",
        ]
        lines += [f"| {stage} | {figures['instruct']:.0f} | {figures['events']:.0f} |"
                  for stage, figures in by_name["breakdown"]["stages"]]
        lines.append("")
    notes = Path(args.output).with_name("notes.md")
    if notes.exists():
        lines += [notes.read_text()]
    Path(args.output).write_text("\n".join(lines))
    print(f"wrote {args.output}")
