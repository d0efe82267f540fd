"""What AT posts to /voice/instruct and /voice/events, read into one bounded, typed shape.

AT's real callbacks carry `callSessionState`, `status`, `isActive` and `hangupCause`; the
spec's course write-up uses `eventType` (`SessionStarted`...). Both are accepted and folded
into one call state.
"""

import re
from decimal import Decimal

from voice import shapes
from voice.calls import EVENT_TYPE_STATES, FIELDS, FINAL_STATES
from voice.phone import InvalidPhone, canonical, from_dialled

MAX_SECONDS = 10 * 24 * 3600  # no count of seconds AT sends (a call, a queue wait) is longer
MAX_AMOUNT = Decimal(10) ** 9
_PLUS_FOR_SPACE = re.compile(r"^\d{4}-\d\d-\d\d\+")


MAX_FIELD = 2048
MAX_FIELDS = 100
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Malformed(ValueError):
    """A notification that cannot be taken; `status` is the 4xx to answer."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class Notification:
    """One AT notification, with every value checked and bounded; `problems` lists what was dropped.

    Besides the attributes every notification has, it holds one attribute per field of
    voice/calls.py's FIELDS (`duration`, `amount`, `dial_destination`...), None when AT left it out.
    A browser or app client's call has `client_name`, and `dialled`: what its agent typed
    (`client_dialed`) in E.164, None when that is no phone number.
    """

    _OWN = ("state", "direction", "caller", "destination", "digits", "recording_url", "client_name", "dialled")
    __slots__ = ("session_id", "is_active", "problems") + _OWN + tuple(field.name for field in FIELDS)

    def __init__(self, session_id, is_active, problems=None, **values):
        self.session_id, self.is_active, self.problems = session_id, is_active, [] if problems is None else problems
        for name in self.__slots__[3:]:
            setattr(self, name, values.get(name))

    @property
    def is_final(self):
        """True for the end-of-call notification that carries the call's final figures."""
        return not self.is_active or self.state in FINAL_STATES


def parse_request(request, username=None, country_code=""):
    """Read the notification a webhook request carries, after checking its shape (see parse)."""
    if request.content_length and request.mimetype not in FORM_TYPES:
        raise Malformed(f"the body must be a form ({FORM_TYPES[0]}), not {request.mimetype or 'untyped'}", 415)
    form = request.form
    if len(form) > MAX_FIELDS:
        raise Malformed(f"more than {MAX_FIELDS} fields")
    for name, values in form.lists():
        if len(values) > 1:
            raise Malformed(f"{name[:40]} is given more than once")
        if len(values[0]) > MAX_FIELD or len(name) > 100:
            raise Malformed(f"{name[:40]} is longer than {MAX_FIELD} characters")
    return parse(form, username, country_code)


def parse(form, username=None, country_code=""):
    """Read an AT notification from form fields; raise Malformed without a usable sessionId.

    A caller `<username>.<name>` is our browser or app client `name` only when `username` is our AT
    username; what its agent dialled is read as a local number of `country_code` when it starts with 0.
    """
    # A plain dict: a missing key in werkzeug's MultiDict costs an exception, and most fields are absent.
    form = dict(form.items())
    session_id = (form.get("sessionId") or "").strip()
    if not session_id:
        raise Malformed("sessionId is required")
    if not shapes.SESSION_ID.fullmatch(session_id):
        raise Malformed("sessionId is not a valid AT session id")
    problems = []
    is_active = (form.get("isActive") or "1").strip() != "0"
    note = Notification(session_id=session_id, is_active=is_active, problems=problems)
    note.direction = _direction(form.get("direction"), problems)
    note.caller = _number(form.get("callerNumber"), "callerNumber", problems)
    note.destination = _number(form.get("destinationNumber"), "destinationNumber", problems)
    note.digits = _digits(form.get("dtmfDigits"), problems)
    note.recording_url = _url(form.get("recordingUrl"), problems)
    for field in FIELDS:
        value = form.get(field.at)
        if not shapes.absent(value):
            setattr(note, field.name, READERS[field.kind](value.strip(), field.at, problems))
    note.state = _state(form, note, problems)
    # A call from a browser or app client (AT's WebRTC SDK): callerNumber is `<AT username>.<client
    # name>`, and clientDialedNumber is what the agent typed, as typed.
    client = shapes.CLIENT_ADDRESS.fullmatch(note.caller or "")
    if client and client.group(1) != username:
        problems.append("callerNumber names a client of another AT username")
        client = None
    note.client_name = client.group(2) if client else None
    if note.client_dialed:
        try:
            note.dialled = from_dialled(note.client_dialed, country_code)
        except InvalidPhone:
            problems.append("clientDialedNumber is not a phone number")  # the flow tells the agent so
    return note


