"""Where a callback's microseconds go: the WSGI app called in-process, no server, one stage added at a time.

Stages: a bare Flask route; + reading the form and checking AT's fields (callbacks.parse_request);
+ the webhook checks (token, address); then the service itself with its store replaced by a
no-op, logging and metrics off (adds the XML, headers, error handling); + the access log line;
+ the store (SQLite in a temporary folder); + the Prometheus metrics. Each stage is timed over `count` requests, the best of a
few rounds, so a noisy neighbour inflates no single stage.
"""

import logging
import os
import tempfile
import time

from flask import Flask, request
from flask_migrate import upgrade
from werkzeug.test import EnvironBuilder

from app import create_app
from bench.bare_app import XML
from bench.bare_app import app as bare
from voice import callbacks, settings
from voice.auth import require_webhook_auth
from voice.store import records

TOKEN = "bench-token"
FORMS = {
    "instruct": "isActive=1&direction=Inbound&callSessionState=Active&callerNumber=%2B254712345678"
                "&destinationNumber=%2B254711000000&sessionId=ATVId_bd{}",
    "events": "isActive=0&direction=Inbound&callSessionState=Completed&status=Success&callerNumber=%2B254712345678"
              "&destinationNumber=%2B254711000000&durationInSeconds=42&amount=2.5000&currencyCode=KES"
              "&hangupCause=NORMAL_CLEARING&callerCountryCode=254&callerCarrierName=Safaricom"
              "&callStartTime=2026-11-27+08%3A00%3A00&sessionId=ATVId_bd{}",
}


def _staged_app(checks):
    """A Flask app whose routes parse the callback as the service does (and check it like a webhook)."""
    staged = Flask(__name__)
    staged.config.update(settings.DEFAULTS, VOICE_WEBHOOK_TOKEN=TOKEN)
    staged.extensions["voice_settings"] = settings.build(staged.config, "live")

    def view():
        callbacks.parse_request(request)
        return staged.response_class(XML, mimetype="text/plain")

    if checks:
        view = require_webhook_auth(view)
    staged.add_url_rule("/voice/instruct", "instruct", view, methods=["POST"])
    staged.add_url_rule("/voice/events", "events", view, methods=["POST"])
    return staged


def _time(wsgi, route, count, run):
    environs = [EnvironBuilder(method="POST", path=f"/voice/{route}", query_string=f"token={TOKEN}",
                               data=FORMS[route].format(f"{run}_{n}"),
                               content_type="application/x-www-form-urlencoded").get_environ()
                for n in range(count)]
    started = time.perf_counter()
    for environ in environs:
        b"".join(wsgi(environ, lambda *args: None))
    return (time.perf_counter() - started) / count * 1e6


def breakdown(count=3000, rounds=3):
    """[(stage, {route: microseconds a request})] for instruct and events."""
    folder = tempfile.mkdtemp(prefix="voice-breakdown-")
    settings = {"DATABASE_URL": f"sqlite:///{folder}/voice.sqlite3", "VOICE_WEBHOOK_TOKEN": TOKEN,
                "RATELIMIT_STORAGE_URI": f"sqlite:///{folder}/limits.sqlite3", "LOG_LEVEL": "INFO"}
    unmeasured = create_app(dict(settings, VOICE_METRICS=False))
    service = create_app(settings)
    with service.app_context():
        upgrade()
    voice_logger = logging.getLogger("voice")
    quiet = logging.FileHandler(os.devnull)
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)
    logging.getLogger().addHandler(quiet)
    real_store = records.record_notification

    def no_store(*args, **kwargs):
        return True

    stages = [
        ("bare Flask route", bare.wsgi_app, None, "WARNING"),
        ("+ form read and AT's fields checked", _staged_app(checks=False).wsgi_app, None, "WARNING"),
        ("+ webhook checks (token, address)", _staged_app(checks=True).wsgi_app, None, "WARNING"),
        ("the service, store off, logs off (+ XML, headers, errors)", unmeasured, no_store, "WARNING"),
        ("+ access log line", unmeasured, no_store, "INFO"),
        ("+ store (SQLite, committed)", unmeasured, real_store, "INFO"),
        ("+ metrics (the whole service)", service, real_store, "INFO"),
    ]
    results = []
    run = 0
    for name, wsgi, store, level in stages:
        figures = {}
        for route in FORMS:
            best = []
            for _ in range(rounds):
                run += 1
                records.record_notification = store or real_store
                voice_logger.setLevel(level)
                best.append(_time(wsgi, route, count, run))
            figures[route] = min(best)
        results.append((name, figures))
    records.record_notification = real_store
    return results


if __name__ == "__main__":
    for stage, figures in breakdown():
        print(f"{stage:60s} instruct {figures['instruct']:7.0f} us   events {figures['events']:7.0f} us")
