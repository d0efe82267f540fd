"""GET/POST /voice/invoke-call: who may dial, what is dialled, and what comes back when AT fails."""

import logging

import pytest

from tests.helpers import API_KEY, BEARER, KEY


def test_invoke_call_without_key_is_401_and_nothing_reaches_at(client, simulated_at):
    response = client.get("/voice/invoke-call?phone=254712345678")
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert simulated_at.requests == []


def test_invoke_call_with_wrong_key_is_401_and_nothing_reaches_at(client, simulated_at):
    response = client.get("/voice/invoke-call?phone=254712345678", headers={"X-API-Key": "nope"})
    assert response.status_code == 401
    assert simulated_at.requests == []


@pytest.mark.parametrize("headers", [KEY, BEARER])
def test_invoke_call_accepts_either_key_header(client, headers):
    response = client.get("/voice/invoke-call?phone=254712345678", headers=headers)
    assert response.status_code == 200


def test_invoke_call_places_the_call_and_returns_ats_answer(client, auth, simulated_at):
    response = client.get("/voice/invoke-call?phone=254712345678", headers=auth)
    assert response.status_code == 200
    assert response.json["message"] == "Call initiated to +254712345678"
    entry = response.json["response"]["entries"][0]
    assert entry["status"] == "Queued" and entry["phoneNumber"] == "+254712345678"
    assert simulated_at.requests[-1]["form"]["to"] == "+254712345678"


@pytest.mark.parametrize("query", ["phone=+254712345678", "phone=%2B254712345678", "phone=254-712-345-678"])
def test_invoke_call_accepts_plus_even_unencoded(client, auth, simulated_at, query):
    # An unencoded + arrives as a space.
    response = client.get(f"/voice/invoke-call?{query}", headers=auth)
    assert response.status_code == 200
    assert simulated_at.requests[-1]["form"]["to"] == "+254712345678"


def test_invoke_call_by_post_form(client, auth, simulated_at):
    response = client.post("/voice/invoke-call", data={"phone": "254712345678"}, headers=auth)
    assert response.status_code == 200
    assert simulated_at.requests[-1]["form"]["to"] == "+254712345678"


def test_invoke_call_by_post_json(client, auth, simulated_at):
    response = client.post("/voice/invoke-call", json={"phone": "+254712345678"}, headers=auth)
    assert response.status_code == 200
    assert simulated_at.requests[-1]["form"]["to"] == "+254712345678"


@pytest.mark.parametrize("body", ['["254712345678"]', "{not json", '"254712345678"'])
def test_invoke_call_with_json_that_is_not_an_object_is_400(client, auth, body):
    response = client.post("/voice/invoke-call", data=body, content_type="application/json", headers=auth)
    assert response.status_code == 400
    assert response.json["error"] == "bad_json"


@pytest.mark.parametrize("query", ["", "phone=", "phone=12345", "phone=2547123456789012", "phone=abc", "phone=0712345678"])
def test_invoke_call_with_missing_or_bad_phone_is_400(client, auth, simulated_at, query):
    response = client.get(f"/voice/invoke-call?{query}", headers=auth)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_phone"
    assert response.json["message"]
    assert simulated_at.requests == []


def test_invoke_call_without_at_credentials_is_503_naming_them(make_app):
    response = make_app(AT_API_KEY="", AT_VOICE_NUMBER="").test_client().get(
        "/voice/invoke-call?phone=254712345678", headers=KEY
    )
    assert response.status_code == 503
    assert response.json["error"] == "not_configured"
    assert "AT_API_KEY" in response.json["message"] and "AT_VOICE_NUMBER" in response.json["message"]
    assert "AT_USERNAME" not in response.json["message"]


def test_invoke_call_without_a_server_key_is_refused(make_app):
    response = make_app(VOICE_API_KEY="").test_client().get(
        "/voice/invoke-call?phone=254712345678", headers={"X-API-Key": ""}
    )
    assert response.status_code == 503
    assert "VOICE_API_KEY" in response.json["message"]


@pytest.mark.parametrize("number, code, detail", [
    ("254700000001", "at_call_failed", "InvalidPhoneNumber"),
    ("254700000002", "at_call_failed", "DestinationNotSupported"),
    ("254700000003", "at_call_failed", "InsufficientCredit"),
    ("254700000401", "at_rejected", "The supplied authentication is invalid"),
    ("254700000500", "at_rejected", "Internal Server Error"),
    ("254700000504", "at_timeout", "did not answer"),
    ("254700000415", "at_bad_response", "not JSON"),
])
def test_every_at_failure_is_a_json_500_with_ats_word(client, auth, number, code, detail):
    response = client.get(f"/voice/invoke-call?phone={number}", headers=auth)
    assert response.status_code == 500
    assert response.content_type == "application/json"
    assert response.json["error"] == code
    assert detail in response.json["message"]


def test_failing_entry_status_is_given_as_at_status(client, auth):
    response = client.get("/voice/invoke-call?phone=254700000003", headers=auth)
    assert response.json["atStatus"] == "InsufficientCredit"
    assert response.json["response"]["entries"][0]["status"] == "InsufficientCredit"


def test_invoke_call_logs_a_masked_number_and_never_the_key(client, auth, caplog):
    caplog.set_level(logging.INFO)
    client.get("/voice/invoke-call?phone=254712345678", headers=auth)
    text = caplog.text
    assert "+2547****5678" in text
    assert "254712345678" not in text
    assert API_KEY not in text
