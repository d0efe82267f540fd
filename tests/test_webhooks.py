"""POST /voice/instruct and /voice/events, as AT calls them."""

import logging
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlparse

import pytest

from tests.helpers import EVENTS, INSTRUCT, WEBHOOK_TOKEN

ANSWERED = {
    "sessionId": "ATVId_0123456789abcdef0123456789abcdef",
    "isActive": "1",
    "direction": "Inbound",
    "callerNumber": "+254712345678",
    "destinationNumber": "+254711000000",
    "callSessionState": "Answered",
}
FINAL = dict(
    ANSWERED, isActive="0", callSessionState="Completed", durationInSeconds="42",
    amount="2.5000", currencyCode="KES", hangupCause="NORMAL_CLEARING", status="Success",
)


def xml_of(response, status=200):
    """The parsed <Response> of an instruct answer, after checking how it is served."""
    assert response.status_code == status
    assert response.mimetype == "text/plain"
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    return root


def test_status_route(client):
    response = client.get("/voice/")
    assert response.status_code == 200
    assert response.json == {"service": "voice", "status": "ready"}


def test_answered_call_gets_a_menu_whose_digits_come_back_with_the_token(client):
    root = xml_of(client.post(INSTRUCT, data=ANSWERED))
    get_digits = root.find("GetDigits")
    assert get_digits is not None
    assert get_digits.get("numDigits") == "1" and get_digits.get("timeout") and get_digits.get("finishOnKey") == "#"
    assert "callBackUrl" not in get_digits.attrib
    url = urlparse(get_digits.get("callbackUrl"))
    assert url.path == "/voice/instruct"
    assert parse_qs(url.query)["token"] == [WEBHOOK_TOKEN]
    assert [child.tag for child in get_digits] == ["Say"]
    assert "Press 1" in get_digits.find("Say").text


def test_no_input_does_not_end_in_dead_air(client):
    # AT moves past a GetDigits silently when nothing is pressed: something must follow it.
    root = xml_of(client.post(INSTRUCT, data=ANSWERED))
    tags = [child.tag for child in root]
    after = tags[tags.index("GetDigits") + 1:]
    assert after and after[0] in ("Say", "Play", "Redirect")


def test_the_spec_request_shape_without_is_active_gets_the_menu(client):
    form = {"sessionId": "ATVId_1", "callerNumber": "+254712345678", "destinationNumber": "+254711000000"}
    assert xml_of(client.post(INSTRUCT, data=form)).find("GetDigits") is not None


def menu_callback(client):
    """The path and query of the menu's callbackUrl, as AT would post to it."""
    url = urlparse(xml_of(client.post(INSTRUCT, data=ANSWERED)).find("GetDigits").get("callbackUrl"))
    return f"{url.path}?{url.query}"


def test_choice_one_is_answered(client):
    root = xml_of(client.post(menu_callback(client), data=dict(ANSWERED, dtmfDigits="1")))
    assert root[0].tag == "Say" and "open" in root[0].text


def test_finish_key_in_digits_is_ignored(client):
    root = xml_of(client.post(menu_callback(client), data=dict(ANSWERED, dtmfDigits="1#")))
    assert "open" in root[0].text


@pytest.mark.parametrize("digits", ["9", "", "12"])
def test_other_choices_offer_the_menu_again_with_a_notice(client, digits):
    root = xml_of(client.post(menu_callback(client), data=dict(ANSWERED, dtmfDigits=digits)))
    assert root[0].tag == "Say" and "not an option" in root[0].text
    assert root.find("GetDigits") is not None


@pytest.mark.parametrize("hostile", ['1</Say><Reject/>', '<&"\'>', "]]><Dial phoneNumbers='+1900'/>"])
def test_hostile_digits_inject_no_element(client, hostile):
    root = xml_of(client.post(menu_callback(client), data=dict(ANSWERED, dtmfDigits=hostile)))
    tags = {element.tag for element in root.iter()}
    assert tags <= {"Response", "Say", "GetDigits", "Redirect"}


def test_text_echoed_into_xml_is_escaped():
    from voice.flows.document import Action
    from voice.flows.voicexml import render

    hostile = "Tom & Jerry's <b>\"menu\"</b></Say><Reject/>"
    root = ET.fromstring(render([Action("Say", attrs={"voice": 'x"><Reject/>'}, text=hostile)], str))
    assert [child.tag for child in root] == ["Say"]
    assert root.find("Say").text == hostile
    assert root.find("Say").get("voice") == 'x"><Reject/>'


def test_final_notification_gets_an_empty_200_and_is_logged(client, caplog):
    caplog.set_level(logging.INFO)
    response = client.post(INSTRUCT, data=FINAL)
    assert response.status_code == 200
    assert response.data == b""
    assert "duration=42s" in caplog.text and "NORMAL_CLEARING" in caplog.text


