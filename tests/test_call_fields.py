"""The one table of a call's fields (voice/calls.py): what the parser reads, the store keeps and the API shows.

The Dial leg's fields and the caller's country code and carrier were added by one row each in the
table and one migration: these tests show them stored, folded and shown, and walk the table so
that a row cannot miss its column, its place in the contract or its reader.
"""

import json
import re
from pathlib import Path

import pytest

from tests.helpers import EVENTS, KEY
from voice.calls import FIELDS, FIRST, KINDS, LATEST, SPECIAL, STORED
from voice.callbacks import READERS, Notification
from voice.store.records import Call

CONTRACT = json.loads((Path(__file__).parent.parent / "voice" / "openapi.json").read_text())
# What AT posts once a <Dial> connected an agent, and at the end (dial fields as seen in AT's VoiceEventRequest).
BRIDGED = {"sessionId": "ATVId_dial1", "isActive": "1", "direction": "Inbound", "callerNumber": "+256712345678",
           "destinationNumber": "+254711000000", "callSessionState": "Active", "callerCountryCode": "256",
           "callerCarrierName": "Airtel", "dialDestinationNumber": "+254711000009",
           "dialStartTime": "2026-12-02 09:00:05"}
ENDED = dict(BRIDGED, isActive="0", callSessionState="Completed", dialDurationInSeconds="95", durationInSeconds="120",
             callerCarrierName="None", dialDestinationNumber="None")


@pytest.mark.both_databases
def test_a_dial_leg_and_the_callers_network_are_kept_and_shown(client):
    assert client.post(EVENTS, data=BRIDGED).data == b"OK"
    assert client.post(EVENTS, data=ENDED).data == b"OK"
    call = client.get("/voice/calls/ATVId_dial1", headers=KEY).json["call"]
    assert call["dial"] == {"destination": "+254711000009", "startedAt": "2026-12-02T09:00:05Z",
                            "durationSeconds": 95}
    assert call["callerCountryCode"] == "256" and call["callerCarrierName"] == "Airtel"


def test_a_call_without_a_dial_shows_none(client):
    assert client.post(EVENTS, data={"sessionId": "ATVId_plain", "isActive": "0"}).data == b"OK"
    call = client.get("/voice/calls/ATVId_plain", headers=KEY).json["call"]
    assert call["dial"] is None and call["callerCarrierName"] is None


def test_the_console_shows_the_dial_leg(make_app):
    from tests.test_console import CONSOLE, sign_in

    client = make_app(**CONSOLE).test_client()
    client.post(EVENTS, data=BRIDGED)
    client.post(EVENTS, data=ENDED)
    sign_in(client)
    page = client.get("/voice/console/calls/ATVId_dial1").get_data(as_text=True)
    for text in ("Dial answered by", "+254711000009", "Dial lasted (s)", "95", "Caller&#39;s network", "Airtel"):
        assert text in page


@pytest.mark.parametrize("field", FIELDS, ids=lambda field: field.at)
def test_each_field_has_a_reader_a_slot_and_a_known_kind(field):
    assert field.kind in KINDS and field.kind in READERS
    assert field.name in Notification.__slots__
    assert field.fold in ((FIRST, LATEST, SPECIAL) if field.column else (None,))


@pytest.mark.parametrize("field", STORED, ids=lambda field: field.at)
def test_each_kept_field_has_a_column_and_a_place_in_the_contract(field):
    assert field.column in Call.__table__.columns
    schema = CONTRACT["components"]["schemas"]["Call"]["properties"]
    group, _, key = field.json.rpartition(".")
    assert key in (schema[group]["properties"] if group else schema)


def test_every_migration_together_makes_the_models_columns(app):
    """The migrations (run by the fixture) and the table agree: every column the model names exists."""
    from voice.store.db import db

    with app.app_context():
        columns = {column["name"] for column in db.inspect(db.engine).get_columns("calls")}
    assert {column.name for column in Call.__table__.columns} <= columns


def test_fields_at_names_are_unique_and_plain():
    names = [field.at for field in FIELDS]
    assert len(set(names)) == len(names) and all(re.fullmatch(r"[a-z][A-Za-z]+", name) for name in names)


def test_a_queue_is_shown_once_its_name_wait_or_taker_is_known(client):
    base = {"isActive": "1", "direction": "Inbound", "callerNumber": "+254712345678", "callSessionState": "Active"}
    client.post(EVENTS, data=dict(base, sessionId="ATVId_q1", dequeueTime="2026-12-02 09:00:00"))
    client.post(EVENTS, data=dict(base, sessionId="ATVId_q2", queueDurationInSeconds="12"))
    assert client.get("/voice/calls/ATVId_q1", headers=KEY).json["call"]["queue"] is None
    assert client.get("/voice/calls/ATVId_q2", headers=KEY).json["call"]["queue"]["waitedSeconds"] == 12


def test_a_calls_keys_keep_their_order(client):
    client.post(EVENTS, data={"sessionId": "ATVId_order", "isActive": "0"})
    keys = list(client.get("/voice/calls/ATVId_order", headers=KEY).json["call"])
    assert keys[:6] == ["sessionId", "direction", "callerNumber", "destinationNumber", "state", "status"]
    assert keys.index("transfer") < keys.index("queue") < keys.index("dial")
