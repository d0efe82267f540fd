"""What a call is: its states and their order, and the one table of the fields AT sends about it.

The request parser (voice/callbacks.py), the call record (voice/store/records.py), its fold
(voice/store/fold.py) and the history API's JSON (voice/store/history.py) are all built from FIELDS: a field AT sends
is added to the service by one row here and one migration adding its column.
"""

from dataclasses import dataclass

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
FINAL_STATES = frozenset(name for name, rank in STATE_RANKS.items() if rank == 9)
ANSWERED_STATES = ("Answered", "Active")
UNKNOWN_STATE_RANK = 3  # a state AT may add one day ranks with the answered ones


def rank(state):
    """How far along `state` is (-1 for none)."""
    return STATE_RANKS.get(state, UNKNOWN_STATE_RANK) if state else -1


# How a field's value folds into its call: the first value stays, or each new value replaces the last
# (a notification without the field never erases it), or a rule of its own (_SPECIAL in voice/store/fold.py).
FIRST, LATEST, SPECIAL = "first", "latest", "special"

# How each kind of value is read (voice/callbacks.py has a reader per kind) and the column type it is kept in.
KINDS = {
    "token": "VARCHAR(64)",      # a plain word: letters, digits, _ . : -
    "text": "VARCHAR(64)",       # free text, at most 64 characters
    "number": "VARCHAR(128)",    # a phone number (kept in E.164) or a client's address, at most 128 characters
    "seconds": "INTEGER",        # a count of seconds, 0 to 10 days
    "amount": "NUMERIC(14, 4)",  # money, 0 to 10^9
    "currency": "VARCHAR(3)",    # a 3-letter code
    "time": "TIMESTAMP",         # AT's `YYYY-MM-DD HH:MM:SS` (UTC) or ISO 8601
    "request_id": "VARCHAR(64)",  # our clientRequestId, echoed back
    "dialled": None,             # what a client's agent typed (read, never stored as such)
    "param": None,               # a transfer's free parameter (read, never stored)
}


@dataclass(frozen=True)
class Field:
    """One field AT sends: its name there, the Notification attribute, how it is read, kept, folded and shown."""

    at: str               # AT's form field name
    name: str             # the Notification attribute, and the fold value's name
    kind: str             # a key of KINDS
    column: str | None    # the calls column (None: read, not kept on the call)
    fold: str | None      # FIRST, LATEST or SPECIAL
    json: str | None      # its key in the history API's call; `group.key` inside a nested object
    label: str | None = None  # its row on the console's call page (fields without one have a row of their own)
    indexed: bool = False     # the history API filters or orders by it: its column has an index


FIELDS = (
    Field("durationInSeconds", "duration", "seconds", "duration_seconds", LATEST, "durationSeconds"),
    Field("amount", "amount", "amount", "amount", LATEST, "amount"),
    Field("currencyCode", "currency", "currency", "currency_code", LATEST, "currencyCode"),
    Field("hangupCause", "hangup_cause", "token", "hangup_cause", LATEST, "hangupCause"),
    Field("status", "status", "token", "status", LATEST, "status"),
    Field("callStartTime", "started_at", "time", "started_at", SPECIAL, "startedAt", indexed=True),
    Field("clientRequestId", "client_request_id", "request_id", "client_request_id", FIRST, "clientRequestId",
          indexed=True),
    Field("callerCountryCode", "caller_country_code", "token", "caller_country_code", FIRST, "callerCountryCode",
          "Caller's country code"),
    Field("callerCarrierName", "caller_carrier", "text", "caller_carrier", FIRST, "callerCarrierName",
          "Caller's network"),
    # Transfers (AT's /callTransfer) and queues (<Enqueue>/<Dequeue>) report on the call they moved.
    Field("callTransferredToNumber", "transferred_to", "number", "transferred_to", LATEST, "transfer.to"),
    Field("callTransferState", "transfer_state", "token", "transfer_state", SPECIAL, "transfer.state"),
    Field("callTransferHangupCause", "transfer_hangup_cause", "token", "transfer_hangup_cause", LATEST,
          "transfer.hangupCause"),
    Field("callTransferParam", "transfer_param", "param", None, None, None),
    Field("queueName", "queue_name", "token", "queue_name", LATEST, "queue.name"),
    Field("queueDurationInSeconds", "queue_seconds", "seconds", "queue_seconds", LATEST, "queue.waitedSeconds"),
    Field("dequeuedToPhoneNumber", "dequeued_to", "number", "dequeued_to", LATEST, "queue.dequeuedTo"),
    Field("dequeueTime", "dequeued_at", "time", "dequeued_at", LATEST, "queue.dequeuedAt"),
    # The leg a <Dial> created: who answered it, when, and how long it lasted (an agent's talk time).
    Field("dialDestinationNumber", "dial_destination", "number", "dial_destination", LATEST, "dial.destination",
          "Dial answered by"),
    Field("dialStartTime", "dial_started_at", "time", "dial_started_at", LATEST, "dial.startedAt", "Dial answered at"),
    Field("dialDurationInSeconds", "dial_seconds", "seconds", "dial_seconds", LATEST, "dial.durationSeconds",
          "Dial lasted (s)"),
    # A browser or app client's call: what its agent typed (the call record keeps the number it became).
    Field("clientDialedNumber", "client_dialed", "dialled", None, None, None),
)
STORED = tuple(field for field in FIELDS if field.column)
