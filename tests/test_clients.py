"""Browser and app clients (AT's WebRTC SDK): their calls, the numbers they dial, and their tokens.

The callbacks replayed here are shaped like real captures of AT's client calls (with our own
values): callerNumber `<AT username>.<client name>`, callerCountryCode -1, callerCarrierName None,
direction Inbound, Ringing first, and clientDialedNumber as the agent typed it.
"""

import logging
import threading
import xml.etree.ElementTree as ET

import pytest
import yaml
from werkzeug.serving import make_server

from tests.helpers import AT_KEY, EVENTS, INSTRUCT, KEY, WEBHOOK_TOKEN
from voice import flows
from voice.at.simulator import SimulatedCall


def client_call(dialled, session="ATVId_client1", client="jonah", start="2025-02-13 08:32:37"):
    """The first request AT sends when a client's agent dials `dialled`."""
    form = {"sessionId": session, "isActive": "1", "direction": "Inbound", "callerNumber": f"testapp.{client}",
            "destinationNumber": "+254711000000", "callerCountryCode": "-1", "callerCarrierName": "None",
            "callSessionState": "Ringing", "callStartTime": start}
    if dialled is not None:
        form["clientDialedNumber"] = dialled
    return form


def answer(client, form):
    """The actions of the XML /voice/instruct answers `form` with."""
    response = client.post(INSTRUCT, data=form)
    assert response.status_code == 200
    return list(ET.fromstring(response.data))


@pytest.mark.parametrize("dialled, number", [
    ("254702332796", "+254702332796"),     # digits without +
    ("0726339982", "+254726339982"),       # local form, in our number's country
    ("+254712345678", "+254712345678"),
    ("00254712345678", "+254712345678"),
])
def test_a_client_call_is_connected_to_what_the_agent_dialled(client, dialled, number):
    actions = answer(client, client_call(dialled))
    assert [(a.tag, a.get("phoneNumbers")) for a in actions] == [("Dial", number)]


@pytest.mark.parametrize("start", ["2025-02-13 08:32:37", "2023-01-18+20:05:25", "None"])
def test_a_client_call_is_recorded_from_the_client_to_the_number(client, start):
    answer(client, client_call("0726339982", start=start))
    call = client.get("/voice/calls/ATVId_client1", headers=KEY).json["call"]
    assert (call["callerNumber"], call["destinationNumber"], call["clientName"]) == ("jonah", "+254726339982", "jonah")
    assert call["state"] == "Ringing" and call["direction"] == "Inbound"
    assert client.get("/voice/calls?client=jonah", headers=KEY).json["calls"][0]["sessionId"] == "ATVId_client1"
    assert client.get("/voice/calls?client=mary", headers=KEY).json["calls"] == []


def test_an_agent_dialling_our_own_number_takes_the_next_caller_in_its_queue(client):
    actions = answer(client, client_call("0711000000"))
    assert [(a.tag, a.get("phoneNumber")) for a in actions] == [("Dequeue", "+254711000000")]


@pytest.mark.parametrize("settings, dialled, reason, words", [
    ({}, "19005550123", "premium", "premium-rate"),
    ({"VOICE_ALLOWED_COUNTRY_CODES": "254"}, "447700900123", "country", "that country"),
    ({}, "12", "invalid", "not a valid phone number"),
    ({}, None, "none", "no number to dial"),
])
def test_a_refused_number_never_reaches_a_dial_and_the_agent_hears_why(make_app, caplog, settings, dialled,
                                                                        reason, words):
    client = make_app(**settings).test_client()
    with caplog.at_level(logging.WARNING, logger="voice.flows.clients"):
        actions = answer(client, client_call(dialled))
    assert [a.tag for a in actions] == ["Say"] and words in actions[0].text
    assert "VOICE_ALLOWED" not in actions[0].text and "254" not in actions[0].text  # why, not the rules
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "client jonah" in logged and "refused" in logged
    if dialled and len(dialled) > 6:
        assert dialled not in logged  # masked


def test_a_destination_over_its_limit_is_refused_to_clients_too(make_app):
    client = make_app(VOICE_RATE_LIMIT_PER_DESTINATION="1 per hour").test_client()
    assert [a.tag for a in answer(client, client_call("0712345678", session="ATVId_c1"))] == ["Dial"]
    second = answer(client, client_call("+254712345678", session="ATVId_c2", client="mary"))
    assert [a.tag for a in second] == ["Say"] and "too often" in second[0].text
    # ...and the API's dial-outs share the same count.
    assert client.post("/voice/invoke-call", data={"phone": "254712345678"}, headers=KEY).status_code == 429


