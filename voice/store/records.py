"""Call detail records: a call per AT sessionId and every notification about it, stored once.

AT retries, reorders, and may deliver the same final notification to both webhook URLs, so:
an event identical to one already stored (same form fields and callback parameters, on
either URL) adds no row, a call's state never moves backwards, and final figures land on
the call whichever URL brought them.
"""

import hashlib
import json
from datetime import datetime, timezone
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from voice.callbacks import FINAL_STATES, STATE_RANKS
from voice.phone import InvalidPhone, from_dialled
from voice.store.db import UTCDateTime, db, guarded, utcnow, write_turn
from voice.store.group import GroupCommit

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
    client_request_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    transferred_to: Mapped[str | None] = mapped_column(sa.String(128))
    transfer_state: Mapped[str | None] = mapped_column(sa.String(64))
    transfer_hangup_cause: Mapped[str | None] = mapped_column(sa.String(64))
    dequeued_to: Mapped[str | None] = mapped_column(sa.String(128))
    dequeued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    queue_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    queue_name: Mapped[str | None] = mapped_column(sa.String(64))
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


ANSWERED_STATES = ("Answered", "Active")
FINAL_LIST = ", ".join(f"'{name}'" for name in sorted(FINAL_STATES))
_RANK = "CASE calls.state " + " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in STATE_RANKS.items()) + \
    f" ELSE {UNKNOWN_STATE_RANK} END"

# What a notification brings to its call, in the order of the fold's VALUES rows, with the
# type PostgreSQL is told for each (SQLite takes them as they come).
FOLD_FIELDS = (
    ("session_id", "VARCHAR(128)"), ("direction", "VARCHAR(16)"), ("person", "VARCHAR(128)"),
    ("ours", "VARCHAR(128)"), ("state", "VARCHAR(64)"), ("rank", "INTEGER"), ("answered", "INTEGER"),
    ("started_at", "TIMESTAMP"), ("final", "INTEGER"), ("duration", "INTEGER"), ("amount", "NUMERIC(14, 4)"),
    ("currency", "VARCHAR(3)"), ("hangup_cause", "VARCHAR(64)"), ("status", "VARCHAR(64)"),
    ("digits", "VARCHAR(64)"), ("requested_by", "VARCHAR(64)"), ("queue_status", "VARCHAR(64)"),
    ("client_request_id", "VARCHAR(64)"), ("transferred_to", "VARCHAR(128)"), ("transfer_state", "VARCHAR(64)"),
    ("transfer_hangup_cause", "VARCHAR(64)"), ("dequeued_to", "VARCHAR(128)"), ("dequeued_at", "TIMESTAMP"),
    ("queue_seconds", "INTEGER"), ("queue_name", "VARCHAR(64)"), ("client_name", "VARCHAR(64)"),
    ("now", "TIMESTAMP"),
)
_N = {name: f"n.column{number}" for number, (name, _) in enumerate(FOLD_FIELDS, start=1)}
_OUTBOUND = f"COALESCE(calls.direction, {_N['direction']}) = 'Outbound'"
# How a notification folds into its call, for every call of a batch in one UPDATE: the furthest
# state wins and a final one sticks, figures already known are never erased, who called whom is
# set once.
_FOLD_SET = ", ".join((
    f"direction = COALESCE(calls.direction, {_N['direction']})",
    f"caller_number = COALESCE(calls.caller_number, CASE WHEN {_OUTBOUND} THEN {_N['ours']} ELSE {_N['person']} END)",
    f"destination_number = COALESCE(calls.destination_number, "
    f"CASE WHEN {_OUTBOUND} THEN {_N['person']} ELSE {_N['ours']} END)",
    f"state = CASE WHEN {_N['state']} IS NOT NULL AND (calls.state IS NULL OR (calls.state NOT IN ({FINAL_LIST}) "
    f"AND {_N['rank']} >= {_RANK})) THEN {_N['state']} ELSE calls.state END",
    f"answered_at = CASE WHEN calls.answered_at IS NULL AND {_N['answered']} = 1 THEN {_N['now']} "
    f"ELSE calls.answered_at END",
    f"started_at = COALESCE({_N['started_at']}, calls.started_at, {_N['now']})",
    f"ended_at = CASE WHEN calls.ended_at IS NULL AND {_N['final']} = 1 THEN {_N['now']} ELSE calls.ended_at END",
    f"duration_seconds = COALESCE({_N['duration']}, calls.duration_seconds)",
    f"amount = COALESCE({_N['amount']}, calls.amount)",
    f"currency_code = COALESCE({_N['currency']}, calls.currency_code)",
    f"hangup_cause = COALESCE({_N['hangup_cause']}, calls.hangup_cause)",
    f"status = COALESCE({_N['status']}, calls.status)",
    f"last_digits = COALESCE({_N['digits']}, calls.last_digits)",
    f"requested_by = COALESCE(calls.requested_by, {_N['requested_by']})",
    f"queue_status = COALESCE({_N['queue_status']}, calls.queue_status)",
    f"client_request_id = COALESCE(calls.client_request_id, {_N['client_request_id']})",
    f"transferred_to = COALESCE({_N['transferred_to']}, calls.transferred_to)",
    # A transfer's outcome sticks: a late `Active` does not hide how it ended.
    f"transfer_state = CASE WHEN {_N['transfer_state']} IS NULL OR ({_N['transfer_state']} = 'Active' "
    f"AND calls.transfer_state IS NOT NULL) THEN calls.transfer_state ELSE {_N['transfer_state']} END",
    f"transfer_hangup_cause = COALESCE({_N['transfer_hangup_cause']}, calls.transfer_hangup_cause)",
    f"dequeued_to = COALESCE({_N['dequeued_to']}, calls.dequeued_to)",
    f"dequeued_at = COALESCE({_N['dequeued_at']}, calls.dequeued_at)",
    f"queue_seconds = COALESCE({_N['queue_seconds']}, calls.queue_seconds)",
    f"queue_name = COALESCE({_N['queue_name']}, calls.queue_name)",
    f"client_name = COALESCE(calls.client_name, {_N['client_name']})",
    f"updated_at = {_N['now']}",
))
EVENT_FIELDS = (("session_id", None), ("source", "VARCHAR(16)"), ("now", "TIMESTAMP"), ("type", "VARCHAR(64)"),
                ("fingerprint", "VARCHAR(64)"), ("payload", "JSON"), ("params", "JSON"), ("problems", "JSON"))


