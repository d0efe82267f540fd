"""Call detail records: a call per AT sessionId and every notification about it, stored once.

AT retries, reorders, and may deliver the same final notification to both webhook URLs, so:
an event identical to one already stored (same form fields and callback parameters, on
either URL) adds no row, a call's state never moves backwards, and final figures land on
the call whichever URL brought them.
"""

import hashlib
import json
import logging
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from voice.callbacks import FINAL_STATES, STATE_RANKS
from voice.db import UTCDateTime, db, guarded, utcnow
from voice.writer import GroupWriter

log = logging.getLogger(__name__)

UNKNOWN_STATE_RANK = 3
MAX_RECORDINGS = 20


class Call(db.Model):
    """One call, as AT's sessionId names it."""

    __tablename__ = "calls"
    __table_args__ = (sa.UniqueConstraint("session_id", name="uq_calls_session_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(128))
    direction: Mapped[str | None] = mapped_column(sa.String(16))
    caller_number: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    destination_number: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    state: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    status: Mapped[str | None] = mapped_column(sa.String(64))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(14, 4))
    currency_code: Mapped[str | None] = mapped_column(sa.String(3))
    hangup_cause: Mapped[str | None] = mapped_column(sa.String(64))
    last_digits: Mapped[str | None] = mapped_column(sa.String(64))
    recording_urls: Mapped[list | None] = mapped_column(sa.JSON)
    requested_by: Mapped[str | None] = mapped_column(sa.String(64))
    queue_status: Mapped[str | None] = mapped_column(sa.String(64))
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


CALL_COLUMNS = [column.name for column in Call.__table__.columns]
UPDATABLE = [name for name in CALL_COLUMNS if name not in ("id", "session_id", "created_at")]
_JSON = sa.JSON(none_as_null=True)
_TYPES = {"started_at": UTCDateTime, "answered_at": UTCDateTime, "ended_at": UTCDateTime, "updated_at": UTCDateTime,
          "created_at": UTCDateTime, "received_at": UTCDateTime, "now": UTCDateTime, "amount": sa.Numeric(14, 4),
          "recording_urls": _JSON, "payload": _JSON, "params": _JSON, "problems": _JSON}


def _statement(sql):
    """A textual statement with typed parameters. Built once: every callback runs these, and
    composing Core statements anew cost more than the database work itself."""
    statement = sa.text(sql)
    return statement.bindparams(*(sa.bindparam(name, type_=kind) for name, kind in _TYPES.items()
                                  if f":{name}" in sql))


_INSERT_CALL = _statement(
    "INSERT INTO calls (session_id, direction, caller_number, destination_number, state, started_at, created_at, "
    "updated_at) VALUES (:session_id, :direction, :caller_number, :destination_number, :state, :started_at, :now, "
    ":now) ON CONFLICT (session_id) DO NOTHING")
_UPDATE_CALL = _statement(
    f"UPDATE calls SET {', '.join(f'{name} = :{name}' for name in UPDATABLE)} WHERE id = :id")
_EVENT_SQL = ("INSERT INTO events (call_id, source, received_at, type, fingerprint, payload, params, problems) "
              "VALUES (:call_id, :source, :received_at, :type, :fingerprint, :payload, :params, :problems) "
              "ON CONFLICT (call_id, fingerprint) DO NOTHING")
_STORE_EVENT = _statement(_EVENT_SQL)
_INSERT_EVENT = _statement(_EVENT_SQL + " RETURNING id")  # one event, to learn whether it was new


def _calls_query(lock=""):
    return sa.text(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE session_id IN :session_ids "
                   f"ORDER BY session_id{lock}").bindparams(
        sa.bindparam("session_ids", expanding=True)).columns(*Call.__table__.columns)


# On PostgreSQL, another host's transaction touching the same calls waits for this one.
_SELECT_CALLS = {"sqlite": _calls_query(), "postgresql": _calls_query(" FOR UPDATE")}


def _read_calls(session_ids):
    """The calls of `session_ids` as dicts of their columns by sessionId, locked on PostgreSQL."""
    query = _SELECT_CALLS[db.session.get_bind().dialect.name]
    return {row.session_id: dict(row._mapping) for row in db.session.execute(query, {"session_ids": session_ids})}


def _locked_call(session_id, direction=None, caller_number=None, destination_number=None, state=None,
                 started_at=None):
    """The call for `session_id` as a dict of its columns, created if new and locked for this transaction."""
    # Insert first: a write at the start of the transaction takes SQLite's write lock at once
    # (waiting up to the busy timeout), and on PostgreSQL two hosts racing on a new call agree.
    now = utcnow()
    db.session.execute(_INSERT_CALL, {
        "session_id": session_id, "direction": direction, "caller_number": caller_number,
        "destination_number": destination_number, "state": state, "started_at": started_at, "now": now})
    return _read_calls([session_id])[session_id]


def _changes(call, before, now):
    """The UPDATE parameters writing `call` back, or None when none of its columns changed."""
    if all(call[name] == before[name] for name in UPDATABLE):
        return None
    return {**{name: call[name] for name in UPDATABLE}, "updated_at": now, "id": call["id"]}


def _save(call, before):
    """Write the call's columns back if any changed."""
    changes = _changes(call, before, utcnow())
    if changes is not None:
        db.session.execute(_UPDATE_CALL, changes)


def _add_event(call, source, kind, payload, params=None, problems=None, received_at=None):
    """Store an event unless the same one is stored already; True when it was new."""
    fingerprint = _fingerprint(payload, params)
    result = db.session.execute(_INSERT_EVENT, {
        "call_id": call["id"], "source": source, "received_at": received_at or utcnow(), "type": kind,
        "fingerprint": fingerprint, "payload": payload, "params": params or None, "problems": problems or None})
    # rowcount is not reliable for INSERT ... ON CONFLICT across drivers; RETURNING is.
    return result.scalar_one_or_none() is not None


def event_type(note):
    """The normalised type of a notification: the final state, digits, a recording, or the state."""
    if note.is_final:
        return note.state or "Completed"
    if note.digits is not None:
        return "Digits"
    if note.recording_url:
        return "Recording"
    return note.state or "Notification"


def _rank(state):
    return STATE_RANKS.get(state, UNKNOWN_STATE_RANK) if state else -1


def _apply(call, note, received_at):
    """Fold a notification into a call's columns without moving the state backwards or erasing figures."""
    call["direction"] = call["direction"] or note.direction
    # AT names the phone user callerNumber and our AT number destinationNumber in both
    # directions; a call record says who called whom.
    person, ours = note.caller, note.destination
    caller, destination = (ours, person) if call["direction"] == "Outbound" else (person, ours)
    call["caller_number"] = call["caller_number"] or caller
    call["destination_number"] = call["destination_number"] or destination

    if note.state and call["state"] not in FINAL_STATES and _rank(note.state) >= _rank(call["state"]):
        call["state"] = note.state
    if call["answered_at"] is None and (note.state in ("Answered", "Active") or note.digits):
        call["answered_at"] = received_at
    if note.started_at is not None:
        call["started_at"] = note.started_at
    elif call["started_at"] is None:
        call["started_at"] = received_at
    if note.is_final and call["ended_at"] is None:
        call["ended_at"] = received_at

    for column, value in (
        ("duration_seconds", note.duration), ("amount", note.amount), ("currency_code", note.currency),
        ("hangup_cause", note.hangup_cause), ("status", note.status), ("last_digits", note.digits),
    ):
        if value is not None:
            call[column] = value
    recordings = call["recording_urls"] or []
    if note.recording_url and note.recording_url not in recordings:
        call["recording_urls"] = (recordings + [note.recording_url])[-MAX_RECORDINGS:]


def init_app(app):
    """Give the app its group writer of notifications (a thread per process, started on first use)."""
    app.extensions["voice_writer"] = GroupWriter(
        app, store_notifications, describe=lambda item: f"{item[1]} notification for {item[0].session_id}")


def record_notification(note, source, payload, params=None, wait=True):
    """Store an AT notification and fold it into its call; True if new, False if a duplicate.

    The process's group writer stores it together with the other notifications waiting at that
    moment. With `wait` this returns once their transaction has committed, and raises
    StoreUnavailable when the database fails (nothing is half-written then); without, it returns
    None at once and the notification is stored within milliseconds (see voice/writer.py).
    """
    return current_app.extensions["voice_writer"].submit((note, source, payload, params or None), wait=wait)


def settle():
    """Wait, within the database bound, until what this process has answered is stored, so a read sees it."""
    current_app.extensions["voice_writer"].drain(float(current_app.config["DATABASE_TIMEOUT_SECONDS"]))


_NEW_CALLS = _statement(
    "INSERT INTO calls (session_id, created_at, updated_at) VALUES (:session_id, :now, :now) "
    "ON CONFLICT (session_id) DO NOTHING")
_KNOWN_EVENTS = sa.text(
    "SELECT events.call_id, events.fingerprint FROM events JOIN calls ON calls.id = events.call_id "
    "WHERE calls.session_id IN :session_ids AND events.fingerprint IN :fingerprints"
).bindparams(sa.bindparam("session_ids", expanding=True), sa.bindparam("fingerprints", expanding=True))


def _fingerprint(payload, params):
    return hashlib.sha256(json.dumps([payload, params or {}], sort_keys=True, default=str).encode("utf-8")).hexdigest()


def store_notifications(items):
    """Store a batch of (note, source, payload, params) in the session, in order; [True if new] for each.

    A handful of statements for the whole batch: create the calls not seen before, read (and
    on PostgreSQL lock) them, find which events are stored already, then insert the new events
    and write back the calls they changed. Calls are taken in sessionId order, so two hosts'
    batches on PostgreSQL cannot deadlock.
    """
    now = utcnow()
    session_ids = sorted({note.session_id for note, _, _, _ in items})
    db.session.execute(_NEW_CALLS, [{"session_id": session_id, "now": now} for session_id in session_ids])
    calls = _read_calls(session_ids)
    before = {session_id: dict(call) for session_id, call in calls.items()}
    fingerprints = [_fingerprint(payload, params) for _, _, payload, params in items]
    known = {tuple(row) for row in db.session.execute(_KNOWN_EVENTS, {
        "session_ids": session_ids, "fingerprints": sorted(set(fingerprints))})}

    results, new_events = [], []
    for (note, source, payload, params), fingerprint in zip(items, fingerprints):
        call = calls[note.session_id]
        if (call["id"], fingerprint) in known:
            results.append(False)
            continue
        known.add((call["id"], fingerprint))
        new_events.append({"call_id": call["id"], "source": source, "received_at": now, "type": event_type(note),
                           "fingerprint": fingerprint, "payload": payload, "params": params,
                           "problems": note.problems or None})
        _apply(call, note, now)
        results.append(True)
    if new_events:
        db.session.execute(_STORE_EVENT, new_events)
    changed = [changes for session_id, call in calls.items()
               if (changes := _changes(call, before[session_id], now)) is not None]
    if changed:
        db.session.execute(_UPDATE_CALL, changed)
    return results


def record_dialout(answer, caller_number, requested_by):
    """Store the calls AT queued for a dial-out, one per entry with a sessionId; return their ids."""

    def work():
        stored = []
        for entry in answer.get("entries") or []:
            session_id = entry.get("sessionId")
            if not session_id or session_id == "None":
                continue
            call = _locked_call(
                session_id, direction="Outbound", caller_number=caller_number,
                destination_number=entry.get("phoneNumber"), state="Queued", started_at=utcnow(),
            )
            before = dict(call)
            call.update(requested_by=requested_by, queue_status=entry.get("status"))
            _save(call, before)
            _add_event(call, "invoke-call", "Queued", entry)
            stored.append(session_id)
        return stored

    return guarded(work, write=True)


def payload_of(form):
    """A request's form as a plain dict (repeated keys keep every value)."""
    return {key: values[0] if len(values) == 1 else values for key, values in form.lists()}


def placed_by_us(session_id):
    """True when `session_id` is a call this service placed through /voice/invoke-call."""
    query = sa.select(Call.id).where(Call.session_id == session_id, Call.requested_by.is_not(None))
    return guarded(lambda: db.session.execute(query).first() is not None)
