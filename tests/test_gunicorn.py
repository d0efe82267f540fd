"""End to end: the Procfile's command under real gunicorn, spoken to over HTTP."""

import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.gunicorn_helpers import served, service_env
from tests.helpers import AT_KEY, BEARER, EVENTS, INSTRUCT, KEY
from voice.at.simulated import SimulatedAT


@pytest.fixture
def service(tmp_path):
    """The app under gunicorn with the simulated AT beside it; yields its base URL and the fake."""
    fake = SimulatedAT(api_key=AT_KEY, hang_seconds=10).start()
    try:
        with served(service_env(tmp_path, fake.url), tmp_path) as (base, _):
            yield base, fake
    finally:
        fake.stop()


def test_gunicorn_serves_status_dialout_and_webhooks(service):
    base, fake = service
    assert requests.get(base + "/voice/").json() == {"service": "voice", "status": "ready"}

    answer = requests.post(base + "/voice/invoke-call", data={"phone": "254712345678"},
                           headers=BEARER, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["response"]["entries"][0]["status"] == "Queued"
    assert fake.requests[-1]["form"]["to"] == "+254712345678"

    refused = requests.get(base + "/voice/invoke-call?phone=254712345678", timeout=10)
    assert refused.status_code == 401 and len(fake.requests) == 1

    menu = requests.post(base + INSTRUCT,
                         data={"sessionId": "ATVId_e2e", "isActive": "1", "callerNumber": "+254712345678"}, timeout=5)
    assert menu.status_code == 200
    assert ET.fromstring(menu.content).find("GetDigits") is not None

    event = requests.post(base + EVENTS, data={"sessionId": "ATVId_e2e"}, timeout=5)
    assert event.text == "OK"


def test_a_stalled_at_does_not_starve_the_webhooks(service):
    base, fake = service

    def dial():
        return requests.get(base + "/voice/invoke-call?phone=254700000504", headers=KEY, timeout=20)

    with ThreadPoolExecutor(max_workers=12) as pool:
        dials = [pool.submit(dial) for _ in range(12)]
        deadline = time.monotonic() + 5
        while len(fake.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        menu = requests.post(base + INSTRUCT, data={"sessionId": "ATVId_busy", "isActive": "1"}, timeout=5)
        answered_in = time.monotonic() - started
        statuses = sorted(f.result().status_code for f in dials)
    assert menu.status_code == 200 and ET.fromstring(menu.content).tag == "Response"
    assert answered_in < 3, f"instruct waited {answered_in:.2f}s behind stalled dial-outs"
    assert set(statuses) <= {500, 503}
    assert 503 in statuses, "dial-outs beyond the in-flight cap must be refused, not queued"


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-Proto": "https"}, {"X-Forwarded-Ssl": "on"}, {"X-Forwarded-Protocol": "ssl"},
    {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
])
def test_gunicorn_believes_no_forwarded_header_without_trusted_proxies(service, headers):
    """VOICE_TRUSTED_PROXIES=0 (the default) means no hop is believed, by gunicorn from loopback either."""
    base, _ = service
    menu = requests.post(base + INSTRUCT, headers=headers, timeout=5,
                         data={"sessionId": "ATVId_fwd", "isActive": "1", "callerNumber": "+254712345678"})
    callback = ET.fromstring(menu.content).find("GetDigits").get("callbackUrl")
    assert callback.startswith(base + "/voice/instruct?")
    assert menu.headers["Cache-Control"] == "no-store"  # the XML carries the webhook token


@pytest.mark.parametrize("host", ["", "evil example", "a/b", "x" * 300, "host:99999999", "[::1"])
def test_a_host_header_that_is_no_host_name_is_refused(service, host):
    base, _ = service
    for path in ("/voice/", INSTRUCT):
        answer = requests.post(base + path, headers={"Host": host}, data={"sessionId": "ATVId_host", "isActive": "1"},
                               timeout=5)
        assert answer.status_code == 400 and answer.json()["error"] == "bad_host"
