"""The rest of AT's voice API: queue status, media upload, call transfer, several numbers and a clientRequestId.

Against the simulated AT over real HTTP on 127.0.0.1: the client wrapper's error mapping, the
routes' checks and protections, and the records the notifications leave.
"""

import logging
import subprocess
import sys
import time

import pytest
import requests
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app

from tests.gunicorn_helpers import free_port, served, service_env
from tests.helpers import AT_KEY, EVENTS, KEY, WEBHOOK_TOKEN, live_call, make_live, sent
from voice.at.simulated import SimulatedAT
from voice.at.client import ATError, VoiceClient
from voice.store.db import db

OURS = "+254711000000"
SECOND = "+254711000002"


# The client wrapper: every failure of each new request maps to one of our errors.

FAILURES = [
    ("+254700000401", "at_rejected", "The supplied authentication is invalid"),
    ("+254700000500", "at_rejected", "Internal Server Error"),
    ("+254700000504", "at_timeout", "did not answer"),
    ("+254700000415", "at_bad_response", "not JSON"),
]


def test_queue_status_answers_ats_entries(voice, simulated_at):
    entries = voice.queue_status([OURS])
    assert entries == [{"phoneNumber": OURS, "queueName": "", "numCalls": 0}]
    assert sent(simulated_at, "/queueStatus")[-1] == {"username": "testapp", "phoneNumbers": OURS}


@pytest.mark.parametrize("number, code, words", FAILURES + [("+254700000409", "at_rejected", "Not a voice number")])
def test_queue_status_failures_map_like_dial_out(voice, number, code, words):
    with pytest.raises(ATError) as caught:
        voice.queue_status([number])
    assert caught.value.code == code and words in caught.value.message
    assert caught.value.operation == "queue"


def test_queue_status_with_a_charset_content_type_is_still_read(voice):
    # The SDK hands back a str when the content type has parameters.
    assert voice.queue_status(["+254700000200"])[0]["numCalls"] == 0


def test_media_upload_is_taken_on_201(voice, simulated_at):
    voice.upload_media("https://media.example.com/hold.mp3")
    assert sent(simulated_at, "/mediaUpload")[-1] == {"username": "testapp", "phoneNumber": OURS,
                                                 "url": "https://media.example.com/hold.mp3"}


@pytest.mark.parametrize("number, url, code, words", [
    ("+254700000201", "https://media.example.com/a.mp3", "at_rejected", "HTTP 200"),
    (OURS, "ftp://media.example.com/a.mp3", "at_rejected", "Invalid url"),
    ("+254700000415", "https://media.example.com/a.mp3", "at_rejected", "Service temporarily unavailable"),
] + [(number, "https://media.example.com/a.mp3", code, words) for number, code, words in FAILURES[:3]])
def test_media_upload_anything_but_201_is_an_error_with_ats_text(voice, number, url, code, words):
    with pytest.raises(ATError) as caught:
        voice.upload_media(url, number)
    assert caught.value.code == code and words in caught.value.message


def test_transfer_of_a_live_call_posts_what_at_expects(voice, simulated_at):
    make_live(simulated_at, "ATVId_t1")
    answer = voice.transfer("ATVId_t1", "+254712000001", "caller", "https://media.example.com/hold.mp3")
    assert answer["callTransferResponse"]["status"] == "Success"
    assert sent(simulated_at, "/callTransfer")[-1] == {
        "username": "testapp", "sessionId": "ATVId_t1", "phoneNumber": "+254712000001", "callLeg": "caller",
        "holdMusicUrl": "https://media.example.com/hold.mp3"}


@pytest.mark.parametrize("number, words", [("+254712000001", "Call session is not active"),
                                           ("+254700000409", "NotAllowed")])
def test_an_aborted_transfer_is_an_error_naming_ats_message(voice, number, words):
    with pytest.raises(ATError) as caught:
        voice.transfer("ATVId_gone", number)
    assert caught.value.code == "at_transfer_failed" and words in caught.value.message
    assert caught.value.at_status == "Aborted"


