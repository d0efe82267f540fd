"""The campaigns API: creating from JSON and CSV, what is refused and why, zones, roles, figures, pause, resume,
cancel, the contacts pages, the results and attempts CSV, and the do-not-call list."""

import csv
import io
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.helpers import API_KEY
from voice.campaigns.models import Attempt, Campaign, Contact, add_costs
from voice.store.db import db

pytestmark = pytest.mark.both_databases

KEYS = {"admin": API_KEY, "dialer": "dialer-key-0123456789", "other": "other-dialer-key-0123456789",
        "viewer": "viewer-key-0123456789"}
LABELS = {"admin": "default", "dialer": "acme", "other": "globex", "viewer": "board"}
SETTINGS = {
    "VOICE_API_KEYS": f"acme:{KEYS['dialer']}:dialer,globex:{KEYS['other']}:dialer,board:{KEYS['viewer']}:viewer",
    "VOICE_ALLOWED_COUNTRY_CODES": "254,44,1",
}
AMINA, BARAKA, CHEGE, DALIA = "+254712345678", "+254712345679", "+254712345670", "+254712345671"
LONDON = "+447400123456"       # a UK mobile: its number has several zones, so none is taken from it
NEW_YORK = "+16465551234"
PREMIUM = "+449098790000"
TANZANIA = "+255712345678"     # well formed, but +255 is not in VOICE_ALLOWED_COUNTRY_CODES


def headers(role="admin"):
    return {"X-API-Key": KEYS[role]}


@pytest.fixture
def app(make_app):
    """The app with an admin, two dialers and a viewer, dialling Kenya, the UK and North America."""
    return make_app(**SETTINGS)


def create(client, role="admin", **spec):
    """POST a campaign as JSON; the response."""
    spec.setdefault("name", "Reminders")
    spec.setdefault("contacts", [AMINA])
    return client.post("/voice/campaigns", json=spec, headers=headers(role))


def created(client, role="admin", **spec):
    """Create a campaign that must be accepted; the 201's body."""
    response = create(client, role, **spec)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def upload(client, content, role="admin", filename="contacts.csv", **fields):
    """POST a campaign as a form with `content` (bytes) as its contacts file."""
    data = {"name": "Upload", **fields, "contacts": (io.BytesIO(content), filename)}
    return client.post("/voice/campaigns", data=data, headers=headers(role), content_type="multipart/form-data")


def refused_error(response, status, field=None):
    """The JSON error of a refused request, checked: its status, JSON (never HTML), and the field named."""
    assert response.status_code == status, response.data[:500]
    assert response.mimetype == "application/json", response.data[:200]
    body = response.get_json()
    assert body["error"] and body["message"]
    if field is not None:
        assert field in body["message"], body["message"]
    return body


def contact_rows(client, campaign_id, role="admin", **query):
    response = client.get(f"/voice/campaigns/{campaign_id}/contacts", query_string=query, headers=headers(role))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def in_store(app, work):
    """Run `work()` in the app's context and commit; its result."""
    with app.app_context():
        result = work()
        db.session.commit()
        return result


def set_status(app, campaign_id, phone, status, **values):
    """Move a contact as the worker would."""
    in_store(app, lambda: db.session.execute(sa.update(Contact).where(
        Contact.campaign_id == campaign_id, Contact.phone == phone).values(status=status, **values)))


def add_attempt(app, campaign_id, phone, **values):
    """An attempt row for the contact `phone`, as the worker leaves one; its id."""
    def work():
        contact = db.session.execute(sa.select(Contact).where(
            Contact.campaign_id == campaign_id, Contact.phone == phone)).scalar_one()
        defaults = {"number": 1, "status": "ended", "claimed_at": datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)}
        attempt = Attempt(campaign_id=campaign_id, contact_id=contact.id, **{**defaults, **values})
        db.session.add(attempt)
        db.session.flush()
        if attempt.amount is not None and attempt.currency:  # as settling adds each call's cost to its campaign's
            add_costs({(campaign_id, attempt.currency): attempt.amount})
        return attempt.id

    return in_store(app, work)


def csv_rows(response):
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


# --- creating from JSON ----------------------------------------------------------------------------------------


def test_a_json_list_creates_a_running_campaign_with_its_rules(client):
    body = created(client, name="March reminders", contacts=[AMINA, {"phone": BARAKA, "vars": {"name": "Baraka"}}],
                   window={"from": "08:00", "to": "20:00", "days": ["mon", "tue"], "skip": ["2030-12-25"]},
                   retry="15m 1h 1d", maxConcurrent=3, perMinute=12, budget={"amount": 500, "currency": "kes"},
                   timezone="Africa/Nairobi")
    campaign = body["campaign"]
    assert (body["accepted"], body["refused"]) == (2, [])
    assert campaign["name"] == "March reminders" and campaign["status"] == "running"
    assert campaign["window"] == {"from": "08:00", "to": "20:00", "days": ["mon", "tue"], "skip": ["2030-12-25"]}
    assert (campaign["retry"], campaign["maxConcurrent"], campaign["perMinute"]) == ("15m 1h 1d", 3, 12)
    assert campaign["budget"] == {"amount": 500.0, "currency": "KES"}
    assert campaign["contacts"] == 2 and campaign["counts"]["pending"] == 2 and campaign["createdBy"] == "default"
    assert client.get(f"/voice/campaigns/{campaign['id']}", headers=headers()).get_json() == campaign


