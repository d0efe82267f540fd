"""Call records through the webhooks and dial-out, on SQLite and on a real PostgreSQL."""

import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app import create_app
from tests.helpers import EVENTS, INSTRUCT, KEY, database_locked
from voice.store.db import db

pytestmark = pytest.mark.both_databases

SESSION = "ATVId_aaaabbbbccccddddeeeeffff00001111"
CALLER = "+254712345678"
OUR_NUMBER = "+254711000000"
ANSWERED = {"sessionId": SESSION, "isActive": "1", "direction": "Inbound", "callerNumber": CALLER,
            "destinationNumber": OUR_NUMBER, "callSessionState": "Answered", "callStartTime": "2026-11-27 08:00:00"}
FINAL = dict(ANSWERED, isActive="0", callSessionState="Completed", status="Success", durationInSeconds="42",
             amount="2.5000", currencyCode="KES", hangupCause="NORMAL_CLEARING", recordingUrl="https://rec.example/1.mp3")


def detail(client, session=SESSION):
    response = client.get(f"/voice/calls/{session}", headers=KEY)
    assert response.status_code == 200, response.json
    return response.json


def test_migrations_build_exactly_the_models_schema(app):
    with app.app_context():
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


def test_a_whole_inbound_call_is_recorded(client):
    client.post(INSTRUCT, data=ANSWERED)
    client.post(INSTRUCT, data=dict(ANSWERED, dtmfDigits="1"))
    assert client.post(EVENTS, data=FINAL).data == b"OK"
    found = detail(client)
    call = found["call"]
    assert call["direction"] == "Inbound"
    assert call["callerNumber"] == CALLER and call["destinationNumber"] == OUR_NUMBER
    assert call["state"] == "Completed"
    assert call["durationSeconds"] == 42 and call["amount"] == 2.5 and call["currencyCode"] == "KES"
    assert call["hangupCause"] == "NORMAL_CLEARING"
    assert call["lastDigits"] == "1"
    assert call["recordingUrls"] == ["https://rec.example/1.mp3"]
    assert call["startedAt"] == "2026-11-27T08:00:00Z"
    assert call["answeredAt"] is not None and call["endedAt"] is not None
    assert [e["type"] for e in found["events"]] == ["Answered", "Digits", "Completed"]
    assert [e["source"] for e in found["events"]] == ["instruct", "instruct", "events"]
    assert found["events"][2]["payload"]["hangupCause"] == "NORMAL_CLEARING"


def test_a_duplicate_notification_adds_no_row(client):
    for _ in range(3):
        assert client.post(EVENTS, data=FINAL).data == b"OK"
    assert len(detail(client)["events"]) == 1


def test_the_final_record_on_both_urls_is_stored_once_with_its_figures(client):
    assert client.post(INSTRUCT, data=FINAL).status_code == 200
    assert client.post(EVENTS, data=FINAL).data == b"OK"
    found = detail(client)
    assert len(found["events"]) == 1
    assert found["call"]["durationSeconds"] == 42 and found["call"]["hangupCause"] == "NORMAL_CLEARING"


def test_final_figures_land_whichever_url_brings_them(client):
    client.post(EVENTS, data=dict(ANSWERED, isActive="0", callSessionState="Completed"))
    client.post(INSTRUCT, data=dict(FINAL, callSessionState="Completed"))
    call = detail(client)["call"]
    assert call["durationSeconds"] == 42 and call["amount"] == 2.5 and call["hangupCause"] == "NORMAL_CLEARING"


def test_a_late_ringing_does_not_move_a_completed_call_back(client):
    client.post(EVENTS, data=FINAL)
    client.post(EVENTS, data=dict(ANSWERED, callSessionState="Ringing"))
    client.post(EVENTS, data=dict(ANSWERED, callSessionState="Active"))
    found = detail(client)
    assert found["call"]["state"] == "Completed"
    assert found["call"]["durationSeconds"] == 42
    assert len(found["events"]) == 3


def test_states_move_forward_in_order(client):
    client.post(EVENTS, data=dict(ANSWERED, callSessionState="Ringing"))
    assert detail(client)["call"]["state"] == "Ringing"
    client.post(EVENTS, data=dict(ANSWERED, callSessionState="Answered"))
    assert detail(client)["call"]["state"] == "Answered"


def test_the_specs_event_type_is_folded_into_the_state(client):
    client.post(EVENTS, data={"sessionId": SESSION, "eventType": "SessionEnded", "durationInSeconds": "7"})
    call = detail(client)["call"]
    assert call["state"] == "Completed" and call["durationSeconds"] == 7


