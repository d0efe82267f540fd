"""The service's logs: one line per record, as text or as JSON (LOG_FORMAT), each with its request's id."""

import logging

from pythonjsonlogger.json import JsonFormatter

from voice.access import request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(process)d"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


class RequestId(logging.Filter):
    """Give every record the id of the request being served (`-` outside one)."""

    def filter(self, record):
        record.request_id = request_id.get() or "-"
        return True


def json_formatter():
    """JSON objects with time, level, logger, message, request id and process, plus the record's `extra` fields."""
    return JsonFormatter(JSON_FIELDS, rename_fields=JSON_NAMES)


def configure(app):
    """Send the service's logs to stderr in LOG_FORMAT, unless something else (a test runner) already handles them."""
    kind = str(app.config.get("LOG_FORMAT") or "text").lower()
    if kind not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT={kind!r} is neither 'text' nor 'json'")
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if getattr(handler, "voice", False)]
    if not root.handlers or ours:
        handler = ours[0] if ours else logging.StreamHandler()
        handler.voice = True
        handler.setFormatter(json_formatter() if kind == "json" else logging.Formatter(TEXT_FORMAT))
        if not any(isinstance(existing, RequestId) for existing in handler.filters):
            handler.addFilter(RequestId())
        if not ours:
            root.addHandler(handler)
    logging.getLogger("voice").setLevel(app.config["LOG_LEVEL"].upper())
