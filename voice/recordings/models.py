"""The tables: a row per recording link of an ended call, and the stored files left to remove after a prune.

A recording is `pending` until its copy is stored (`archived`) or the worker gives up (`failed`,
with the reason in `error`). `claimed_until` is the worker's lease on a pending row: a fetch queued
by a tick holds it, and a killed worker's claim runs out so the row is due again.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from voice.store.db import UTCDateTime, db, iso, utcnow

PENDING, ARCHIVED, FAILED = "pending", "archived", "failed"


class Recording(db.Model):
    """A recording of a call: AT's link (n from 1, in the order they came), and the copy kept of it."""

    __tablename__ = "recordings"
    __table_args__ = (sa.UniqueConstraint("call_id", "n", name="uq_recordings_call_n"),
                      sa.Index("ix_recordings_due", "status", "next_try_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(sa.ForeignKey("calls.id"), index=True)
    session_id: Mapped[str] = mapped_column(sa.String(128))
    n: Mapped[int] = mapped_column(sa.Integer)
    source_url: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default=PENDING)
    tries: Mapped[int] = mapped_column(sa.Integer, default=0)
    first_try_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_try_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(sa.String(300))
    stored_as: Mapped[str | None] = mapped_column(sa.String(300))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    duration_seconds: Mapped[float | None] = mapped_column(sa.Float)
    content_type: Mapped[str | None] = mapped_column(sa.String(100))
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecordingRemoval(db.Model):
    """A stored file whose row a prune deleted, noted in the same transaction; gone once the file is."""

    __tablename__ = "recording_removals"

    id: Mapped[int] = mapped_column(primary_key=True)
    stored_as: Mapped[str] = mapped_column(sa.String(300))
    noted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def playback_path(session_id, n):
    """The service's route that plays a recording back."""
    return f"/voice/calls/{session_id}/recordings/{n}"


def recording_json(recording):
    """A recording as the call's JSON shows it."""
    archived = recording.status == ARCHIVED
    return {"n": recording.n, "sourceUrl": recording.source_url, "status": recording.status,
            "size": recording.size, "sha256": recording.sha256,
            "durationSeconds": round(recording.duration_seconds, 3) if recording.duration_seconds is not None else None,
            "contentType": recording.content_type, "archivedAt": iso(recording.archived_at),
            "error": recording.error, "url": playback_path(recording.session_id, recording.n) if archived else None}


def recordings_json(session_id, urls, rows):
    """Each of a call's recording links (`urls`, in order) as the call's JSON shows it; a link not yet handed to
    the archive (the call has not ended) is pending."""
    by_n = {row.n: row for row in rows}
    shown = []
    for n, url in enumerate(urls or [], start=1):
        row = by_n.get(n)
        shown.append(recording_json(row) if row is not None else {
            "n": n, "sourceUrl": url, "status": PENDING, "size": None, "sha256": None, "durationSeconds": None,
            "contentType": None, "archivedAt": None, "error": None, "url": None})
    return shown


def rows_by_call(call_ids):
    """{call id: [Recording]} of the calls `call_ids`, in one query (the caller's transaction)."""
    found = {}
    if call_ids:
        query = sa.select(Recording).where(Recording.call_id.in_(list(call_ids))).order_by(Recording.n)
        for row in db.session.execute(query).scalars():
            found.setdefault(row.call_id, []).append(row)
    return found
