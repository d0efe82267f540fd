"""Recordings kept in an S3-compatible bucket: moto's standalone server over real HTTP on 127.0.0.1 (no S3 can run
here), through boto3 as in production: stored, played back with a range, pruned, and S3's failures as our own."""

import hashlib
from datetime import timedelta

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.gunicorn_helpers import free_port
from tests.helpers import KEY
from tests.test_recordings import AUDIO, MP3, Source, assert_conditional, end_call, recordings_of, rows, run_due
from voice.store import retention
from voice.store.db import utcnow

pytestmark = pytest.mark.both_databases

BUCKET = "voice-recordings"
CREDENTIALS = {"aws_access_key_id": "test-access-key", "aws_secret_access_key": "test-secret-key"}


@pytest.fixture(scope="module")
def s3():
    """moto's S3 on 127.0.0.1, and a boto3 client of it for the test's own looks."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **CREDENTIALS)
    yield endpoint, client
    server.stop()


@pytest.fixture
def bucket(s3):
    """An empty bucket; its client."""
    endpoint, client = s3
    client.create_bucket(Bucket=BUCKET)
    yield client
    for found in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=found["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def s3_app(make_app, s3, bucket, tmp_path):
    endpoint, _ = s3
    return make_app(VOICE_RECORDINGS_S3_BUCKET=BUCKET, VOICE_RECORDINGS_S3_ENDPOINT_URL=endpoint,
                    VOICE_RECORDINGS_S3_REGION="us-east-1", VOICE_RECORDINGS_S3_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
                    VOICE_RECORDINGS_S3_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
                    VOICE_RECORDINGS_DIR=str(tmp_path / "scratch"), VOICE_ALLOW_PRIVATE_TARGETS=True)


@pytest.fixture
def source():
    """A recording host on 127.0.0.1 (tests/test_recordings.py's)."""
    served = Source()
    yield served
    served.stop()


def keys(client):
    return [found["Key"] for found in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_a_recording_is_kept_in_the_bucket_played_back_with_a_range_and_pruned(s3_app, bucket, source, tmp_path):
    source.answers["/s3.mp3"] = [MP3]
    end_call(s3_app, "ATVId_s3", source.url("/s3.mp3"))
    run_due(s3_app, utcnow())
    [kept] = recordings_of(s3_app, "ATVId_s3")
    assert kept["status"] == "archived" and kept["sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert keys(bucket) == ["ATVId_s3-1.mp3"]
    stored = bucket.get_object(Bucket=BUCKET, Key="ATVId_s3-1.mp3")
    assert stored["Body"].read() == AUDIO and stored["ContentType"] == "audio/mpeg"
    assert list((tmp_path / "scratch").rglob("*.part")) == []  # the download's scratch file is gone

    client = s3_app.test_client()
    whole = client.get("/voice/calls/ATVId_s3/recordings/1", headers=KEY)
    assert whole.status_code == 200 and whole.data == AUDIO and whole.headers["Accept-Ranges"] == "bytes"
    part = client.get("/voice/calls/ATVId_s3/recordings/1", headers=dict(KEY, Range="bytes=417-833"))
    assert part.status_code == 206 and part.data == AUDIO[417:834]
    assert part.headers["Content-Range"] == f"bytes 417-833/{len(AUDIO)}" and part.headers["Content-Length"] == "417"
    beyond = client.get("/voice/calls/ATVId_s3/recordings/1", headers=dict(KEY, Range=f"bytes={len(AUDIO)}-"))
    assert beyond.status_code == 416 and beyond.is_json

    with s3_app.app_context():
        assert retention.prune(utcnow() + timedelta(days=1)) == (1, 2, 1)  # the call, its events, its recording
    assert keys(bucket) == [] and rows(s3_app) == []



def test_playback_from_the_bucket_answers_conditional_requests(s3_app, bucket, source):
    source.answers["/etag.mp3"] = [MP3]
    end_call(s3_app, "ATVId_etag", source.url("/etag.mp3"))
    run_due(s3_app, utcnow())
    assert_conditional(s3_app.test_client(), "/voice/calls/ATVId_etag/recordings/1")


def test_an_object_gone_from_the_bucket_answers_404(s3_app, bucket, source):
    source.answers["/gone.mp3"] = [MP3]
    end_call(s3_app, "ATVId_gone", source.url("/gone.mp3"))
    run_due(s3_app, utcnow())
    bucket.delete_object(Bucket=BUCKET, Key="ATVId_gone-1.mp3")
    response = s3_app.test_client().get("/voice/calls/ATVId_gone/recordings/1", headers=KEY)
    assert response.status_code == 404 and response.json["error"] == "not_found"


def test_an_unreachable_bucket_postpones_the_recording(make_app, source, tmp_path):
    app = make_app(VOICE_RECORDINGS_S3_BUCKET=BUCKET, VOICE_RECORDINGS_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                   VOICE_RECORDINGS_S3_REGION="us-east-1", VOICE_RECORDINGS_S3_ACCESS_KEY_ID="x",
                   VOICE_RECORDINGS_S3_SECRET_ACCESS_KEY="y", VOICE_RECORDINGS_DIR=str(tmp_path / "scratch"),
                   VOICE_ALLOW_PRIVATE_TARGETS=True)
    source.answers["/down.mp3"] = [MP3]
    end_call(app, "ATVId_down", source.url("/down.mp3"))
    run_due(app, utcnow())
    [row] = rows(app)
    assert row.status == "pending" and row.error.startswith("storage") and "S3" in row.error
    assert list((tmp_path / "scratch").rglob("*.part")) == []
