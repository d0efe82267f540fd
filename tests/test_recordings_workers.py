"""Recordings kept, end to end with real processes: the app under gunicorn (the Procfile's web command), the
Procfile's worker, and the recordings' sources on 127.0.0.1 (the simulated AT, or a scripted host).

A call ends, the worker hands it to the archive and downloads its recording; the API shows it archived and
plays it back with a range. A kill -9 of the worker while a recording waits for its source loses nothing.
"""

import hashlib
import os
import signal
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.gunicorn_helpers import log_of, served, service_env, start_worker, stop, worker_log_of, worker_process
from tests.helpers import AT_KEY, EVENTS, KEY, WEBHOOK_TOKEN
from tests.test_recordings import AUDIO, MISSING, MP3, Source
from voice.at.simulated import SimulatedAT

RECORDED = """\
start:
  inbound: message
  outbound: message
steps:
  message:
    - record:
        prompt: {say: "Leave your message after the beep."}
        maxLength: 30
        playBeep: true
        next: thanks
  thanks:
    - say: Thank you. Goodbye.
"""


def recordings_env(workdir, simulated_at_url, **changes):
    """A served instance's environment: recordings kept in workdir/recordings, the sources on 127.0.0.1 allowed."""
    return service_env(workdir, simulated_at_url, VOICE_ALLOW_PRIVATE_TARGETS="1",
                       VOICE_RECORDINGS_DIR=Path(workdir) / "recordings", **changes)