def test_defaults_when_the_rules_are_left_out(client):
    campaign = created(client)["campaign"]
    assert (campaign["retry"], campaign["maxConcurrent"], campaign["perMinute"]) == ("30m 2h", 5, 30)
    assert campaign["window"] is None and campaign["step"] is None and campaign["budget"] is None


def test_a_campaign_starting_later_is_scheduled(client):
    campaign = created(client, startAt="2030-01-07T06:00:00Z")["campaign"]
    assert campaign["status"] == "scheduled" and campaign["startAt"] == "2030-01-07T06:00:00Z"
    assert campaign["nextAttemptAt"] == "2030-01-07T06:00:00Z"


def test_each_refused_row_says_its_row_number_and_why(client):
    client.post("/voice/dnc", json={"phone": CHEGE}, headers=headers())
    body = created(client, contacts=[
        AMINA,                                                    # 1 accepted
        "12345",                                                  # 2 not a number
        PREMIUM,                                                  # 3 premium rate
        TANZANIA,                                                 # 4 a country not allowed
        AMINA,                                                    # 5 duplicate
        "+2540712345678",                                         # 6 the same number with a trunk 0
        "+254 0712-345-670",                                      # 7 on the do-not-call list, in another form
        {"phone": BARAKA, "timezone": "Mars/Olympus_Mons"},       # 8 no such zone
        {"phone": BARAKA, "vars": {"first name": "Baraka"}},      # 9 a variable name with a space
        {"phone": BARAKA, "vars": {"name": {"first": "B"}}},      # 10 a variable that is not text
        {"phone": BARAKA, "vars": "Baraka"},                      # 11 vars that are not an object
        {"phone": BARAKA, "vars": {"name": "bell\x07"}},          # 12 control characters
        {"phone": BARAKA, "vars": {"name": "x" * 513}},           # 13 too long
        [BARAKA],                                                 # 14 not a contact at all
        {"timezone": "Africa/Nairobi"},                           # 15 no phone
        {"phone": BARAKA, "timezone": "Africa/Nairobi", "vars": {"name": "Baraka", "visits": 3}},  # 16 accepted
    ])
    assert body["accepted"] == 2
    reasons = {refusal["row"]: refusal["error"] for refusal in body["refused"]}
    assert sorted(reasons) == list(range(2, 16))
    expected = {2: "digits", 3: "premium", 4: "+255", 5: "duplicate", 6: "duplicate", 7: "do-not-call",
                8: "Mars/Olympus_Mons", 9: "first name", 10: "'name'", 11: "vars must be an object",
                12: "'name'", 13: "512", 14: "phone is required", 15: "phone is required"}
    for row, word in expected.items():
        assert word in reasons[row], (row, reasons[row])
    phones = {refusal["row"]: refusal["phone"] for refusal in body["refused"]}
    assert phones[2] == "12345" and phones[6] == "+2540712345678"
    listed = contact_rows(client, body["campaign"]["id"])["contacts"]
    assert [(c["phone"], c["vars"]) for c in listed] == [(AMINA, {}), (BARAKA, {"name": "Baraka", "visits": "3"})]


@pytest.mark.parametrize("zone", [["Africa/Nairobi"], {"name": "Africa/Nairobi"}, 3, True])
def test_a_contact_timezone_that_is_not_text_is_refused_with_its_row(client, zone):
    body = created(client, contacts=[AMINA, {"phone": BARAKA, "timezone": zone}])
    assert body["accepted"] == 1
    assert [(r["row"], "timezone" in r["error"]) for r in body["refused"]] == [(2, True)]


def test_a_list_with_no_valid_contact_is_400_with_its_refused_rows(client):
    response = create(client, contacts=["12345", PREMIUM, TANZANIA])
    body = refused_error(response, 400)
    assert [refusal["row"] for refusal in body["refused"]] == [1, 2, 3]
    assert client.get("/voice/campaigns", headers=headers()).get_json()["campaigns"] == []


def test_a_list_of_numbers_all_on_the_do_not_call_list_is_400(client):
    client.post("/voice/dnc", json={"phone": [AMINA, BARAKA]}, headers=headers())
    body = refused_error(create(client, contacts=[AMINA, BARAKA]), 400)
    assert [(r["row"], "do-not-call" in r["error"]) for r in body["refused"]] == [(1, True), (2, True)]


@pytest.mark.parametrize("contacts", [[], None, "+254712345678", {"phone": AMINA}])
def test_contacts_that_are_not_a_list_of_contacts_are_400(client, contacts):
    refused_error(create(client, contacts=contacts), 400)


def test_more_than_100000_contacts_in_json_is_400(client):
    body = refused_error(create(client, contacts=[AMINA] * 100_001), 400)
    assert "100000" in body["message"]


@pytest.mark.parametrize("body, content_type", [
    (b"[1, 2]", "application/json"),
    (b"{not json", "application/json"),
    (b"phone\n+254712345678\n", "text/csv"),
])
def test_a_body_that_is_not_a_campaign_is_a_json_error(client, body, content_type):
    response = client.post("/voice/campaigns", data=body, content_type=content_type, headers=headers())
    assert response.status_code in (400, 415)
    refused_error(response, response.status_code)


