"""The fields of a client's request to the API: from the query string, a form or a JSON object, checked."""

import re

from flask import request
from flask.json.provider import DefaultJSONProvider

from voice import shapes
from voice.callbacks import FORM_TYPES
from voice.errors import APIError

MAX_FIELD = 64
RESERVED_REQUEST_ID = "campaign-attempt-"  # voice.campaigns.models.request_id
MAX_NUMBERS = 10
AUDIO_URL = re.compile(r"^https?://[^\s/?#]+[^\s?#]*\.(mp3|wav)(\?[^\s#]*)?$", re.IGNORECASE)


class RequestJSON(DefaultJSONProvider):
    """Flask's JSON, where a body nested too deeply for the parser is a malformed body (400), not a crash."""

    def loads(self, s, **kwargs):
        """Parse JSON; a RecursionError becomes the ValueError Flask answers 400 for."""
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


def _values(name):
    """Every value given for `name`, in the query string and the body."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise APIError(400, "bad_json", "The body must be a JSON object, e.g. {\"phone\": \"254712345678\"}.")
        return [body[name]] if name in body else request.args.getlist(name)
    if request.content_length and request.mimetype not in FORM_TYPES:
        raise APIError(415, "unsupported_media_type", "Send the body as a form or as a JSON object.")
    return request.args.getlist(name) + request.form.getlist(name)


def _code(name):
    return "invalid_phone" if name == "phone" else "bad_field"


def text(name, limit=MAX_FIELD):
    """A field given at most once, as a string of at most `limit` characters; None when absent."""
    values = _values(name)
    if len(values) > 1:
        raise APIError(400, "duplicate_field", f"{name} is given more than once.")
    if not values or values[0] is None:
        return None
    if not isinstance(values[0], (str, int)) or isinstance(values[0], bool):
        raise APIError(400, _code(name), f"{name} must be a string.")
    value = str(values[0])
    if len(value) > limit:
        raise APIError(400, _code(name), f"{name} is too long (at most {limit} characters).")
    return value


def numbers(name="phone", limit=MAX_NUMBERS):
    """The numbers of a field that may hold several: repeated, comma-separated or a JSON list; raw, in order."""
    found = []
    for value in _values(name):
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None or isinstance(item, bool) or not isinstance(item, (str, int)):
                raise APIError(400, "invalid_phone", f"each {name} must be a string.")
            found.extend(part for part in str(item).split(",") if part.strip())
    if len(found) > limit:
        raise APIError(400, "too_many_numbers", f"At most {limit} numbers may be dialled in one request.")
    for item in found:
        if len(item) > MAX_FIELD:
            raise APIError(400, "invalid_phone", f"{name} is too long.")
    return found


def flag(name, default):
    """A yes/no field (true/false, 1/0, a JSON boolean); `default` when absent."""
    values = _values(name)
    if len(values) > 1:
        raise APIError(400, "duplicate_field", f"{name} is given more than once.")
    if not values or values[0] is None:
        return default
    value = values[0]
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise APIError(400, "bad_field", f"{name} must be true or false.")


def integer(name, default, low, high):
    """A whole number from `low` to `high`; `default` when absent."""
    value = text(name)
    if value is None or not value.strip():
        return default
    try:
        return shapes.counted(name, value, low, high)
    except shapes.BadValue as exc:
        raise APIError(400, "bad_field", f"{exc}.") from None


def audio_url(name, required=False):
    """An http(s) URL of an .mp3 or .wav file, as AT plays and caches; None when absent and not required."""
    value = text(name, shapes.MAX_URL)
    if value is None or not value.strip():
        if required:
            raise APIError(400, "bad_field", f"{name} is required: the http(s) URL of an .mp3 or .wav file.")
        return None
    value = value.strip()
    if not AUDIO_URL.match(value):
        raise APIError(400, "bad_field", f"{name} must be an http(s) URL of an .mp3 or .wav file (AT plays only those).")
    return value


def client_request_id():
    """The optional clientRequestId of a dial-out: 1 to 64 printable characters, AT echoes it back."""
    value = text("clientRequestId")
    if value is None:
        return None
    if not shapes.CLIENT_REQUEST_ID.fullmatch(value):
        raise APIError(400, "bad_field", "clientRequestId must be 1 to 64 printable ASCII characters.")
    if value.startswith(RESERVED_REQUEST_ID):
        raise APIError(400, "bad_field", f"clientRequestId may not start with {RESERVED_REQUEST_ID!r}: campaigns name "
                       "their attempts so.")
    return value