@pytest.mark.parametrize("number, code, words", FAILURES)
def test_transfer_failures_map_like_dial_out(voice, number, code, words):
    with pytest.raises(ATError) as caught:
        voice.transfer("ATVId_t1", number)
    assert caught.value.code == code and words in caught.value.message


def test_every_new_request_maps_an_unreachable_at():
    voice = VoiceClient("testapp", AT_KEY, OURS, base_url=f"http://127.0.0.1:{free_port()}", timeout=1.0)
    for ask in (lambda: voice.queue_status([OURS]), lambda: voice.upload_media("https://m.example.com/a.wav"),
                lambda: voice.transfer("ATVId_t1", "+254712000001"),
                lambda: voice.call(["+254712345678"], client_request_id="r1")):
        with pytest.raises(ATError) as caught:
            ask()
        assert caught.value.code == "at_unreachable"


# GET /voice/queue

def test_queue_route_defaults_to_our_number(client, simulated_at):
    response = client.get("/voice/queue", headers=KEY)
    assert response.status_code == 200
    assert response.json == {"queues": [{"phoneNumber": OURS, "queueName": "", "numCalls": 0}]}


def test_queue_route_takes_several_of_our_numbers(make_app, simulated_at):
    client = make_app(AT_VOICE_NUMBERS=f"{SECOND}, +254711000003").test_client()
    response = client.get(f"/voice/queue?phone={OURS}&phone=254711000002,254711000003", headers=KEY)
    assert [queue["phoneNumber"] for queue in response.json["queues"]] == [OURS, SECOND, "+254711000003"]


@pytest.mark.parametrize("query, code", [("phone=254712345678", "not_our_number"), ("phone=12", "invalid_phone")])
def test_queue_route_refuses_numbers_that_are_not_ours(client, simulated_at, query, code):
    response = client.get("/voice/queue?" + query, headers=KEY)
    assert response.status_code == 400 and response.json["error"] == code
    assert simulated_at.requests == []


def test_queue_route_needs_the_key(client, simulated_at):
    assert client.get("/voice/queue").status_code == 401
    assert simulated_at.requests == []


@pytest.mark.parametrize("number, code", [(number, code) for number, code, _ in FAILURES]
                         + [("+254700000409", "at_rejected")])
def test_queue_route_answers_ats_failures_as_json_500(make_app, number, code):
    client = make_app(AT_VOICE_NUMBERS=number).test_client()
    response = client.get(f"/voice/queue?phone={number}", headers=KEY)
    assert response.status_code == 500 and response.json["error"] == code


# POST /voice/media

def test_media_route_has_at_fetch_the_file(client, simulated_at):
    response = client.post("/voice/media", json={"url": "https://media.example.com/menu.wav"}, headers=KEY)
    assert response.status_code == 200
    assert response.json["phoneNumber"] == OURS and response.json["url"] == "https://media.example.com/menu.wav"
    assert sent(simulated_at, "/mediaUpload")[-1]["url"] == "https://media.example.com/menu.wav"


@pytest.mark.parametrize("body", [{}, {"url": "javascript:alert(1)"}, {"url": "ftp://m.example.com/a.mp3"},
                                  {"url": "https://m.example.com/a.ogg"}, {"url": "https://m.example.com/" + "a" * 3000 + ".mp3"},
                                  {"url": "https://m.example.com/a.mp3", "phone": "254712345678"}, {"url": ["x"]}])
def test_media_route_refuses_what_at_cannot_play_before_asking_it(client, simulated_at, body):
    response = client.post("/voice/media", json=body, headers=KEY)
    assert response.status_code == 400 and response.json["error"] in ("bad_field", "not_our_number")
    assert simulated_at.requests == []


def test_media_route_answers_ats_refusal_with_its_text(make_app):
    client = make_app(AT_VOICE_NUMBERS="+254700000201").test_client()
    response = client.post("/voice/media", data={"url": "https://m.example.com/a.mp3", "phone": "+254700000201"},
                           headers=KEY)
    assert response.status_code == 500 and response.json["error"] == "at_rejected"
    assert "HTTP 200" in response.json["message"]