def test_a_method_a_route_does_not_take_is_a_json_405(client):
    refused_error(client.put("/voice/campaigns", json={"contacts": [AMINA]}, headers=headers()), 405)
    refused_error(client.get("/voice/campaigns/1/pause", headers=headers()), 405)


# --- creating from a CSV upload ----------------------------------------------------------------------------------


def test_a_csv_upload_reads_phone_timezone_and_variables(client):
    content = ("\ufeffPhone,timezone,name,balance\r\n"
               "+254712345678,,Amina,\"1,200\"\r\n"
               "\r\n"
               "+254712345679,Asia/Kolkata,Baraka,\r\n"
               ",,,\r\n"
               "+447400123456,,\"Chege \"\"CJ\"\"\",50\r\n"
               "\r\n\r\n").encode("utf-8")
    response = upload(client, content, window="08:00-20:00", retry="15m 1h", maxConcurrent="3",
                      budget='{"amount": 20, "currency": "KES"}', timezone="Europe/London")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["accepted"], body["refused"]) == (3, [])
    campaign = body["campaign"]
    assert campaign["window"]["from"] == "08:00" and campaign["window"]["to"] == "20:00"
    assert (campaign["retry"], campaign["maxConcurrent"]) == ("15m 1h", 3)
    assert campaign["budget"] == {"amount": 20.0, "currency": "KES"}
    listed = contact_rows(client, campaign["id"])["contacts"]
    assert [(c["phone"], c["timezone"], c["vars"]) for c in listed] == [
        (AMINA, "Africa/Nairobi", {"name": "Amina", "balance": "1,200"}),
        (BARAKA, "Asia/Kolkata", {"name": "Baraka"}),
        (LONDON, "Europe/London", {"name": 'Chege "CJ"', "balance": "50"}),
    ]


def test_csv_rows_are_refused_for_the_same_reasons_as_json_rows(client):
    content = ("phone,timezone,name\n"
               "+254712345678,,Amina\n"
               "0712345678,,local\n"
               "+449098790000,,premium\n"
               "+255712345678,,tz\n"
               "254712345678,,again\n"
               "+254712345679,Nowhere/Town,bad zone\n"
               "+254712345670,,too,many,cells\n").encode()
    body = upload(client, content).get_json()
    assert body["accepted"] == 1
    reasons = {refusal["row"]: refusal["error"] for refusal in body["refused"]}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert "trunk 0" in reasons[2] and "premium" in reasons[3] and "+255" in reasons[4]
    assert "duplicate" in reasons[5] and "Nowhere/Town" in reasons[6] and "vars" in reasons[7]


@pytest.mark.parametrize("content, words", [
    (b"number,name\n+254712345678,Amina\n", "'phone' column"),
    (b"", "empty"),
    (b"phone,name\n+254712345678,Am\xefna\xff\n", "UTF-8"),
    ("phone,name\n+254712345678,Amina\n".encode("utf-16"), None),
    (b"phone,phone\n+254712345678,+254712345679\n", "twice"),
    (b"phone,first name\n+254712345678,Amina\n", "first name"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None),
])
def test_a_contacts_file_that_cannot_be_read_is_400(client, content, words):
    body = refused_error(upload(client, content), 400)
    if words:
        assert words in body["message"]
    assert client.get("/voice/campaigns", headers=headers()).get_json()["campaigns"] == []


def test_contacts_given_as_a_form_field_rather_than_a_file_is_400(client):
    response = client.post("/voice/campaigns", data={"name": "x", "contacts": "+254712345678"}, headers=headers(),
                           content_type="multipart/form-data")
    refused_error(response, 400, "contacts")


def test_a_csv_of_more_than_100000_rows_is_400(client):
    content = b"phone,name\n" + b",x\n" * 100_001
    body = refused_error(upload(client, content), 400)
    assert "100000" in body["message"]


def test_an_upload_over_the_size_setting_is_a_413_json(make_app):
    client = make_app(**SETTINGS, VOICE_CAMPAIGN_UPLOAD_MB=1).test_client()
    refused_error(upload(client, b"phone,name\n" + b"+254712345678,padding padding padding\n" * 40_000), 413)
    refused_error(create(client, contacts=[AMINA] * 80_000), 413)
    # Below the setting, a list larger than the app's request cap for other routes (64 KiB) is taken.
    many = [f"+2547{n:08d}" for n in range(12_000_000, 12_005_000)]
    assert create(client, contacts=many).get_json()["accepted"] == 5000


# --- rules refused by name ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("window", {"from": "25:00", "to": "08:00"}),
    ("window", {"from": "08:00"}),
    ("window", "whenever"),
    ("window", {"from": "08:00", "to": "20:00", "days": ["funday"]}),
    ("window", {"from": "08:00", "to": "20:00", "days": []}),
    ("window", {"from": "08:00", "to": "20:00", "skip": ["25/12/2030"]}),
    ("window", {"from": "08:00", "to": "20:00", "hours": 3}),
    ("window", ["08:00", "20:00"]),
    ("retry", "5x"),
    ("retry", "0s"),
    ("retry", "31d"),
    ("retry", " ".join(["1m"] * 11)),
    ("retry", 30),
    ("startAt", "tomorrow"),
    ("startAt", "3030-01-01T00:00:00Z"),
    ("notAfter", "2020-01-01T00:00:00Z"),
    ("maxConcurrent", 0),
    ("maxConcurrent", 1001),
    ("maxConcurrent", "many"),
    ("maxConcurrent", 2.5),
    ("maxConcurrent", True),
    ("perMinute", 0),
    ("perMinute", 60_001),
    ("perMinute", "1e3"),
    ("budget", {"amount": -1, "currency": "KES"}),
    ("budget", {"amount": 0, "currency": "KES"}),
    ("budget", {"amount": 10, "currency": "KESH"}),
    ("budget", {"amount": "lots", "currency": "KES"}),
    ("budget", {"amount": 10}),
    ("budget", 500),
    ("step", "nowhere"),
    ("step", ""),
    ("name", ""),
    ("name", "x" * 129),
    ("timezone", "Mars/Olympus_Mons"),
    ("timezone", "../etc/passwd"),
])
def test_a_bad_rule_is_400_naming_its_field(client, field, value):
    refused_error(create(client, **{field: value}), 400, field)
    assert client.get("/voice/campaigns", headers=headers()).get_json()["campaigns"] == []


