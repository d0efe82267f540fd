"""Archiving recordings: a row per link of each ended call, fetched by the worker, retried, stored, removed.

- `calls_ended(calls)` (voice/after_calls.py, once the final notification has arrived): a pending
  row per recording link of each call, n = 1, 2... in the order they came; idempotent.
- `due()` (the worker's tick): pending rows whose next try has come, claimed with a lease; no more
  than `room()` downloads in flight at once (those still claimed count), so dials keep the threads.
- `fetch(id)` (a worker thread): the download (download.py); a failure that may pass (and any
  unexpected error) is tried again after 1, 2, 4... seconds, up to BACKOFF_CAP, until
  VOICE_RECORDING_RETRY_MINUTES have passed since the first try, then `failed`; a refusal fails at
  once. Archived, the call's webhook event `recording.archived` is queued in the same transaction,
  once: a second fetch of a row already archived (a claim that ran out) changes nothing.
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
KEEP, REMOVE = "keep", "remove"  # what a fetch does with its stored copy when the row was not its to archive


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


def room():
    """How many downloads may be in flight at once: a quarter of the worker's threads (at least one), so the
    campaign dials keep the others."""
    return max(1, int(current_app.config["VOICE_WORKER_THREADS"]) // 4)


def due(now=None, limit=None):
    """The ids of recordings due for a fetch, claimed (leased) for this tick: `limit` (room()) in flight at most,
    counting the fetches still running (claimed, their lease not run out)."""
    now = now or utcnow()
    limit = limit or room()

    def claim():
        busy = db.session.execute(
            sa.select(sa.func.count()).select_from(Recording)
            .where(Recording.status == PENDING, Recording.claimed_until >= now)).scalar()
        if busy >= limit:
            return []
        ids = db.session.execute(
            sa.select(Recording.id).where(Recording.status == PENDING, Recording.next_try_at <= now,
                                          sa.or_(Recording.claimed_until.is_(None), Recording.claimed_until < now))
            .order_by(Recording.next_try_at).limit(limit - busy).with_for_update(skip_locked=True)).scalars().all()
        if ids:
            db.session.execute(sa.update(Recording).where(Recording.id.in_(ids)).values(claimed_until=now + LEASE))
        return ids

    return guarded(claim, write=True)


def fetch(recording_id, now=None):
    """Download one recording and keep it, or note why not and when to try again (`now`: a test's clock)."""
    found = guarded(lambda: db.session.get(Recording, recording_id))
    if found is None or found.status != PENDING:
        return
    session_id, first_try = found.session_id, found.first_try_at or now or utcnow()
    try:
        _fetch(recording_id, found.source_url, session_id, found.n, first_try, now)
    except downloads.Failure as failure:
        _failed(recording_id, session_id, failure, first_try, now or utcnow())
    except Exception as exc:  # a bug, an outage: a failed try the retry window ends, never a row pending for ever
        log.exception("recording %s of %s: unexpected failure", recording_id, session_id)
        failure = downloads.NotYet("unexpected", f"{type(exc).__name__} (see the worker's log)")
        _failed(recording_id, session_id, failure, first_try, now or utcnow())


def _fetch(recording_id, url, session_id, n, first_try, now):
    """Download, store and mark archived; downloads.Failure for a failed try."""
    keeper = store()
    got = downloads.download(url, keeper.scratch())
    key = key_for(session_id, n, got.extension)
    try:
        # The name is noted before the file is stored: a prune meanwhile notes it for removal.
        if not guarded(lambda: _note_key(recording_id, key), write=True):
            return
        try:
            keeper.put(key, got.path, got.content_type)
        except StorageError as exc:
            raise downloads.NotYet("storage", str(exc)) from None
    finally:
        if os.path.exists(got.path):
            os.remove(got.path)
    outcome = guarded(lambda: _archived(recording_id, got, key, first_try, now or utcnow()), write=True)
    if outcome == REMOVE:
        keeper.delete(key)  # the call was pruned meanwhile, or another fetch archived the row under another name
    elif outcome == ARCHIVED:
        log.info("recording %s of %s archived: %s bytes", n, session_id, got.size)


def _note_key(recording_id, key):
    row = db.session.get(Recording, recording_id)
    if row is None or row.status != PENDING:
        return False
    row.stored_as = key
    return True


def _archived(recording_id, got, key, first_try, now):
    """Mark the row archived and queue its `recording.archived` event: ARCHIVED. When the row is gone (pruned),
    REMOVE the copy just stored; when it is no longer pending (another fetch of it, its claim run out, archived it
    or gave up), KEEP the copy if the archived row names it, else REMOVE it. Only the first marks and queues."""
    from voice.webhooks import events

    row = db.session.get(Recording, recording_id)
    if row is None:
        return REMOVE
    if row.status != PENDING:
        return KEEP if row.status == ARCHIVED and row.stored_as == key else REMOVE
    row.status, row.archived_at, row.error, row.claimed_until, row.stored_as = ARCHIVED, now, None, None, key
    row.size, row.sha256, row.content_type = got.size, got.sha256, got.content_type
    row.duration_seconds, row.tries, row.first_try_at = got.duration_seconds, row.tries + 1, first_try
    db.session.flush()
    events.recording_archived(row.session_id, recording_json(row))
    return ARCHIVED


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