def test_media_command_uploads_from_the_shell(app, simulated_at):
    result = app.test_cli_runner().invoke(args=["voice", "media", "upload", "https://m.example.com/hold.mp3"])
    assert result.exit_code == 0 and "uploaded" in result.output
    assert sent(simulated_at, "/mediaUpload")[-1]["url"] == "https://m.example.com/hold.mp3"


def test_flow_check_offers_to_upload_every_audio_file(app, simulated_at):
    runner = app.test_cli_runner()
    declined = runner.invoke(args=["voice", "flow", "check", "tests/flows/every_action.yaml", "--upload-media"],
                             input="n\n")
    assert declined.exit_code == 0 and "https://media.example.com/hold.mp3" in declined.output
    assert sent(simulated_at, "/mediaUpload") == []
    taken = runner.invoke(args=["voice", "flow", "check", "tests/flows/every_action.yaml", "--upload-media", "--yes"])
    assert taken.exit_code == 0, taken.output
    assert {form["url"] for form in sent(simulated_at, "/mediaUpload")} == {
        "https://media.example.com/intro.mp3", "https://media.example.com/ring.mp3",
        "https://media.example.com/beep-prompt.wav", "https://media.example.com/hold.mp3",
        "https://media.example.com/menu.mp3"}


# POST /voice/calls/<sessionId>/transfer

def test_transfer_of_a_live_call_is_done_and_noted_on_the_call(client, simulated_at):
    session = live_call(client)
    make_live(simulated_at, session)
    response = client.post(f"/voice/calls/{session}/transfer", json={"phone": "254712000001"}, headers=KEY)
    assert response.status_code == 200, response.json
    assert response.json["phoneNumber"] == "+254712000001" and response.json["callLeg"] == "callee"
    assert sent(simulated_at, "/callTransfer")[-1]["callLeg"] == "callee"
    events = client.get(f"/voice/calls/{session}", headers=KEY).json["events"]
    assert events[-1]["type"] == "TransferRequested" and events[-1]["payload"]["requestedBy"] == "default"


def test_a_transfer_at_aborts_is_an_error_and_noted_on_the_call(client, simulated_at):
    session = live_call(client)
    response = client.post(f"/voice/calls/{session}/transfer", data={"phone": "254712000001"}, headers=KEY)
    assert response.status_code == 500 and response.json["error"] == "at_transfer_failed"
    assert "Call session is not active" in response.json["message"]
    events = client.get(f"/voice/calls/{session}", headers=KEY).json["events"]
    assert events[-1]["type"] == "TransferRefused" and events[-1]["payload"]["status"] == "Aborted"


def test_transfer_of_an_unknown_or_ended_call_is_409_and_nothing_reaches_at(client, simulated_at):
    ended = {"sessionId": "ATVId_done", "isActive": "0", "callSessionState": "Completed", "direction": "Inbound",
             "callerNumber": "+254712345678", "destinationNumber": OURS}
    client.post(EVENTS, data=ended)
    for session in ("ATVId_unknown", "ATVId_done", "bad%20id"):
        response = client.post(f"/voice/calls/{session}/transfer", data={"phone": "254712000001"}, headers=KEY)
        assert response.status_code == 409 and response.json["error"] == "call_not_in_progress"
    assert sent(simulated_at, "/callTransfer") == []


@pytest.mark.parametrize("body, status, code", [
    ({"phone": "+1 900 555 0123"}, 400, "invalid_phone"),           # premium rate
    ({"phone": "+447700900123"}, 403, "destination_not_allowed"),   # another country
    ({}, 400, "invalid_phone"),
    ({"phone": "254712000001", "callLeg": "both"}, 400, "bad_field"),
    ({"phone": "254712000001", "holdMusicUrl": "javascript:x"}, 400, "bad_field"),
])
def test_a_transfer_passes_every_dial_out_protection(make_app, simulated_at, body, status, code):
    client = make_app(VOICE_ALLOWED_COUNTRY_CODES="254,1").test_client()
    session = live_call(client)
    make_live(simulated_at, session)
    response = client.post(f"/voice/calls/{session}/transfer", json=body, headers=KEY)
    assert response.status_code == status and response.json["error"] == code
    assert sent(simulated_at, "/callTransfer") == []


