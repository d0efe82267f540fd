"""Group commit: batches stored together, each request answered after its own batch, nothing dropped."""

import threading
import time

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from tests.conftest import API_KEY, WEBHOOK_TOKEN, postgres_url
from voice import callbacks, records, writer
from voice.db import StoreUnavailable, db
from voice.writer import GroupWriter

INSTRUCT = f"/voice/instruct?token={WEBHOOK_TOKEN}"
EVENTS = f"/voice/events?token={WEBHOOK_TOKEN}"
CALL = {"isActive": "1", "direction": "Inbound", "callerNumber": "+254712345678",
        "destinationNumber": "+254711000000", "callSessionState": "Answered"}
FINAL = dict(CALL, isActive="0", callSessionState="Completed", durationInSeconds="30", amount="1.5",
             currencyCode="KES", hangupCause="NORMAL_CLEARING")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'voice.sqlite3'}"
    return postgres_url()


def notification(source="events", **fields):
    form = MultiDict(fields)
    return callbacks.parse(form), source, records.payload_of(form), None


def call_row(app, session):
    with app.app_context():
        return db.session.execute(sa.text("SELECT state, duration_seconds, last_digits FROM calls "
                                          "WHERE session_id = :s"), {"s": session}).one_or_none()


def event_count(app, session):
    with app.app_context():
        return db.session.execute(sa.text("SELECT count(*) FROM events JOIN calls ON calls.id = events.call_id "
                                          "WHERE calls.session_id = :s"), {"s": session}).scalar_one()


def test_one_batch_folds_its_notifications_in_order_and_spots_duplicates(app):
    batch = [notification(sessionId="ATVId_b1", **CALL),
             notification(sessionId="ATVId_b1", **dict(CALL, dtmfDigits="2")),
             notification(sessionId="ATVId_b2", **CALL),
             notification(sessionId="ATVId_b1", **FINAL),
             notification(sessionId="ATVId_b1", **dict(CALL, dtmfDigits="2"))]  # AT sending one again
    with app.app_context():
        results = records.store_notifications(batch)
        db.session.commit()
    assert results == [True, True, True, True, False]
    assert tuple(call_row(app, "ATVId_b1")) == ("Completed", 30, "2")
    assert event_count(app, "ATVId_b1") == 3 and event_count(app, "ATVId_b2") == 1
    with app.app_context():  # the same notifications in a later batch are duplicates as well
        assert records.store_notifications(batch[:2]) == [False, False]
        db.session.rollback()


def test_concurrent_events_are_each_acknowledged_once_stored(app):
    client_app = app
    sessions = [f"ATVId_c{n}" for n in range(40)]
    answers = {}

    def post(session):
        with client_app.test_client() as client:
            answers[session] = client.post(EVENTS, data=dict(FINAL, sessionId=session)).data

    threads = [threading.Thread(target=post, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers.values()) == {b"OK"}
    assert all(tuple(call_row(app, s)) == ("Completed", 30, None) for s in sessions)


def test_an_instruct_record_written_behind_the_answer_is_seen_by_the_history_at_once(client):
    answer = client.post(INSTRUCT, data=dict(CALL, sessionId="ATVId_wb1"))
    assert answer.status_code == 200 and b"<GetDigits" in answer.data
    found = client.get("/voice/calls/ATVId_wb1", headers={"X-API-Key": API_KEY})
    assert found.status_code == 200 and found.json["call"]["state"] == "Answered"


class FakeStore:
    """Stands in for the database at the writer's boundary: records batches, can be slow or fail."""

    def __init__(self, delay=0.0, fail=None):
        self.batches, self.delay, self.fail = [], delay, fail

    def __call__(self, items):
        self.batches.append(list(items))
        time.sleep(self.delay)
        if self.fail:
            self.fail(items)
        return [f"stored {item}" for item in items]


def test_items_waiting_together_are_stored_in_one_batch_and_each_gets_its_own_result(app):
    store = FakeStore(delay=0.05)
    group = GroupWriter(app, store)
    results = {}

    def submit(n):
        results[n] = group.submit(n)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: f"stored {n}" for n in range(20)}
    assert len(store.batches) < 20 and max(len(b) for b in store.batches) > 1


def test_one_bad_item_does_not_sink_the_others_of_its_batch(app):
    def fail(items):
        if "bad" in items:
            raise sa.exc.IntegrityError("INSERT", {}, Exception("bad row"))

    group = GroupWriter(app, FakeStore(delay=0.05, fail=fail))
    outcome = {}

    def submit(item):
        try:
            outcome[item] = group.submit(item)
        except StoreUnavailable as exc:
            outcome[item] = exc

    threads = [threading.Thread(target=submit, args=(item,)) for item in ("a", "bad", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert isinstance(outcome.pop("bad"), StoreUnavailable)
    assert outcome == {"a": "stored a", "b": "stored b", "c": "stored c"}


def test_a_database_that_is_away_fails_the_waiting_and_retries_the_written_behind(app, monkeypatch):
    monkeypatch.setattr(writer, "RETRY_PAUSE", 0.05)
    away = {"on": True}

    def fail(items):
        if away["on"]:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    store = FakeStore(fail=fail)
    group = GroupWriter(app, store)
    assert group.submit("behind", wait=False) is None
    with pytest.raises(StoreUnavailable):
        group.submit("waited")
    away["on"] = False
    assert group.drain(5)
    assert store.batches[-1] == ["behind"]  # tried again until the database was back
    assert sum("waited" in batch for batch in store.batches) == 1  # its caller heard the failure: no retry


def test_write_behind_waits_like_the_others_when_the_writer_is_too_far_behind(app, monkeypatch):
    monkeypatch.setattr(writer, "MAX_BEHIND", 1)
    store = FakeStore(delay=0.2)
    group = GroupWriter(app, store)
    assert group.submit("first", wait=False) is None
    assert group.submit("second", wait=False) == "stored second"  # held until stored: the queue stays bounded
    assert [item for batch in store.batches for item in batch] == ["first", "second"]


def test_drain_waits_for_what_was_handed_over(app):
    store = FakeStore(delay=0.2)
    group = GroupWriter(app, store)
    for n in range(3):
        group.submit(n, wait=False)
    assert group.drain(5)
    assert sorted(item for batch in store.batches for item in batch) == [0, 1, 2]


def test_a_bug_in_the_writer_fails_its_batch_at_once_and_the_writer_goes_on(app, monkeypatch):
    group = GroupWriter(app, FakeStore())
    broken = {"once": True}
    original = group._commit

    def commit_once_broken(batch):
        if broken.pop("once", False):
            raise RuntimeError("a bug outside the store")
        return original(batch)

    monkeypatch.setattr(group, "_commit", commit_once_broken)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unexpected error"):
        group.submit("first")
    assert time.monotonic() - started < 1  # told at once, not at the end of the wait
    assert group.submit("next") == "stored next"
    assert group.drain(1)
