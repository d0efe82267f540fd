"""Each protection, refused and allowed: keys, destinations, limits, webhook sources, hostile input."""

import hmac
import logging
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlparse

import pytest

from app import create_app
from tests.helpers import API_KEY, EVENTS, INSTRUCT, KEY, WEBHOOK_TOKEN

OUTBOUND = {"sessionId": "ATVId_forged0000", "isActive": "1", "direction": "Outbound",
            "callerNumber": "+254712345678", "destinationNumber": "+254711000000"}


def dial(client, phone="254712345678", headers=KEY):
    return client.post("/voice/invoke-call", data={"phone": phone}, headers=headers)


# Keys

def test_labelled_keys_each_work_and_name_the_caller(make_app, simulated_at):
    client = make_app(VOICE_API_KEY="", VOICE_API_KEYS="ops:ops-key-1111, crm:crm-key-2222").test_client()
    for label, key in (("ops", "ops-key-1111"), ("crm", "crm-key-2222")):
        answer = dial(client, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
        session = answer.json["response"]["entries"][0]["sessionId"]
        call = client.get(f"/voice/calls/{session}", headers={"X-API-Key": key}).json["call"]
        assert call["requestedBy"] == label
    assert dial(client, headers={"X-API-Key": "ops-key-111"}).status_code == 401


def test_the_single_key_still_works_beside_labelled_ones(make_app):
    client = make_app(VOICE_API_KEYS="ops:ops-key-1111").test_client()
    assert dial(client).status_code == 200


def test_every_key_is_compared_in_constant_time(make_app, monkeypatch):
    client = make_app(VOICE_API_KEYS="a:key-aaaa,b:key-bbbb,c:key-cccc").test_client()
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append(b) or real(a, b))
    dial(client, headers={"X-API-Key": "key-aaaa"})
    assert sorted(compared) == sorted([b"key-aaaa", b"key-bbbb", b"key-cccc", API_KEY.encode()])


@pytest.mark.parametrize("setting", ["nolabel", "ops:", ":key", "a:k1,a:k2"])
def test_a_malformed_key_setting_stops_start_up_without_showing_keys(config, setting):
    with pytest.raises(ValueError) as caught:
        create_app(dict(config, VOICE_API_KEYS=setting))
    assert "VOICE_API_KEYS" in str(caught.value)
    assert "k1" not in str(caught.value) and "nolabel" not in str(caught.value)


# Destinations

def test_destinations_outside_the_allowed_countries_are_403(make_app, simulated_at):
    client = make_app(VOICE_ALLOWED_COUNTRY_CODES="254, +256").test_client()
    refused = dial(client, "255712345678")
    assert refused.status_code == 403
    assert refused.json["error"] == "destination_not_allowed" and "+254" in refused.json["message"]
    assert simulated_at.requests == []
    assert dial(client, "256772123456").status_code == 200
    assert dial(client, "254712345678").status_code == 200


@pytest.mark.parametrize("phone, reason", [
    ("19005551234", "premium-rate"),
    ("449012345678", "premium-rate"),
    ("881612345678", "satellite"),
    ("979123456789", "satellite"),
    ("25412345", "wrong number of digits"),
    ("254900123456", "numbering plan"),
])
def test_premium_short_and_satellite_numbers_are_refused(client, simulated_at, phone, reason):
    response = dial(client, phone)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_phone" and reason in response.json["message"]
    assert simulated_at.requests == []


# Rate limits

def test_per_key_limit_answers_429_with_retry_after(make_app):
    client = make_app(VOICE_API_KEYS="other:other-key-9999", VOICE_RATE_LIMIT_PER_KEY="2 per minute").test_client()
    assert [dial(client, f"25471234567{i}").status_code for i in range(2)] == [200, 200]
    refused = dial(client, "254712345679")
    assert refused.status_code == 429
    assert refused.json["error"] == "too_many_requests"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert dial(client, "254712345679", headers={"X-API-Key": "other-key-9999"}).status_code == 200


def test_per_destination_limit_answers_429(make_app):
    client = make_app(VOICE_RATE_LIMIT_PER_DESTINATION="2 per hour").test_client()
    assert [dial(client).status_code for _ in range(2)] == [200, 200]
    refused = dial(client)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 60
    assert dial(client, "254712345670").status_code == 200


def test_refused_requests_do_not_use_up_the_limits(make_app):
    client = make_app(VOICE_RATE_LIMIT_PER_KEY="2 per minute").test_client()
    for _ in range(3):
        assert dial(client, "12").status_code == 400
        assert dial(client, headers={"X-API-Key": "wrong"}).status_code == 401
    assert dial(client).status_code == 200


