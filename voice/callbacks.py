"""What AT posts to /voice/instruct and /voice/events, read into one bounded, typed shape.

AT's real callbacks carry `callSessionState`, `status`, `isActive` and `hangupCause`; the
spec's course write-up uses `eventType` (`SessionStarted`...). Both are accepted and folded
into one call state.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from voice import shapes

# The spec's eventType values, as the callSessionState AT really sends.
EVENT_TYPE_STATES = {
    "SessionStarted": "Started",
    "SessionRinging": "Ringing",
    "SessionAnswered": "Answered",
    "SessionEnded": "Completed",
    "SessionFailed": "Failed",
    "SessionTransferred": "Transferred",
    "SessionQueued": "Queued",
}

# How far along a call each state is; a call never moves to a lower rank.
STATE_RANKS = {
    "Queued": 0,
    "Started": 1,
    "Ringing": 2,
    "Answered": 3,
    "Active": 3,
    "Transferred": 4,
    "TransferCompleted": 5,
    "Completed": 9,
    "NotAnswered": 9,
    "Failed": 9,
}
FINAL_STATES = {name for name, rank in STATE_RANKS.items() if rank == 9}

MAX_TEXT = 255
MAX_SECONDS = 10 * 24 * 3600  # no count of seconds AT sends (a call, a queue wait) is longer
MAX_AMOUNT = Decimal(10) ** 9
_PLUS_FOR_SPACE = re.compile(r"^\d{4}-\d\d-\d\d\+")
MAX_URL = 2048
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:\-]+$")
SESSION_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


MAX_FIELD = 2048
MAX_FIELDS = 100
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Malformed(ValueError):
    """A notification that cannot be taken; `status` is the 4xx to answer."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclass
class Notification:
    """One AT notification, with every value checked and bounded; `problems` lists what was dropped."""

    session_id: str
    is_active: bool
    state: str | None = None
    direction: str | None = None
    caller: str | None = None
    destination: str | None = None
    digits: str | None = None
    recording_url: str | None = None
    duration: int | None = None
    amount: Decimal | None = None
    currency: str | None = None
    hangup_cause: str | None = None
    status: str | None = None
    started_at: datetime | None = None
    client_request_id: str | None = None
    transfer_state: str | None = None
    transferred_to: str | None = None
    transfer_hangup_cause: str | None = None
    transfer_param: str | None = None
    dequeued_to: str | None = None
    dequeued_at: datetime | None = None
    queue_seconds: int | None = None
    queue_name: str | None = None
    client_name: str | None = None
    client_dialed: str | None = None
    problems: list = field(default_factory=list)

    @property
    def is_final(self):
        """True for the end-of-call notification that carries the call's final figures."""
        return not self.is_active or self.state in FINAL_STATES


def parse_request(request, username=None):
    """Read the notification a webhook request carries, after checking its shape; `username` is our AT username."""
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
    return parse(form, username)


def parse(form, username=None):
    """Read an AT notification from form fields; raise Malformed without a usable sessionId.

    A caller `<username>.<name>` is our browser or app client `name` only when `username` is our AT username.
    """
    # A plain dict: a missing key in werkzeug's MultiDict costs an exception, and most fields are absent.
    form = dict(form.items())
    session_id = (form.get("sessionId") or "").strip()
    if not session_id:
        raise Malformed("sessionId is required")
    if len(session_id) > 128 or not _SAFE_TOKEN.match(session_id):
        raise Malformed("sessionId is not a valid AT session id")
    problems = []
    is_active = (form.get("isActive") or "1").strip() != "0"
    note = Notification(session_id=session_id, is_active=is_active, problems=problems)
    note.direction = _direction(form.get("direction"), problems)
    note.caller = _text(form, "callerNumber", 128, problems)
    note.destination = _text(form, "destinationNumber", 128, problems)
    note.digits = _digits(form.get("dtmfDigits"), problems)
    note.recording_url = _url(form.get("recordingUrl"), problems)
    note.duration = _integer(form, "durationInSeconds", problems)
    note.amount = _amount(form.get("amount"), problems)
    note.currency = _currency(form.get("currencyCode"), problems)
    note.hangup_cause = _token(form, "hangupCause", problems)
    note.status = _token(form, "status", problems)
    note.started_at = _timestamp(form.get("callStartTime"), problems, "callStartTime")
    note.state = _state(form, note, problems)
    note.client_request_id = _request_id(form.get("clientRequestId"), problems)
    # Transfers (AT's /callTransfer) and queues (<Enqueue>/<Dequeue>) report on the call they moved.
    note.transfer_state = _token(form, "callTransferState", problems)
    note.transferred_to = _text(form, "callTransferredToNumber", 128, problems)
    note.transfer_hangup_cause = _token(form, "callTransferHangupCause", problems)
    note.transfer_param = _text(form, "callTransferParam", 160, problems)
    note.dequeued_to = _text(form, "dequeuedToPhoneNumber", 128, problems)
    note.dequeued_at = _timestamp(form.get("dequeueTime"), problems, "dequeueTime")
    note.queue_seconds = _integer(form, "queueDurationInSeconds", problems)
    note.queue_name = _token(form, "queueName", problems)
    # A call from a browser or app client (AT's WebRTC SDK): callerNumber is `<AT username>.<client
    # name>`, and clientDialedNumber is what the agent typed, as typed.
    client = CLIENT_CALLER.fullmatch(note.caller or "")
    if client and client.group(1) != username:
        problems.append("callerNumber names a client of another AT username")
        client = None
    note.client_name = client.group(2) if client else None
    note.client_dialed = _dialled(form.get("clientDialedNumber"), problems)
    return note