def _state(form, note, problems):
    """The call state this notification reports, from callSessionState, eventType or isActive."""
    state = _word(form.get("callSessionState"), "callSessionState", problems)
    event_type = _word(form.get("eventType"), "eventType", problems)
    if state is None and event_type is not None:
        state = EVENT_TYPE_STATES.get(event_type, event_type)
    if state is None and not note.is_active:
        state = "NotAnswered" if note.status == "NotAnswered" else "Completed"
    return state


# The readers of AT's values, one per kind of voice/calls.py's KINDS: each takes a stripped value that
# is not blank, and answers it checked (or None, with the problem noted).

def _text(value, name, problems, limit=64):
    if value is None or shapes.absent(value):
        return None
    value = value.strip()
    if len(value) > limit:
        problems.append(f"{name} longer than {limit}")
        return None
    if shapes.has_control(value):
        problems.append(f"{name} holds control characters")
        return None
    return value


def _number(value, name, problems):
    """A phone number in its one E.164 form (as every number the service compares), or a client's address as sent."""
    value = _text(value, name, problems, 128)
    return canonical(value) if value is not None else None


def _word(value, name, problems):
    value = _text(value, name, problems)
    if value is not None and not shapes.WORD.fullmatch(value):
        problems.append(f"{name} is not a plain word")
        return None
    return value


def _seconds(value, name, problems):
    number = shapes.whole(value, 0, MAX_SECONDS)
    if number is None:
        problems.append(f"{name} is not a count of seconds up to {MAX_SECONDS}")
    return number


def _amount(value, name, problems):
    amount = shapes.decimal(value, Decimal(0), MAX_AMOUNT)
    if amount is None:
        problems.append(f"{name} is not a plain amount from 0 to 10^9")
        return None
    return amount.quantize(Decimal("0.0001"))


def _currency(value, name, problems):
    value = value.upper()
    if len(value) != 3 or not value.isalpha() or not value.isascii():
        problems.append(f"{name} is not a 3-letter code")
        return None
    return value


def _timestamp(value, name, problems):
    """AT's `YYYY-MM-DD HH:MM:SS` (UTC assumed; seen with `+` for the space) or ISO 8601."""
    if _PLUS_FOR_SPACE.match(value):
        value = value.replace("+", " ", 1)
    moment = shapes.moment(value)
    if moment is None:
        problems.append(f"{name} is not a timestamp from {shapes.FIRST_YEAR} to {shapes.LAST_YEAR}")
    return moment


def _request_id(value, name, problems):
    if not shapes.CLIENT_REQUEST_ID.fullmatch(value):
        problems.append(f"{name} is not 1 to 64 printable characters")
        return None
    return value


def _direction(value, problems):
    if shapes.absent(value):
        return None
    value = value.strip().capitalize()
    if value not in ("Inbound", "Outbound"):
        problems.append("direction is neither Inbound nor Outbound")
        return None
    return value


def _digits(value, problems):
    if value is None:
        return None
    value = value.strip()
    if len(value) > 64 or not all(ch in "0123456789*#" for ch in value):
        problems.append("dtmfDigits holds something other than keypad keys")
        return None
    return value


def _url(value, problems):
    if shapes.absent(value):
        return None
    value = value.strip()
    if len(value) > shapes.MAX_URL or not value.startswith(("http://", "https://")) or shapes.has_control(value):
        problems.append("recordingUrl is not an http(s) URL")
        return None
    return value


READERS = {
    "token": _word,
    "text": _text,
    "number": _number,
    "param": lambda value, name, problems: _text(value, name, problems, 160),
    "seconds": _seconds,
    "amount": _amount,
    "currency": _currency,
    "time": _timestamp,
    "request_id": _request_id,
    # What a client's agent dialled, as typed (with or without `+`, local or international): read as a number
    # once (Notification.dialled), and a typed mistake is the agent's to hear about.
    "dialled": _text,
}
