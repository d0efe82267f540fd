"""Untrusted numbers and moments, read by their shape before any conversion, so no input costs more than a glance.

`int(Decimal("1e400000"))` takes seconds and `datetime.astimezone` overflows at the ends of the
calendar: everything a client or AT sends as a count, an amount or a time goes through here, and
each reader answers None (or raises BadValue) for anything that is not a short, plain value.
"""

import re
from datetime import datetime, timezone
from decimal import Decimal

# Plain ASCII digits, an optional sign and decimals, and few of them: AT's counts of seconds and
# amounts have a handful, and no exponent, NaN, Infinity, underscore or non-ASCII digit gets past.
_WHOLE = re.compile(r"[+-]?[0-9]{1,19}")
_DECIMAL = re.compile(r"[+-]?[0-9]{1,15}(?:\.[0-9]{0,8})?")
# ISO 8601 as fromisoformat reads it, or AT's `YYYY-MM-DD HH:MM:SS`, bounded in length.
_MOMENT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9:.,]{2,15}(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?")
# Moments outside these years are refused rather than stored: no call or query needs them, and the
# calendar's ends overflow once an offset is applied.
FIRST_YEAR, LAST_YEAR = 1900, 2999


# AT's sessionId, and any plain word AT sends (a state, a hangup cause, a queue name): letters, digits, _ . : -
WORD = re.compile(r"[A-Za-z0-9_.:\-]+")
SESSION_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")

# A browser or app client's name as we mint tokens for it and flows name it, the address AT gives a client
# (`<AT username>.<name>`: both parts may hold `-`, as names from tokens minted elsewhere may), and a
# VOICE_CLIENT_NAMES glob of names.
_NAME = "A-Za-z0-9_"
CLIENT_NAME = re.compile(f"[{_NAME}]{{1,64}}")
CLIENT_ADDRESS = re.compile(f"([{_NAME}-]{{1,64}})\\.([{_NAME}-]{{1,64}})")
CLIENT_GLOB = re.compile(f"[{_NAME}*?]{{1,64}}")
# The clientRequestId of a dial-out: 1 to 64 printable ASCII characters, no space at either end (AT echoes it).
CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]([\x20-\x7e]{0,62}[\x21-\x7e])?")
MAX_URL = 2048  # the longest URL taken from a client or AT (a media file, a recording)

# Control characters: no field of a call holds one, and PostgreSQL's text columns refuse NUL outright.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text):
    """True when `text` holds a control character (NUL, a line break, escape...)."""
    return bool(_CONTROL.search(text))


def absent(value):
    """True for a value AT left out: missing, empty, or AT's literal `None` (callStartTime of a call never started,
    errorMessage of a success, a sessionId AT did not create)."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


class BadValue(ValueError):
    """A value of the wrong shape or out of range; the message says what was expected."""


def whole(text, low, high):
    """`text` as an int from `low` to `high` (a decimal part is cut off); None for anything else."""
    number = decimal(text)
    if number is None:
        return None
    number = int(number)
    return number if low <= number <= high else None


def decimal(text, low=None, high=None):
    """`text` as a Decimal of at most 15 digits and 8 decimals, within [low, high) when given; else None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if len(text) > 26 or not _DECIMAL.fullmatch(text):
        return None
    number = Decimal(text)
    if (low is not None and number < low) or (high is not None and number >= high):
        return None
    return number


def moment(text):
    """`text` (ISO 8601, or AT's `YYYY-MM-DD HH:MM:SS`) as an aware UTC datetime; naive is UTC; None if unusable."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if len(text) > 40 or not _MOMENT.fullmatch(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        parsed = parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
    return parsed if FIRST_YEAR <= parsed.year <= LAST_YEAR else None


def counted(name, text, low, high):
    """A whole-number parameter from `low` to `high`, or BadValue naming it."""
    text = text.strip() if isinstance(text, str) else ""
    if not _WHOLE.fullmatch(text) or not low <= int(text) <= high:
        raise BadValue(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def when(name, text):
    """A time parameter, or BadValue naming it and the form expected."""
    parsed = moment(text)
    if parsed is None:
        raise BadValue(f"{name} must be an ISO 8601 date or time from {FIRST_YEAR} to {LAST_YEAR}, "
                       "e.g. 2026-11-27T08:00:00Z")
    return parsed
