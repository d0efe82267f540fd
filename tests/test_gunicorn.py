"""End to end: the Procfile's command under real gunicorn, spoken to over HTTP."""

import os
import shlex
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import API_KEY, AT_KEY, WEBHOOK_TOKEN
from voice.fake_at import FakeAT

ROOT = Path(__file__).resolve().parent.parent


def procfile_command(process="web"):
    """The Procfile's command for `process`, run with this interpreter's gunicorn."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            args = shlex.split(command.strip())
            if args[0] in ("gunicorn", "flask"):
                args = [sys.executable, "-m", args[0], *args[1:]]
            return [str(ROOT / a) if a.endswith(".py") and (ROOT / a).exists() else a for a in args]
    raise AssertionError(f"no {process}: line in Procfile")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url, process, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("gunicorn exited early: " + process.stdout.read().decode(errors="replace"))
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not come up")


@pytest.fixture
def served(tmp_path):
    """The app under gunicorn (Procfile command), with the fake AT beside it; yields its base URL."""
    fake = FakeAT(api_key=AT_KEY, hang_seconds=10).start()
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "AT_USERNAME": "testapp",
        "AT_API_KEY": AT_KEY,
        "AT_VOICE_NUMBER": "+254711000000",
        "AT_VOICE_API_URL": fake.url,
        "AT_TIMEOUT_SECONDS": "6",
        "VOICE_API_KEY": API_KEY,
        "VOICE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'voice.sqlite3'}",
        "RATELIMIT_STORAGE_URI": f"sqlite:///{tmp_path / 'ratelimits.sqlite3'}",
        "VOICE_RATE_LIMIT_PER_KEY": "100 per minute",
        "VOICE_RATE_LIMIT_PER_DESTINATION": "100 per hour",
    }
    subprocess.run(procfile_command("release"), cwd=tmp_path, env=env, check=True, capture_output=True)
    process = subprocess.Popen(procfile_command(), cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/voice/", process)
        yield base, fake
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        fake.stop()


def test_gunicorn_serves_status_dialout_and_webhooks(served):
    base, fake = served
    assert requests.get(base + "/voice/").json() == {"service": "voice", "status": "ready"}

    answer = requests.post(base + "/voice/invoke-call", data={"phone": "254712345678"},
                           headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["response"]["entries"][0]["status"] == "Queued"
    assert fake.requests[-1]["form"]["to"] == "+254712345678"

    refused = requests.get(base + "/voice/invoke-call?phone=254712345678", timeout=10)
    assert refused.status_code == 401 and len(fake.requests) == 1

    menu = requests.post(f"{base}/voice/instruct?token={WEBHOOK_TOKEN}",
                         data={"sessionId": "ATVId_e2e", "isActive": "1", "callerNumber": "+254712345678"}, timeout=5)
    assert menu.status_code == 200
    assert ET.fromstring(menu.content).find("GetDigits") is not None

    event = requests.post(f"{base}/voice/events?token={WEBHOOK_TOKEN}", data={"sessionId": "ATVId_e2e"}, timeout=5)
    assert event.text == "OK"


def test_a_stalled_at_does_not_starve_the_webhooks(served):
    base, fake = served

    def dial():
        return requests.get(base + "/voice/invoke-call?phone=254700000504", headers={"X-API-Key": API_KEY}, timeout=20)

    with ThreadPoolExecutor(max_workers=12) as pool:
        dials = [pool.submit(dial) for _ in range(12)]
        deadline = time.monotonic() + 5
        while len(fake.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        menu = requests.post(f"{base}/voice/instruct?token={WEBHOOK_TOKEN}",
                             data={"sessionId": "ATVId_busy", "isActive": "1"}, timeout=5)
        answered_in = time.monotonic() - started
        statuses = sorted(f.result().status_code for f in dials)
    assert menu.status_code == 200 and ET.fromstring(menu.content).tag == "Response"
    assert answered_in < 3, f"instruct waited {answered_in:.2f}s behind stalled dial-outs"
    assert set(statuses) <= {500, 503}
    assert 503 in statuses, "dial-outs beyond the in-flight cap must be refused, not queued"
