"""Phone numbers: cleaning what clients send into E.164, and masking numbers for logs."""

import functools
import re

import phonenumbers

_IGNORED = re.compile(r"[\s\-().]")


class InvalidPhone(ValueError):
    """A phone number that cannot be dialled; the message says what to fix."""


def normalise(raw):
    """Return `raw` in libphonenumber's canonical E.164 form (`+` and 7 to 15 digits), or raise InvalidPhone saying why.

    A `+` sent unencoded in a query string arrives as a space, so a leading space is taken as
    the `+`; spaces, dashes, dots and parentheses are ignored. A trunk prefix written after the
    country code (`+2540712...`, `+44 07400...`, `+7 8912...`) is dropped, so one number has one
    form wherever it is counted, deduplicated, stored, searched or dialled.
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
    try:
        parsed = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        raise InvalidPhone("phone does not start with a country calling code") from None
    canonical = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not 8 <= len(canonical) <= 16:
        raise InvalidPhone("phone has too few digits after its country code")
    return canonical


_LOOKS_LIKE_A_NUMBER = re.compile(r"\+?[0-9][0-9 ()-]{6,20}")


@functools.lru_cache(maxsize=4096)
def canonical(value):
    """A number AT sent (`+254...`, `254...`, `+2540...`) in its one E.164 form; anything else (a client's
    address, a SIP address, a withheld number) as it came. Cached: a call's numbers come in every callback."""
    if not _LOOKS_LIKE_A_NUMBER.fullmatch(value):
        return value
    try:
        return normalise(value)
    except InvalidPhone:
        return value


def from_dialled(raw, country_code):
    """What a person dialled (`+254...`, `254...`, `00254...`, or local `0...` in `country_code`) in E.164.

    Raises InvalidPhone saying why it cannot be dialled.
    """
    cleaned = _IGNORED.sub("", str(raw or ""))
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    elif cleaned.startswith("0"):
        if not country_code:
            raise InvalidPhone("a local number (0...) needs VOICE_DEFAULT_COUNTRY_CODE")
        cleaned = "+" + str(country_code) + cleaned[1:]
    return normalise(cleaned)


def country_code_of(number):
    """The calling code of an E.164 number (`254` for +254...), or "" when it has none."""
    try:
        return str(phonenumbers.parse(number).country_code)
    except phonenumbers.NumberParseException:
        return ""


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


_COSTLY_TYPES = {
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    phonenumbers.PhoneNumberType.SHARED_COST: "a shared-cost number",
}


class NotAllowed(ValueError):
    """A well-formed number this deployment refuses to dial; the message says why."""


class CostlyNumber(InvalidPhone):
    """A premium-rate or shared-cost number: never dialled."""


def check_dialable(number, allowed_country_codes=()):
    """Raise InvalidPhone or NotAllowed unless `number` (E.164) is one we may dial.

    libphonenumber's numbering plans decide: numbers too short or long for their country,
    numbers outside any plan, premium-rate and shared-cost numbers, and non-geographic
    codes (satellite phones, international premium services: toll-fraud favourites) are refused.
    """
    parsed = phonenumbers.parse(number)
    region = phonenumbers.region_code_for_number(parsed)
    if allowed_country_codes and str(parsed.country_code) not in allowed_country_codes:
        raise NotAllowed(
            f"calls to country code +{parsed.country_code} are not allowed here "
            f"(allowed: {', '.join('+' + code for code in allowed_country_codes)})"
        )
    if region == "001":
        raise InvalidPhone(f"+{parsed.country_code} numbers (satellite and international services) are not dialled")
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhone("phone has the wrong number of digits for its country (short codes are not dialled)")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone("phone is not a number in its country's numbering plan")
    costly = _COSTLY_TYPES.get(phonenumbers.number_type(parsed))
    if costly:
        raise CostlyNumber(f"phone is {costly}, which is not dialled")
