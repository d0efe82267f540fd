"""Recordings kept: each link of an ended call downloaded by the worker's code from a real HTTP source on
127.0.0.1, retried, refused when it must be, stored, played back with ranges, and pruned with its call."""

import hashlib
import io
import os
import random
import re
import struct
import threading
import time
import wave
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from tests.helpers import EVENTS, KEY
from tests.test_roles import KEYS, SETTINGS, console_client
from voice import after_calls
from voice.at.simulated import SimulatedAT
from voice.at.simulated_http import silent_mp3
from voice.recordings import archive, download as downloads, sources
from voice.recordings.models import Recording, RecordingRemoval
from voice.store import retention
from voice.store.db import db, utcnow
from voice.store.records import CallEnding
from voice.webhooks.models import Endpoint, Event

pytestmark = pytest.mark.both_databases

AUDIO = silent_mp3(2.0)


class Source:
    """A recording host on 127.0.0.1: each path answers its scripted answers in turn (the last one again and again).

    An answer is (status, headers, body); a body given as an int is that many bytes streamed with no Content-Length.
    """

    def __init__(self):
        self.answers, self.asked = {}, []
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                source.asked.append(self.path)
                script = source.answers.get(self.path) or [(404, {}, b"no such file")]
                status, headers, body = script.pop(0) if len(script) > 1 else script[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value.replace("{port}", str(source.port)))
                if isinstance(body, int):
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for _ in range(body // 65536):
                        self.wfile.write(b"\0" * 65536)
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path, host="127.0.0.1"):
        return f"http://{host}:{self.port}{path}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


MP3 = (200, {"Content-Type": "audio/mpeg"}, AUDIO)
MISSING = (404, {"Content-Type": "text/plain"}, b"not ready")


@pytest.fixture
def source():
    served = Source()
    yield served
    served.stop()


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "recordings"


@pytest.fixture
def make(make_app, folder):
    """An app keeping recordings in a temporary folder, private addresses allowed (the source is on 127.0.0.1)."""
    def build(**changes):
        return make_app(**dict({"VOICE_RECORDINGS_DIR": str(folder), "VOICE_ALLOW_PRIVATE_TARGETS": True,
                                "SECRET_KEY": "test-secret"}, **changes))
    return build


def end_call(app, session, *urls, requested_by=None):
    """A call that recorded `urls` and ended (its final notification in), handed to what follows a call."""
    client = app.test_client()
    form = {"sessionId": session, "isActive": "1", "direction": "Inbound", "callerNumber": "+254712345678",
            "destinationNumber": "+254711000000"}
    for url in urls:
        assert client.post(EVENTS, data=dict(form, recordingUrl=url)).data == b"OK"
    assert client.post(EVENTS, data=dict(form, isActive="0", callSessionState="Completed", durationInSeconds="30",
                                         hangupCause="NORMAL_CLEARING")).data == b"OK"
    with app.app_context():
        after_calls.handle(now=utcnow() + timedelta(seconds=10))


def run_due(app, now):
    """Ticks at `now` claiming due recordings, each fetched as the worker's task would, until none is due (a tick
    claims only as many as may be in flight); the ids fetched."""
    fetched = []
    with app.app_context():
        for _ in range(50):
            ids = archive.due(now=now)
            if not ids:
                break
            for recording_id in ids:
                archive.fetch(recording_id, now=now)
            fetched += ids
    return fetched


def rows(app):
    with app.app_context():
        found = db.session.execute(sa.select(Recording).order_by(Recording.call_id, Recording.n)).scalars().all()
        db.session.expunge_all()
        return found


def recordings_of(app, session):
    response = app.test_client().get(f"/voice/calls/{session}", headers=KEY)
    assert response.status_code == 200
    return response.json["call"]["recordings"]


