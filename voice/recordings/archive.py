"""Archiving recordings: a row per link of each ended call, fetched by the worker, retried, stored, removed.

- `calls_ended(calls)` (voice/after_calls.py, once the final notification has arrived): a pending
  row per recording link of each call, n = 1, 2... in the order they came; idempotent.
- `due()` (the worker's tick): pending rows whose next try has come, claimed with a lease.
- `fetch(id)` (a worker thread): the download (download.py); a failure that may pass is tried
  again after 1, 2, 4... seconds, up to BACKOFF_CAP, until VOICE_RECORDING_RETRY_MINUTES have passed
  since the first try, then `failed`; a refusal fails at once. Archived, the call's webhook event
  `recording.archived` is queued in the same transaction.
- `housekeeping()` (every minute): removes the stored files whose rows a prune deleted, if the
  prune stopped before it could.
"""

import logging
import os
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from voice.recordings import download as downloads
from voice.recordings.models import ARCHIVED, FAILED, PENDING, Recording, RecordingRemoval, recording_json
from voice.recordings.storage import StorageError, key_for, store
from voice.store.db import db, guarded, utcnow

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=downloads.DEADLINE + 120)  # a claim outlives the longest download
BACKOFF_CAP = timedelta(minutes=4)
REMOVALS_BATCH = 200


def calls_ended(calls):
    """Note each recording link of the ended calls, to be fetched (adds rows in the caller's transaction)."""
    calls = [call for call in calls if call.recording_urls]
    if not calls:
        return
    known = {}
    for call_id, n in db.session.execute(
            sa.select(Recording.call_id, Recording.n).where(Recording.call_id.in_([call.id for call in calls]))):
        known.setdefault(call_id, set()).add(n)
    now = utcnow()
    for call in calls:
        for n, url in enumerate(call.recording_urls, start=1):
            if n not in known.get(call.id, ()) and isinstance(url, str):
                db.session.add(Recording(call_id=call.id, session_id=call.session_id, n=n, source_url=url,
                                         status=PENDING, tries=0, next_try_at=now, created_at=now))
    db.session.flush()


def due(now=None, limit=None):
    """The ids of recordings due for a fetch, claimed (leased) for this tick; a few per worker thread at most."""
    now = now or utcnow()
    limit = limit or 2 * int(current_app.config["VOICE_WORKER_THREADS"])

    def claim():
        ids = db.session.execute(
            sa.select(Recording.id).where(Recording.status == PENDING, Recording.next_try_at <= now,
                                          sa.or_(Recording.claimed_until.is_(None), Recording.claimed_until < now))
            .order_by(Recording.next_try_at).limit(limit).with_for_update(skip_locked=True)).scalars().all()
        if ids:
            db.session.execute(sa.update(Recording).where(Recording.id.in_(ids)).values(claimed_until=now + LEASE))
        return ids

    return guarded(claim, write=True)


def fetch(recording_id, now=None):
    """Download one recording and keep it, or note why not and when to try again (`now`: a test's clock)."""
    found = guarded(lambda: db.session.get(Recording, recording_id))
    if found is None or found.status != PENDING:
        return
    url, session_id, n = found.source_url, found.session_id, found.n
    first_try = found.first_try_at or now or utcnow()
    keeper = store()
    try:
        got = downloads.download(url, keeper.scratch())
    except downloads.Failure as failure:
        _failed(recording_id, session_id, failure, first_try, now or utcnow())
        return
    key = key_for(session_id, n, got.extension)
    # The name is noted before the file is stored: a prune meanwhile notes it for removal.
    if not guarded(lambda: _note_key(recording_id, key), write=True):
        os.remove(got.path)
        return
    try:
        keeper.put(key, got.path, got.content_type)
    except StorageError as exc:
        if os.path.exists(got.path):
            os.remove(got.path)
        _failed(recording_id, session_id, downloads.NotYet("storage", str(exc)), first_try, now or utcnow())
        return
    if not guarded(lambda: _archived(recording_id, got, first_try, now or utcnow()), write=True):
        keeper.delete(key)  # the call was pruned while its recording was fetched
        return
    log.info("recording %s of %s archived: %s bytes", n, session_id, got.size)


def _note_key(recording_id, key):
    row = db.session.get(Recording, recording_id)
    if row is None or row.status != PENDING:
        return False
    row.stored_as = key
    return True


def _archived(recording_id, got, first_try, now):
    """Mark the row archived and queue its `recording.archived` event; False when the row is gone."""
    from voice.webhooks import events

    row = db.session.get(Recording, recording_id)
    if row is None:
        return False
    row.status, row.archived_at, row.error, row.claimed_until = ARCHIVED, now, None, None
    row.size, row.sha256, row.content_type = got.size, got.sha256, got.content_type
    row.duration_seconds, row.tries, row.first_try_at = got.duration_seconds, row.tries + 1, first_try
    db.session.flush()
    events.recording_archived(row.session_id, recording_json(row))
    return True


def _failed(recording_id, session_id, failure, first_try, now):
    """Note a failed try: again after the backoff while it may pass and the retry window lasts, else failed."""
    window = timedelta(minutes=float(current_app.config["VOICE_RECORDING_RETRY_MINUTES"]))

    def note():
        row = db.session.get(Recording, recording_id)
        if row is None or row.status != PENDING:
            return None
        row.tries, row.first_try_at, row.claimed_until = row.tries + 1, first_try, None
        row.error = str(failure)[:300]
        if isinstance(failure, downloads.NotYet) and now - first_try < window:
            row.next_try_at = now + min(timedelta(seconds=2 ** min(row.tries - 1, 20)), BACKOFF_CAP)
        else:
            row.status = FAILED
        return row.status, row.tries

    outcome = guarded(note, write=True)
    if outcome is not None:
        status, tries = outcome
        level = logging.WARNING if status == FAILED else logging.INFO
        log.log(level, "recording %s of %s %s after try %s: %s", recording_id, session_id,
                "failed" if status == FAILED else "not fetched yet", tries, failure.reason)


def housekeeping():
    """Remove the stored files whose rows a prune deleted (its own removal stopped half-way)."""
    remove_noted()


def remove_noted(limit=REMOVALS_BATCH):
    """Remove the files noted in recording_removals, and their notes; how many were removed."""
    removed = 0
    keeper = store()
    while True:
        noted = guarded(lambda: db.session.execute(
            sa.select(RecordingRemoval.id, RecordingRemoval.stored_as).order_by(RecordingRemoval.id).limit(limit)).all())
        done = []
        for note_id, key in noted:
            try:
                keeper.delete(key)
                done.append(note_id)
            except StorageError as exc:
                log.warning("a pruned recording could not be removed yet: %s", exc)
        if done:
            guarded(lambda: db.session.execute(sa.delete(RecordingRemoval).where(RecordingRemoval.id.in_(done))),
                    write=True)
        removed += len(done)
        if len(noted) < limit or len(done) < len(noted):
            return removed
