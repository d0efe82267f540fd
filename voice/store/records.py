"""Call detail records: a call per AT sessionId and every notification about it, stored once.

AT retries, reorders, and may deliver the same final notification to both webhook URLs, so:
an event identical to one already stored (same form fields and callback parameters, on
either URL) adds no row, a call's state never moves backwards, and final figures land on
the call whichever URL brought them.
"""

from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from voice.calls import ANSWERED_STATES, FINAL_STATES, KINDS, STORED
from voice.shapes import absent
from voice.store.db import UTCDateTime, db, guarded, utcnow, write_turn
from voice.store.fold import Conflict, Driver
from voice.store.group import GroupCommit

_COLUMN_TYPES = {"VARCHAR": sa.String, "INTEGER": sa.Integer, "NUMERIC": sa.Numeric, "TIMESTAMP": UTCDateTime}


def _column_type(kind):
    """The SQLAlchemy type of a kind of value (voice/calls.py's KINDS: `VARCHAR(64)`, `NUMERIC(14, 4)`...)."""
    name, _, size = KINDS[kind].partition("(")
    return _COLUMN_TYPES[name](*(int(part) for part in size.rstrip(")").split(",") if part.strip()))


def _at_columns():
    """A mixin with a column for each field of voice/calls.py's table that a call keeps."""
    return type("ATColumns", (), {field.column: mapped_column(_column_type(field.kind), index=field.indexed)
                                  for field in STORED})


class Call(_at_columns(), db.Model):
    """One call, as AT's sessionId names it: what the service knows of it, and the fields AT sent (_at_columns)."""

    __tablename__ = "calls"
    __table_args__ = (sa.UniqueConstraint("session_id", name="uq_calls_session_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(128))
    direction: Mapped[str | None] = mapped_column(sa.String(16))
    caller_number: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    destination_number: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    state: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_digits: Mapped[str | None] = mapped_column(sa.String(64))
    recording_urls: Mapped[list | None] = mapped_column(sa.JSON)
    requested_by: Mapped[str | None] = mapped_column(sa.String(64))
    queue_status: Mapped[str | None] = mapped_column(sa.String(64))
    client_name: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Event(db.Model):
    """One notification received about a call (or our dial-out answer), with its raw payload."""

    __tablename__ = "events"
    __table_args__ = (sa.UniqueConstraint("call_id", "fingerprint", name="uq_events_call_fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(sa.ForeignKey("calls.id"))
    source: Mapped[str] = mapped_column(sa.String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    type: Mapped[str] = mapped_column(sa.String(64))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict] = mapped_column(sa.JSON)
    params: Mapped[dict | None] = mapped_column(sa.JSON)
    problems: Mapped[list | None] = mapped_column(sa.JSON)


class CallEnding(db.Model):
    """A call's final notification, noted in its transaction for the worker's work after the call; deleted once
    that work is queued (voice/after_calls.py)."""

    __tablename__ = "call_endings"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(128))
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)


def init_app(app):
    """Prepare the notification store's statements for the app's database, and its group commit."""
    with app.app_context():
        engine = db.engine
    driver = app.extensions["voice_store"] = Driver(engine.dialect.name)
    app.extensions["voice_group_commit"] = GroupCommit(engine, lambda: write_turn(app), driver.store,
                                                       retry=(Conflict,), measured=app.config["VOICE_METRICS"])


def _commit(writes):
    """Have the writes stored with the others of this process waiting at the moment; their results."""
    timeout = 2 * float(current_app.config["DATABASE_TIMEOUT_SECONDS"]) + 1
    return current_app.extensions["voice_group_commit"].submit(writes, timeout)


def record_notification(note, source, payload, params=None):
    """Store an AT notification and fold it into its call, committed before this returns; False if a duplicate.

    A database failure raises StoreUnavailable, and nothing of the notification is kept.
    """
    return _commit([notification_write(note, source, payload, params)])[0]


def notification_write(note, source, payload, params=None):
    """The prepared write of an AT notification: its event and what it brings to its call."""
    # AT names the phone user callerNumber and our AT number destinationNumber in both
    # directions; a call record says who called whom. A browser or app client's call is
    # from the client, to the number its agent dialled.
    person, ours = note.caller, note.destination
    if note.client_name:
        person, ours = note.client_name, note.dialled or note.destination
    fold = {field.name: getattr(note, field.name) for field in STORED}
    fold.update(direction=note.direction, person=person, ours=ours, state=note.state, final=int(note.is_final),
                answered=int(note.state in ANSWERED_STATES or bool(note.digits)), digits=note.digits,
                client_name=note.client_name)
    return current_app.extensions["voice_store"].write(note.session_id, source, event_type(note), payload, params,
                                                       note.problems, fold, note.recording_url)


def record_dialout(answer, caller_number, requested_by, client_request_id=None):
    """Store the calls AT queued for a dial-out, one per entry with a sessionId; return their ids."""
    driver = current_app.extensions["voice_store"]
    entries = [entry for entry in answer.get("entries") or []
               if not absent(entry.get("sessionId"))]
    if not entries:
        return []
    now = utcnow()
    _commit([driver.write(entry["sessionId"], "invoke-call", "Queued", entry, None, None, {
        "direction": "Outbound", "person": entry.get("phoneNumber"), "ours": caller_number, "state": "Queued",
        "started_at": now, "requested_by": requested_by, "queue_status": entry.get("status"),
        "client_request_id": client_request_id}) for entry in entries])
    return [entry["sessionId"] for entry in entries]


def record_transfer(session_id, request, outcome, requested_by):
    """Store a transfer we asked AT for, and how AT answered, as an event of the call."""
    driver = current_app.extensions["voice_store"]
    kind = "TransferRequested" if outcome.get("status") == "Success" else "TransferRefused"
    payload = dict(request, requestedBy=requested_by, **{key: outcome.get(key) for key in ("status", "errorMessage")})
    _commit([driver.write(session_id, "transfer", kind, payload, None, None, {})])


def in_progress():
    """The condition of a call that has not ended: no end time, and no final state."""
    return sa.and_(Call.ended_at.is_(None), sa.or_(Call.state.is_(None), Call.state.not_in(sorted(FINAL_STATES))))


def call_in_progress(session_id):
    """The call `session_id` names if it is recorded and has not ended, else None."""
    query = sa.select(Call).where(Call.session_id == session_id, in_progress())
    return guarded(lambda: db.session.execute(query).scalar_one_or_none())


def event_type(note):
    """The normalised type of a notification: the final state, digits, a recording, or the state."""
    if note.is_final:
        return note.state or "Completed"
    if note.digits is not None:
        return "Digits"
    if note.recording_url:
        return "Recording"
    return note.state or "Notification"


def payload_of(form):
    """A request's form as a plain dict (repeated keys keep every value)."""
    return {key: values[0] if len(values) == 1 else values for key, values in form.lists()}


def placed_by_us(session_id):
    """True when `session_id` is a call this service placed through /voice/invoke-call."""
    query = sa.select(Call.id).where(Call.session_id == session_id, Call.requested_by.is_not(None))
    return guarded(lambda: db.session.execute(query).first() is not None)