def test_not_after_before_start_at_is_400(client):
    refused_error(create(client, startAt="2030-01-07T08:00:00Z", notAfter="2030-01-07T07:59:00Z"), 400, "notAfter")


@pytest.mark.parametrize("field, value", [
    ("maxConcurrent", "x"), ("perMinute", "-3"), ("window", "{not json"), ("window", "8-20"), ("retry", "soon"),
    ("budget", "lots of money"), ("startAt", "noon"), ("step", "nowhere"),
])
def test_a_bad_rule_in_a_form_is_400_naming_its_field(client, field, value):
    refused_error(upload(client, b"phone\n+254712345678\n", **{field: value}), 400, field)


# --- zones and the first attempt ---------------------------------------------------------------------------------


def test_each_contact_is_first_due_at_its_windows_opening_in_its_own_zone(client):
    # Monday 7 January 2030, 00:00 UTC; calls from 08:00 to 09:00 local time.
    rules = {"startAt": "2030-01-07T00:00:00Z", "window": {"from": "08:00", "to": "09:00"}}
    body = created(client, timezone="Asia/Tokyo", contacts=[
        AMINA,                                                # Kenya's zone, from the number
        {"phone": BARAKA, "timezone": "Asia/Kolkata"},        # its own zone first
        NEW_YORK,                                             # the zone of a US area code
        LONDON,                                               # no zone of its own: the campaign's
    ], **rules)
    listed = contact_rows(client, body["campaign"]["id"])["contacts"]
    assert [(c["phone"], c["timezone"], c["nextAttemptAt"]) for c in listed] == [
        (AMINA, "Africa/Nairobi", "2030-01-07T05:00:00Z"),
        (BARAKA, "Asia/Kolkata", "2030-01-07T02:30:00Z"),
        (NEW_YORK, "America/New_York", "2030-01-07T13:00:00Z"),
        (LONDON, "Asia/Tokyo", "2030-01-07T23:00:00Z"),   # 09:00 in Tokyo: the window just closed
    ]
    assert body["campaign"]["nextAttemptAt"] == "2030-01-07T02:30:00Z"
    without_zone = created(client, contacts=[LONDON], **rules)["campaign"]
    only, = contact_rows(client, without_zone["id"])["contacts"]
    assert (only["timezone"], only["nextAttemptAt"]) == ("UTC", "2030-01-07T08:00:00Z")


def test_a_window_on_weekdays_skips_the_weekend_and_the_skipped_dates(client):
    # Saturday 5 January 2030; Monday the 7th is skipped: Tuesday 08:00 in Nairobi.
    body = created(client, startAt="2030-01-05T12:00:00Z", contacts=[AMINA], window={
        "from": "08:00", "to": "20:00", "days": ["mon", "tue", "wed", "thu", "fri"], "skip": ["2030-01-07"]})
    assert body["campaign"]["nextAttemptAt"] == "2030-01-08T05:00:00Z"


# --- roles -------------------------------------------------------------------------------------------------------


def test_admins_and_dialers_create_viewers_may_not(client):
    assert created(client, "dialer")["campaign"]["createdBy"] == "acme"
    assert created(client, "admin")["campaign"]["createdBy"] == "default"
    refused_error(create(client, "viewer"), 403)
    refused_error(upload(client, b"phone\n+254712345678\n", role="viewer"), 403)
    assert len(client.get("/voice/campaigns", headers=headers()).get_json()["campaigns"]) == 2


def test_a_viewer_reads_every_campaign_but_changes_none(client):
    campaign = created(client, "dialer")["campaign"]
    base = f"/voice/campaigns/{campaign['id']}"
    for path in ("", "/contacts", "/results.csv", "/attempts.csv"):
        assert client.get(base + path, headers=headers("viewer")).status_code == 200
    assert [c["id"] for c in client.get("/voice/campaigns", headers=headers("viewer")).get_json()["campaigns"]] == \
        [campaign["id"]]
    for action in ("pause", "resume", "cancel"):
        refused_error(client.post(f"{base}/{action}", headers=headers("viewer")), 403)
    assert client.get(base, headers=headers()).get_json()["status"] == "running"


ROUTES = [("get", ""), ("get", "/contacts"), ("get", "/results.csv"), ("get", "/attempts.csv"),
          ("post", "/pause"), ("post", "/resume"), ("post", "/cancel")]


