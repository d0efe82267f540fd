"""Retention: calls that ended before a cut-off, and their events, deleted in small batches.

Call records hold personal data (numbers, recordings) and grow without end. Each batch is its
own short transaction in the host's write turn, so callbacks wait at most one batch while a
prune runs, and a prune that is stopped half-way has removed whole calls only.
"""

from datetime import timedelta

import sqlalchemy as sa

from voice.store.db import UTCDateTime, db, guarded, utcnow

BATCH = 500

# started_at is indexed and a call ends after it starts: the index narrows the search to old calls.
_OLD_CALLS = sa.text(
    "SELECT id FROM calls WHERE started_at < :cutoff AND ended_at < :cutoff AND id > :after ORDER BY id LIMIT :size"
).bindparams(sa.bindparam("cutoff", type_=UTCDateTime))
_COUNT = sa.text(
    "SELECT count(*), coalesce(sum((SELECT count(*) FROM events WHERE events.call_id = calls.id)), 0) "
    "FROM calls WHERE started_at < :cutoff AND ended_at < :cutoff").bindparams(sa.bindparam("cutoff", type_=UTCDateTime))
_DELETE_EVENTS = sa.text("DELETE FROM events WHERE call_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
_DELETE_CALLS = sa.text("DELETE FROM calls WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True))


def cutoff_for(days):
    """The moment `days` days ago."""
    return utcnow() - timedelta(days=days)


def count(cutoff):
    """(calls, events) that a prune at `cutoff` would delete."""
    calls, events = guarded(lambda: db.session.execute(_COUNT, {"cutoff": cutoff}).one())
    return int(calls), int(events)


def prune(cutoff, size=BATCH):
    """Delete calls that ended before `cutoff` and their events, `size` calls a transaction; (calls, events)."""
    calls = events = 0
    after = 0
    while True:
        def batch():
            ids = [row[0] for row in db.session.execute(
                _OLD_CALLS, {"cutoff": cutoff, "after": after, "size": size})]
            if not ids:
                return ids, 0
            removed = db.session.execute(_DELETE_EVENTS, {"ids": ids}).rowcount
            db.session.execute(_DELETE_CALLS, {"ids": ids})
            return ids, removed

        ids, removed = guarded(batch, write=True)
        if not ids:
            return calls, events
        calls, events, after = calls + len(ids), events + removed, ids[-1]

