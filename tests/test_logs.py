"""What the service writes to its log under gunicorn, read as an attacker who gets the log would read it.

Each request below once put a secret in a line: a key typed into the console's label field, a
malformed request line or header that gunicorn quoted whole, a URL with its password, a whole
phone number. One redaction in the logging set-up covers the service's loggers and gunicorn's.
"""

import re
import socket
import xml.etree.ElementTree as ET

import pytest
import requests

from tests.gunicorn_helpers import log_of, served, service_env
from tests.helpers import API_KEY, AT_KEY, INSTRUCT, WEBHOOK_TOKEN
from voice import logs
from voice.at.simulated import SimulatedAT

NUMBER = "254712345678"
URL_PASSWORD = "hunter2-url-password"
BASIC = "dXNlcjpodW50ZXIyLWJhc2lj"


def _raw(base, data):
    """Send raw bytes to the server (what no HTTP client would send) and read its answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        return sock.recv(4096)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_or_whole_number_reaches_the_log(tmp_path, log_format):
    fake = SimulatedAT(api_key=AT_KEY).start()
    env = service_env(tmp_path, fake.url, LOG_FORMAT=log_format, SECRET_KEY="console-secret-0123456789")
    try:
        with served(env, tmp_path) as (base, _):
            # gunicorn's own error lines quote a malformed request line and a malformed header.
            assert b"400" in _raw(base, f"GET /voice/events?token={WEBHOOK_TOKEN}&x=\x01 HTTP/1.1\r\n"
                                        "Host: localhost\r\n\r\n".encode())
            assert b"400" in _raw(base, f"GET /voice/ HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {API_KEY}\x01\r\n"
                                        "\r\n".encode())
            # A key pasted into the console's label field.
            browser = requests.Session()
            page = browser.get(base + "/voice/console/sign-in", timeout=5).text
            csrf = re.search(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"', page).group(1)
            refused = browser.post(base + "/voice/console/sign-in", timeout=5,
                                   data={"label": API_KEY, "key": "not-the-key", "csrf_token": csrf})
            assert refused.status_code == 401
            # A media URL with credentials in it, and a dial-out to a whole number.
            key = {"X-API-Key": API_KEY}
            media = requests.post(base + "/voice/media", headers=key, timeout=5,
                                  data={"url": f"https://user:{URL_PASSWORD}@media.example.com/hold.mp3"})
            assert media.status_code == 200
            assert requests.post(base + "/voice/invoke-call", data={"phone": NUMBER}, headers=key,
                                 timeout=10).status_code == 200
            menu = requests.post(base + INSTRUCT, timeout=5,
                                 data={"sessionId": "ATVId_logs", "isActive": "1", "callerNumber": "+" + NUMBER})
            assert ET.fromstring(menu.content).tag == "Response"
            # Secrets and numbers where a client puts them: in the path, as a session id, in a Basic header.
            for path in (f"/voice/calls/{API_KEY}", f"/voice/calls/{NUMBER}", f"/voice/{WEBHOOK_TOKEN}"):
                requests.get(base + path, headers=key, timeout=5)
            requests.post(f"{base}/voice/events?token={WEBHOOK_TOKEN}", data={"sessionId": NUMBER}, timeout=5)
            requests.get(base + "/voice/calls", headers={"Authorization": "Basic " + BASIC}, timeout=5)
    finally:
        fake.stop()
    text = log_of(tmp_path)
    # The lines are there (so the test reads what it means to), without what they once carried.
    assert "Invalid request" in text and "sign-in refused" in text and "media file" in text
    for secret in (API_KEY, WEBHOOK_TOKEN, AT_KEY, URL_PASSWORD, NUMBER, "console-secret-0123456789", BASIC):
        assert secret not in text, f"{secret!r} is in the log"


@pytest.mark.parametrize("line, secret", [
    ("sign-in refused for label 'abcdefgh12345678'", "abcdefgh12345678"),
    ("Invalid Request Line 'GET /voice/events?token=s3cr3t-tok&a=1 HTTP/1.1'", "s3cr3t-tok"),
    ("Invalid HTTP Header: 'X-API-Key: k3y-value'", "k3y-value"),
    ("headers [('x-api-key', 'k3y-value')]", "k3y-value"),
    ("Authorization: Bearer b3arer-value", "b3arer-value"),
    ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("Invalid HTTP Header: 'X-API-Key k3y-value'", "k3y-value"),
    ("call to +254 712 345 678", "712 345"),
    ("call to 254-712-345-678", "345-678"),
    ("fetching https://user:pa55word@host.example/a.mp3", "pa55word"),
    ("postgresql://voice:db-pa55@127.0.0.1/voice", "db-pa55"),
    ("call to +254712345678 placed", "254712345678"),
    ("call to 254712345678, 0712345678 placed", "712345678"),
])
def test_redact_masks_each_kind_of_secret(line, secret):
    logs.remember_secrets(["abcdefgh12345678"])
    try:
        assert secret not in logs.redact(line)
    finally:
        logs.remember_secrets([])


def test_redact_stays_linear_on_hostile_lines():
    """Long runs that almost match (a scheme without `://`, digits and dashes) come back whole, not mangled."""
    for line in ("a." * 4000 + "://x", "1-" * 4000, "1 " * 4000, "token=" * 2000):
        assert len(logs.redact(line)) <= len(line) + 16


def test_extra_fields_of_a_record_are_redacted_too():
    """The JSON format writes a record's extra fields whole: they pass through the redaction as the message does."""
    import logging

    record = logging.LogRecord("voice.access", logging.INFO, __file__, 1, "GET %s", ("/voice/calls/x",), None)
    record.path, record.session_id = f"/voice/calls/{NUMBER}", NUMBER
    logs.Redact().filter(record)  # as the JSON format has it: extra fields on
    assert NUMBER not in record.path and NUMBER not in record.session_id


@pytest.mark.parametrize("line", [
    "2026-12-02 10:39:28,123 INFO voice.access [-]: GET /voice/ 200 0.4ms",
    "counts 100 200 300 400",
    "POST /voice/events 200 1.2ms session=ATVId_0123456789abcdef state=Completed caller=+2547****5678",
    "call ATVId_123456789012 ended: state=Completed duration=42s cost=0.7000 KES hangup=NORMAL_CLEARING",
    "2026-12-02 10:39:28,123 INFO voice.access [5f3a1234567890abcdef1234567890ab]: GET /voice/ 200 0.4ms",
])
def test_redact_leaves_ordinary_lines_alone(line):
    assert logs.redact(line) == line


def test_a_simulated_ats_key_is_no_secret_to_mask(config):
    """In simulated mode AT's key is the word `simulated`: lines saying `simulated` keep it."""
    from app import create_app

    create_app(dict(config, VOICE_SIMULATE="1", AT_API_KEY="", AT_USERNAME="", AT_VOICE_NUMBER=""))
    assert logs.redact("simulated call: CALL outbound") == "simulated call: CALL outbound"
    create_app(dict(config, AT_API_KEY="a-live-at-key-0123"))
    assert "a-live-at-key-0123" not in logs.redact("key a-live-at-key-0123")
