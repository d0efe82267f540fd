"""Gunicorn settings for the voice service (used by the Procfile, `make run` and `make bench`).

Threaded workers: a dial-out blocks its thread on AT's API for up to AT_TIMEOUT_SECONDS, while
AT's callbacks must be answered at once. With gthread, each worker keeps threads free for
callbacks while others wait on AT, and the per-worker dial-out cap
(VOICE_MAX_DIALOUTS_IN_FLIGHT) keeps dial-outs from ever taking all of them.

In simulated mode (VOICE_SIMULATE=1, or =auto without AT credentials, as `make run` writes
.env) the master also starts the simulated AT beside the app and stops it on exit.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from dotenv import load_dotenv

load_dotenv(os.path.join(os.getcwd(), ".env"))

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30
graceful_timeout = 10
keepalive = 5
errorlog = "-"
# The app logs one line per request itself, without query strings (they carry the webhook token).
accesslog = None
# gunicorn's own lines (a malformed request line it quotes, say) pass through the service's redaction too.
logger_class = "voice.logs.GunicornLogger"
# gunicorn would believe X-Forwarded-Proto and the like from loopback by default; the app alone decides,
# trusting exactly VOICE_TRUSTED_PROXIES hops (werkzeug's ProxyFix), so gunicorn trusts no one.
forwarded_allow_ips = ""
# gunicorn 27's control socket lives at one path per user: two instances on a host (tests,
# benchmarks, a second deployment) would fight over it, and nothing here uses it.
control_socket_disable = True

# gunicorn's own logs as JSON lines too when the service's are (LOG_FORMAT=json).
if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        # gunicorn's loggers only: the root logger is left to the app (voice/logs.py), whose lines carry
        # the request id, and gunicorn's lines are not written twice.
        "root": {"level": "WARNING", "handlers": []},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False,
                                       "qualname": "gunicorn.error"}},
        "formatters": {"generic": {"()": "voice.logs.json_formatter"}},
    }

_simulated_at = []
_metrics_dir = []


def _fresh_metrics_folder():
    """Give this start its own, empty folder for the workers' metrics (prometheus-client's multiprocess mode).

    Set here, as the settings are read, since prometheus-client picks its mode when first
    imported, and the logging set-up above may import it before any server hook runs.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:  # an operator's choice: empty it, since figures of a previous start would be summed in
        shutil.rmtree(given, ignore_errors=True)
        os.makedirs(given, exist_ok=True)
    else:
        _metrics_dir.append(tempfile.mkdtemp(prefix="voice-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir[-1]


_fresh_metrics_folder()


def post_fork(server, worker):
    """A worker only serves: the app it builds leaves out the migration commands (VOICE_SERVE_ONLY)."""
    os.environ["VOICE_SERVE_ONLY"] = "1"


def child_exit(server, worker):
    """A dead worker's live gauges stop counting; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def when_ready(server):
    """Start the simulated AT when the app runs without AT credentials in simulated mode, and wait for it.

    The workers start when this returns: requests that arrive sooner wait in the listen queue,
    so none is answered before the simulated AT can take the dial-outs it brings.
    """
    from voice import settings

    configured = settings.from_environ(os.environ)
    if not settings.simulated(configured):
        return
    command = [sys.executable, "-m", "flask", "--app", "app", "voice", "simulated-at"]
    _simulated_at.append(subprocess.Popen(command, env=dict(os.environ, PORT=bind.rsplit(":", 1)[1])))
    port = int(configured.get("VOICE_SIMULATED_AT_PORT") or settings.DEFAULTS["VOICE_SIMULATED_AT_PORT"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _simulated_at[0].poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            server.log.info("the simulated Africa's Talking API answers on 127.0.0.1:%s (pid %s)", port,
                            _simulated_at[0].pid)
            return
        except OSError:
            time.sleep(0.1)
    server.log.error("the simulated Africa's Talking API did not start on 127.0.0.1:%s: dial-outs will fail "
                     "with at_unreachable (is the port taken? set VOICE_SIMULATED_AT_PORT)", port)


def on_exit(server):
    """Stop the simulated AT with the service, and remove the metrics folder made for this start."""
    for process in _simulated_at:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
    for folder in _metrics_dir:
        shutil.rmtree(folder, ignore_errors=True)
