"""The worker's tick: its rounds each run, whatever another round does."""

from voice import after_calls
from voice.jobs import jobs_of
from voice.recordings import archive
from voice.webhooks import delivery


def test_a_failing_round_of_the_tick_leaves_the_others_to_run(app, monkeypatch, caplog):
    ran = []

    def broken():
        raise RuntimeError("a follower could not read an ended call")

    monkeypatch.setattr(after_calls, "handle", broken)
    monkeypatch.setattr(delivery, "due", lambda: ran.append("deliveries") or [])
    monkeypatch.setattr(archive, "due", lambda: ran.append("downloads") or [])
    jobs = jobs_of(app)
    jobs._tick()
    assert ran == ["deliveries", "downloads"]
    assert "handing ended calls over failed" in caplog.text


def test_a_failing_housekeeping_round_leaves_the_others_to_run(app, monkeypatch, caplog):
    ran = []

    def broken():
        raise RuntimeError("the storage is away")

    monkeypatch.setattr(delivery, "housekeeping", broken)
    monkeypatch.setattr(archive, "housekeeping", lambda: ran.append("recordings"))
    jobs_of(app)._housekeeping()
    assert ran == ["recordings"]
    assert "webhook housekeeping failed" in caplog.text