def test_transfers_count_against_the_dial_out_limits(make_app, simulated_at):
    client = make_app(VOICE_RATE_LIMIT_PER_DESTINATION="1 per hour").test_client()
    assert client.get("/voice/invoke-call?phone=254712000001", headers=KEY).status_code == 200
    session = live_call(client)
    make_live(simulated_at, session)
    response = client.post(f"/voice/calls/{session}/transfer", json={"phone": "254712000001"}, headers=KEY)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 60
    assert sent(simulated_at, "/callTransfer") == []


def test_transfer_needs_the_key(client, simulated_at):
    session = live_call(client)
    assert client.post(f"/voice/calls/{session}/transfer", json={"phone": "254712000001"}).status_code == 401


def test_transfer_notifications_are_folded_onto_the_call(client):
    session = live_call(client)
    base = {"sessionId": session, "isActive": "1", "direction": "Inbound", "callerNumber": "+254712345678",
            "destinationNumber": OURS}
    completed = dict(base, callSessionState="TransferCompleted", callTransferState="Completed",
                     callTransferredToNumber="+254712000001")
    started = dict(base, callSessionState="Transferred", callTransferState="Active",
                   callTransferredToNumber="+254712000001", callTransferParam="+254712000001:20")
    for form in (completed, started):  # out of order: the outcome must stick
        assert client.post(EVENTS, data=form).data == b"OK"
    call = client.get(f"/voice/calls/{session}", headers=KEY).json["call"]
    assert call["transfer"] == {"to": "+254712000001", "state": "Completed", "hangupCause": None}
    assert call["state"] == "TransferCompleted"
    failed = dict(base, sessionId="ATVId_tf2", callSessionState="Active", callTransferState="CallerHangup",
                  callTransferHangupCause="NoActiveClient", callTransferredToNumber="+254712000009")
    client.post(EVENTS, data=failed)
    assert client.get("/voice/calls/ATVId_tf2", headers=KEY).json["call"]["transfer"]["hangupCause"] == "NoActiveClient"


def test_queue_notifications_are_folded_onto_the_call(client):
    form = {"sessionId": "ATVId_q1", "isActive": "1", "direction": "Inbound", "callerNumber": "+254712345678",
            "destinationNumber": OURS, "dequeuedToPhoneNumber": SECOND, "dequeuedToSessionId": "ATVId_agent",
            "dequeueTime": "2026-11-27+10:05:00", "queueDurationInSeconds": "42"}
    assert client.post(EVENTS, data=form).data == b"OK"
    call = client.get("/voice/calls/ATVId_q1", headers=KEY).json["call"]
    assert call["queue"] == {"name": None, "waitedSeconds": 42, "dequeuedTo": SECOND,
                             "dequeuedAt": "2026-11-27T10:05:00Z"}


# Several numbers in one dial-out

def test_several_numbers_are_one_at_request_with_each_entry(client, simulated_at):
    response = client.post("/voice/invoke-call", json={"phone": ["254712345678", "+254712345670"]}, headers=KEY)
    assert response.status_code == 200
    assert [(c["phoneNumber"], c["status"]) for c in response.json["calls"]] == [
        ("+254712345678", "Queued"), ("+254712345670", "Queued")]
    assert sent(simulated_at, "/call") == [{"username": "testapp", "from": OURS, "to": "+254712345678,+254712345670"}]
    for call in response.json["calls"]:
        assert client.get(f"/voice/calls/{call['sessionId']}", headers=KEY).status_code == 200


@pytest.mark.parametrize("request_kwargs", [
    {"query_string": "phone=254712345678&phone=254712345670"},
    {"query_string": "phone=254712345678,254712345670"},
    {"data": {"phone": ["254712345678", "254712345670"]}},
])
def test_several_numbers_may_be_repeated_or_comma_separated(client, simulated_at, request_kwargs):
    response = client.post("/voice/invoke-call", headers=KEY, **request_kwargs)
    assert response.status_code == 200 and len(response.json["calls"]) == 2