class Conflict(Exception):
    """Another host stored one of the batch's events between our check and our insert: try the batch again."""


class _Write:
    """One notification (or dial-out entry), its values prepared before the write turn is taken."""

    __slots__ = ("session_id", "fingerprint", "event", "fold", "recording_url")

    def __init__(self, session_id, fingerprint, event, fold, recording_url=None):
        self.session_id, self.fingerprint, self.recording_url = session_id, fingerprint, recording_url
        self.event, self.fold = event, fold


class _Driver:
    """The batch statements of one database driver, and its value conversions.

    The writes go to the driver itself, in SQL both SQLite and PostgreSQL accept: SQLAlchemy's
    statement and type machinery cost more than the database work. A batch of any size is a
    handful of statements, each one step for the driver, since every step lets go of the GIL
    and waiting to get it back while holding the host's write turn is what made SQLite slow.
    """

    def __init__(self, dialect):
        self.postgresql = dialect == "postgresql"
        self._cache = {}

    def _mark(self, kind=None):
        """A placeholder: `?` for sqlite3; `%s` for psycopg, cast to `kind` so PostgreSQL knows its type."""
        if not self.postgresql:
            return "?"
        return f"CAST(%s AS {kind})" if kind else "%s"

    def _rows(self, count, kinds):
        row = "(" + ", ".join(self._mark(kind) for kind in kinds) + ")"
        return ", ".join([row] * count)

    def statement(self, name, *sizes):
        """The statement `name` for batches of these sizes, built once."""
        key = (name, sizes)
        sql = self._cache.get(key)
        if sql is None:
            sql = self._cache[key] = getattr(self, "_" + name)(*sizes)
        return sql

    def _insert_calls(self, count):
        return (f"INSERT INTO calls (session_id, created_at, updated_at) VALUES "
                f"{self._rows(count, ('VARCHAR(128)', 'TIMESTAMP', 'TIMESTAMP'))} ON CONFLICT (session_id) DO NOTHING")

    def _lock_calls(self, count):
        # PostgreSQL: another host's transaction touching these calls waits for ours, and every
        # transaction takes its calls in sessionId order, so two of them cannot deadlock.
        return (f"SELECT id FROM calls WHERE session_id IN ({', '.join([self._mark()] * count)}) "
                "ORDER BY session_id FOR UPDATE")

    def _known_events(self, calls, fingerprints):
        return ("SELECT calls.session_id, events.fingerprint FROM events JOIN calls ON calls.id = events.call_id "
                f"WHERE calls.session_id IN ({', '.join([self._mark()] * calls)}) "
                f"AND events.fingerprint IN ({', '.join([self._mark()] * fingerprints)})")

    def _insert_events(self, count):
        first = f"(SELECT id FROM calls WHERE session_id = {self._mark()})"
        row = "(" + ", ".join([first] + [self._mark(kind) for _, kind in EVENT_FIELDS[1:]]) + ")"
        return ("INSERT INTO events (call_id, source, received_at, type, fingerprint, payload, params, problems) "
                f"VALUES {', '.join([row] * count)} ON CONFLICT (call_id, fingerprint) DO NOTHING")

    def _fold(self, count):
        return (f"UPDATE calls SET {_FOLD_SET} FROM (VALUES {self._rows(count, [kind for _, kind in FOLD_FIELDS])}) "
                f"AS n WHERE calls.session_id = {_N['session_id']}")

    def _recordings(self):
        return f"SELECT recording_urls FROM calls WHERE session_id = {self._mark()}"

    def _set_recordings(self):
        return f"UPDATE calls SET recording_urls = {self._mark('JSON')} WHERE session_id = {self._mark()}"

    def time(self, moment):
        """A timestamp as the UTCDateTime columns hold it: naive UTC (as text on SQLite)."""
        if moment is None:
            return None
        naive = moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo is not None else moment
        return naive if self.postgresql else naive.isoformat(" ", "microseconds")

    def amount(self, amount):
        """An amount as the Numeric column takes it (SQLite keeps it as a float, as SQLAlchemy does)."""
        if amount is None or self.postgresql:
            return amount
        return float(amount)

    def write(self, session_id, source, kind, payload, params, problems, fold, recording_url=None):
        """A _Write of one event and what it brings to its call, every value converted for the driver."""
        now = self.time(utcnow())
        payload_json = json.dumps(payload, sort_keys=True)
        # The same notification on either URL, or sent again, has the same fingerprint.
        fingerprint = hashlib.sha256(
            f"[{payload_json}, {json.dumps(params or {}, sort_keys=True)}]".encode("utf-8")).hexdigest()
        event = (session_id, source, now, kind, fingerprint, payload_json, _json(params or None), _json(problems or None))
        fold["started_at"] = self.time(fold.get("started_at"))
        fold["dequeued_at"] = self.time(fold.get("dequeued_at"))
        fold["amount"] = self.amount(fold.get("amount"))
        fold["rank"] = _rank(fold.get("state"))
        row = tuple(fold.get(name) for name, _ in FOLD_FIELDS[1:-1])
        return _Write(session_id, fingerprint, event, (session_id,) + row + (now,), recording_url)

    def store(self, cursor, writes):
        """Store a batch of writes in the caller's transaction, in order; [True if new, False if a duplicate]."""
        first_seen = {}
        for write in writes:
            first_seen.setdefault(write.session_id, write.event[2])
        sessions = sorted(first_seen)
        cursor.execute(self.statement("insert_calls", len(sessions)),
                       [value for session in sessions for value in (session, first_seen[session], first_seen[session])])
        if self.postgresql:
            cursor.execute(self.statement("lock_calls", len(sessions)), sessions)
            cursor.fetchall()
        fingerprints = sorted({write.fingerprint for write in writes})
        cursor.execute(self.statement("known_events", len(sessions), len(fingerprints)), sessions + fingerprints)
        known = set(map(tuple, cursor.fetchall()))
        results, new = [], []
        for write in writes:
            key = (write.session_id, write.fingerprint)
            results.append(key not in known)
            if key not in known:
                known.add(key)
                new.append(write)
        if not new:
            return results
        cursor.execute(self.statement("insert_events", len(new)), [value for write in new for value in write.event])
        if cursor.rowcount != len(new):
            raise Conflict()
        waiting = new
        while waiting:  # one UPDATE per round, a call at most once in each, in arrival order
            seen, this_round, later = set(), [], []
            for write in waiting:
                (later if write.session_id in seen else this_round).append(write)
                seen.add(write.session_id)
            cursor.execute(self.statement("fold", len(this_round)), [v for write in this_round for v in write.fold])
            waiting = later
        for write in new:
            if write.recording_url:
                self._add_recording(cursor, write.session_id, write.recording_url)
        return results

    def _add_recording(self, cursor, session_id, url):
        """Add a recording's URL to the call's list (the newest MAX_RECORDINGS), unless it is there."""
        cursor.execute(self.statement("recordings"), (session_id,))
        stored = cursor.fetchone()[0]
        recordings = (json.loads(stored) if isinstance(stored, str) else stored) or []
        if url not in recordings:
            cursor.execute(self.statement("set_recordings"),
                           (json.dumps((recordings + [url])[-MAX_RECORDINGS:]), session_id))