def _state(form, note, problems):
    """The call state this notification reports, from callSessionState, eventType or isActive."""
    state = _token(form, "callSessionState", problems)
    event_type = _token(form, "eventType", problems)
    if state is None and event_type is not None:
        state = EVENT_TYPE_STATES.get(event_type, event_type)
    if state is None and not note.is_active:
        state = "NotAnswered" if note.status == "NotAnswered" else "Completed"
    return state


def _blank(value):
    return value is None or value.strip() in ("", "None")


def _text(form, name, limit, problems):
    value = form.get(name)
    if _blank(value):
        return None
    value = value.strip()
    if len(value) > limit:
        problems.append(f"{name} longer than {limit}")
        return None
    return value


def _token(form, name, problems):
    value = _text(form, name, 64, problems)
    if value is not None and not _SAFE_TOKEN.match(value):
        problems.append(f"{name} is not a plain word")
        return None
    return value


def _direction(value, problems):
    if _blank(value):
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
    if _blank(value):
        return None
    value = value.strip()
    if len(value) > MAX_URL or not value.startswith(("http://", "https://")):
        problems.append("recordingUrl is not an http(s) URL")
        return None
    return value


def _integer(form, name, problems):
    value = form.get(name)
    if _blank(value):
        return None
    number = shapes.whole(value, 0, MAX_SECONDS)
    if number is None:
        problems.append(f"{name} is not a count of seconds up to {MAX_SECONDS}")
    return number


def _amount(value, problems):
    if _blank(value):
        return None
    amount = shapes.decimal(value, Decimal(0), MAX_AMOUNT)
    if amount is None:
        problems.append("amount is not a plain amount from 0 to 10^9")
        return None
    return amount.quantize(Decimal("0.0001"))


def _currency(value, problems):
    if _blank(value):
        return None
    value = value.strip().upper()
    if len(value) != 3 or not value.isalpha() or not value.isascii():
        problems.append("currencyCode is not a 3-letter code")
        return None
    return value


CLIENT_CALLER = re.compile(r"([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{1,64})")
DIALLED = re.compile(r"\+?[0-9][0-9 ()-]{2,30}")
CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]([\x20-\x7e]{0,62}[\x21-\x7e])?")


def _dialled(value, problems):
    """What a client's agent dialled: digits as typed (with or without `+`, local or international)."""
    return _matching(value, DIALLED, "clientDialedNumber is not a phone number", problems)


def _request_id(value, problems):
    """The clientRequestId we gave AT, echoed back: printable ASCII, at most 64 characters."""
    return _matching(value, CLIENT_REQUEST_ID, "clientRequestId is not 1 to 64 printable characters", problems)


def _matching(value, pattern, problem, problems):
    """`value` stripped when all of it matches `pattern`; else None, with `problem` noted."""
    if _blank(value):
        return None
    value = value.strip()
    if not pattern.fullmatch(value):
        problems.append(problem)
        return None
    return value


def _timestamp(value, problems, name):
    """AT's `YYYY-MM-DD HH:MM:SS` (UTC assumed; seen with `+` for the space), ISO 8601, or its literal `None`."""
    if _blank(value):
        return None
    text = value.strip()
    if _PLUS_FOR_SPACE.match(text):
        text = text.replace("+", " ", 1)
    moment = shapes.moment(text)
    if moment is None:
        problems.append(f"{name} is not a timestamp from {shapes.FIRST_YEAR} to {shapes.LAST_YEAR}")
    return moment
