"""The SDK wrapper against a simulated AT over real HTTP on 127.0.0.1."""

import threading
import time

import pytest

from tests.gunicorn_helpers import free_port
from tests.helpers import AT_KEY
from voice.at.client import ATError, Busy, VoiceClient


def test_call_posts_what_at_expects(voice, simulated_at):
    answer = voice.call("+254712345678")
    assert answer["entries"][0]["status"] == "Queued"
    assert answer["entries"][0]["sessionId"].startswith("ATVId_")
    sent = simulated_at.requests[-1]
    assert sent["path"] == "/call"
    assert sent["apiKey"] == AT_KEY
    assert sent["form"] == {"username": "testapp", "from": "+254711000000", "to": "+254712345678"}


def test_charset_content_type_still_gives_an_object(voice):
    # The SDK returns a str for "application/json; charset=utf-8"; the wrapper must not.
    answer = voice.call("+254700000200")
    assert isinstance(answer, dict)
    assert answer["entries"][0]["status"] == "Queued"


def test_bad_credentials_are_an_at_rejection_with_ats_message(simulated_at):
    voice = VoiceClient("testapp", "wrong-key", "+254711000000", base_url=simulated_at.url, timeout=1.0)
    with pytest.raises(ATError) as caught:
        voice.call("+254712345678")
    assert caught.value.code == "at_rejected"
    assert "The supplied authentication is invalid" in caught.value.message


def test_at_server_error_is_an_at_rejection(voice):
    with pytest.raises(ATError) as caught:
        voice.call("+254700000500")
    assert caught.value.code == "at_rejected"
    assert "Internal Server Error" in caught.value.message


@pytest.mark.parametrize("number, status", [
    ("+254700000001", "InvalidPhoneNumber"),
    ("+254700000002", "DestinationNotSupported"),
    ("+254700000003", "InsufficientCredit"),
])
def test_each_failing_entry_status_is_an_error_naming_it(voice, number, status):
    with pytest.raises(ATError) as caught:
        voice.call(number)
    assert caught.value.code == "at_call_failed"
    assert caught.value.at_status == status
    assert status in caught.value.message
    assert caught.value.response["entries"][0]["sessionId"] == "None"


def test_a_hanging_at_is_cut_off_at_the_timeout(voice):
    started = time.monotonic()
    with pytest.raises(ATError) as caught:
        voice.call("+254700000504")
    assert caught.value.code == "at_timeout"
    assert time.monotonic() - started < 5


def test_a_body_that_is_not_json_is_a_bad_response(voice):
    with pytest.raises(ATError) as caught:
        voice.call("+254700000415")
    assert caught.value.code == "at_bad_response"


def test_an_unreachable_at_is_reported_as_such():
    voice = VoiceClient("testapp", AT_KEY, "+254711000000", base_url=f"http://127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(ATError) as caught:
        voice.call("+254712345678")
    assert caught.value.code == "at_unreachable"


def test_dialouts_beyond_the_cap_are_refused_at_once_and_the_slot_comes_back(voice, simulated_at):
    capped = VoiceClient("testapp", AT_KEY, "+254711000000", base_url=simulated_at.url, timeout=1.0, max_in_flight=1)
    waiting = threading.Thread(target=lambda: pytest.raises(ATError, capped.call, "+254700000504"))
    waiting.start()
    deadline = time.monotonic() + 2
    while not simulated_at.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(Busy):
        capped.call("+254712345678")
    assert time.monotonic() - started < 0.5
    waiting.join()
    assert capped.call("+254712345678")["entries"][0]["status"] == "Queued"