def test_a_phone_callers_call_still_hears_the_welcome_menu(client):
    form = {"sessionId": "ATVId_phone", "isActive": "1", "direction": "Inbound", "callerNumber": "+254712345678",
            "destinationNumber": "+254711000000", "callSessionState": "Ringing",
            "clientDialedNumber": "0712000000"}  # a forged field does not make a phone caller a client
    assert [a.tag for a in answer(client, form)] == ["GetDigits", "Redirect"]


def test_the_rest_of_a_client_call_is_recorded_on_the_same_call(client):
    answer(client, client_call("0726339982"))
    final = dict(client_call("0726339982"), isActive="0", callSessionState="Completed", durationInSeconds="42",
                 amount="1.2", currencyCode="KES", hangupCause="NORMAL_CLEARING")
    assert client.post(EVENTS, data=final).data == b"OK"
    call = client.get("/voice/calls/ATVId_client1", headers=KEY).json["call"]
    assert (call["state"], call["durationSeconds"], call["destinationNumber"]) == ("Completed", 42, "+254726339982")


# Flows

def test_a_flow_rings_clients_at_the_address_at_gives_them(make_app, tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text("start: {inbound: agents}\nsteps:\n  agents:\n"
                    "    - dial: {clients: [jonah, mary], phoneNumbers: ['+254711000009'], sequential: true}\n")
    client = make_app(VOICE_FLOW_FILE=str(flow)).test_client()
    form = {"sessionId": "ATVId_in", "isActive": "1", "direction": "Inbound", "callerNumber": "+254712345678",
            "destinationNumber": "+254711000000", "callSessionState": "Ringing"}
    dial = answer(client, form)[0]
    assert dial.tag == "Dial" and dial.get("sequential") == "true"
    assert dial.get("phoneNumbers") == "+254711000009,testapp.jonah,testapp.mary"


@pytest.mark.parametrize("dial, problem", [
    ("{clients: ['jo nah']}", "is not a client name"),
    ("{clients: []}", "1 to 20 client names"),
    ("{clientDialedNumber: yes please}", "must be true"),
    ("{clientDialedNumber: true, phoneNumbers: ['+254711000009']}", "takes no phoneNumbers"),
    ("{record: true}", "needs phoneNumbers, clients, or clientDialedNumber"),
])
def test_flow_check_refuses_bad_client_dials(dial, problem):
    document = f"start: {{inbound: a, clients: a}}\nsteps:\n  a:\n    - dial: {dial}\n"
    with pytest.raises(flows.FlowError) as caught:
        flows.check_document(yaml.safe_load(document), "test")
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_the_default_flow_starts_client_calls_apart_from_inbound_ones():
    flow = flows.load()
    assert flow.start_for("Inbound", "+254711000000", from_client=True) == "agent_dials"
    assert flow.start_for("Inbound", "+254711000000") == "welcome"


# POST /voice/clients/token

def test_a_token_is_minted_by_at_for_the_client(client, simulated_at):
    response = client.post("/voice/clients/token", json={"clientName": "jonah", "expire": 7200}, headers=KEY)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["token"].startswith("SIMULATED-NOT-A-REAL-TOKEN-")
    assert (body["clientName"], body["lifetimeSeconds"], body["incoming"], body["outgoing"]) == ("jonah", 7200, True, True)
    assert body["address"] == "testapp.jonah"
    sent = simulated_at.requests[-1]
    assert sent["path"] == "/capability-token/request" and sent["apiKey"] == AT_KEY
    assert sent["form"] == {"username": "testapp", "clientName": "jonah", "phoneNumber": "+254711000000",
                            "incoming": True, "outgoing": True, "expire": "7200s"}
    assert response.headers["Cache-Control"] == "no-store"


def test_a_token_may_be_for_incoming_calls_only(client, simulated_at):
    response = client.post("/voice/clients/token", data={"clientName": "mary", "outgoing": "false"}, headers=KEY)
    assert response.json["outgoing"] is False and simulated_at.requests[-1]["form"]["outgoing"] is False
    assert simulated_at.requests[-1]["form"]["expire"] == "3600s"


@pytest.mark.parametrize("name, code, words", [
    ("fail_error", "at_rejected", "Invalid phoneNumber for this account"),
    ("fail_401", "at_rejected", "The supplied authentication is invalid"),
    ("fail_500", "at_rejected", "Internal Server Error"),
    ("fail_hang", "at_timeout", "did not answer"),
])
def test_ats_token_failures_map_like_dial_outs(client, name, code, words):
    response = client.post("/voice/clients/token", json={"clientName": name}, headers=KEY)
    assert response.status_code == 500 and response.json["error"] == code and words in response.json["message"]


@pytest.mark.parametrize("body", [{}, {"clientName": "jo nah"}, {"clientName": "x" * 65}, {"clientName": "a.b"},
                                  {"clientName": "jonah", "expire": 10}, {"clientName": "jonah", "expire": 100000},
                                  {"clientName": "jonah", "expire": "soon"}, {"clientName": "jonah", "incoming": "maybe"},
                                  {"clientName": ["jonah"]}])
def test_token_input_is_bounded_before_at_is_asked(client, simulated_at, body):
    response = client.post("/voice/clients/token", json=body, headers=KEY)
    assert response.status_code == 400 and response.json["error"] == "bad_field"
    assert simulated_at.requests == []


def test_tokens_need_the_key(client, simulated_at):
    assert client.post("/voice/clients/token", json={"clientName": "jonah"}).status_code == 401
    assert simulated_at.requests == []


def test_which_key_may_mint_which_client_names_is_a_setting(make_app, simulated_at):
    client = make_app(VOICE_API_KEYS="night:night-key-1234", VOICE_CLIENT_NAMES="agent_*,night:night_*").test_client()
    night = {"X-API-Key": "night-key-1234"}
    mint = lambda name, headers: client.post("/voice/clients/token", json={"clientName": name}, headers=headers)
    assert mint("agent_jonah", KEY).status_code == 200
    assert mint("night_mary", night).status_code == 200 and mint("agent_x", night).status_code == 200
    refused = mint("night_mary", KEY)
    assert refused.status_code == 403 and refused.json["error"] == "client_not_allowed"
    assert mint("boss", KEY).status_code == 403
    assert len([r for r in simulated_at.requests if r["path"] == "/capability-token/request"]) == 3


def test_a_malformed_client_names_setting_stops_start_up(config):
    from app import create_app

    with pytest.raises(ValueError, match="VOICE_CLIENT_NAMES"):
        create_app(dict(config, VOICE_CLIENT_NAMES="jo nah"))


def test_the_token_is_never_logged(client, caplog):
    with caplog.at_level(logging.DEBUG):
        token = client.post("/voice/clients/token", json={"clientName": "jonah"}, headers=KEY).json["token"]
    assert token not in caplog.text and AT_KEY not in caplog.text


# The simulator

def test_voice_simulate_plays_a_client_call(app, live_app):
    result = app.test_cli_runner().invoke(args=["voice", "simulate", "--url", live_app, "--client", "jonah",
                                                "--dial", "0712345678"])
    assert result.exit_code == 0, result.output
    assert "CALL from client testapp.jonah" in result.output
    assert "DIAL phoneNumbers=+254712345678" in result.output
    calls = app.test_client().get("/voice/calls?client=jonah", headers=KEY).json["calls"]
    assert calls[0]["destinationNumber"] == "+254712345678" and calls[0]["state"] == "Completed"


def test_the_simulator_names_the_clients_a_flow_rings(make_app, tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text("start: {inbound: agents}\nsteps:\n  agents:\n    - dial: {clients: [jonah]}\n")
    server = make_server("127.0.0.1", 0, make_app(VOICE_FLOW_FILE=str(flow)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lines = []
    try:
        SimulatedCall(f"http://127.0.0.1:{server.server_port}", token=WEBHOOK_TOKEN, say=lines.append).run()
    finally:
        server.shutdown()
    assert "  (rings the browser or app client jonah)" in lines


def test_flow_show_previews_a_client_dial_without_refusing_anything(app, caplog):
    with caplog.at_level(logging.WARNING):
        result = app.test_cli_runner().invoke(args=["voice", "flow", "show", "voice/flows/default.yaml", "agent_dials"])
    assert result.exit_code == 0 and "the number the client dialled" in result.output
    assert "refused" not in caplog.text


@pytest.mark.parametrize("caller", ["+254712345678", "otheruser.jonah"])
def test_a_dial_of_what_was_typed_works_for_any_caller_that_reaches_it(client, caller):
    form = dict(client_call("0726339982"), callerNumber=caller)
    # Not a client of ours: the flow starts elsewhere, so the callback names the step itself.
    response = client.post(INSTRUCT + "&step=agent_dials", data=form)
    assert [(a.tag, a.get("phoneNumbers")) for a in ET.fromstring(response.data)] == [("Dial", "+254726339982")]


def test_a_client_name_with_a_dash_is_still_a_client(client):
    actions = answer(client, client_call("0726339982", client="jo-nah"))
    assert [(a.tag, a.get("phoneNumbers")) for a in actions] == [("Dial", "+254726339982")]


def test_a_typed_number_that_is_no_number_is_noted_on_the_event(client):
    answer(client, client_call("07abc12", session="ATVId_typo"))
    events = client.get("/voice/calls/ATVId_typo", headers=KEY).json["events"]
    assert "clientDialedNumber is not a phone number" in events[-1]["problems"]
