"""One number, one form: every place that dials, counts, deduplicates, stores or searches a number sees E.164.

A trunk zero after the country code (`2540712...`) is the same number as `254712...`; each place
below is walked with both forms and must treat them as one.
"""

import xml.etree.ElementTree as ET

import pytest

from tests.helpers import EVENTS, INSTRUCT, KEY, live_call, make_live, sent

TRUNK, CANONICAL = "2540712345695", "+254712345695"


def test_a_dial_out_sends_at_the_canonical_number(client, simulated_at):
    response = client.post("/voice/invoke-call", data={"phone": TRUNK}, headers=KEY)
    assert response.status_code == 200
    assert sent(simulated_at, "/call")[-1]["to"] == CANONICAL


def test_both_forms_in_one_list_are_one_number(client, simulated_at):
    response = client.post("/voice/invoke-call", data={"phone": f"{TRUNK},254712345695"}, headers=KEY)
    assert response.status_code == 200
    assert sent(simulated_at, "/call")[-1]["to"] == CANONICAL


def test_both_forms_count_against_one_destination_limit(make_app, simulated_at):
    client = make_app(VOICE_RATE_LIMIT_PER_DESTINATION="1 per hour").test_client()
    assert client.post("/voice/invoke-call", data={"phone": TRUNK}, headers=KEY).status_code == 200
    again = client.post("/voice/invoke-call", data={"phone": "254712345695"}, headers=KEY)
    assert again.status_code == 429


@pytest.mark.parametrize("dialled, searched", [(TRUNK, "254712345695"), ("254712345695", TRUNK)])
def test_a_call_is_found_by_either_form(client, simulated_at, dialled, searched):
    session = client.post("/voice/invoke-call", data={"phone": dialled}, headers=KEY).json["response"]["entries"][0][
        "sessionId"]
    found = client.get("/voice/calls", query_string={"phone": searched}, headers=KEY).json["calls"]
    assert [call["sessionId"] for call in found] == [session]
    assert found[0]["destinationNumber"] == CANONICAL


def test_a_transfer_sends_and_counts_the_canonical_number(make_app, simulated_at):
    client = make_app(VOICE_RATE_LIMIT_PER_DESTINATION="1 per hour").test_client()
    session = live_call(client)
    make_live(simulated_at, session)
    response = client.post(f"/voice/calls/{session}/transfer", data={"phone": TRUNK}, headers=KEY)
    assert response.status_code == 200 and response.json["phoneNumber"] == CANONICAL
    assert sent(simulated_at, "/callTransfer")[-1]["phoneNumber"] == CANONICAL
    assert client.post("/voice/invoke-call", data={"phone": "254712345695"}, headers=KEY).status_code == 429


def test_a_client_dial_connects_the_canonical_number(client):
    form = {"sessionId": "ATVId_trunk", "isActive": "1", "direction": "Inbound", "callerNumber": "testapp.jonah",
            "destinationNumber": "+254711000000", "callSessionState": "Ringing", "clientDialedNumber": "+" + TRUNK}
    dial = ET.fromstring(client.post(INSTRUCT, data=form).data).find("Dial")
    assert dial is not None and dial.get("phoneNumbers") == CANONICAL


def test_our_own_number_is_known_in_either_form(client, simulated_at):
    response = client.get("/voice/queue", query_string={"phone": "2540711000000"}, headers=KEY)
    assert response.status_code == 200
    assert sent(simulated_at, "/queueStatus")[-1]["phoneNumbers"] == "+254711000000"


@pytest.mark.both_databases
@pytest.mark.parametrize("sent_as", ["254712345695", "+2540712345695", "+254 712 345 695"])
def test_a_number_in_a_callback_is_kept_in_its_one_form_and_found(client, sent_as):
    form = {"sessionId": "ATVId_in1", "isActive": "0", "direction": "Inbound", "callerNumber": sent_as,
            "destinationNumber": "+2540711000000", "callSessionState": "Completed",
            "dialDestinationNumber": "2540711000009"}
    assert client.post(EVENTS, data=form).data == b"OK"
    for searched in (CANONICAL, TRUNK, "254712345695"):
        found = client.get("/voice/calls", query_string={"phone": searched}, headers=KEY).json["calls"]
        assert [call["sessionId"] for call in found] == ["ATVId_in1"]
    call = found[0]
    assert (call["callerNumber"], call["destinationNumber"]) == (CANONICAL, "+254711000000")
    assert call["dial"]["destination"] == "+254711000009"


def test_our_number_is_dialled_from_in_its_one_form(make_app, simulated_at):
    client = make_app(AT_VOICE_NUMBER="+254 0711 000 000").test_client()
    assert client.post("/voice/invoke-call", data={"phone": CANONICAL}, headers=KEY).status_code == 200
    assert sent(simulated_at, "/call")[-1]["from"] == "+254711000000"
    found = client.get("/voice/calls", query_string={"phone": "254711000000"}, headers=KEY).json["calls"]
    assert len(found) == 1
