"""Each request's id, its access log line and its HTTP metrics: one WSGI middleware around the app.

A middleware rather than Flask hooks: it costs a callback a few microseconds, and it sees the
requests Flask itself refused too. Views add the call's id and details to the line through
`annotate()`. Every response carries `X-Request-ID`: the caller's, when well-formed, else a new
one; every log line written while the request is served carries it too (see voice/logs.py).
"""

import contextvars
import logging
import re
import time
import uuid

from flask import request

from voice import metrics

log = logging.getLogger("voice.access")

_KEY = "voice.access"
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}  # any other is counted as `other`
request_id = contextvars.ContextVar("request_id", default=None)
_NOTHING_NOTED = {"session": "-", "detail": "", "fields": {}}  # the line of a request no view noted anything on


def annotate(environ, session_id=None, detail=None, **fields):
    """Put the call's id, a detail such as `state=Answered`, and fields for JSON logs on this request's line."""
    line = environ.setdefault(_KEY, {"session": "-", "detail": "", "fields": {}})
    if session_id is not None:
        line["session"] = session_id
    if detail:
        line["detail"] = f"{line['detail']} {detail}" if line["detail"] else detail
    line["fields"].update(fields)


def init_app(app):
    """Wrap the app in the middleware, and have Flask tell it which URL rule each request matched."""
    app.after_request(_keep_route)
    app.wsgi_app = Access(app.wsgi_app, metrics_on=app.config["VOICE_METRICS"])


def _keep_route(response):
    """The URL rule Flask matched, for the metrics' route label (bounded, unlike the path)."""
    req = request._get_current_object()
    if req.url_rule is not None:
        req.environ["voice.route"] = req.url_rule.rule
    return response


class Access:
    """Wrap a WSGI app: request ids, one INFO line on `voice.access` per request, and its HTTP metrics."""

    def __init__(self, wsgi_app, metrics_on=True):
        self.wsgi_app = wsgi_app
        self.metrics_on = metrics_on

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID", "")
        rid = given if _WELL_FORMED.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = []

        def start(status_line, headers, exc_info=None):
            status.append(status_line[:3])
            headers.append(("X-Request-ID", rid))
            return start_response(status_line, headers, exc_info)

        try:
            body = self.wsgi_app(environ, start)
            seconds = time.perf_counter() - started
            code = status[0] if status else "-"
            method = environ.get("REQUEST_METHOD", "-")
            if self.metrics_on:
                metrics.observe_request(environ.get("voice.route", "unmatched"), method if method in _METHODS else "other",
                                        code, seconds)
            if log.isEnabledFor(logging.INFO):
                line = environ.get(_KEY) or _NOTHING_NOTED
                path = environ.get("PATH_INFO", "")
                fields = {"method": method, "path": path, "status": int(code) if code.isdigit() else None,
                          "duration_ms": round(seconds * 1000, 1), "session_id": line["session"], **line["fields"]}
                log.info("%s %s %s %.1fms session=%s %s", method, path, code, seconds * 1000, line["session"],
                         line["detail"], extra=fields)
            return body
        finally:
            request_id.reset(token)
