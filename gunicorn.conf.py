"""Gunicorn settings for the voice service (used by the Procfile, `make run` and `make bench`).

Threaded workers: a dial-out blocks its thread on AT's API for up to AT_TIMEOUT_SECONDS, while
AT's callbacks must be answered at once. With gthread, each worker keeps threads free for
callbacks while others wait on AT, and the per-worker dial-out cap
(VOICE_MAX_DIALOUTS_IN_FLIGHT) keeps dial-outs from ever taking all of them.
"""

import os

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
# gunicorn 27's control socket lives at one path per user: two instances on a host (tests,
# benchmarks, a second deployment) would fight over it, and nothing here uses it.
control_socket_disable = True