def test_unanswered_outbound_call_sends_only_the_final_request(client):
    form = {
        "sessionId": "ATVId_unanswered", "isActive": "0", "direction": "Outbound",
        "callSessionState": "NotAnswered", "status": "NotAnswered", "hangupCause": "USER_BUSY",
        "durationInSeconds": "0", "amount": "0", "currencyCode": "KES", "callStartTime": "None",
        "callerNumber": "+254712345678", "destinationNumber": "+254711000000",
    }
    response = client.post(INSTRUCT, data=form)
    assert response.status_code == 200 and response.data == b""


@pytest.mark.parametrize("form", [{}, {"sessionId": ""}, {"sessionId": "not a session id <x>"}])
def test_malformed_instruct_gets_a_4xx_apology_that_ends_the_call(client, form):
    root = xml_of(client.post(INSTRUCT, data=form), status=400)
    assert [child.tag for child in root] == ["Say"]
    assert "sorry" in root.find("Say").text.lower()


def test_instruct_with_a_json_body_gets_the_apology_not_an_error_page(client):
    root = xml_of(client.post(INSTRUCT, json={"sessionId": "ATVId_1"}), status=415)
    assert "sorry" in root.find("Say").text.lower()


@pytest.mark.parametrize("path", ["/voice/instruct", "/voice/events"])
@pytest.mark.parametrize("query", ["", "?token=wrong", f"?token={WEBHOOK_TOKEN}x"])
def test_webhooks_without_the_token_are_403(client, path, query):
    response = client.post(path + query, data=ANSWERED)
    assert response.status_code == 403
    assert response.json["error"] == "forbidden"


def test_webhooks_are_open_when_no_token_is_set(make_app):
    client = make_app(VOICE_WEBHOOK_TOKEN="").test_client()
    root = xml_of(client.post("/voice/instruct", data=ANSWERED))
    assert "token" not in root.find("GetDigits").get("callbackUrl")
    assert client.post("/voice/events", data=ANSWERED).data == b"OK"


def test_refused_token_is_logged_without_the_token(client, caplog):
    caplog.set_level(logging.INFO)
    client.post("/voice/events?token=guess-secret-value", data=ANSWERED)
    assert "refused" in caplog.text
    assert "guess-secret-value" not in caplog.text


def test_events_accepts_ats_real_fields(client):
    response = client.post(EVENTS, data=dict(FINAL, callerCountryCode="254", callerCarrierName="Safaricom",
                                              callStartTime="2021-10-13 19:10:16", recordingUrl="https://x/rec.mp3"))
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.data == b"OK"


def test_events_accepts_the_specs_event_type_and_unknown_fields(client):
    form = {"sessionId": "ATVId_2", "eventType": "SessionEnded", "direction": "inbound",
            "durationInSeconds": "5", "somethingNew": "x"}
    response = client.post(EVENTS, data=form)
    assert response.status_code == 200 and response.data == b"OK"


@pytest.mark.parametrize("form", [{}, {"isActive": "0"}, {"sessionId": "  "}])
def test_events_without_session_id_is_400(client, form):
    response = client.post(EVENTS, data=form)
    assert response.status_code == 400
    assert response.json["error"] == "bad_event"
    assert "sessionId" in response.json["message"]


def test_events_with_junk_values_are_still_ok(client):
    form = {"sessionId": "ATVId_3", "durationInSeconds": "lots", "amount": "NaN", "callStartTime": "yesterday",
            "currencyCode": "shillings", "dtmfDigits": "<x>", "recordingUrl": "javascript:alert(1)"}
    assert client.post(EVENTS, data=form).data == b"OK"


def test_webhook_logs_mask_numbers_and_hide_the_token(client, caplog):
    caplog.set_level(logging.INFO)
    client.post(INSTRUCT, data=ANSWERED)
    client.post(EVENTS, data=FINAL)
    assert "+2547****5678" in caplog.text
    assert "254712345678" not in caplog.text
    assert WEBHOOK_TOKEN not in caplog.text
    assert ANSWERED["sessionId"] in caplog.text


@pytest.mark.parametrize("method, path, status", [
    ("get", "/voice/nowhere", 404), ("get", "/", 404), ("get", "/voice/instruct", 405),
    ("get", "/voice/events", 405), ("delete", "/voice/invoke-call", 405),
])
def test_unknown_paths_and_wrong_methods_answer_json(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.content_type == "application/json"
    assert set(response.json) == {"error", "message"}


def test_an_unexpected_failure_is_json_without_a_traceback(app, auth, monkeypatch):
    from voice.at import client as voice_client

    def explode(self, phone):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(voice_client.VoiceClient, "call", explode)
    response = app.test_client().get("/voice/invoke-call?phone=254712345678", headers=auth)
    assert response.status_code == 500
    assert response.json == {"error": "internal_error", "message": response.json["message"]}
    assert "secret internals" not in response.get_data(as_text=True)


def test_an_unexpected_failure_on_instruct_is_the_apology(app, monkeypatch):
    from voice.flows import ivr

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ivr, "answer", explode)
    root = xml_of(app.test_client().post(INSTRUCT, data=ANSWERED))
    assert "sorry" in root.find("Say").text.lower()