def test_an_unreachable_limit_store_fails_closed_with_503(make_app, simulated_at):
    client = make_app(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0").test_client()
    response = dial(client)
    assert response.status_code == 503 and response.json["error"] == "limits_unavailable"
    assert simulated_at.requests == []


def test_dialouts_beyond_the_in_flight_cap_are_503_at_once(make_app):
    client = make_app(VOICE_MAX_DIALOUTS_IN_FLIGHT=1).test_client()
    stalled = threading.Thread(target=dial, args=(client, "254700000504"))
    stalled.start()
    time.sleep(0.3)
    try:
        started = time.monotonic()
        refused = dial(client)
        assert refused.status_code == 503 and refused.json["error"] == "busy" and refused.headers["Retry-After"]
        assert time.monotonic() - started < 0.5
    finally:
        stalled.join()
    assert dial(client).status_code == 200


# Webhooks

@pytest.mark.parametrize("path", [INSTRUCT, EVENTS])
def test_webhooks_from_outside_the_allowed_addresses_are_403(make_app, path):
    client = make_app(VOICE_WEBHOOK_ALLOWED_IPS="10.0.0.0/8, 192.0.2.7").test_client()
    assert client.post(path, data=OUTBOUND).status_code == 403
    for address in ("10.20.30.40", "192.0.2.7"):
        assert client.post(path, data=OUTBOUND, environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_forwarded_headers_are_ignored_without_trusted_proxies(make_app):
    client = make_app(VOICE_WEBHOOK_ALLOWED_IPS="10.0.0.0/8").test_client()
    forged = client.post(EVENTS, data=OUTBOUND, headers={"X-Forwarded-For": "10.1.1.1"})
    assert forged.status_code == 403


def test_trusted_proxies_give_the_real_client_address_and_scheme(make_app):
    client = make_app(VOICE_WEBHOOK_ALLOWED_IPS="10.0.0.0/8", VOICE_TRUSTED_PROXIES=1).test_client()
    headers = {"X-Forwarded-For": "10.1.1.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "voice.example.com"}
    answer = client.post(INSTRUCT, data=OUTBOUND, headers=headers)
    assert answer.status_code == 200
    callback = urlparse(ET.fromstring(answer.data).find("GetDigits").get("callbackUrl"))
    assert (callback.scheme, callback.netloc) == ("https", "voice.example.com")
    # Only one hop is trusted: an address the client itself put in front is not believed.
    spoofed = dict(headers, **{"X-Forwarded-For": "10.9.9.9, 203.0.113.5"})
    assert client.post(EVENTS, data=OUTBOUND, headers=spoofed).status_code == 403


def test_unknown_outbound_sessions_are_refused_when_verifying(make_app):
    client = make_app(VOICE_VERIFY_SESSIONS=True).test_client()
    assert client.post(EVENTS, data=OUTBOUND).status_code == 403
    assert client.post(INSTRUCT, data=OUTBOUND).status_code == 403
    session = dial(client).json["response"]["entries"][0]["sessionId"]
    assert client.post(EVENTS, data=dict(OUTBOUND, sessionId=session)).data == b"OK"
    assert client.post(INSTRUCT, data=dict(OUTBOUND, sessionId=session)).status_code == 200
    inbound = dict(OUTBOUND, direction="Inbound", sessionId="ATVId_inbound")
    assert client.post(EVENTS, data=inbound).data == b"OK"


def test_outbound_sessions_are_not_checked_by_default(client):
    assert client.post(EVENTS, data=OUTBOUND).data == b"OK"


# Hostile input

@pytest.mark.parametrize("path", ["/voice/invoke-call", EVENTS])
def test_bodies_over_the_cap_are_413_json(client, path):
    response = client.post(path, data={"phone": "2547" + "1" * 70000, "sessionId": "x"}, headers=KEY)
    assert response.status_code == 413 and response.json["error"] == "request_entity_too_large"


def test_instruct_bodies_over_the_cap_are_413_with_xml(client):
    response = client.post(INSTRUCT, data={"sessionId": "ATVId_1", "pad": "x" * 70000})
    assert response.status_code == 413
    assert ET.fromstring(response.data).tag == "Response"


def test_the_cap_is_a_setting(make_app):
    client = make_app(MAX_CONTENT_LENGTH=100).test_client()
    assert client.post(EVENTS, data={"sessionId": "ATVId_1", "pad": "x" * 200}).status_code == 413


def test_an_overlong_field_is_400(client):
    response = client.post(EVENTS, data={"sessionId": "ATVId_1", "callerNumber": "1" * 3000})
    assert response.status_code == 400 and "callerNumber" in response.json["message"]


@pytest.mark.parametrize("path", [EVENTS, INSTRUCT])
def test_duplicate_fields_are_400(client, path):
    response = client.post(path, data="sessionId=ATVId_1&sessionId=ATVId_2",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400


def test_a_duplicate_client_request_id_is_400(client, simulated_at):
    response = client.post("/voice/invoke-call?clientRequestId=a", data={"phone": "254712345670",
                                                                         "clientRequestId": "b"}, headers=KEY)
    assert response.status_code == 400 and response.json["error"] == "duplicate_field"
    assert simulated_at.requests == []


@pytest.mark.parametrize("path, status", [(EVENTS, 415), ("/voice/invoke-call", 415)])
def test_wrong_content_types_are_415(client, path, status):
    response = client.post(path, data="sessionId=ATVId_1&phone=254712345678", content_type="text/plain", headers=KEY)
    assert response.status_code == status


def test_json_on_a_form_webhook_is_415(client):
    assert client.post(EVENTS, json={"sessionId": "ATVId_1"}).status_code == 415


@pytest.mark.parametrize("phone", [["254712345678", None], [{"n": 1}], {"n": 1}, True, None])
def test_json_phone_of_the_wrong_type_is_400(client, phone):
    assert client.post("/voice/invoke-call", json={"phone": phone}, headers=KEY).status_code == 400


@pytest.mark.parametrize("path", ["/voice/invoke-call", EVENTS, INSTRUCT])
def test_non_utf8_bodies_are_never_a_5xx(client, path):
    for body, content_type in ((b"sessionId=\xff\xfe&phone=\xc3", "application/x-www-form-urlencoded"),
                               (b'{"phone": "\xff"}', "application/json")):
        response = client.post(path, data=body, content_type=content_type, headers=KEY)
        assert 400 <= response.status_code < 500 or response.status_code == 200


def test_json_answers_carry_security_headers(client):
    for response in (client.get("/voice/"), dial(client), client.get("/voice/calls", headers=KEY),
                     client.get("/voice/nowhere")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
    assert client.post(INSTRUCT, data=OUTBOUND).headers["X-Content-Type-Options"] == "nosniff"


def test_start_up_warns_about_each_protection_left_off(config, caplog):
    caplog.set_level(logging.WARNING)
    create_app(dict(config, TESTING=False, VOICE_WEBHOOK_TOKEN="", VOICE_ALLOWED_COUNTRY_CODES=""))
    assert "VOICE_WEBHOOK_TOKEN" in caplog.text and "VOICE_ALLOWED_COUNTRY_CODES" in caplog.text
    assert "VOICE_PUBLIC_URL" in caplog.text  # live, so callback URLs would follow the Host header
    caplog.clear()
    create_app(dict(config, TESTING=False, VOICE_ALLOWED_COUNTRY_CODES="254", VOICE_PUBLIC_URL="https://voice.example"))
    assert caplog.text == ""


def test_logs_hold_no_key_no_token_no_whole_number(make_app, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_app(VOICE_API_KEYS="ops:ops-secret-key-77").test_client()
    number = "254712345678"
    dial(client, number)
    dial(client, number, headers={"X-API-Key": "ops-secret-key-77"})
    dial(client, number, headers={"X-API-Key": "wrong-key-guess"})
    client.post(EVENTS, data=dict(OUTBOUND, callerNumber="+" + number, isActive="0", durationInSeconds="3"))
    client.post(INSTRUCT, data=dict(OUTBOUND, callerNumber="+" + number))
    client.post("/voice/events?token=wrong-token-guess", data=OUTBOUND)
    client.get(f"/voice/calls?phone={number}", headers=KEY)
    text = caplog.text
    assert caplog.records
    for secret in (API_KEY, "ops-secret-key-77", "wrong-key-guess", WEBHOOK_TOKEN, "wrong-token-guess", number):
        assert secret not in text


# What a probe found: each fault's class

def test_a_dialer_cannot_tell_another_keys_live_call_from_an_unknown_or_ended_one(make_app, simulated_at):
    client = make_app(VOICE_API_KEYS="a:dialer-a-key-0123:dialer,b:dialer-b-key-0123:dialer").test_client()
    owner, other = {"X-API-Key": "dialer-a-key-0123"}, {"X-API-Key": "dialer-b-key-0123"}
    live, ended = (dial(client, phone, owner).json["response"]["entries"][0]["sessionId"]
                   for phone in ("254712345678", "254712345679"))
    assert client.post(EVENTS, data=dict(OUTBOUND, sessionId=live, callSessionState="Answered")).data == b"OK"
    assert client.post(EVENTS, data=dict(OUTBOUND, sessionId=ended, isActive="0")).data == b"OK"
    answers = set()
    for session in (live, ended, "ATVId_unknown00000"):
        response = client.post(f"/voice/calls/{session}/transfer", data={"phone": "254712000001"}, headers=other)
        answers.add((response.status_code, response.json["error"], response.json["message"].replace(session, "ID")))
    assert len(answers) == 1 and answers.pop()[0] == 409
    assert client.post(f"/voice/calls/{live}/transfer", data={"phone": "254712000001"},
                       headers=owner).json.get("error") != "call_not_in_progress"


@pytest.mark.parametrize("host, status", [
    ("localhost", 200), ("localhost:8000", 200), ("voice.example.com", 200), ("127.0.0.1:8000", 200),
    ("[::1]:8000", 200), ("voice_app:8000", 200),
    ("", 400), ("evil example", 400), ("a/b", 400), ("a@b", 400), ("host:99999999", 400), ("x" * 300, 400),
])
def test_a_host_header_must_be_a_host_name(client, host, status):
    for path, data in (("/voice/", None), (INSTRUCT, OUTBOUND), (EVENTS, OUTBOUND)):
        response = client.open(path, method="POST" if data else "GET", data=data, headers={"Host": host})
        assert (response.status_code == 400) == (status == 400), (path, host, response.status_code)
        if status == 400:
            assert response.json["error"] == "bad_host"


def test_the_call_flow_xml_is_never_cached(client):
    response = client.post(INSTRUCT, data=OUTBOUND)
    assert "token=" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"


def test_a_client_of_another_at_username_is_a_plain_caller(client):
    form = {"sessionId": "ATVId_other_user", "isActive": "1", "direction": "Inbound", "callerNumber": "anyone.jonah",
            "destinationNumber": "+254711000000", "callSessionState": "Ringing", "clientDialedNumber": "254702332796"}
    response = ET.fromstring(client.post(INSTRUCT, data=form).data)
    assert response.find("Dial") is None and response.find("GetDigits") is not None  # the welcome menu
    call = client.get("/voice/calls/ATVId_other_user", headers=KEY).json
    assert call["call"]["clientName"] is None
    assert any("another AT username" in problem for problem in call["events"][-1]["problems"])


@pytest.mark.parametrize("direction", [None, "", "None", "Sideways"])
def test_a_callback_without_inbound_must_be_ours_when_verifying(make_app, direction):
    client = make_app(VOICE_VERIFY_SESSIONS=True).test_client()
    form = {key: value for key, value in OUTBOUND.items() if key != "direction"}
    if direction is not None:
        form["direction"] = direction
    assert client.post(EVENTS, data=form).status_code == 403
    assert client.post(INSTRUCT, data=form).status_code == 403


def test_wrong_keys_are_limited_per_address(make_app, simulated_at):
    client = make_app(VOICE_BAD_KEY_LIMIT="3 per minute").test_client()
    guesses = [client.get("/voice/calls", headers={"X-API-Key": f"guess-{n}"}).status_code for n in range(4)]
    assert guesses == [401, 401, 401, 429]
    # Past the limit, no key from that address is tried, the right one included...
    refused = client.get("/voice/calls", headers=KEY)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    # ...while another address goes on.
    assert client.get("/voice/calls", headers=KEY, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def test_every_wrong_key_limit_of_the_setting_holds(make_app):
    client = make_app(VOICE_BAD_KEY_LIMIT="100 per minute;2 per hour").test_client()
    guesses = [client.get("/voice/calls", headers={"X-API-Key": f"guess-{n}"}).status_code for n in range(3)]
    assert guesses == [401, 401, 429]


def test_a_failing_limits_store_does_not_close_the_api_to_right_keys(make_app, tmp_path):
    # A limits file in a folder that cannot be made: every look at the store fails.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    client = make_app(RATELIMIT_STORAGE_URI=f"sqlite:///{blocker}/limits.sqlite3").test_client()
    assert client.get("/voice/calls", headers=KEY).status_code == 200
    assert client.get("/voice/calls", headers={"X-API-Key": "guess"}).status_code == 401