def test_without_a_key_every_campaign_route_is_401(client):
    campaign = created(client)["campaign"]
    refused_error(client.post("/voice/campaigns", json={"contacts": [AMINA]}), 401)
    refused_error(client.get("/voice/campaigns"), 401)
    for method, path in ROUTES:
        refused_error(getattr(client, method)(f"/voice/campaigns/{campaign['id']}{path}"), 401)
        refused_error(getattr(client, method)(f"/voice/campaigns/{campaign['id']}{path}",
                                              headers={"X-API-Key": "wrong-key-0123456789"}), 401)


def test_a_dialer_sees_only_its_own_campaigns(client):
    mine = created(client, "dialer", name="mine")["campaign"]
    theirs = created(client, "other", name="theirs")["campaign"]
    admins = created(client, "admin", name="admin's")["campaign"]

    def listed(role):
        return [c["name"] for c in client.get("/voice/campaigns", headers=headers(role)).get_json()["campaigns"]]

    assert listed("dialer") == ["mine"] and listed("other") == ["theirs"]
    assert listed("admin") == ["admin's", "theirs", "mine"]
    for hidden in (theirs, admins):
        for method, path in ROUTES:
            response = getattr(client, method)(f"/voice/campaigns/{hidden['id']}{path}", headers=headers("dialer"))
            refused_error(response, 404)
    assert client.get(f"/voice/campaigns/{theirs['id']}", headers=headers()).get_json()["status"] == "running"
    for action, status in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
        moved = client.post(f"/voice/campaigns/{mine['id']}/{action}", headers=headers("dialer"))
        assert moved.status_code == 200 and moved.get_json()["status"] == status
    paused = client.post(f"/voice/campaigns/{theirs['id']}/pause", headers=headers())
    assert paused.status_code == 200 and paused.get_json()["status"] == "paused"


@pytest.mark.parametrize("role, status", [("dialer", 403), ("viewer", 403), (None, 401)])
def test_the_do_not_call_list_is_the_admins(client, role, status):
    given = headers(role) if role else {}
    refused_error(client.get("/voice/dnc", headers=given), status)
    refused_error(client.post("/voice/dnc", json={"phone": AMINA}, headers=given), status)
    refused_error(client.delete("/voice/dnc", json={"phone": AMINA}, headers=given), status)
    assert client.get("/voice/dnc", headers=headers()).get_json()["numbers"] == []


# --- figures -----------------------------------------------------------------------------------------------------


def test_a_campaign_shows_counts_calls_in_progress_cost_and_the_next_attempt(app, client):
    campaign = created(client, contacts=[AMINA, BARAKA, CHEGE, DALIA, NEW_YORK])["campaign"]
    cid = campaign["id"]
    set_status(app, cid, AMINA, "calling", next_attempt_at=None)
    set_status(app, cid, BARAKA, "completed", next_attempt_at=None)
    set_status(app, cid, CHEGE, "retry", next_attempt_at=datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc))
    set_status(app, cid, DALIA, "retry", next_attempt_at=datetime(2030, 1, 1, 8, 30, tzinfo=timezone.utc))
    set_status(app, cid, NEW_YORK, "failed", next_attempt_at=datetime(2020, 1, 1, tzinfo=timezone.utc))
    add_attempt(app, cid, BARAKA, amount=Decimal("1.5"), currency="KES")
    add_attempt(app, cid, BARAKA, number=2, amount=Decimal("2.25"), currency="KES")
    add_attempt(app, cid, NEW_YORK, amount=Decimal("0.1"), currency="USD")
    add_attempt(app, cid, AMINA, status="placed")
    shown = client.get(f"/voice/campaigns/{cid}", headers=headers()).get_json()
    assert {status: n for status, n in shown["counts"].items() if n} == \
        {"calling": 1, "completed": 1, "retry": 2, "failed": 1}
    assert set(shown["counts"]) == {"pending", "calling", "retry", "completed", "breakoff", "unreached", "failed",
                                    "expired", "optedOut", "refused", "cancelled"}
    assert shown["inProgress"] == 1
    assert shown["cost"] == {"KES": 3.75, "USD": 0.1}
    assert shown["nextAttemptAt"] == "2030-01-01T08:30:00Z"  # the earliest waiting contact, not a finished one
    listed, = client.get("/voice/campaigns", headers=headers()).get_json()["campaigns"]
    assert {key: listed[key] for key in ("counts", "inProgress", "cost", "nextAttemptAt")} == \
        {key: shown[key] for key in ("counts", "inProgress", "cost", "nextAttemptAt")}


def test_a_campaign_still_importing_is_shown_nowhere(app, client):
    campaign = created(client)["campaign"]
    in_store(app, lambda: db.session.execute(
        sa.update(Campaign).where(Campaign.id == campaign["id"]).values(status="importing")))
    assert client.get("/voice/campaigns", headers=headers()).get_json()["campaigns"] == []
    for method, path in ROUTES:
        refused_error(getattr(client, method)(f"/voice/campaigns/{campaign['id']}{path}", headers=headers()), 404)


def test_the_list_is_newest_first_in_pages(client):
    ids = [created(client, name=f"c{n}")["campaign"]["id"] for n in range(3)]
    assert [c["id"] for c in client.get("/voice/campaigns", headers=headers()).get_json()["campaigns"]] == ids[::-1]
    assert client.get("/voice/campaigns?page=2", headers=headers()).get_json()["campaigns"] == []
    refused_error(client.get("/voice/campaigns?page=0", headers=headers()), 400, "page")


