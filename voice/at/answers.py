"""AT's answers as the service reads them, and the errors every failure of AT becomes.

The SDK hands back a str when AT's content type has parameters, and AT reports a number it did not
call inside a 2xx answer: these helpers turn each into a dict or an ATError with a stable code.
"""

import json

from voice.shapes import absent


class ATError(Exception):
    """A request AT did not accept, or could not be asked; `operation` names which."""

    def __init__(self, code, message, at_status=None, response=None, operation="call"):
        super().__init__(message)
        self.operation = operation
        self.code = code
        self.message = message
        self.at_status = at_status
        self.response = response


class Busy(Exception):
    """Too many requests are already waiting on AT in this worker; `operation` names the one refused."""

    def __init__(self, operation="call"):
        super().__init__(operation)
        self.operation = operation


class NotConfigured(Exception):
    """Dial-out is off because settings are missing; `missing` names them."""

    def __init__(self, missing):
        super().__init__("missing settings: " + ", ".join(missing))
        self.missing = missing


def as_object(answer):
    """Return AT's answer as a dict: the SDK hands back a str when the content type has parameters."""
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            raise ATError("at_bad_response", f"Africa's Talking answered with a body that is not JSON: {short(answer)}") from None
    if not isinstance(answer, dict):
        raise ATError("at_bad_response", "Africa's Talking answered with JSON that is not an object")
    return answer


def check_entries(answer, every=True):
    """Raise ATError unless AT queued every number (or, not `every`, at least one): per-number failures come inside a 2xx."""
    error_message = answer.get("errorMessage")
    entries = answer.get("entries")
    if not absent(error_message) and not entries:
        raise ATError("at_rejected", f"Africa's Talking refused the call: {short(str(error_message))}", response=answer)
    if not isinstance(entries, list) or not entries:
        raise ATError("at_bad_response", "Africa's Talking answered without any call entry", response=answer)
    statuses = [entry.get("status") if isinstance(entry, dict) else None for entry in entries]
    for status in statuses:
        if status != "Queued" and (every or "Queued" not in statuses):
            raise ATError(
                "at_call_failed",
                f"Africa's Talking did not queue the call: {status or 'no status'}",
                at_status=status,
                response=answer,
            )


def short(text, limit=300):
    """Trim a foreign message to a size fit for a JSON error body."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
