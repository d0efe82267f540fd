"""Phone numbers: cleaning what clients send into E.164, and masking numbers for logs."""

import re

_IGNORED = re.compile(r"[\s\-().]")


class InvalidPhone(ValueError):
    """A phone number that cannot be dialled; the message says what to fix."""


def normalise(raw):
    """Return `raw` as `+` and 7 to 15 digits, or raise InvalidPhone saying why.

    A `+` sent unencoded in a query string arrives as a space, so a leading space is
    taken as the `+`; spaces, dashes, dots and parentheses are ignored.
    """
    if raw is None or not str(raw).strip():
        raise InvalidPhone("phone is required, in international format, e.g. 254712345678")
    cleaned = _IGNORED.sub("", str(raw))
    digits = cleaned[1:] if cleaned.startswith("+") else cleaned
    if not digits.isascii() or not digits.isdigit():
        raise InvalidPhone("phone may hold only digits, an optional leading +, spaces, dashes and parentheses")
    if not 7 <= len(digits) <= 15:
        raise InvalidPhone(f"phone must have 7 to 15 digits (E.164), not {len(digits)}")
    if digits.startswith("0"):
        raise InvalidPhone("phone must start with its country code (e.g. 254...), not a trunk 0")
    return "+" + digits


def mask(number):
    """Hide the middle of a phone number for logs: `+254712345678` becomes `+2547****5678`."""
    if not number:
        return "-"
    text = str(number)
    plus = "+" if text.startswith("+") else ""
    body = text[len(plus):]
    if len(body) < 6:
        return plus + "*" * len(body)
    tail = 4 if len(body) >= 10 else 2
    head = min(4, len(body) - tail - 3)
    return plus + body[:head] + "*" * (len(body) - head - tail) + body[-tail:]