@pytest.mark.parametrize("campaign_id", ["999", "2147483648", "9223372036854775808", "99999999999999999999"])
def test_a_missing_campaign_is_a_404_json_on_every_route(client, campaign_id):
    for method, path in ROUTES:
        refused_error(getattr(client, method)(f"/voice/campaigns/{campaign_id}{path}", headers=headers()), 404)


# --- pause, resume, cancel ---------------------------------------------------------------------------------------


def move(client, campaign_id, action, **body):
    options = {"json": body} if body else {}
    return client.post(f"/voice/campaigns/{campaign_id}/{action}", headers=headers(), **options)


def test_pause_resume_and_cancel_move_the_status(app, client):
    cid = created(client, contacts=[AMINA, BARAKA, CHEGE, DALIA])["campaign"]["id"]
    paused = move(client, cid, "pause")
    assert paused.status_code == 200
    assert (paused.get_json()["status"], paused.get_json()["pausedReason"]) == ("paused", "operator")
    assert refused_error(move(client, cid, "pause"), 409)["error"]
    resumed = move(client, cid, "resume").get_json()
    assert (resumed["status"], resumed["pausedReason"]) == ("running", None)
    refused_error(move(client, cid, "resume"), 409)

    set_status(app, cid, BARAKA, "calling", next_attempt_at=None)
    set_status(app, cid, CHEGE, "completed", next_attempt_at=None)
    set_status(app, cid, DALIA, "retry")
    cancelled = move(client, cid, "cancel").get_json()
    assert cancelled["status"] == "cancelled" and cancelled["finishedAt"]
    listed = contact_rows(client, cid)["contacts"]
    # Waiting contacts are cancelled; the call in progress finishes; what ended stays as it ended.
    assert [(c["phone"], c["status"]) for c in listed] == [
        (AMINA, "cancelled"), (BARAKA, "calling"), (CHEGE, "completed"), (DALIA, "cancelled")]
    assert all(c["nextAttemptAt"] is None for c in listed if c["status"] == "cancelled")
    assert cancelled["nextAttemptAt"] is None
    for action in ("cancel", "pause", "resume"):
        refused_error(move(client, cid, action), 409)
    assert client.get(f"/voice/campaigns/{cid}", headers=headers()).get_json()["status"] == "cancelled"


def test_a_scheduled_campaign_resumes_as_scheduled_and_can_be_cancelled_while_paused(client):
    cid = created(client, startAt="2030-01-07T06:00:00Z")["campaign"]["id"]
    assert move(client, cid, "pause").get_json()["status"] == "paused"
    assert move(client, cid, "resume").get_json()["status"] == "scheduled"
    move(client, cid, "pause")
    assert move(client, cid, "cancel").get_json()["status"] == "cancelled"


def test_a_completed_campaign_cannot_be_cancelled_or_resumed(app, client):
    cid = created(client)["campaign"]["id"]
    in_store(app, lambda: db.session.execute(
        sa.update(Campaign).where(Campaign.id == cid).values(status="completed")))
    for action in ("cancel", "pause", "resume"):
        refused_error(move(client, cid, action), 409)


def test_a_campaign_paused_for_its_budget_resumes_only_with_a_larger_one(app, client):
    cid = created(client, contacts=[AMINA, BARAKA], budget={"amount": 2, "currency": "KES"})["campaign"]["id"]
    add_attempt(app, cid, AMINA, amount=Decimal("2.5"), currency="KES")
    in_store(app, lambda: db.session.execute(
        sa.update(Campaign).where(Campaign.id == cid).values(status="paused", paused_reason="budget")))
    shown = client.get(f"/voice/campaigns/{cid}", headers=headers()).get_json()
    assert (shown["status"], shown["pausedReason"]) == ("paused", "budget")
    body = refused_error(move(client, cid, "resume"), 409)
    assert body["error"] == "budget_reached"
    refused_error(move(client, cid, "resume", budget={"amount": "much", "currency": "KES"}), 400, "budget")
    resumed = move(client, cid, "resume", budget={"amount": 10, "currency": "KES"}).get_json()
    assert resumed["status"] == "running" and resumed["budget"] == {"amount": 10.0, "currency": "KES"}


# --- contacts ----------------------------------------------------------------------------------------------------


def test_contacts_come_in_pages_of_100_in_list_order(app, client):
    numbers = [f"+2547{n:08d}" for n in range(20_000_000, 20_000_250)]
    cid = created(client, contacts=[{"phone": number, "vars": {"n": str(i)}} for i, number in enumerate(numbers)])[
        "campaign"]["id"]
    first, second, third = (contact_rows(client, cid, page=page) for page in (1, 2, 3))
    assert [c["phone"] for c in first["contacts"] + second["contacts"] + third["contacts"]] == numbers
    assert [len(p["contacts"]) for p in (first, second, third)] == [100, 100, 50]
    assert (first["next"], second["next"], third["next"]) == (2, 3, None)
    assert [c["row"] for c in first["contacts"][:3]] == [1, 2, 3]
    assert contact_rows(client, cid, page=4)["contacts"] == []
    one = first["contacts"][0]
    assert {key: one[key] for key in ("status", "attempts", "answers", "sessionIds", "lastHangupCause")} == \
        {"status": "pending", "attempts": 0, "answers": {}, "sessionIds": [], "lastHangupCause": None}

    for number in numbers[5:8] + numbers[200:202]:
        set_status(app, cid, number, "completed")
    assert [c["phone"] for c in contact_rows(client, cid, status="completed")["contacts"]] == \
        numbers[5:8] + numbers[200:202]
    assert len(contact_rows(client, cid, status="pending", page=3)["contacts"]) == 45
    assert contact_rows(client, cid, status="optedOut")["contacts"] == []


