"""The store's write path: batches folded in order, duplicates spotted, concurrent callbacks each stored once,
group commit at its own boundary, and two writers on the same calls without a deadlock."""

import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from tests.helpers import EVENTS, postgres_url
from voice import callbacks
from voice.store import records
from voice.store.db import StoreUnavailable, db
from voice.store.group import GroupCommit

pytestmark = pytest.mark.both_databases

CALL = {"isActive": "1", "direction": "Inbound", "callerNumber": "+254712345678",
        "destinationNumber": "+254711000000", "callSessionState": "Answered"}
FINAL = dict(CALL, isActive="0", callSessionState="Completed", durationInSeconds="30", amount="1.5",
             currencyCode="KES", hangupCause="NORMAL_CLEARING")


def write(app, source="events", **fields):
    """The prepared write of a notification, as record_notification makes it."""
    form = MultiDict(fields)
    with app.test_request_context():
        return records.notification_write(callbacks.parse(form), source, records.payload_of(form))


def call_row(app, session):
    with app.app_context():
        return db.session.execute(sa.text("SELECT state, duration_seconds, last_digits FROM calls "
                                          "WHERE session_id = :s"), {"s": session}).one_or_none()


def event_count(app, session):
    with app.app_context():
        return db.session.execute(sa.text("SELECT count(*) FROM events JOIN calls ON calls.id = events.call_id "
                                          "WHERE calls.session_id = :s"), {"s": session}).scalar_one()


def test_one_batch_folds_its_notifications_in_order_and_spots_duplicates(app):
    group = app.extensions["voice_group_commit"]
    batch = [[write(app, sessionId="ATVId_b1", **CALL)],
             [write(app, sessionId="ATVId_b1", **dict(CALL, dtmfDigits="2"))],
             [write(app, sessionId="ATVId_b2", **CALL)],
             [write(app, sessionId="ATVId_b1", **FINAL)],
             [write(app, sessionId="ATVId_b1", **dict(CALL, dtmfDigits="2"))]]  # AT sending one again
    with app.app_context():
        assert group.commit(batch) == [[True], [True], [True], [True], [False]]
    assert tuple(call_row(app, "ATVId_b1")) == ("Completed", 30, "2")
    assert event_count(app, "ATVId_b1") == 3 and event_count(app, "ATVId_b2") == 1
    with app.app_context():  # the same notifications in a later batch are duplicates as well
        assert group.commit(batch[:2]) == [[False], [False]]
    assert event_count(app, "ATVId_b1") == 3


def test_a_late_state_in_the_same_batch_does_not_move_the_call_back(app):
    group = app.extensions["voice_group_commit"]
    with app.app_context():
        group.commit([[write(app, sessionId="ATVId_o1", **FINAL)],
                      [write(app, sessionId="ATVId_o1", **dict(CALL, callSessionState="Ringing"))]])
    assert tuple(call_row(app, "ATVId_o1")) == ("Completed", 30, None)


