"""Console sessions kept on the server: the cookie carries a random id, and signing out ends it everywhere.

A signed cookie alone lives until it expires, wherever it was copied to; with a row per session,
sign-out (or its expiry) ends it for every copy. The table holds a hash of the id, so reading the
database does not hand out live sessions.
"""

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa

from voice.store.db import UTCDateTime, db, guarded, utcnow


class ConsoleSession(db.Model):
    """One signed-in console session: whose key, since when, until when, and when it was ended."""

    __tablename__ = "console_sessions"
    id_hash = sa.Column(sa.String(64), primary_key=True)
    label = sa.Column(sa.String(64), nullable=False)
    started_at = sa.Column(UTCDateTime, nullable=False)
    expires_at = sa.Column(UTCDateTime, nullable=False, index=True)
    ended_at = sa.Column(UTCDateTime)


def _hash(session_id):
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(label, lifetime):
    """Open a session for the key `label`, lasting `lifetime`; the random id to put in the cookie."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()

    def work():
        # Sessions that expired a day ago are of no use to anyone: they go as new ones come.
        db.session.execute(sa.delete(ConsoleSession).where(ConsoleSession.expires_at < now - timedelta(days=1)))
        db.session.add(ConsoleSession(id_hash=_hash(session_id), label=label, started_at=now, expires_at=now + lifetime))

    guarded(work, write=True)
    return session_id


def is_open(session_id, label):
    """True while the session `session_id` of `label` has neither ended nor expired."""
    if not isinstance(session_id, str) or not 20 <= len(session_id) <= 64:
        return False
    row = guarded(lambda: db.session.get(ConsoleSession, _hash(session_id)))
    return row is not None and row.label == label and row.ended_at is None and row.expires_at > utcnow()


def end(session_id):
    """End the session `session_id`: every copy of its cookie stops working at once."""
    if not isinstance(session_id, str) or not 20 <= len(session_id) <= 64:
        return
    guarded(lambda: db.session.execute(sa.update(ConsoleSession).where(
        ConsoleSession.id_hash == _hash(session_id), ConsoleSession.ended_at.is_(None)).values(ended_at=utcnow())),
        write=True)