def test_a_partly_failed_dial_out_is_200_with_each_status(client):
    response = client.post("/voice/invoke-call", json={"phone": ["254712345678", "254700000003"]}, headers=KEY)
    assert response.status_code == 200
    assert [c["status"] for c in response.json["calls"]] == ["Queued", "InsufficientCredit"]


def test_a_dial_out_where_none_was_queued_is_500(client):
    response = client.post("/voice/invoke-call", json={"phone": ["254700000001", "254700000003"]}, headers=KEY)
    assert response.status_code == 500 and response.json["error"] == "at_call_failed"


@pytest.mark.parametrize("numbers, status, code", [
    (["254712345678", "+447700900123"], 403, "destination_not_allowed"),
    (["254712345678", "+1 900 555 0123"], 400, "invalid_phone"),
    (["254712345678", "12"], 400, "invalid_phone"),
    ([f"2547123456{i:02d}" for i in range(11)], 400, "too_many_numbers"),
])
def test_one_refused_number_refuses_the_whole_request_before_at(make_app, simulated_at, numbers, status, code):
    client = make_app(VOICE_ALLOWED_COUNTRY_CODES="254,1").test_client()
    response = client.post("/voice/invoke-call", json={"phone": numbers}, headers=KEY)
    assert response.status_code == status and response.json["error"] == code
    assert simulated_at.requests == []


def test_each_number_is_limited_on_its_own(make_app, simulated_at):
    client = make_app(VOICE_RATE_LIMIT_PER_DESTINATION="1 per hour").test_client()
    assert client.post("/voice/invoke-call", json={"phone": ["254712345601", "254712345602"]},
                       headers=KEY).status_code == 200
    refused = client.post("/voice/invoke-call", json={"phone": ["254712345603", "254712345602"]}, headers=KEY)
    assert refused.status_code == 429 and refused.json["error"] == "too_many_requests"
    assert len(sent(simulated_at, "/call")) == 1
    # The refused request counted nothing against the number it did not reach.
    assert client.post("/voice/invoke-call", json={"phone": "254712345603"}, headers=KEY).status_code == 200


def test_each_number_counts_against_the_keys_limit(make_app):
    client = make_app(VOICE_RATE_LIMIT_PER_KEY="3 per minute").test_client()
    numbers = ["254712345601", "254712345602", "254712345603"]
    assert client.post("/voice/invoke-call", json={"phone": numbers}, headers=KEY).status_code == 200
    assert client.post("/voice/invoke-call", json={"phone": "254712345604"}, headers=KEY).status_code == 429


# clientRequestId

def test_a_client_request_id_goes_to_at_onto_the_calls_and_back(client, simulated_at):
    response = client.post("/voice/invoke-call", json={"phone": ["254712345678", "254712345670"],
                                                       "clientRequestId": "order-42"}, headers=KEY)
    assert response.status_code == 200 and response.json["clientRequestId"] == "order-42"
    assert sent(simulated_at, "/call")[-1]["clientRequestId"] == "order-42"
    client.post("/voice/invoke-call", json={"phone": "254712345671"}, headers=KEY)
    listed = client.get("/voice/calls?clientRequestId=order-42", headers=KEY).json["calls"]
    assert sorted(call["destinationNumber"] for call in listed) == ["+254712345670", "+254712345678"]
    assert {call["clientRequestId"] for call in listed} == {"order-42"}


def test_the_single_number_answer_is_unchanged_without_a_request_id(client, simulated_at):
    response = client.post("/voice/invoke-call", json={"phone": "254712345678"}, headers=KEY)
    assert set(response.json) == {"message", "response"}
    assert "clientRequestId" not in sent(simulated_at, "/call")[-1]