def init_app(app):
    """Prepare the notification store's statements for the app's database, and its group commit."""
    with app.app_context():
        engine = db.engine
    driver = app.extensions["voice_store"] = _Driver(engine.dialect.name)
    app.extensions["voice_group_commit"] = GroupCommit(engine, lambda: write_turn(app), driver.store,
                                                       retry=(Conflict,), measured=app.config["VOICE_METRICS"])


def _commit(writes):
    """Have the writes stored with the others of this process waiting at the moment; their results."""
    timeout = 2 * float(current_app.config["DATABASE_TIMEOUT_SECONDS"]) + 1
    return current_app.extensions["voice_group_commit"].submit(writes, timeout)


def _json(value):
    return None if value is None else json.dumps(value, sort_keys=True)


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
        person, ours = note.client_name, dialled_number(note) or note.destination
    fold = {"direction": note.direction, "person": person, "ours": ours, "state": note.state,
            "answered": int(note.state in ANSWERED_STATES or bool(note.digits)), "started_at": note.started_at,
            "final": int(note.is_final), "duration": note.duration, "amount": note.amount, "currency": note.currency,
            "hangup_cause": note.hangup_cause, "status": note.status, "digits": note.digits,
            "client_request_id": note.client_request_id, "transferred_to": note.transferred_to,
            "transfer_state": note.transfer_state, "transfer_hangup_cause": note.transfer_hangup_cause,
            "dequeued_to": note.dequeued_to, "dequeued_at": note.dequeued_at, "queue_seconds": note.queue_seconds,
            "queue_name": note.queue_name, "client_name": note.client_name}
    return current_app.extensions["voice_store"].write(note.session_id, source, event_type(note), payload, params,
                                                       note.problems, fold, note.recording_url)


