"""The history API's query parameters (and the console's filters), read into one typed filter where requests are read.

The store takes a CallFilter and never sees a query string; a parameter that cannot be used is a
400 `bad_filter` naming it.
"""

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from voice import shapes
from voice.errors import APIError
from voice.phone import InvalidPhone, normalise

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_ID = 2 ** 63 - 1  # the largest id either database stores
MAX_TEXT = 128  # the longest value a filtered column (state, client, clientRequestId) holds


class BadFilter(APIError):
    """A query parameter of the history API that cannot be used; the message says which and why."""

    def __init__(self, message):
        super().__init__(400, "bad_filter", message)


@dataclass(frozen=True)
class CallFilter:
    """Which calls to list: each criterion None when not asked for; `before_id` resumes a listing (its cursor)."""

    phone: str | None = None
    direction: str | None = None
    state: str | None = None
    client: str | None = None
    client_request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    before_id: int | None = None


def call_filter(args, limit=None):
    """A CallFilter from query parameters (`phone`, `direction`, `state`, `client`, `clientRequestId`, `since`,
    `until`, `limit`, `cursor`); `limit` overrides the parameter. Raises BadFilter."""
    phone = direction = None
    if args.get("phone"):
        try:
            phone = normalise(args["phone"])
        except InvalidPhone as exc:
            raise BadFilter(str(exc)) from None
    if args.get("direction"):
        direction = args["direction"].strip().capitalize()
        if direction not in ("Inbound", "Outbound"):
            raise BadFilter("direction must be Inbound or Outbound")
    since, until = window(args)
    return CallFilter(phone=phone, direction=direction, state=_stripped(args, "state"), client=_stripped(args, "client"),
                      client_request_id=_stripped(args, "clientRequestId"), since=since, until=until,
                      limit=limit or _limit(args.get("limit")),
                      before_id=decode_cursor(args["cursor"]) if args.get("cursor") else None)


def window(args):
    """The `since`/`until` bounds of a request, checked: (since, until), each None when not given."""
    since = _time("since", args.get("since"))
    until = _time("until", args.get("until"))
    if since and until and since > until:
        raise BadFilter("since must not be after until")
    return since, until


def encode_cursor(call_id):
    """An opaque cursor that resumes the listing after the call with `call_id`."""
    return base64.urlsafe_b64encode(f"v1:{call_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor):
    """The call id a cursor resumes after; BadFilter if it was not made by encode_cursor."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, number = text.partition(":")
        if version != "v1":
            raise ValueError
        return shapes.counted("cursor", number, 1, MAX_ID)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadFilter("cursor is not one this API gave out; use the 'next' value of a previous page") from None


def _stripped(args, name):
    if not args.get(name):
        return None
    if shapes.has_control(args[name]) or len(args[name]) > MAX_TEXT:
        raise BadFilter(f"{name} must be at most {MAX_TEXT} printable characters")
    return args[name].strip()


def _time(name, value):
    if not value:
        return None
    try:
        return shapes.when(name, value)
    except shapes.BadValue as exc:
        raise BadFilter(str(exc)) from None


def _limit(raw):
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        return shapes.counted("limit", raw, 1, MAX_LIMIT)
    except shapes.BadValue as exc:
        raise BadFilter(str(exc)) from None
