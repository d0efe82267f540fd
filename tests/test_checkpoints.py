"""SQLite's WAL is copied into the database file by the worker, away from the callbacks' write turn, and the
worker's own transactions after a call hold that turn briefly.

A commit that checkpoints syncs the disk while holding the host's write turn; on a shared disk a sync
took up to 320 ms now and then, and every callback of the host waited (bench/notes.md, issue 23).
"""

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import EVENTS
from voice import after_calls
from voice.jobs import jobs_of
from voice.store import db as store_db
from voice.store.db import checkpoint, db, utcnow

FINAL = {"isActive": "0", "direction": "Inbound", "callerNumber": "+254712345678",
         "destinationNumber": "+254711000000", "callSessionState": "Completed", "durationInSeconds": "30"}


def end_calls(client, count, prefix="ATVId_ckpt"):
    for n in range(count):
        response = client.post(EVENTS, data=dict(FINAL, sessionId=f"{prefix}{n}"))
        assert response.status_code == 200, response.get_data(as_text=True)


def wal_pages(app):
    """Pages in SQLite's WAL now, and how many of them are in the database file (after copying them)."""
    with app.app_context(), db.engine.connect() as connection:
        _, pages, copied = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
    return pages, copied


def test_callbacks_commits_leave_the_checkpoint_to_the_worker(app):
    """A callback's connection checkpoints only far past SQLite's default of 1,000 pages."""
    with app.app_context(), db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == store_db.AUTOCHECKPOINT_PAGES
    assert store_db.AUTOCHECKPOINT_PAGES > store_db.RESTART_PAGES > 1000


def test_the_workers_tick_copies_the_wal_into_the_database(app, client, monkeypatch):
    end_calls(client, 30)
    calls = []
    monkeypatch.setattr("voice.jobs.checkpoint", lambda: calls.append("checkpoint") or checkpoint())
    jobs_of(app)._tick()
    assert calls == ["checkpoint"]
    with app.app_context():
        pages, copied = checkpoint()
    assert pages > 0 and copied == pages  # everything written is in the database file


def test_a_checkpoint_outside_the_turn_leaves_the_callbacks_writing(app, client):
    """The first pass takes no write turn: a callback holding it does not block the checkpoint, nor it the callback."""
    end_calls(client, 20)
    turn = app.extensions["voice_write_turn"]
    result, done = [], threading.Event()

    def run():
        with app.app_context():
            result.append(checkpoint())
        done.set()

    with turn(5):  # another writer of the host holds the turn throughout
        threading.Thread(target=run, daemon=True).start()
        assert done.wait(5), "the checkpoint waited for the write turn"
    pages, copied = result[0]
    assert pages > 0 and copied == pages


def test_past_restart_pages_the_checkpoint_finishes_in_the_turn_so_the_wal_starts_afresh(app, client, monkeypatch):
    end_calls(client, 20)
    monkeypatch.setattr(store_db, "RESTART_PAGES", 1)
    turns = []
    real = store_db.write_turn

    def watched(app=None):
        turns.append("turn")
        return real(app)

    monkeypatch.setattr(store_db, "write_turn", watched)
    with app.app_context():
        pages, copied = checkpoint()
    assert turns == ["turn"] and copied == pages
    end_calls(client, 1, prefix="ATVId_after")
    assert wal_pages(app)[0] < pages  # the next writer started the WAL from its beginning


@pytest.mark.both_databases
def test_endings_are_handed_over_in_short_transactions_and_none_is_lost(app, client, monkeypatch):
    """Past BATCH endings, each transaction hands BATCH of them, the write turn let go between two."""
    count = after_calls.BATCH * 2 + 5
    end_calls(client, count, prefix="ATVId_end")
    transactions = []
    real = after_calls._batch
    monkeypatch.setattr(after_calls, "_batch", lambda now: transactions.append(real(now)) or transactions[-1])
    with app.app_context():
        handed = after_calls.handle(utcnow() + timedelta(seconds=10))
        left = db.session.execute(sa.text("SELECT count(*) FROM call_endings")).scalar()
    assert handed == count and left == 0
    assert transactions == [after_calls.BATCH, after_calls.BATCH, 5]


@pytest.mark.both_databases
def test_on_postgresql_there_is_nothing_to_checkpoint(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    with app.app_context():
        assert checkpoint() is None
