"""The access log: one line per request, what was asked, how it ended, for which call; never the query string.

A WSGI middleware rather than Flask hooks: it costs a callback a few microseconds, and it logs
requests that Flask's own handling refused too. Views add the call's id and details through
`note()`.
"""

import logging
import time

log = logging.getLogger("voice.access")

_KEY = "voice.access"


def note(environ, session_id=None, detail=None):
    """Put the call's id, and a detail such as `state=Answered`, on this request's log line."""
    line = environ.setdefault(_KEY, {"session": "-", "detail": ""})
    if session_id is not None:
        line["session"] = session_id
    if detail:
        line["detail"] = f"{line['detail']} {detail}" if line["detail"] else detail


class AccessLog:
    """Wrap a WSGI app so that each request it answers is logged at INFO on `voice.access`."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if not log.isEnabledFor(logging.INFO):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        status = []

        def start(status_line, headers, exc_info=None):
            status.append(status_line[:3])
            return start_response(status_line, headers, exc_info)

        body = self.wsgi_app(environ, start)
        line = environ.get(_KEY) or {"session": "-", "detail": ""}
        log.info("%s %s %s %.1fms session=%s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                 status[0] if status else "-", (time.perf_counter() - started) * 1000, line["session"],
                 line["detail"])
        return body
