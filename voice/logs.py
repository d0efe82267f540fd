"""The service's logs: one line per record, as text or as JSON (LOG_FORMAT), each with its request's id and no secret.

Every handler the service or gunicorn writes through carries `Redact`: whatever a log call or a
library put in a line (a key in a refused sign-in, a token in a malformed request line that
gunicorn quotes, a password in a URL, a whole phone number), it leaves the process masked.
"""

import logging
import re

from gunicorn.glogging import Logger as GunicornBaseLogger
from pythonjsonlogger.json import JsonFormatter

from voice.access import request_id
from voice.phone import mask

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(process)d"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


class RequestId(logging.Filter):
    """Give every record the id of the request being served (`-` outside one)."""

    def filter(self, record):
        record.request_id = request_id.get() or "-"
        return True


# The configured secrets (API keys, the webhook token, AT's key, SECRET_KEY), set by configure(); a secret shorter
# than this is not looked for, as it would mask common words.
_secrets = []
MIN_SECRET = 8
_PATTERNS = (
    # token=..., key=..., password=... in a query string or a form, quoted or not
    (re.compile(r"(?i)\b((?:token|api[_-]?key|key|password|secret|signature)=)[^&\s'\"]+"), r"\1[redacted]"),
    # X-API-Key and Authorization header values, as a header line (with or without its colon) or a quoted pair
    (re.compile(r"(?i)\b(x-api-key|authorization)(['\"]?\s*[:,=]\s*['\"]?|\s+)(?:(?:bearer|basic|token)\s+)?"
                r"[^\s'\",]+"), r"\1\2[redacted]"),
    # credentials in a URL: scheme://user:password@host (a scheme is short: no backtracking over long words)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://)[^/\s@'\"]{1,256}@"), r"\1[redacted]@"),
)
# A whole phone number: 9 to 15 digits, with an optional + and single spaces or dashes between groups,
# standing alone (not part of an id or a word).
_PHONE = re.compile(r"(?<![\w.+*:])\+?[0-9]{1,15}(?:[ -][0-9]{1,15}){0,6}(?![\w.*:])")


def _masked(found):
    text = found.group(0)
    if " " in text and not text.startswith(("+", "0")):
        # Spaced groups are one number only as people write one (`+254 712...`, `0712 345...`); else each alone.
        return " ".join(_mask_digits(part) for part in text.split(" "))
    return _mask_digits(text)


def _mask_digits(text):
    digits = re.sub(r"[^0-9]", "", text)
    if not 9 <= len(digits) <= 15:
        return text
    return mask(("+" if text.startswith("+") else "") + digits)


# Cheap looks that tell whether anything could need masking: a configured secret, a hint of a pattern (substring
# tests), or nine digits standing alone. Most lines (the access line of every callback) hold none, and pass.
_HINTS = ("token=", "key=", "password=", "secret=", "signature=", "x-api-key", "authorization", "://")
_DIGITS = re.compile(r"(?<![A-Za-z_.+*:0-9])\+?[0-9][0-9 -]{7,}[0-9]")


def _suspect(text):
    for secret in _secrets:
        if secret in text:
            return True
    lowered = text.lower()
    for hint in _HINTS:
        if hint in lowered:
            return True
    return _DIGITS.search(text) is not None


def redact(text):
    """`text` with configured secrets, tokens, keys, URL passwords and whole phone numbers masked."""
    if not _suspect(text):
        return text
    for secret in _secrets:
        text = text.replace(secret, "[redacted]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _PHONE.sub(_masked, text)


class Redact(logging.Filter):
    """Mask secrets and whole numbers in a record's message and traceback, whoever logged it; and in its `extra`
    fields while `extras` is on (the JSON format writes them; the text format, set up by configure, does not)."""

    extras = True

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # a log call with wrong arguments: keep the template, never the arguments
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        for name in vars(record).keys() - _RECORD_ATTRIBUTES if self.extras else ():
            value = getattr(record, name)
            if isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


REDACT = Redact()
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


def remember_secrets(values):
    """Look for these exact values (the configured keys and tokens) in every line from now on."""
    _secrets[:] = sorted({value for value in values if len(value) >= MIN_SECRET}, key=len, reverse=True)


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's own logger, with the service's redaction on its error and access handlers."""

    def setup(self, cfg):
        """Set up gunicorn's handlers as it does, then make each of them redact."""
        super().setup(cfg)
        for handler in self.error_log.handlers + self.access_log.handlers:
            if REDACT not in handler.filters:
                handler.addFilter(REDACT)


def json_formatter():
    """JSON objects with time, level, logger, message, request id and process, plus the record's `extra` fields."""
    return JsonFormatter(JSON_FIELDS, rename_fields=JSON_NAMES)


def configure(app):
    """Send the service's logs to stderr in LOG_FORMAT, unless something else (a test runner) already handles them."""
    configured = app.extensions["voice_settings"]
    kind = configured.log_format
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
    # Whoever handles the records (ours, a test runner's, gunicorn's), each passes through the redaction; extra
    # fields only where they are written.
    REDACT.extras = kind == "json"
    for handler in root.handlers + logging.getLogger("gunicorn.error").handlers:
        if REDACT not in handler.filters:
            handler.addFilter(REDACT)
    logging.getLogger("voice").setLevel(configured.log_level)
