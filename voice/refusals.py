"""Why a dial is refused, in one table: the answer's status and error code, the metric's reason, the words.

The API (voice/errors.py), the console's place form and a browser client's dial in a flow refuse the
same numbers for the same reasons; each reads how to say it here.
"""

from dataclasses import dataclass

from voice import metrics
from voice.at.client import Busy
from voice.phone import CostlyNumber, InvalidPhone, NotAllowed
from voice.ratelimit import TooManyDials


@dataclass(frozen=True)
class Refusal:
    """How one kind of refusal is answered, counted and told."""

    status: int               # the API's HTTP status
    code: str                 # the API's error code
    reason: str | None        # voice_refusals_total's reason (None: not counted)
    spoken: str | None        # what a browser client's agent hears (None: cannot happen there)
    message: str | None = None  # the words shown (None: the exception's own message)


BUSY_MESSAGE = "Too many calls are being placed at once; try again in a few seconds."

# Most specific first: a CostlyNumber is an InvalidPhone too.
TABLE = (
    (CostlyNumber, Refusal(400, "invalid_phone", "premium_number",
                           "Sorry, premium-rate and shared-cost numbers cannot be dialled. Goodbye.")),
    (InvalidPhone, Refusal(400, "invalid_phone", None,
                           "Sorry, the number you dialled is not a valid phone number. Goodbye.")),
    (NotAllowed, Refusal(403, "destination_not_allowed", "country",
                         "Sorry, calls to that country are not allowed from this line. Goodbye.")),
    (TooManyDials, Refusal(429, "too_many_requests", "rate_limit",
                           "Sorry, that number has been called too often. Please try again later. Goodbye.")),
    (Busy, Refusal(503, "busy", "busy", None, BUSY_MESSAGE)),
)
REFUSED = tuple(kind for kind, _ in TABLE)
# A client's agent who dialled nothing hears this; it is no exception of the checks.
NO_NUMBER = "Sorry, there is no number to dial. Goodbye."


def of(exc):
    """The Refusal of the exception `exc` (one of REFUSED)."""
    return next(refusal for kind, refusal in TABLE if isinstance(exc, kind))


def counted(exc):
    """The Refusal of `exc`, its reason counted in voice_refusals_total."""
    refusal = of(exc)
    if refusal.reason:
        metrics.refused(refusal.reason)
    return refusal


def message(exc):
    """The words that tell a client or an operator why `exc` refused the dial."""
    return of(exc).message or str(exc)