@pytest.mark.parametrize("value", ["x" * 65, "two\nlines", "trailing\n", "", "\u00e9t\u00e9"])
def test_a_bad_client_request_id_is_400_before_at(client, simulated_at, value):
    response = client.post("/voice/invoke-call", json={"phone": "254712345678", "clientRequestId": value},
                           headers=KEY)
    assert (response.status_code, response.json["error"]) == (400, "bad_field")
    assert simulated_at.requests == []


def test_a_client_request_id_a_callback_brings_lands_on_the_call(client):
    form = {"sessionId": "ATVId_cr1", "isActive": "1", "direction": "Outbound", "callerNumber": "+254712345678",
            "destinationNumber": OURS, "callSessionState": "Answered", "clientRequestId": "batch-7"}
    assert client.post(EVENTS, data=form).data == b"OK"
    assert client.get("/voice/calls/ATVId_cr1", headers=KEY).json["call"]["clientRequestId"] == "batch-7"


# Migrations

def test_the_migration_keeps_every_call_recorded_before(config):
    app = create_app(config)
    with app.app_context():
        upgrade(revision="0001")
        db.session.execute(sa.text(
            "INSERT INTO calls (session_id, direction, caller_number, state, created_at, updated_at) "
            "VALUES ('ATVId_before', 'Inbound', '+254712345678', 'Completed', '2026-11-01 10:00:00', "
            "'2026-11-01 10:00:00')"))
        db.session.commit()
        upgrade()
        db.session.remove()
    call = app.test_client().get("/voice/calls/ATVId_before", headers=KEY).json["call"]
    assert call["callerNumber"] == "+254712345678" and call["state"] == "Completed"
    assert call["clientRequestId"] is None and call["transfer"] is None


# End to end: the service under gunicorn, the simulated AT playing every call it places

CALL_CENTRE_FLOW = """
start:
  inbound: goodbye
  outbound: pick
steps:
  pick:
    menu:
      prompt: {say: "Press 1 to wait for an agent, 2 to be put through, 3 to take the next caller."}
      options: {"1": wait, "2": through, "3": take}
  wait:
    - enqueue: {name: support, holdMusic: "https://media.example.com/hold.mp3"}
  through:
    - dial: {phoneNumbers: ["+254712000001"]}
  take:
    - dequeue: {phoneNumber: "+254711000000", name: support}
  goodbye:
    - say: Goodbye.
"""