def test_an_unanswered_outbound_call_with_only_the_final_request(client):
    form = {"sessionId": SESSION, "isActive": "0", "direction": "Outbound", "callSessionState": "NotAnswered",
            "status": "NotAnswered", "hangupCause": "USER_BUSY", "durationInSeconds": "0", "amount": "0",
            "currencyCode": "KES", "callStartTime": "None", "callerNumber": CALLER, "destinationNumber": OUR_NUMBER}
    assert client.post(INSTRUCT, data=form).status_code == 200
    call = detail(client)["call"]
    assert call["state"] == "NotAnswered" and call["hangupCause"] == "USER_BUSY"
    assert call["direction"] == "Outbound"
    # Who called whom: we called the phone user from our AT number.
    assert call["callerNumber"] == OUR_NUMBER and call["destinationNumber"] == CALLER
    assert call["answeredAt"] is None and call["durationSeconds"] == 0


def test_a_dialout_is_recorded_and_joined_by_its_callbacks(client):
    answer = client.post("/voice/invoke-call", data={"phone": "254712345678"}, headers=KEY)
    session = answer.json["response"]["entries"][0]["sessionId"]
    found = detail(client, session)
    assert found["call"]["state"] == "Queued"
    assert found["call"]["requestedBy"] == "default" and found["call"]["queueStatus"] == "Queued"
    assert found["call"]["destinationNumber"] == CALLER
    assert found["events"][0]["source"] == "invoke-call"

    outbound = dict(FINAL, sessionId=session, direction="Outbound")
    client.post(INSTRUCT, data=dict(ANSWERED, sessionId=session, direction="Outbound"))
    client.post(EVENTS, data=outbound)
    found = detail(client, session)
    assert found["call"]["state"] == "Completed" and found["call"]["durationSeconds"] == 42
    assert found["call"]["callerNumber"] == OUR_NUMBER and found["call"]["destinationNumber"] == CALLER
    assert [e["source"] for e in found["events"]] == ["invoke-call", "instruct", "events"]


def test_a_failed_dialout_entry_records_no_call(client):
    client.post("/voice/invoke-call", data={"phone": "254700000003"}, headers=KEY)
    calls = client.get("/voice/calls", headers=KEY).json["calls"]
    assert calls == []


def test_bad_values_are_kept_raw_and_never_a_500(client):
    form = {"sessionId": SESSION, "durationInSeconds": "forever", "amount": "1e999", "currencyCode": "KESH",
            "callStartTime": "None", "hangupCause": "x" * 500, "dtmfDigits": "<script>", "direction": "sideways"}
    assert client.post(EVENTS, data=form).data == b"OK"
    found = detail(client)
    assert found["call"]["durationSeconds"] is None and found["call"]["amount"] is None
    assert found["events"][0]["payload"]["durationInSeconds"] == "forever"
    assert len(found["events"][0]["problems"]) >= 5


def test_every_acknowledged_event_survives_a_restart(make_app):
    first = make_app().test_client()
    sessions = [f"ATVId_restart{i:04d}" for i in range(20)]
    for session in sessions:
        assert first.post(EVENTS, data=dict(FINAL, sessionId=session)).data == b"OK"
    second = make_app().test_client()
    listed = second.get("/voice/calls?limit=200", headers=KEY).json["calls"]
    assert sorted(call["sessionId"] for call in listed) == sessions


def test_events_answer_503_and_instruct_still_speaks_when_the_database_is_down(config, database_url):
    if database_url.startswith("sqlite"):
        broken = "sqlite:////nonexistent-dir/for/sure/voice.sqlite3"
    else:
        broken = "postgresql://voice:voice@127.0.0.1:1/voice"
    client = create_app(dict(config, DATABASE_URL=broken, DATABASE_TIMEOUT_SECONDS=0.5)).test_client()
    response = client.post(EVENTS, data=FINAL)
    assert response.status_code == 503
    assert response.json["error"] == "store_unavailable" and response.headers["Retry-After"]
    menu = client.post(INSTRUCT, data=ANSWERED)
    assert menu.status_code == 200 and ET.fromstring(menu.data).find("GetDigits") is not None
    # The final notification has no caller to hear anything: 503 makes AT send it again.
    assert client.post(INSTRUCT, data=FINAL).status_code == 503


def test_a_locked_database_answers_503_then_recovers_by_itself(make_app, database_url):
    client = make_app(DATABASE_TIMEOUT_SECONDS=0.5).test_client()
    with database_locked(database_url):
        assert client.post(EVENTS, data=FINAL).status_code == 503
        assert ET.fromstring(client.post(INSTRUCT, data=ANSWERED).data).find("GetDigits") is not None
    assert client.post(EVENTS, data=FINAL).data == b"OK"
    assert detail(client)["call"]["durationSeconds"] == 42


def test_sqlite_runs_in_wal_mode(app, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    with app.app_context():
        with db.engine.connect() as connection:
            assert connection.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
