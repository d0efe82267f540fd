"""What happens after a call: each ended call handed, once, to the work that follows it.

The store notes every new final notification in `call_endings`, in the notification's own
transaction (voice/store/fold.py). The worker's tick takes the endings a few seconds old (so the
final notification on the other URL, which may carry the figures, has landed too), reads their
calls, and hands them to each follower in the same transaction that deletes the endings: the
events for webhook endpoints (voice/webhooks/) and the recordings to archive (voice/recordings/).
Followers only add rows; each must be idempotent for a call it has seen (a second final
notification notes a second ending).
"""

import time
from datetime import timedelta

import sqlalchemy as sa

from voice.store.db import db, guarded, utcnow
from voice.store.records import Call, CallEnding

SETTLE = timedelta(seconds=3)   # both URLs' final notifications land within this, as AT sends them together
# Endings handed over in one transaction. On SQLite it holds the host's write turn, and the callbacks'
# commits wait behind it: 200 at a time held it 60-90 ms, once a second under 300 ended calls a second.
BATCH = 20
BREATHER = 0.002  # seconds between two batches, so the callbacks waiting for the turn get it first


def _followers():
    """Who acts on an ended call: each a function of a list of Calls, adding rows in the caller's transaction."""
    from voice.recordings.archive import calls_ended as recordings
    from voice.webhooks.events import calls_ended as webhooks
    return (webhooks, recordings)


def handle(now=None):
    """Hand the endings due to their followers, BATCH a transaction; how many calls were handed."""
    total = 0
    while True:
        handed = guarded(lambda: _batch(now or utcnow()), write=True)
        total += handed
        if handed < BATCH:
            return total
        time.sleep(BREATHER)


def _batch(now):
    endings = db.session.execute(
        sa.select(CallEnding).where(CallEnding.ended_at <= now - SETTLE).order_by(CallEnding.id).limit(BATCH)
        .with_for_update(skip_locked=True)).scalars().all()
    if not endings:
        return 0
    sessions = list(dict.fromkeys(ending.session_id for ending in endings))
    calls = {call.session_id: call for call in db.session.execute(
        sa.select(Call).where(Call.session_id.in_(sessions))).scalars()}
    ended = [calls[session] for session in sessions if session in calls]
    for follower in _followers():
        follower(ended)
    db.session.execute(sa.delete(CallEnding).where(CallEnding.id.in_([ending.id for ending in endings])))
    return len(endings)