def call_of(base, session):
    answer = requests.get(f"{base}/voice/calls/{session}", headers=KEY, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["call"]


def wait_archived(base, session, workdir, seconds, names=("worker",)):
    """Poll the call until its first recording is archived; fail with what it shows and the logs past `seconds`."""
    deadline = time.monotonic() + seconds
    call = None
    while time.monotonic() < deadline:
        call = call_of(base, session)
        if call.get("recordings") and call["recordings"][0]["status"] == "archived":
            return call
        time.sleep(0.2)
    logs = "\n".join(f"--- {name}.log\n{worker_log_of(workdir, name)[-4000:]}" for name in names)
    raise AssertionError(f"recording of {session} not archived within {seconds} s: {call}\n{logs}\n"
                         f"--- gunicorn.log\n{log_of(workdir)[-3000:]}")


def played_back(base, session, content):
    """Play recording 1 back in two ranges and whole, checking each against `content`."""
    url = f"{base}/voice/calls/{session}/recordings/1"
    part = requests.get(url, headers=dict(KEY, Range="bytes=100-1099"), timeout=10)
    assert part.status_code == 206 and part.content == content[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(content)}"
    assert part.headers["Content-Type"] == "audio/mpeg"
    tail = requests.get(url, headers=dict(KEY, Range="bytes=-417"), timeout=10)
    assert tail.status_code == 206 and tail.content == content[-417:]
    whole = requests.get(url, headers=KEY, timeout=10)
    assert whole.status_code == 200 and whole.content == content and whole.headers["Accept-Ranges"] == "bytes"


def test_a_recorded_calls_recording_is_archived_by_the_worker_and_played_back_with_a_range(tmp_path):
    flow = tmp_path / "recorded.yaml"
    flow.write_text(RECORDED)
    fake = SimulatedAT(api_key=AT_KEY, token=WEBHOOK_TOKEN, answer_delay=0.05).start()
    try:
        env = recordings_env(tmp_path, fake.url, VOICE_FLOW_FILE=flow)
        fake.service_url = f"http://127.0.0.1:{env['PORT']}"  # its callee plays the flow against the served app
        with served(env, tmp_path) as (base, _), worker_process(env, tmp_path, threads=2):
            dialled = requests.post(base + "/voice/invoke-call", data={"phone": "254712345678"}, headers=KEY,
                                    timeout=10)
            assert dialled.status_code == 200, dialled.text
            session = dialled.json()["response"]["entries"][0]["sessionId"]
            call = wait_archived(base, session, tmp_path, 60)
            [link] = call["recordingUrls"]
            assert link == f"{fake.url}/recordings/{session}-1.mp3"  # the simulated AT's own link, as AT sends one
            sent = requests.get(link, timeout=10)  # what AT serves there
            assert sent.status_code == 200 and len(sent.content) > 1100
            played_back(base, session, sent.content)
    finally:
        fake.stop()

    [kept] = call["recordings"]
    assert kept["n"] == 1 and kept["sourceUrl"] == link and kept["error"] is None
    assert kept["size"] == len(sent.content) and kept["sha256"] == hashlib.sha256(sent.content).hexdigest()
    assert kept["contentType"] == "audio/mpeg" and kept["durationSeconds"] > 1.9 and kept["archivedAt"]
    assert kept["url"] == f"/voice/calls/{session}/recordings/1"
    assert (tmp_path / "recordings" / f"{session}-1.mp3").read_bytes() == sent.content
    assert " 500 " not in log_of(tmp_path) and "Traceback" not in worker_log_of(tmp_path)


def recording_row(database_url):
    """(status, tries, claimed_until) of the only recording, straight from the served instance's database."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT status, tries, claimed_until FROM recordings")).one_or_none()
    finally:
        engine.dispose()


def final_with_recording(session, url):
    """A call's final notification carrying its recording's link, as AT posts it after a voicemail."""
    return {"sessionId": session, "isActive": "0", "direction": "Inbound", "callerNumber": "+254712345678",
            "destinationNumber": "+254711000000", "callSessionState": "Completed", "durationInSeconds": "24",
            "hangupCause": "NORMAL_CLEARING", "recordingUrl": url}


@pytest.mark.both_databases
def test_a_recording_pending_when_the_worker_is_killed_is_archived_by_the_next_one(tmp_path, simulated_at_url,
                                                                                   database_url):
    path = "/0123456789abcdef0123456789abcdef.mp3"
    source = Source()
    source.answers[path] = [MISSING]  # AT has not the file ready yet
    session = "ATVId_killed_worker"
    env = recordings_env(tmp_path, simulated_at_url, DATABASE_URL=database_url)  # the queue follows the database
    try:
        with served(env, tmp_path) as (base, _):
            assert requests.post(base + EVENTS, data=final_with_recording(session, source.url(path)),
                                 timeout=10).text == "OK"
            first = start_worker(env, tmp_path, threads=2, name="worker1")
            try:
                # Killed between two tries: the source answered 404 twice, and the row waits for its next try.
                deadline, row = time.monotonic() + 60, None
                while time.monotonic() < deadline:
                    row = recording_row(env["DATABASE_URL"])
                    if row is not None and row.tries >= 2 and row.claimed_until is None:
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError(f"no second try within 60 s: {row}\n{worker_log_of(tmp_path, 'worker1')}")
                os.kill(first.pid, signal.SIGKILL)
                first.wait()
            finally:
                stop(first)
            left = call_of(base, session)["recordings"]
            assert [(kept["status"], kept["error"].split(":")[0]) for kept in left] == [("pending", "http_404")]
            asked_before = source.asked.count(path)
            assert asked_before >= 2

            source.answers[path] = [MP3]  # the file is ready now
            with worker_process(env, tmp_path, threads=2, name="worker2"):
                call = wait_archived(base, session, tmp_path, 60, names=("worker1", "worker2"))
                played_back(base, session, AUDIO)
    finally:
        source.stop()

    [kept] = call["recordings"]
    assert kept["size"] == len(AUDIO) and kept["sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert kept["sourceUrl"] == source.url(path) and kept["error"] is None
    assert (tmp_path / "recordings" / f"{session}-1.mp3").read_bytes() == AUDIO
    assert source.asked.count(path) > asked_before  # fetched again by the second worker, which archived it
    assert f"of {session} archived" in worker_log_of(tmp_path, "worker2")
    assert f"of {session} archived" not in worker_log_of(tmp_path, "worker1")
    assert "Traceback" not in worker_log_of(tmp_path, "worker2")
