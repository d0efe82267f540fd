"""Running the service the way it is deployed: the Procfile's commands under real gunicorn."""

import os
import random
import shlex
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.helpers import API_KEY, AT_KEY, WEBHOOK_TOKEN

ROOT = Path(__file__).resolve().parent.parent


def procfile_command(process="web"):
    """The Procfile's command for `process`, run with this interpreter's gunicorn or flask."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            args = shlex.split(command.strip())
            if args[0] in ("gunicorn", "flask"):
                args = [sys.executable, "-m", args[0], *args[1:]]
            return [str(ROOT / a) if a.endswith(".py") and (ROOT / a).exists() else a for a in args]
    raise AssertionError(f"no {process}: line in Procfile")


_GIVEN = set()


def free_port():
    """A TCP port nobody listens on at the moment, not given out before in this run, and below the range the
    kernel takes outgoing connections' ports from (32768 and up on Linux): a port the kernel chose itself (bind
    to 0) could be taken by a client's connection before the server started here binds it."""
    for _ in range(500):
        port = random.randrange(20000, 32000)
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free TCP port between 20000 and 32000")


def wait_until_up(url, process, seconds=30, log=None):
    """Return once `url` answers 200; fail if the process dies or the time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("gunicorn exited early: " + (Path(log).read_text() if log else ""))
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not come up")


def service_env(workdir, simulated_at_url, **changes):
    """The environment of a served test instance: simulated AT, test keys, a store in `workdir`."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "AT_USERNAME": "testapp",
        "AT_API_KEY": AT_KEY,
        "AT_VOICE_NUMBER": "+254711000000",
        "AT_VOICE_API_URL": simulated_at_url,
        "AT_WEBRTC_API_URL": simulated_at_url,
        "AT_TIMEOUT_SECONDS": "6",
        "VOICE_API_KEY": API_KEY,
        "VOICE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "DATABASE_URL": f"sqlite:///{Path(workdir) / 'voice.sqlite3'}",
        "RATELIMIT_STORAGE_URI": f"sqlite:///{Path(workdir) / 'ratelimits.sqlite3'}",
        "VOICE_RATE_LIMIT_PER_KEY": "100 per minute",
        "VOICE_RATE_LIMIT_PER_DESTINATION": "100 per hour",
    }
    env.update({name: str(value) for name, value in changes.items()})
    return env


def log_of(workdir):
    """What the served service wrote to stdout and stderr."""
    return (Path(workdir) / "gunicorn.log").read_text(errors="replace")


@contextmanager
def served(env, workdir, migrate=True):
    """Run the Procfile's release (once) and web commands with `env`; yield the base URL and process.

    The output goes to workdir/gunicorn.log (see log_of), never to a pipe nobody reads: a full
    pipe blocks every worker on its next log line.
    """
    if migrate:
        release = subprocess.run(procfile_command("release"), cwd=workdir, env=env, capture_output=True, text=True)
        assert release.returncode == 0, f"the release command failed:\n{release.stdout}\n{release.stderr}"
    log = Path(workdir) / "gunicorn.log"
    with open(log, "ab") as output:
        process = subprocess.Popen(procfile_command(), cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        wait_until_up(base + "/voice/", process, log=log)
        yield base, process
    finally:
        stop(process)


def worker_log_of(workdir, name="worker"):
    """What a worker started by worker_process wrote."""
    path = Path(workdir) / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def start_worker(env, workdir, threads=4, name="worker"):
    """Start the Procfile's worker command with `env` and `--threads`; its output goes to workdir/<name>.log."""
    with open(Path(workdir) / f"{name}.log", "ab") as output:
        return subprocess.Popen([*procfile_command("worker"), "--threads", str(threads)], cwd=workdir, env=env,
                                stdout=output, stderr=subprocess.STDOUT)


def stop(process, seconds=15):
    """Stop a process started here (SIGTERM, then SIGKILL past `seconds`); nothing if it already ended."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_worker_started(process, workdir, name="worker", seconds=60):
    """Return once the worker's log says it started; fail if it exits or the time runs out."""
    deadline = time.monotonic() + seconds
    while "worker started" not in worker_log_of(workdir, name):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the worker did not start:\n{worker_log_of(workdir, name)}")
        time.sleep(0.1)


@contextmanager
def worker_process(env, workdir, threads=4, name="worker", after=None):
    """Run the Procfile's worker (`flask --app app voice worker`) beside a served instance; yield its process.

    `after` (a process and its name) is a worker to wait for first: started together on a new
    database, workers race to create the queue's tables.
    """
    if after is not None:
        wait_worker_started(after[0], workdir, after[1])
    process = start_worker(env, workdir, threads, name)
    try:
        yield process
    finally:
        stop(process)