def wait_for(check, seconds=20):
    """The first truthy result of `check()` within `seconds`, else its last result."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_queues_transfers_media_and_several_numbers_end_to_end(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="voice.at.simulated")
    flow = tmp_path / "flow.yaml"
    flow.write_text(CALL_CENTRE_FLOW)
    env = service_env(tmp_path, "set below", VOICE_FLOW_FILE=flow)
    base = f"http://127.0.0.1:{env['PORT']}"
    fake = SimulatedAT(api_key=AT_KEY, service_url=base, token=WEBHOOK_TOKEN, bridge_seconds=6, answer_delay=0.1,
                  press={"+254712345601": ("1",), "+254712345602": ("2",), "+254712345603": ("3",)}).start()
    env["AT_VOICE_API_URL"] = env["AT_WEBRTC_API_URL"] = fake.url

    def post(path, **kwargs):
        return requests.post(base + path, headers=KEY, timeout=15, **kwargs)

    def call(session):
        return requests.get(f"{base}/voice/calls/{session}", headers=KEY, timeout=5).json()["call"]

    def waiting():
        queues = requests.get(base + "/voice/queue", headers=KEY, timeout=5).json()["queues"]
        return {queue["queueName"]: queue["numCalls"] for queue in queues}

    try:
        with served(env, tmp_path) as (base, _):
            # Two numbers in one request: one waits in the queue, one is put through to an agent.
            dialled = post("/voice/invoke-call", json={"phone": ["254712345601", "254712345602"],
                                                      "clientRequestId": "campaign-1"})
            assert dialled.status_code == 200, dialled.text
            queued, through = (entry["sessionId"] for entry in dialled.json()["calls"])
            assert wait_for(lambda: waiting().get("support") == 1), waiting()

            # The call put through is live: transfer it, and AT's notifications land on it.
            assert wait_for(lambda: call(through)["state"] == "Answered")
            moved = post(f"/voice/calls/{through}/transfer", json={"phone": "254712000009"})
            assert moved.status_code == 200, moved.text
            assert wait_for(lambda: (call(through)["transfer"] or {}).get("state") == "Active")

            # A third call takes the waiting caller out of the queue.
            assert post("/voice/invoke-call", json={"phone": "254712345603"}).status_code == 200
            assert wait_for(lambda: waiting().get("support", 0) == 0), waiting()

            ended = wait_for(lambda: call(queued)["state"] == "Completed" and call(through)["state"] == "Completed")
            assert ended
            assert call(queued)["queue"]["dequeuedTo"] == "+254711000000"
            assert call(through)["transfer"] == {"to": "+254712000009", "state": "Completed", "hangupCause": None}
            tagged = requests.get(base + "/voice/calls?clientRequestId=campaign-1", headers=KEY, timeout=5).json()
            assert {c["sessionId"] for c in tagged["calls"]} == {queued, through}
            # AT echoes the clientRequestId on the callbacks of the calls it places.
            assert all(c["clientRequestId"] == "campaign-1" for c in tagged["calls"])

            # An ended call cannot be transferred any more.
            late = post(f"/voice/calls/{through}/transfer", json={"phone": "254712000009"})
            assert late.status_code == 409

            uploaded = post("/voice/media", data={"url": "https://media.example.com/hold.mp3"})
            assert uploaded.status_code == 200 and uploaded.json()["phoneNumber"] == "+254711000000"
    finally:
        fake.stop()
    transcript = [record.getMessage() for record in caplog.records if record.name == "voice.at.simulated"]
    for word in ("ENQUEUE", "DEQUEUE", "TRANSFER", "DEQUEUED"):
        assert any(word in line for line in transcript), word


def test_voice_simulate_through_the_simulated_at_queues_dequeues_and_is_transferred(tmp_path, make_app):
    flow = tmp_path / "flow.yaml"
    flow.write_text(CALL_CENTRE_FLOW)
    env = service_env(tmp_path, "set below", VOICE_FLOW_FILE=flow)
    base = f"http://127.0.0.1:{env['PORT']}"
    fake = SimulatedAT(api_key=AT_KEY, service_url=base, token=WEBHOOK_TOKEN, bridge_seconds=5).start()
    env["AT_VOICE_API_URL"] = env["AT_WEBRTC_API_URL"] = fake.url

    def simulate(digits):
        command = [sys.executable, "-m", "flask", "--app", "app", "voice", "simulate", "--outbound", "--through-at",
                   "--digits", digits, "--url", base]
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    try:
        with served(env, tmp_path) as (base, _):
            waiting = simulate("1")  # waits in the support queue
            assert wait_for(lambda: sum(len(calls) for calls in fake.queues.values()) == 1)
            taker = simulate("3")  # takes it out of the queue
            through = simulate("2")  # put through to an agent, then transferred
            assert wait_for(lambda: any(call.transferred_to is None and call.last_digits == "2"
                                        for call in list(fake.live.values())))
            session = next(c.session_id for c in list(fake.live.values()) if c.last_digits == "2")
            assert wait_for(lambda: requests.get(f"{base}/voice/calls/{session}", headers=KEY, timeout=5).ok)
            moved = requests.post(f"{base}/voice/calls/{session}/transfer", data={"phone": "254712000009"},
                                  headers=KEY, timeout=10)
            assert moved.status_code == 200, moved.text
            outputs = [process.communicate(timeout=60)[0] for process in (waiting, taker, through)]
    finally:
        fake.stop()
    assert "ENQUEUE" in outputs[0] and "DEQUEUED to +254711000000" in outputs[0]
    assert "DEQUEUE" in outputs[1] and "connected to the caller waiting" in outputs[1]
    assert "TRANSFER callee to +254712000009" in outputs[2] and "END after" in outputs[2]
