"""Playing a kept recording back, for the API and the console: the call as its reader may see it, then the copy."""

import logging

import sqlalchemy as sa

from voice.errors import APIError
from voice.recordings.models import ARCHIVED, Recording
from voice.recordings.storage import NotStored, StorageError, store
from voice.store.db import db, guarded
from voice.store import history

log = logging.getLogger(__name__)


def response(session_id, n, requested_by=None):
    """The copy of the call's recording `n` as an HTTP response (Range honoured); APIError 404 when the call (or,
    for a dialer, its own call), the recording or its copy is missing, 409 with `recordingStatus` while not archived."""
    row = _recording(session_id, n, requested_by)
    if row.status != ARCHIVED or not row.stored_as:
        raise APIError(409, "not_archived", f"Recording {n} of this call is {row.status}, not archived"
                       + (f" ({row.error})." if row.error else "; try again later."), recordingStatus=row.status)
    try:
        return store().response(row.stored_as, row.size, row.content_type or "application/octet-stream", row.sha256)
    except NotStored:
        log.warning("recording %s of %s is archived but its copy is missing", n, session_id)
        raise APIError(404, "not_found", f"The copy of recording {n} of this call is missing from the store.") from None
    except StorageError as exc:
        log.warning("recording %s of %s could not be read: %s", n, session_id, exc)
        raise APIError(503, "storage_unavailable", "The recordings' store cannot be read now; try again.") from None


def _recording(session_id, n, requested_by):
    """The row of recording `n` of a call the reader may see; APIError 404 otherwise."""
    def work():
        call = history.visible_call(session_id, requested_by)
        if call is None:
            return None, None
        return call, db.session.execute(
            sa.select(Recording).where(Recording.call_id == call.id, Recording.n == n)).scalar_one_or_none()

    call, row = guarded(work)
    if call is None:
        raise APIError(404, "not_found", f"No call with sessionId {session_id!r} is recorded.")
    if row is None:
        raise APIError(404, "not_found", f"This call has no recording {n} kept (recordings count from 1, and are "
                       "noted once the call has ended).")
    return row