def test_a_contacts_sessions_and_answers_are_listed(app, client):
    cid = created(client, contacts=[AMINA])["campaign"]["id"]
    add_attempt(app, cid, AMINA, session_id="ATVId_first", hangup_cause="NO_ANSWER")
    add_attempt(app, cid, AMINA, number=2, session_id="ATVId_second")
    add_attempt(app, cid, AMINA, number=3, status="withdrawn")
    set_status(app, cid, AMINA, "completed", attempts=2, answers={"q1": "2"}, last_hangup_cause="NORMAL_CLEARING")
    contact, = contact_rows(client, cid)["contacts"]
    assert contact["sessionIds"] == ["ATVId_first", "ATVId_second"]
    assert (contact["answers"], contact["attempts"], contact["lastHangupCause"]) == \
        ({"q1": "2"}, 2, "NORMAL_CLEARING")


@pytest.mark.parametrize("query, field", [
    ({"status": "done"}, "status"), ({"status": "PENDING"}, "status"), ({"page": "0"}, "page"),
    ({"page": "-1"}, "page"), ({"page": "two"}, "page"), ({"page": "10001"}, "page"), ({"page": "1.5"}, "page"),
    ({"page": "９"}, "page"),
])
def test_a_bad_status_or_page_is_400(client, query, field):
    cid = created(client)["campaign"]["id"]
    refused_error(client.get(f"/voice/campaigns/{cid}/contacts", query_string=query, headers=headers()), 400, field)


# --- results and attempts ----------------------------------------------------------------------------------------


@pytest.fixture
def finished(app, client):
    """A campaign with answers, variables (two of them written to start a formula) and attempts; its id."""
    cid = created(client, contacts=[
        {"phone": AMINA, "vars": {"name": "Amina", "city": "Nairobi"}},
        {"phone": BARAKA, "vars": {"name": '=HYPERLINK("http://evil.example/x","click")', "city": "@SUM(A1)"}},
        {"phone": CHEGE, "vars": {"name": "-Chege", "city": "+Kisumu"}},
    ])["campaign"]["id"]
    add_attempt(app, cid, AMINA, session_id="ATVId_a1", state="NotAnswered", hangup_cause="NO_ANSWER",
                dialled_at=datetime(2026, 3, 2, 9, 0, 1, tzinfo=timezone.utc), duration=0, amount=Decimal("0"),
                currency="KES", outcome="retry")
    add_attempt(app, cid, AMINA, number=2, session_id="ATVId_a2", state="Completed", hangup_cause="NORMAL_CLEARING",
                dialled_at=datetime(2026, 3, 2, 9, 30, 1, tzinfo=timezone.utc), duration=42, amount=Decimal("3.5"),
                currency="KES", outcome="completed", answers={"q1": "1", "score": "4"})
    add_attempt(app, cid, BARAKA, status="withdrawn")
    set_status(app, cid, AMINA, "completed", attempts=2, last_state="Completed",
               last_hangup_cause="NORMAL_CLEARING", duration=42, answers={"q1": "1", "score": "4"})
    with app.app_context():  # as settling Amina's second call would have noted
        db.session.execute(sa.update(Campaign).where(Campaign.id == cid).values(answer_keys=["q1", "score"]))
        db.session.commit()
    return cid


def test_results_csv_has_a_row_per_contact_with_answers_and_variables(client, finished):
    response = client.get(f"/voice/campaigns/{finished}/results.csv", headers=headers())
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="campaign-{finished}-results.csv"'
    header, *rows = csv_rows(response)
    assert header == ["phone", "status", "attempts", "lastState", "lastHangupCause", "duration", "cost", "currency",
                      "answer_q1", "answer_score", "city", "name"]
    by_phone = {row[0]: dict(zip(header, row)) for row in rows}
    assert list(by_phone) == [AMINA, BARAKA, CHEGE]
    amina = by_phone[AMINA]
    assert (amina["status"], amina["attempts"], amina["lastHangupCause"], amina["duration"]) == \
        ("completed", "2", "NORMAL_CLEARING", "42")
    assert (Decimal(amina["cost"]), amina["currency"]) == (Decimal("3.5"), "KES")
    assert (amina["answer_q1"], amina["answer_score"], amina["name"], amina["city"]) == ("1", "4", "Amina", "Nairobi")
    assert by_phone[BARAKA]["status"] == "pending" and by_phone[BARAKA]["answer_q1"] == ""
    # A cell that a spreadsheet would read as a formula is made inert with a leading '.
    assert by_phone[BARAKA]["name"] == '\'=HYPERLINK("http://evil.example/x","click")'
    assert by_phone[BARAKA]["city"] == "'@SUM(A1)"
    assert (by_phone[CHEGE]["name"], by_phone[CHEGE]["city"]) == ("'-Chege", "'+Kisumu")