def dialled_number(note):
    """The number a client's agent dialled, in E.164, or None when there is none or it is not a number."""
    if not note.client_dialed:
        return None
    try:
        return from_dialled(note.client_dialed, current_app.config["DEFAULT_COUNTRY_CODE"])
    except InvalidPhone:
        return None


def record_dialout(answer, caller_number, requested_by, client_request_id=None):
    """Store the calls AT queued for a dial-out, one per entry with a sessionId; return their ids."""
    driver = current_app.extensions["voice_store"]
    entries = [entry for entry in answer.get("entries") or []
               if entry.get("sessionId") and entry["sessionId"] != "None"]
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


def call_in_progress(session_id):
    """The call `session_id` names if it is recorded and has not ended, else None."""
    query = sa.select(Call).where(Call.session_id == session_id, Call.ended_at.is_(None),
                                  sa.or_(Call.state.is_(None), Call.state.not_in(sorted(FINAL_STATES))))
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


def _rank(state):
    return STATE_RANKS.get(state, UNKNOWN_STATE_RANK) if state else -1


def payload_of(form):
    """A request's form as a plain dict (repeated keys keep every value)."""
    return {key: values[0] if len(values) == 1 else values for key, values in form.lists()}


def placed_by_us(session_id):
    """True when `session_id` is a call this service placed through /voice/invoke-call."""
    query = sa.select(Call.id).where(Call.session_id == session_id, Call.requested_by.is_not(None))
    return guarded(lambda: db.session.execute(query).first() is not None)
