"""What the bench scenarios share: starting and stopping served processes, wrk, the open-loop runs, and the
workers' memory."""

import functools
import os
import re
import subprocess
import time
from pathlib import Path

import requests

import tests.gunicorn_helpers
from bench.breakdown import FORMS
from bench.openloop import OpenLoop, sessions

TOKEN = "bench-token"


def start(command, env, cwd, log="gunicorn.log"):
    """A served process (gunicorn, the worker), its output in cwd/`log`, never a pipe nobody reads."""
    with open(Path(cwd) / log, "ab") as output:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)


# Stop a process started here: SIGTERM, then SIGKILL after 20 s (the tests' own helper).
stop = functools.partial(tests.gunicorn_helpers.stop, seconds=20)


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


def worker_pids(master_pid):
    """The pids of a gunicorn master's workers."""
    return [int(pid) for pid in subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True,
                                               text=True).stdout.split()]


def memory_of(pid, field="VmRSS"):
    """A process's VmRSS (resident now) or VmHWM (its peak so far) in MB, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(field + r":\s+(\d+)", status).group(1)) / 1024


def workers_rss(master_pid):
    """Resident memory (MB) of each worker of a gunicorn master."""
    return [memory_of(pid) for pid in worker_pids(master_pid)]


def cpu_seconds(pid):
    """The CPU time (user + system, in seconds) a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_post(url, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.post(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def open_loop(url, route, seconds, prefix, rate, warm_up=1):
    """Offer rate requests a second of `route`, each a new call, whatever the answers do.

    The first `warm_up` seconds are sent and not counted: connections, caches and prepared
    statements are made then, in the service and the bare app alike.
    """
    new_session = sessions(prefix)
    body = FORMS[route].replace("ATVId_bd{}", "{}")

    def make(n):
        return "POST", f"/voice/{route}?token={TOKEN}", body.format(new_session()).encode()

    if warm_up:
        OpenLoop(url, rate, warm_up, make).run()
    return OpenLoop(url, rate, seconds, make).run()