def test_attempts_csv_has_a_row_per_attempt_placed(client, finished):
    response = client.get(f"/voice/campaigns/{finished}/attempts.csv", headers=headers())
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="campaign-{finished}-attempts.csv"'
    header, *rows = csv_rows(response)
    assert header == ["phone", "attempt", "dialledAt", "endedAt", "sessionId", "state", "hangupCause", "duration",
                      "cost", "currency", "outcome", "error", "answers"]
    assert len(rows) == 2  # the withdrawn attempt was never dialled
    first, second = (dict(zip(header, row)) for row in rows)
    assert (first["phone"], first["attempt"], first["sessionId"], first["hangupCause"], first["outcome"]) == \
        (AMINA, "1", "ATVId_a1", "NO_ANSWER", "retry")
    assert first["dialledAt"] == "2026-03-02T09:00:01Z" and first["answers"] == ""
    assert (second["attempt"], second["sessionId"], second["duration"], Decimal(second["cost"])) == \
        ("2", "ATVId_a2", "42", Decimal("3.5"))
    assert json.loads(second["answers"]) == {"q1": "1", "score": "4"}


def test_a_campaign_without_attempts_exports_its_headers(client):
    cid = created(client, contacts=[AMINA])["campaign"]["id"]
    assert csv_rows(client.get(f"/voice/campaigns/{cid}/attempts.csv", headers=headers()))[1:] == []
    results = csv_rows(client.get(f"/voice/campaigns/{cid}/results.csv", headers=headers()))
    assert [row[:3] for row in results[1:]] == [[AMINA, "pending", "0"]]


@pytest.mark.parametrize("name", ["results.csv", "attempts.csv"])
def test_the_export_of_a_missing_campaign_is_a_404_json(client, name):
    refused_error(client.get(f"/voice/campaigns/4040/{name}", headers=headers()), 404)


# --- the do-not-call list ----------------------------------------------------------------------------------------


def dnc_numbers(client, **query):
    response = client.get("/voice/dnc", query_string=query, headers=headers())
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_numbers_are_added_one_several_or_as_a_json_list_in_one_form(client):
    one = client.post("/voice/dnc", json={"phone": "+2540712345678"}, headers=headers())
    assert one.status_code == 200 and one.get_json() == {"added": [AMINA], "already": []}
    several = client.post("/voice/dnc", data={"phone": [BARAKA, "254712345670"]}, headers=headers()).get_json()
    assert several == {"added": [BARAKA, CHEGE], "already": []}
    listed = client.post("/voice/dnc", json={"phone": [AMINA, DALIA, "+254 712 345 671"]}, headers=headers()).get_json()
    assert listed == {"added": [DALIA], "already": [AMINA]}
    comma = client.post("/voice/dnc", data={"phone": f"{AMINA},{NEW_YORK}"}, headers=headers()).get_json()
    assert comma == {"added": [NEW_YORK], "already": [AMINA]}
    entries = dnc_numbers(client)
    assert [entry["phone"] for entry in entries["numbers"]] == sorted([AMINA, BARAKA, CHEGE, DALIA, NEW_YORK])
    assert entries["next"] is None
    assert {(entry["addedBy"], entry["source"]) for entry in entries["numbers"]} == {("default", "api")}


def test_a_number_on_the_list_is_refused_in_any_form_and_allowed_again_once_removed(client):
    client.post("/voice/dnc", json={"phone": AMINA}, headers=headers())
    body = refused_error(create(client, contacts=["2540712345678"]), 400)
    assert "do-not-call" in body["refused"][0]["error"]
    removed = client.delete("/voice/dnc", json={"phone": ["+254 0712 345678"]}, headers=headers())
    assert removed.status_code == 200 and removed.get_json() == {"removed": 1}
    assert dnc_numbers(client)["numbers"] == []
    assert created(client, contacts=["2540712345678"])["accepted"] == 1
    assert client.delete("/voice/dnc", json={"phone": AMINA}, headers=headers()).get_json() == {"removed": 0}


def test_the_list_pages_by_the_last_number(client):
    numbers = [f"+2547{n:08d}" for n in range(30_000_000, 30_000_501)]
    added = client.post("/voice/dnc", json={"phone": numbers[::-1]}, headers=headers())
    assert added.status_code == 200 and len(added.get_json()["added"]) == 501
    first = dnc_numbers(client)
    assert [entry["phone"] for entry in first["numbers"]] == numbers[:500]
    assert first["next"] == numbers[499]
    second = dnc_numbers(client, after=first["next"])
    assert [entry["phone"] for entry in second["numbers"]] == numbers[500:] and second["next"] is None
    assert [e["phone"] for e in dnc_numbers(client, after="2540" + numbers[-2][4:])["numbers"]] == numbers[500:]


@pytest.mark.parametrize("method, body", [
    ("post", {}), ("post", {"phone": "12"}), ("post", {"phone": [AMINA, "not a number"]}), ("post", {"phone": 254}),
    ("post", {"phone": [True]}), ("post", {"phone": [AMINA] * 1001}), ("delete", {}), ("delete", {"phone": "+1"}),
])
def test_a_bad_number_for_the_list_is_400(client, method, body):
    refused_error(getattr(client, method)("/voice/dnc", json=body, headers=headers()), 400)
    assert dnc_numbers(client)["numbers"] == []


def test_a_bad_after_is_400(client):
    refused_error(client.get("/voice/dnc?after=nonsense", headers=headers()), 400)
