"""The batch SQL that folds AT's notifications into their calls: a handful of statements for any batch.

The writes go to the database driver itself, in SQL both SQLite and PostgreSQL accept (see _Driver).
What a notification brings to its call is built from voice/calls.py's table of fields.
"""

import hashlib
import json
from datetime import timezone

from voice.calls import FINAL_STATES, FIRST, KINDS, LATEST, SPECIAL, STATE_RANKS, STORED, UNKNOWN_STATE_RANK, rank
from voice.store.db import utcnow

MAX_RECORDINGS = 20
FINAL_LIST = ", ".join(f"'{name}'" for name in sorted(FINAL_STATES))
_RANK = "CASE calls.state " + " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in STATE_RANKS.items()) + \
    f" ELSE {UNKNOWN_STATE_RANK} END"

# What a notification brings to its call, in the order of the fold's VALUES rows, with the
# type PostgreSQL is told for each (SQLite takes them as they come): the service's own values,
# then every field of voice/calls.py's table that a call keeps.
FOLD_FIELDS = (
    ("session_id", "VARCHAR(128)"), ("direction", "VARCHAR(16)"), ("person", "VARCHAR(128)"),
    ("ours", "VARCHAR(128)"), ("state", "VARCHAR(64)"), ("rank", "INTEGER"), ("answered", "INTEGER"),
    ("final", "INTEGER"), ("digits", "VARCHAR(64)"), ("requested_by", "VARCHAR(64)"), ("queue_status", "VARCHAR(64)"),
    ("client_name", "VARCHAR(64)"),
) + tuple((field.name, KINDS[field.kind]) for field in STORED) + (("now", "TIMESTAMP"),)
_N = {name: f"n.column{number}" for number, (name, _) in enumerate(FOLD_FIELDS, start=1)}
_FINAL = [name for name, _ in FOLD_FIELDS].index("final")
_OUTBOUND = f"COALESCE(calls.direction, {_N['direction']}) = 'Outbound'"
# The rules of the fields marked SPECIAL in the table.
_SPECIAL = {
    "started_at": f"started_at = COALESCE({_N['started_at']}, calls.started_at, {_N['now']})",
    # A transfer's outcome sticks: a late `Active` does not hide how it ended.
    "transfer_state": f"transfer_state = CASE WHEN {_N['transfer_state']} IS NULL OR ({_N['transfer_state']} = "
                      f"'Active' AND calls.transfer_state IS NOT NULL) THEN calls.transfer_state "
                      f"ELSE {_N['transfer_state']} END",
}
_RULES = {
    FIRST: lambda field: f"{field.column} = COALESCE(calls.{field.column}, {_N[field.name]})",
    LATEST: lambda field: f"{field.column} = COALESCE({_N[field.name]}, calls.{field.column})",
    SPECIAL: lambda field: _SPECIAL[field.name],
}
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
    f"ended_at = CASE WHEN calls.ended_at IS NULL AND {_N['final']} = 1 THEN {_N['now']} ELSE calls.ended_at END",
    f"last_digits = COALESCE({_N['digits']}, calls.last_digits)",
    f"requested_by = COALESCE(calls.requested_by, {_N['requested_by']})",
    f"queue_status = COALESCE({_N['queue_status']}, calls.queue_status)",
    f"client_name = COALESCE(calls.client_name, {_N['client_name']})",
    *(_RULES[field.fold](field) for field in STORED),
    f"updated_at = {_N['now']}",
))
_TIMES = tuple(field.name for field in STORED if field.kind == "time")
_AMOUNTS = tuple(field.name for field in STORED if field.kind == "amount")
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


class Driver:
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

    def _insert_endings(self, count):
        return f"INSERT INTO call_endings (session_id, ended_at) VALUES {self._rows(count, ('VARCHAR(128)', 'TIMESTAMP'))}"

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
        for name in _TIMES:
            fold[name] = self.time(fold.get(name))
        for name in _AMOUNTS:
            fold[name] = self.amount(fold.get(name))
        fold["rank"] = rank(fold.get("state"))
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
        # A final notification is noted for the worker's work after the call (voice/after_calls.py), in the
        # same transaction, so an acknowledged ending is never missed.
        endings = [write for write in new if write.fold[_FINAL]]
        if endings:
            cursor.execute(self.statement("insert_endings", len(endings)),
                           [value for write in endings for value in (write.session_id, write.fold[-1])])
        return results

    def _add_recording(self, cursor, session_id, url):
        """Add a recording's URL to the call's list (the newest MAX_RECORDINGS), unless it is there."""
        cursor.execute(self.statement("recordings"), (session_id,))
        stored = cursor.fetchone()[0]
        recordings = (json.loads(stored) if isinstance(stored, str) else stored) or []
        if url not in recordings:
            cursor.execute(self.statement("set_recordings"),
                           (json.dumps((recordings + [url])[-MAX_RECORDINGS:]), session_id))


def _json(value):
    return None if value is None else json.dumps(value, sort_keys=True)