def test_concurrent_events_are_each_acknowledged_once_stored(app):
    sessions = [f"ATVId_c{n}" for n in range(40)]
    answers = {}

    def post(session):
        with app.test_client() as client:
            answers[session] = client.post(EVENTS, data=dict(FINAL, sessionId=session)).data

    threads = [threading.Thread(target=post, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers.values()) == {b"OK"}
    assert all(tuple(call_row(app, s)) == ("Completed", 30, None) for s in sessions)


class FakeStore:
    """Stands in for the database at the group commit's boundary: records batches, can be slow or fail."""

    def __init__(self, delay=0.0, fail=None):
        self.batches, self.delay, self.fail = [], delay, fail

    def __call__(self, cursor, writes):
        self.batches.append(list(writes))
        time.sleep(self.delay)
        if self.fail:
            self.fail(writes)
        return [f"stored {write}" for write in writes]


@pytest.fixture
def group_of(app):
    """A group commit around a fake store, on the app's real database connection."""
    def make(store):
        with app.app_context():
            return GroupCommit(db.engine, lambda: records.write_turn(app), store)
    return make


def run_together(group, items, timeout=5):
    outcome = {}

    def submit(item):
        try:
            outcome[item] = group.submit([item], timeout)
        except StoreUnavailable as exc:
            outcome[item] = exc

    threads = [threading.Thread(target=submit, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


def test_writes_waiting_together_are_stored_in_one_batch_and_each_gets_its_own_result(group_of):
    store = FakeStore(delay=0.05)
    outcome = run_together(group_of(store), range(20))
    assert outcome == {n: [f"stored {n}"] for n in range(20)}
    assert len(store.batches) < 20 and max(len(b) for b in store.batches) > 1


def test_one_bad_write_does_not_sink_the_others_of_its_batch(group_of, app):
    def fail(writes):
        if "bad" in writes:
            raise app.extensions["voice_group_commit"]._errors("bad row")

    outcome = run_together(group_of(FakeStore(delay=0.05, fail=fail)), ("a", "bad", "b", "c"))
    assert isinstance(outcome.pop("bad"), StoreUnavailable)
    assert outcome == {"a": ["stored a"], "b": ["stored b"], "c": ["stored c"]}


def test_a_database_that_is_away_fails_every_waiting_write_at_once(group_of, app):
    def fail(writes):
        raise app.extensions["voice_group_commit"]._away("database is locked")

    store = FakeStore(delay=0.05, fail=fail)
    outcome = run_together(group_of(store), ("a", "b", "c"))
    assert all(isinstance(result, StoreUnavailable) for result in outcome.values())
    assert sum(len(batch) for batch in store.batches) == 3  # no write tried twice


def test_a_bug_in_the_store_fails_its_batch_at_once_and_the_next_goes_on(group_of):
    broken = {"once": True}

    def fail(writes):
        if broken.pop("once", False):
            raise RuntimeError("a bug outside the database")

    store = FakeStore(delay=0.05, fail=fail)
    group = group_of(store)
    started = time.monotonic()
    outcome = run_together(group, ("first", "second", "third"))
    assert time.monotonic() - started < 2  # every request of the failed batch told at once, none left waiting
    failed = [item for item, result in outcome.items() if isinstance(result, StoreUnavailable)]
    assert failed and all("unexpected error" in str(outcome[item]) for item in failed)
    assert all(outcome[item] == [f"stored {item}"] for item in outcome if item not in failed)
    assert group.submit(["next"], 5) == ["stored next"]


def test_a_write_that_waits_past_its_bound_is_refused_and_never_stored(group_of):
    store = FakeStore(delay=0.5)
    group = group_of(store)
    first = threading.Thread(target=group.submit, args=(["slow"], 5))
    first.start()
    time.sleep(0.1)
    with pytest.raises(StoreUnavailable, match="turn to write"):
        group.submit(["late"], 0.1)
    first.join()
    time.sleep(0.6)
    assert group.submit(["after"], 5) == ["stored after"]
    assert "late" not in [write for batch in store.batches for write in batch]


HAMMER = """
import sys, threading
from werkzeug.datastructures import MultiDict
from app import create_app
from voice import callbacks
from voice.store import records
app = create_app({"TESTING": True, "DATABASE_URL": sys.argv[1], "RATELIMIT_STORAGE_URI": "memory://"})
sessions = [f"ATVId_h{n}" for n in range(12)]
if sys.argv[2] == "down":
    sessions.reverse()
acknowledged = []

def post(thread):
    for round_ in range(10):
        for n, session in enumerate(sessions[thread:] + sessions[:thread]):
            form = MultiDict({"sessionId": session, "isActive": "1", "direction": "Inbound",
                              "callerNumber": "+254712345678", "callSessionState": "Active",
                              "dtmfDigits": str(n % 10), "by": f"{sys.argv[2]}-{thread}-{round_}"})
            with app.test_request_context():
                records.record_notification(callbacks.parse(form), "events", records.payload_of(form))
            acknowledged.append(session)

threads = [threading.Thread(target=post, args=(n,)) for n in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(acknowledged))
"""


def test_two_hosts_hammering_the_same_calls_on_postgresql_neither_deadlock_nor_lose_events(tmp_path):
    url = postgres_url()
    from flask_migrate import upgrade

    from app import create_app
    app = create_app({"TESTING": True, "DATABASE_URL": url, "RATELIMIT_STORAGE_URI": "memory://"})
    with app.app_context():
        upgrade()
    # Two processes of six threads each: their group commits batch the same calls, in opposite orders.
    hosts = [subprocess.Popen([sys.executable, "-c", HAMMER, url, order], cwd=str(tmp_path.parent),
                              env={"PYTHONPATH": str(records.__file__).rsplit("/voice/", 1)[0], "PATH": ""},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for order in ("up", "down")]
    outputs = [host.communicate(timeout=120) for host in hosts]
    assert [host.returncode for host in hosts] == [0, 0], [err[-2000:] for _, err in outputs]
    assert [int(out) for out, _ in outputs] == [720, 720]
    with app.app_context():
        stored = db.session.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
        calls = db.session.execute(sa.text("SELECT count(*) FROM calls")).scalar_one()
        db.engine.dispose()
    assert (stored, calls) == (1440, 12)
