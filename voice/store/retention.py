"""Retention: calls that ended before a cut-off, their events and recordings, and the webhook events (with their
deliveries) queued before it, deleted in small batches.

Call records hold personal data (numbers, recordings) and grow without end. Each batch is its
own short transaction in the host's write turn, so callbacks wait at most one batch while a
prune runs, and a prune that is stopped half-way has removed whole calls only. A call's stored
recordings are noted for removal in its batch's transaction and removed once it commits; what a
stopped prune left noted, the worker's housekeeping removes (voice/recordings/archive.py).
"""

import logging
from datetime import timedelta

import sqlalchemy as sa

from voice.recordings.models import Recording, RecordingRemoval
from voice.store.db import UTCDateTime, db, guarded, utcnow

log = logging.getLogger(__name__)

BATCH = 500

# started_at is indexed and a call ends after it starts: the index narrows the search to old calls.
_OLD_CALLS = sa.text(
    "SELECT id FROM calls WHERE started_at < :cutoff AND ended_at < :cutoff AND id > :after ORDER BY id LIMIT :size"
).bindparams(sa.bindparam("cutoff", type_=UTCDateTime))
_COUNT = sa.text(
    "SELECT count(*), coalesce(sum((SELECT count(*) FROM events WHERE events.call_id = calls.id)), 0), "
    "coalesce(sum((SELECT count(*) FROM recordings WHERE recordings.call_id = calls.id)), 0) "
    "FROM calls WHERE started_at < :cutoff AND ended_at < :cutoff").bindparams(sa.bindparam("cutoff", type_=UTCDateTime))
_DELETE_EVENTS = sa.text("DELETE FROM events WHERE call_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
_DELETE_CALLS = sa.text("DELETE FROM calls WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True))


def cutoff_for(days):
    """The moment `days` days ago."""
    return utcnow() - timedelta(days=days)


def count(cutoff):
    """(calls, events, recordings) that a prune at `cutoff` would delete."""
    calls, events, recordings = guarded(lambda: db.session.execute(_COUNT, {"cutoff": cutoff}).one())
    return int(calls), int(events), int(recordings)


def prune(cutoff, size=BATCH):
    """Delete calls that ended before `cutoff`, their events and recordings, `size` calls a transaction, then the
    webhook events queued before it (their payloads hold calls and contacts); (calls, events, recordings)."""
    from voice.recordings.archive import remove_noted  # the stored copies, once their rows' deletion is committed
    from voice.webhooks.delivery import forget_before

    calls = events = recordings = 0
    after = 0
    while True:
        def batch():
            ids = [row[0] for row in db.session.execute(
                _OLD_CALLS, {"cutoff": cutoff, "after": after, "size": size})]
            if not ids:
                return ids, 0, 0, 0
            removed = db.session.execute(_DELETE_EVENTS, {"ids": ids}).rowcount
            kept = sa.select(Recording.stored_as, sa.literal(utcnow(), UTCDateTime)).where(
                Recording.call_id.in_(ids), Recording.stored_as.is_not(None))
            noted = db.session.execute(sa.insert(RecordingRemoval).from_select(["stored_as", "noted_at"], kept)).rowcount
            dropped = db.session.execute(sa.delete(Recording).where(Recording.call_id.in_(ids))).rowcount
            db.session.execute(_DELETE_CALLS, {"ids": ids})
            return ids, removed, dropped, noted

        ids, removed, dropped, noted = guarded(batch, write=True)
        if noted:
            remove_noted()
        if not ids:
            log.info("prune: %s webhook events from before the cut-off removed", forget_before(cutoff, size))
            return calls, events, recordings
        calls, events, recordings, after = calls + len(ids), events + removed, recordings + dropped, ids[-1]