def test_a_recording_is_downloaded_after_two_404s(make, source, folder):
    app = make()
    source.answers["/a1b2.mp3"] = [MISSING, MISSING, MP3]
    url = source.url("/a1b2.mp3")
    end_call(app, "ATVId_rec1", url)
    [pending] = recordings_of(app, "ATVId_rec1")
    assert pending["status"] == "pending" and pending["sourceUrl"] == url and pending["url"] is None

    start = utcnow()
    assert len(run_due(app, start)) == 1
    [row] = rows(app)
    assert row.status == "pending" and row.error.startswith("http_404") and row.next_try_at > start
    assert run_due(app, start + timedelta(milliseconds=500)) == []  # its second try waits for the backoff
    assert len(run_due(app, start + timedelta(seconds=1.5))) == 1
    [row] = rows(app)
    assert row.status == "pending" and row.tries == 2
    assert len(run_due(app, start + timedelta(seconds=5))) == 1
    assert source.asked == ["/a1b2.mp3"] * 3

    [kept] = recordings_of(app, "ATVId_rec1")
    assert kept["status"] == "archived" and kept["n"] == 1 and kept["sourceUrl"] == url
    assert kept["size"] == len(AUDIO) and kept["sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert kept["contentType"] == "audio/mpeg" and abs(kept["durationSeconds"] - 2.0) < 0.05
    assert kept["url"] == "/voice/calls/ATVId_rec1/recordings/1"
    assert (folder / "ATVId_rec1-1.mp3").read_bytes() == AUDIO
    call = app.test_client().get("/voice/calls/ATVId_rec1", headers=KEY).json["call"]
    assert call["recordingUrls"] == [url]  # AT's link stays as the source
    assert run_due(app, start + timedelta(hours=1)) == []  # archived: never fetched again


def test_a_source_answering_404_for_the_whole_retry_window_fails_the_recording(make, source):
    app = make(VOICE_RECORDING_RETRY_MINUTES=30)
    source.answers["/late.mp3"] = [MISSING]
    end_call(app, "ATVId_late", source.url("/late.mp3"))
    start = utcnow()
    run_due(app, start)
    for minutes in (5, 10, 20, 29):
        assert len(run_due(app, start + timedelta(minutes=minutes))) == 1
        assert rows(app)[0].status == "pending"
    run_due(app, start + timedelta(minutes=31))
    [row] = rows(app)
    assert row.status == "failed" and row.error.startswith("http_404")
    assert run_due(app, start + timedelta(hours=2)) == []
    refused = app.test_client().get("/voice/calls/ATVId_late/recordings/1", headers=KEY)
    assert refused.status_code == 409 and refused.json["error"] == "not_archived" and refused.json["recordingStatus"] == "failed"


def test_backoff_doubles_up_to_minutes(make, source):
    app = make()
    source.answers["/slow.mp3"] = [(503, {}, b"busy")]
    end_call(app, "ATVId_slow", source.url("/slow.mp3"))
    now, waits = utcnow(), []
    for _ in range(12):
        run_due(app, now)
        row = rows(app)[0]
        waits.append((row.next_try_at - now).total_seconds())
        now = row.next_try_at
    assert waits[:4] == [1, 2, 4, 8] and max(waits) == 240 and row.error.startswith("http_503")


@pytest.mark.parametrize("hosts, archived", [
    ("rec.example.com, *.africastalking.com", False),
    ("127.0.0.1:1", False),
    ("127.0.0.1", True),
    ("127.0.0.1:{port}", True),
])
def test_only_hosts_of_the_list_are_fetched_from(make, source, hosts, archived):
    app = make(VOICE_RECORDING_HOSTS=hosts.replace("{port}", str(source.port)))
    source.answers["/x.mp3"] = [MP3]
    end_call(app, "ATVId_hosts", source.url("/x.mp3"))
    run_due(app, utcnow())
    [row] = rows(app)
    if archived:
        assert row.status == "archived"
    else:
        assert row.status == "failed" and row.error.startswith("host_not_allowed") and source.asked == []


def test_a_redirect_to_another_host_is_refused_and_one_on_the_same_host_followed(make, source):
    other = Source()
    try:
        other.answers["/elsewhere.mp3"] = [MP3]
        source.answers["/away.mp3"] = [(302, {"Location": other.url("/elsewhere.mp3")}, b"")]
        source.answers["/named.mp3"] = [(302, {"Location": "http://localhost:{port}/here.mp3"}, b"")]
        source.answers["/moved.mp3"] = [(301, {"Location": "/here.mp3"}, b"")]
        source.answers["/here.mp3"] = [MP3]
        app = make()
        end_call(app, "ATVId_redirect", source.url("/away.mp3"), source.url("/named.mp3"), source.url("/moved.mp3"))
        run_due(app, utcnow())
        away, named, moved = rows(app)
        assert away.status == "failed" and away.error.startswith("redirect") and other.asked == []
        assert named.status == "failed" and named.error.startswith("redirect")  # another name is another host
        assert moved.status == "archived" and moved.size == len(AUDIO)
        assert source.asked.count("/here.mp3") == 1
    finally:
        other.stop()


@pytest.mark.parametrize("answer", [
    (200, {"Content-Type": "audio/mpeg"}, b"\0" * (1024 * 1024 + 1)),   # says its length
    (200, {"Content-Type": "audio/mpeg"}, 2 * 1024 * 1024),              # streamed without one
])
def test_a_recording_over_the_size_cap_is_refused(make, source, folder, answer):
    app = make(VOICE_RECORDING_MAX_MB=1)
    source.answers["/big.mp3"] = [answer]
    end_call(app, "ATVId_big", source.url("/big.mp3"))
    run_due(app, utcnow())
    [row] = rows(app)
    assert row.status == "failed" and row.error.startswith("too_large")
    assert [name for _, _, names in os.walk(folder) for name in names] == []  # nothing of it kept


def wav(seconds):
    """A real WAV file of `seconds` of silence (8 kHz, 16-bit mono)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as written:
        written.setnchannels(1)
        written.setsampwidth(2)
        written.setframerate(8000)
        written.writeframes(bytes(int(2 * 8000 * seconds)))
    return buffer.getvalue()


PAGE = b"<html><body>Sign in to listen</body></html>"
# A WavPack header whose sample rate index (15) is past mutagen's table: mutagen raises IndexError, not its own error.
BROKEN_WAVPACK = b"wvpk" + struct.pack("<IHBBIIIII", 24, 0x410, 0, 0, 8000, 0, 8000, 0xF << 23, 0) + bytes(64)
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000000000400011e0d4e8a0000000049454e44ae426082")
NOISE = random.Random(22).randbytes(64 * 1024)
ID3_ONLY = b"ID3\x04\x00\x00\x00\x00\x00\x00" + NOISE  # a tag's header, and no audio behind it


def files_in(folder):
    return [name for _, _, names in os.walk(folder) for name in names]


@pytest.mark.parametrize("content_type, body", [
    ("text/html", PAGE),
    ("text/html; charset=utf-8", AUDIO),            # audio bytes under a type that says they are something else
    ("image/png", PNG),
    ("application/octet-stream", PNG),
    ("application/octet-stream", PAGE),
    ("binary/octet-stream", NOISE),
    ("application/octet-stream", ID3_ONLY),
    ("application/octet-stream", BROKEN_WAVPACK),   # bytes that break mutagen's reading
    (None, PAGE),
    (None, NOISE),
])
def test_an_answer_that_is_not_audio_is_refused_and_nothing_is_kept(make, source, folder, content_type, body):
    app = make()
    source.answers["/page.mp3"] = [(200, {"Content-Type": content_type} if content_type else {}, body)]
    end_call(app, "ATVId_html", source.url("/page.mp3"))
    start = utcnow()
    run_due(app, start)
    [row] = rows(app)
    assert row.status == "failed" and row.error.startswith("not_audio")
    assert (content_type or "untyped").split(";")[0] in row.error  # the reason names what was answered
    assert files_in(folder) == []
    assert run_due(app, start + timedelta(hours=1)) == [] and source.asked == ["/page.mp3"]  # refused for good
    refused = app.test_client().get("/voice/calls/ATVId_html/recordings/1", headers=KEY)
    assert refused.status_code == 409 and "not_audio" in refused.json["message"]


@pytest.mark.parametrize("content_type, body, kept_type, extension", [
    ("application/octet-stream", AUDIO, "audio/mpeg", ".mp3"),
    ("binary/octet-stream", AUDIO, "audio/mpeg", ".mp3"),
    ("Application/Octet-Stream; charset=binary", AUDIO, "audio/mpeg", ".mp3"),
    (None, AUDIO, "audio/mpeg", ".mp3"),
    ("application/octet-stream", wav(1.5), "audio/wav", ".wav"),   # the bytes' format, whatever the link's name
])
def test_an_untyped_answer_whose_bytes_are_audio_is_kept_with_their_type(make, source, folder, content_type, body,
                                                                         kept_type, extension):
    app = make()
    source.answers["/0123456789abcdef0123456789abcdef.mp3"] = [
        (200, {"Content-Type": content_type} if content_type else {}, body)]
    end_call(app, "ATVId_untyped", source.url("/0123456789abcdef0123456789abcdef.mp3"))
    run_due(app, utcnow())
    [kept] = recordings_of(app, "ATVId_untyped")
    assert kept["status"] == "archived" and kept["contentType"] == kept_type, kept
    assert kept["size"] == len(body) and kept["durationSeconds"] > 1.4
    assert files_in(folder) == [f"ATVId_untyped-1{extension}"]
    assert (folder / f"ATVId_untyped-1{extension}").read_bytes() == body
    played = app.test_client().get(kept["url"], headers=KEY)
    assert played.status_code == 200 and played.mimetype == kept_type and played.data == body


def test_no_private_address_is_fetched_without_the_setting(make, source):
    app = make(VOICE_ALLOW_PRIVATE_TARGETS=False)
    source.answers["/local.mp3"] = [MP3]
    end_call(app, "ATVId_private", source.url("/local.mp3"), source.url("/local.mp3", host="localhost"))
    run_due(app, utcnow())
    assert [(row.status, row.error.split(":")[0]) for row in rows(app)] == [("failed", "refused_address")] * 2
    assert source.asked == []


def test_the_simulated_ats_own_recordings_are_kept_without_the_setting(make, source):
    simulated = SimulatedAT(port=0).start()
    try:
        port = int(simulated.url.rsplit(":", 1)[1])
        app = make(VOICE_ALLOW_PRIVATE_TARGETS=False, VOICE_SIMULATE="1", VOICE_SIMULATED_AT_PORT=port)
        source.answers["/other.mp3"] = [MP3]
        end_call(app, "ATVId_sim", f"{simulated.url}/recordings/ATVId_sim-1.mp3", source.url("/other.mp3"))
        run_due(app, utcnow())
        own, other = rows(app)
        assert own.status == "archived" and own.size == len(silent_mp3(2.0)) and own.duration_seconds > 1.9
        assert other.status == "failed" and other.error.startswith("refused_address") and source.asked == []
    finally:
        simulated.stop()


def test_each_link_is_noted_once_in_order(make, source):
    app = make()
    first, second = source.url("/1.mp3"), source.url("/2.mp3")
    end_call(app, "ATVId_two", first, second)
    with app.app_context():  # a second final notification hands the call again
        db.session.add(CallEnding(session_id="ATVId_two", ended_at=utcnow()))
        db.session.commit()
        after_calls.handle(now=utcnow() + timedelta(seconds=10))
    assert [(row.n, row.source_url) for row in rows(app)] == [(1, first), (2, second)]
    assert [(kept["n"], kept["status"]) for kept in recordings_of(app, "ATVId_two")] == [(1, "pending"), (2, "pending")]


def test_a_killed_workers_claim_runs_out(make, source):
    app = make()
    source.answers["/x.mp3"] = [MP3]
    end_call(app, "ATVId_claim", source.url("/x.mp3"))
    now = utcnow()
    with app.app_context():
        claimed = archive.due(now=now)
        assert len(claimed) == 1 and archive.due(now=now + timedelta(seconds=1)) == []  # held by its claim
        assert archive.due(now=now + archive.LEASE + timedelta(seconds=1)) == claimed  # its worker died


@pytest.fixture
def archived(make, source):
    """An app holding call ATVId_kept (placed by the dialer acme) with one archived recording."""
    app = make(**SETTINGS)
    source.answers["/kept.mp3"] = [MP3]
    end_call(app, "ATVId_kept", source.url("/kept.mp3"))
    with app.app_context():
        db.session.execute(sa.text("UPDATE calls SET requested_by = 'acme' WHERE session_id = 'ATVId_kept'"))
        db.session.commit()
    run_due(app, utcnow())
    return app


def test_a_recording_plays_back_with_range_requests(archived):
    client = archived.test_client()
    whole = client.get("/voice/calls/ATVId_kept/recordings/1", headers=KEY)
    assert whole.status_code == 200 and whole.data == AUDIO and whole.mimetype == "audio/mpeg"
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = client.get("/voice/calls/ATVId_kept/recordings/1", headers=dict(KEY, Range="bytes=100-1099"))
    assert part.status_code == 206 and part.data == AUDIO[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(AUDIO)}"
    tail = client.get("/voice/calls/ATVId_kept/recordings/1", headers=dict(KEY, Range="bytes=-10"))
    assert tail.status_code == 206 and tail.data == AUDIO[-10:]
    beyond = client.get("/voice/calls/ATVId_kept/recordings/1", headers=dict(KEY, Range=f"bytes={len(AUDIO) + 5}-"))
    assert beyond.status_code == 416 and beyond.json["error"] == "requested_range_not_satisfiable"


@pytest.mark.parametrize("path, headers, status", [
    ("/voice/calls/ATVId_kept/recordings/2", KEY, 404),
    ("/voice/calls/ATVId_kept/recordings/0", KEY, 404),
    ("/voice/calls/ATVId_none/recordings/1", KEY, 404),
    ("/voice/calls/ATVId_kept/recordings/one", KEY, 404),
    ("/voice/calls/ATVId_kept/recordings/1", {}, 401),
    ("/voice/calls/ATVId_kept/recordings/1", {"X-API-Key": KEYS["viewer"]}, 200),
    ("/voice/calls/ATVId_kept/recordings/1", {"X-API-Key": KEYS["dialer"]}, 200),
])
def test_playback_follows_the_calls_visibility(archived, path, headers, status):
    response = archived.test_client().get(path, headers=headers)
    assert response.status_code == status
    if status != 200:
        assert response.is_json and response.json["error"]


def test_a_dialer_cannot_play_another_keys_recording(archived):
    with archived.app_context():
        db.session.execute(sa.text("UPDATE calls SET requested_by = 'someone' WHERE session_id = 'ATVId_kept'"))
        db.session.commit()
    refused = archived.test_client().get("/voice/calls/ATVId_kept/recordings/1", headers={"X-API-Key": KEYS["dialer"]})
    assert refused.status_code == 404 and refused.json["error"] == "not_found"


def test_a_pending_recording_answers_409_with_its_status(make, source):
    app = make()
    end_call(app, "ATVId_wait", source.url("/wait.mp3"))
    response = app.test_client().get("/voice/calls/ATVId_wait/recordings/1", headers=KEY)
    assert response.status_code == 409 and response.json["recordingStatus"] == "pending"


def test_a_missing_copy_answers_404(archived, folder):
    (folder / "ATVId_kept-1.mp3").unlink()
    response = archived.test_client().get("/voice/calls/ATVId_kept/recordings/1", headers=KEY)
    assert response.status_code == 404 and "missing" in response.json["message"]


def test_the_console_plays_a_recording_through_the_service(archived):
    client, _ = console_client(archived, "viewer")
    page = client.get("/voice/console/calls/ATVId_kept").get_data(as_text=True)
    assert re.search(r'<audio class="recording" controls preload="none" '
                     r'src="/voice/console/calls/ATVId_kept/recordings/1">', page)
    assert "Recording 1: <strong class=\"recording-status\">archived</strong>" in page
    part = client.get("/voice/console/calls/ATVId_kept/recordings/1", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.data == AUDIO[:10]


def test_prune_deletes_a_calls_recordings_and_their_files(archived, folder):
    stored = folder / "ATVId_kept-1.mp3"
    assert stored.exists()
    with archived.app_context():
        assert retention.prune(utcnow() + timedelta(days=1)) == (1, 2, 1)  # the call, its events, its recording
    assert not stored.exists() and rows(archived) == []
    with archived.app_context():
        assert db.session.execute(sa.select(sa.func.count()).select_from(RecordingRemoval)).scalar() == 0
    response = archived.test_client().get("/voice/calls/ATVId_kept/recordings/1", headers=KEY)
    assert response.status_code == 404


def test_prune_through_the_cli(archived, folder):
    result = archived.test_cli_runner().invoke(args=["voice", "prune", "--older-than", "1"])
    assert result.exit_code == 0 and "removed 0 calls" in result.output and "and 0 recordings" in result.output
    assert (folder / "ATVId_kept-1.mp3").exists()  # the call ended today: kept
    with archived.app_context():
        db.session.execute(sa.text("UPDATE calls SET started_at = :old, ended_at = :old"),
                           {"old": (utcnow() - timedelta(days=3)).replace(tzinfo=None)})
        db.session.commit()
    dry = archived.test_cli_runner().invoke(args=["voice", "prune", "--older-than", "1", "--dry-run"])
    assert dry.exit_code == 0 and re.search(r"would remove 1 calls and 2 events .* UTC, and 1 recordings", dry.output)
    assert (folder / "ATVId_kept-1.mp3").exists() and len(rows(archived)) == 1  # a dry run removes nothing
    result = archived.test_cli_runner().invoke(args=["voice", "prune", "--older-than", "1"])
    assert result.exit_code == 0 and re.search(r"removed 1 calls and 2 events .* UTC, and 1 recordings", result.output)
    assert not (folder / "ATVId_kept-1.mp3").exists() and rows(archived) == []


def test_housekeeping_removes_files_a_stopped_prune_left(archived, folder):
    stored = folder / "ATVId_kept-1.mp3"
    with archived.app_context():  # a prune that committed, then died before removing the file
        db.session.add(RecordingRemoval(stored_as="ATVId_kept-1.mp3", noted_at=utcnow()))
        db.session.execute(sa.delete(Recording))
        db.session.commit()
        assert stored.exists()
        archive.housekeeping()
        assert db.session.execute(sa.select(sa.func.count()).select_from(RecordingRemoval)).scalar() == 0
    assert not stored.exists()


def test_a_recording_fetched_while_its_call_is_pruned_is_not_left_behind(make, source, folder):
    app = make()
    source.answers["/race.mp3"] = [MP3]
    end_call(app, "ATVId_race", source.url("/race.mp3"))
    with app.app_context():
        [recording_id] = archive.due()
        real = archive.store().put

        def prune_then_put(key, path, content_type):  # the prune commits between the download and the store
            retention.prune(utcnow() + timedelta(days=1))
            real(key, path, content_type)

        archive.store().put = prune_then_put
        archive.fetch(recording_id)
    assert [name for _, _, names in os.walk(folder) for name in names] == [] and rows(app) == []


@pytest.mark.parametrize("url, hosts, allowed", [
    ("http://41.210.130.212:8080/0123456789abcdef0123456789abcdef.mp3", "", True),
    ("http://41.210.130.212:8080/a.mp3", "41.210.130.212:8080", True),
    ("http://41.210.130.212:8081/a.mp3", "41.210.130.212:8080", False),
    ("http://41.210.130.212:8081/a.mp3", "41.210.130.212", True),
    ("https://media.africastalking.com/a.mp3", "*.africastalking.com", True),
    ("https://deep.media.africastalking.com/a.mp3", "*.africastalking.com", True),
    ("https://africastalking.com/a.mp3", "*.africastalking.com", False),
    ("https://evilafricastalking.com/a.mp3", "*.africastalking.com", False),
    ("https://MEDIA.example.com:443/a.mp3", "media.example.com:443", True),
    ("http://[::1]:8080/a.mp3", "[::1]:8080", True),
    ("ftp://media.example.com/a.mp3", "", False),
])
def test_recording_hosts(url, hosts, allowed):
    assert sources.allowed(url, sources.parse_hosts(hosts)) is allowed


@pytest.mark.parametrize("hosts", ["*", "media.example.com:port", "a.example/x", "*.*.example.com", "h:70000"])
def test_a_bad_host_list_stops_the_app(make, hosts):
    with pytest.raises(ValueError, match="VOICE_RECORDING_HOSTS"):
        make(VOICE_RECORDING_HOSTS=hosts)


@pytest.mark.parametrize("content_type", [
    "audio/" + "x" * 120,                   # longer than the 100 characters the row keeps
    "audio/mpeg, audio/ogg",                # not one type/subtype
    "audio/mpeg audio",
])
def test_a_content_type_that_is_not_one_short_media_type_is_refused_at_once(make, source, folder, content_type):
    app = make()
    source.answers["/odd.mp3"] = [(200, {"Content-Type": content_type}, AUDIO)]
    end_call(app, "ATVId_oddtype", source.url("/odd.mp3"))
    start = utcnow()
    run_due(app, start)
    [row] = rows(app)
    assert row.status == "failed" and row.error.startswith("bad_content_type") and row.tries == 1
    assert files_in(folder) == []
    assert run_due(app, start + timedelta(hours=1)) == [] and source.asked == ["/odd.mp3"]  # refused for good


def test_an_unexpected_failure_is_a_failed_try_that_the_retry_window_ends(make, source, folder):
    app = make(VOICE_RECORDING_RETRY_MINUTES=30)
    source.answers["/bug.mp3"] = [MP3]
    end_call(app, "ATVId_bug", source.url("/bug.mp3"))
    with app.app_context():
        def broken(key, path, content_type):  # a bug, not one of the store's own failures
            raise RuntimeError("not a StorageError")

        archive.store().put = broken
    start = utcnow()
    assert len(run_due(app, start)) == 1
    [row] = rows(app)
    assert row.status == "pending" and row.tries == 1 and row.claimed_until is None and row.next_try_at > start
    assert row.error.startswith("unexpected: RuntimeError")
    assert len(run_due(app, start + timedelta(minutes=10))) == 1
    assert rows(app)[0].status == "pending"
    run_due(app, start + timedelta(minutes=31))
    [row] = rows(app)
    assert row.status == "failed" and row.tries == 3 and row.error.startswith("unexpected")
    assert files_in(folder) == []  # the downloaded file is not left in the scratch folder
    assert run_due(app, start + timedelta(hours=2)) == []


@pytest.mark.parametrize("threads, room", [(1, 1), (4, 1), (8, 2)])
def test_a_tick_claims_only_the_room_left_for_downloads(make, source, threads, room):
    app = make(VOICE_WORKER_THREADS=threads)
    end_call(app, "ATVId_many", *[source.url(f"/{n}.mp3") for n in range(1, 6)])  # 404: tried again later
    now = utcnow()
    with app.app_context():
        claimed = archive.due(now=now)
        assert len(claimed) == room
        assert archive.due(now=now + timedelta(seconds=1)) == []  # still in flight: no room left
        archive.fetch(claimed[0], now=now)  # one ends
        assert len(archive.due(now=now + timedelta(seconds=1))) == 1


@pytest.mark.parametrize("answers", [
    [MP3, MP3],                                                              # both fetches keep the same name
    [(200, {"Content-Type": "application/octet-stream"}, wav(1.0)), MP3],    # the late one's copy has another name
])
def test_a_second_fetch_of_one_recording_archives_it_once(make, source, folder, answers):
    app = make()
    source.answers["/twice.mp3"] = list(answers)
    end_call(app, "ATVId_twice", source.url("/twice.mp3"))
    start = utcnow()
    with app.app_context():
        db.session.add(Endpoint(url="http://127.0.0.1:9/hook", events=["recording.archived"],
                                secret="whsec_" + "A" * 32))
        db.session.commit()
        [recording_id] = archive.due(now=start)
        keeper = archive.store()
        real = keeper.put

        def put_then_fetched_again(key, path, content_type):  # its claim ran out: another task fetched it meanwhile
            keeper.put = real
            archive.fetch(recording_id, now=start + timedelta(seconds=2))
            real(key, path, content_type)

        keeper.put = put_then_fetched_again
        archive.fetch(recording_id, now=start + timedelta(seconds=1))
        events = db.session.execute(sa.select(Event).where(Event.type == "recording.archived")).scalars().all()
        assert len(events) == 1, [event.payload for event in events]
    [kept] = recordings_of(app, "ATVId_twice")
    assert kept["status"] == "archived" and kept["contentType"] == "audio/mpeg" and kept["size"] == len(AUDIO)
    assert events[0].payload["recording"] == kept
    assert [row.tries for row in rows(app)] == [1] and source.asked == ["/twice.mp3"] * 2
    assert files_in(folder) == ["ATVId_twice-1.mp3"] and (folder / "ATVId_twice-1.mp3").read_bytes() == AUDIO
    assert app.test_client().get(kept["url"], headers=KEY).data == AUDIO


def test_a_source_that_drips_is_cut_off_at_the_deadline(make, folder):
    cut, finished = threading.Event(), threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self):  # an answer that never stops, a byte every 0.2 s
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", "50")
            self.end_headers()
            try:
                for _ in range(50):
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(0.2)
                finished.set()
            except OSError:
                cut.set()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        app = make()
        with app.app_context():
            with pytest.raises(downloads.NotYet, match="took over 1 s") as failed:
                downloads.download(f"http://127.0.0.1:{server.server_address[1]}/drip.mp3", archive.store().scratch(),
                                   deadline=1.0)
        assert failed.value.reason == "timeout"
        assert cut.wait(10) and not finished.is_set()  # the service hung up while the source was still sending
        assert files_in(folder) == []
    finally:
        server.shutdown()
        server.server_close()


def assert_conditional(client, url):
    """Playback honours If-None-Match (304 without a body) and If-Range (a stale validator gets the whole copy)."""
    whole = client.get(url, headers=KEY)
    etag = whole.headers["ETag"]
    assert whole.status_code == 200 and etag == f'"{hashlib.sha256(AUDIO).hexdigest()}"'
    same = client.get(url, headers=dict(KEY, **{"If-None-Match": etag}))
    assert same.status_code == 304 and same.data == b"" and same.headers["ETag"] == etag
    other = client.get(url, headers=dict(KEY, **{"If-None-Match": '"another"'}))
    assert other.status_code == 200 and other.data == AUDIO
    stale = client.get(url, headers=dict(KEY, Range="bytes=0-9", **{"If-Range": '"another"'}))
    assert stale.status_code == 200 and stale.data == AUDIO
    fresh = client.get(url, headers=dict(KEY, Range="bytes=0-9", **{"If-Range": etag}))
    assert fresh.status_code == 206 and fresh.data == AUDIO[:10]
    several = client.get(url, headers=dict(KEY, Range="bytes=0-9,20-29"))
    assert several.status_code == 416 and several.json["error"] == "requested_range_not_satisfiable"


def test_playback_answers_conditional_requests(archived):
    assert_conditional(archived.test_client(), "/voice/calls/ATVId_kept/recordings/1")
