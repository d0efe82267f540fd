"""A campaign's settings as a client gives them (a JSON object, or form fields of an upload), checked field by field
into the Campaign's columns; every refusal a 400 naming the field.
"""

import json
from decimal import Decimal

from voice import shapes
from voice.campaigns import rules
from voice.errors import APIError
from voice.store.db import utcnow

MAX_NAME = 128


def _bad(message):
    return APIError(400, "bad_field", message)


def _text(spec, name, limit, default=None):
    value = spec.get(name)
    if value is None:  # absent, or JSON's null
        return default
    if not isinstance(value, str) or not value.strip() or len(value) > limit or shapes.has_control(value):
        raise _bad(f"{name} must be text of 1 to {limit} characters")
    return value.strip()


def _count(spec, name, default, low, high):
    value = spec.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _bad(f"{name} must be a whole number from {low} to {high}")
    number = shapes.whole(str(value), low, high)
    if number is None or str(value).strip() != str(number):
        raise _bad(f"{name} must be a whole number from {low} to {high}")
    return number


def _json_field(spec, name):
    """A field that is an object in JSON, and may come as JSON text in a form."""
    value = spec.get(name)
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad(f"{name} is not valid JSON") from None
    return value


def budget_of(spec):
    value = _json_field(spec, "budget")
    if value is None or value == "":
        return None, None
    if isinstance(value, str):  # "500 KES" in a form or on the command line
        amount, _, currency = value.strip().partition(" ")
        value = {"amount": amount, "currency": currency.strip()}
    if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
        raise _bad("budget must be {\"amount\": 500, \"currency\": \"KES\"}")
    raw = value["amount"]
    amount = None if isinstance(raw, bool) else shapes.decimal(str(raw), Decimal("0.0001"), Decimal("1e12"))
    currency = value["currency"]
    if amount is None or not isinstance(currency, str) or not currency.isascii() or not currency.isalpha() \
            or len(currency) != 3:
        raise _bad("budget must be a positive amount and a 3-letter currency code, e.g. {\"amount\": 500, "
                   "\"currency\": \"KES\"}")
    return amount, currency.upper()


def _moment(spec, name):
    value = spec.get(name)
    if value is None or value == "":
        return None
    try:
        return shapes.when(name, value)
    except shapes.BadValue as exc:
        raise _bad(str(exc)) from None


def read_rules(spec, flow):
    """The campaign's settings from a JSON object or form fields, checked; a dict of Campaign's columns."""
    try:
        window = rules.parse_window(_json_field(spec, "window"))
        retry = rules.parse_retry(spec.get("retry"))
        zone = spec.get("timezone") or None
        if zone is not None:
            rules.zone(zone)
    except rules.RuleError as exc:
        raise _bad(str(exc)) from None
    step = _text(spec, "step", 64)
    if step is not None and step not in flow.steps:
        raise _bad(f"step {step!r} is not a step of the deployed flow ({flow.source})")
    now = utcnow()
    start_at = _moment(spec, "startAt") or now
    not_after = _moment(spec, "notAfter")
    if not_after is not None and not_after <= max(start_at, now):
        raise _bad("notAfter must be later than startAt and than now")
    amount, currency = budget_of(spec)
    return {"name": _text(spec, "name", MAX_NAME, default=f"Campaign of {now:%Y-%m-%d %H:%M}"), "step": step,
            "window": window.as_json() if window else None, "timezone": zone, "retry": retry,
            "start_at": start_at, "not_after": not_after,
            "max_concurrent": _count(spec, "maxConcurrent", 5, 1, 1000),
            "per_minute": _count(spec, "perMinute", 30, 1, 60000),
            "budget_amount": amount, "budget_currency": currency}
