"""`flask voice campaign ...` and `flask voice dnc ...`: the same campaigns and do-not-call list as the API.

Each command runs through Flask's CLI runner against the test app; what it did is read back
through the API, so the shell and the API are seen to be one service. Runs on SQLite and PostgreSQL.
"""

import csv
import io
import json
import time

import pytest
import sqlalchemy as sa

from tests.helpers import KEY, WEBHOOK_TOKEN, database_locked
from voice.campaigns import dispatch, settling
from voice.campaigns.models import Attempt
from voice.store.db import db

DIALER = {"X-API-Key": "ops-key-0123456789"}
CSV = ("phone,timezone,name\n"
       "+254712345678,,Amina\n"
       "not a number,,Bo\n"
       "+254712345678,,Twice\n"
       "+254712345679,Africa/Lagos,=HYPERLINK(\"x\")\n"
       "+254712345670,Mars/Olympus,Zed\n")
# A survey: the callee's key is saved as `coming`, and either answer plays the flow to its end.
SURVEY = """
start: {inbound: ask, outbound: ask}
steps:
  ask:
    menu:
      prompt: {say: "Hello {name}. Will you come? Press 1 for yes, 2 for no."}
      options: {"1": thanks, "2": thanks}
      save: coming
  thanks:
    - say: Thank you. Goodbye.
"""


@pytest.fixture
def config(config, tmp_path):
    """The test settings with the survey flow, a dialer key labelled `ops`, destinations that may be dialled often."""
    flow = tmp_path / "survey.yaml"
    flow.write_text(SURVEY)
    return dict(config, VOICE_FLOW_FILE=str(flow), VOICE_API_KEYS="ops:ops-key-0123456789:dialer",
                VOICE_RATE_LIMIT_PER_DESTINATION="1000 per hour")


@pytest.fixture
def cli(app):
    """Run `flask voice ...` with these arguments; the click Result."""
    runner = app.test_cli_runner()
    return lambda *args, **kwargs: runner.invoke(args=["voice", *args], **kwargs)


@pytest.fixture
def contacts_file(tmp_path):
    """A contacts CSV: two good rows, an invalid number, a duplicate and a bad time zone."""
    path = tmp_path / "contacts.csv"
    path.write_text(CSV)
    return str(path)


def created_id(result):
    """The id of the campaign `campaign create --json` made."""
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["campaign"]["id"]


def refused_cleanly(result, words):
    """The command failed with the service's words, without a traceback."""
    assert result.exit_code != 0
    assert words in result.output, result.output
    assert "Traceback" not in result.output and not (result.exception and not isinstance(result.exception,
                                                                                         SystemExit))


# --- create ----------------------------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_create_from_a_csv_prints_the_campaign_and_each_refused_row(cli, client, contacts_file):
    result = cli("campaign", "create", contacts_file, "--step", "thanks", "--window", "08:00-20:00",
                 "--retry", "15m 1h", "--name", "Clinic reminders", "--timezone", "Africa/Nairobi",
                 "--start-at", "2999-01-01T08:00:00Z", "--not-after", "2999-02-01T00:00:00Z",
                 "--max-concurrent", "3", "--per-minute", "12", "--budget", "500 KES")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Campaign 1 (Clinic reminders) is scheduled: 2 contacts accepted, 3 refused:"
    assert lines[1].startswith("  row 2: not a number: phone may hold only digits")
    assert lines[2] == "  row 3: +254712345678: duplicate: the number is already in this list"
    assert lines[3].startswith("  row 5: +254712345670: timezone 'Mars/Olympus' is not an IANA time zone")

    campaign = client.get("/voice/campaigns/1", headers=KEY).get_json()
    assert {key: campaign[key] for key in ("name", "status", "step", "retry", "timezone", "startAt", "notAfter",
                                           "maxConcurrent", "perMinute", "budget", "contacts", "createdBy")} == {
        "name": "Clinic reminders", "status": "scheduled", "step": "thanks", "retry": "15m 1h",
        "timezone": "Africa/Nairobi", "startAt": "2999-01-01T08:00:00Z", "notAfter": "2999-02-01T00:00:00Z",
        "maxConcurrent": 3, "perMinute": 12, "budget": {"amount": 500.0, "currency": "KES"}, "contacts": 2,
        "createdBy": "cli"}
    assert (campaign["window"]["from"], campaign["window"]["to"]) == ("08:00", "20:00")
    contacts = client.get("/voice/campaigns/1/contacts", headers=KEY).get_json()["contacts"]
    assert [(c["row"], c["phone"], c["timezone"], c["vars"]) for c in contacts] == [
        (1, "+254712345678", "Africa/Nairobi", {"name": "Amina"}),
        (4, "+254712345679", "Africa/Lagos", {"name": "=HYPERLINK(\"x\")"})]


def test_create_reads_the_list_from_stdin_and_answers_json_like_the_api(cli, client):
    result = cli("campaign", "create", "-", "--window", '{"from": "20:00", "to": "02:00", "days": ["sat"]}',
                 "--json", input="phone\n+254712345678\n+254712345678\n")
    body = json.loads(result.output)
    assert (body["accepted"], body["refused"]) == (1, [
        {"row": 2, "phone": "+254712345678", "error": "duplicate: the number is already in this list"}])
    assert body["campaign"] == client.get(f"/voice/campaigns/{body['campaign']['id']}", headers=KEY).get_json()
    assert body["campaign"]["window"] == {"from": "20:00", "to": "02:00", "days": ["sat"], "skip": []}


def test_owner_names_the_dialer_key_that_sees_the_campaign(cli, client, contacts_file):
    mine = created_id(cli("campaign", "create", contacts_file, "--owner", "ops", "--json"))
    created_id(cli("campaign", "create", contacts_file, "--json"))
    seen = client.get("/voice/campaigns", headers=DIALER).get_json()["campaigns"]
    assert [(campaign["id"], campaign["createdBy"]) for campaign in seen] == [(mine, "ops")]


@pytest.mark.parametrize("options, words", [
    (["--step", "nowhere"], "step 'nowhere' is not a step of the deployed flow"),
    (["--window", "25:00-20:00"], "window.from must be a time of day as HH:MM"),
    (["--window", '{"from": "08:00", "to": "20:00", "days": ["someday"]}'], "window.days must list days"),
    (["--retry", "soon"], "retry delay 'soon' must be a number and a unit"),
    (["--timezone", "Mars/Olympus"], "timezone 'Mars/Olympus' is not an IANA time zone"),
    (["--start-at", "tomorrow"], "startAt must be an ISO 8601 date or time"),
    (["--not-after", "2001-01-01T00:00:00Z"], "notAfter must be later than startAt and than now"),
    (["--max-concurrent", "0"], "maxConcurrent must be a whole number from 1 to 1000"),
    (["--per-minute", "60001"], "perMinute must be a whole number from 1 to 60000"),
    (["--budget", "lots"], "budget must be a positive amount and a 3-letter currency code"),
    (["--name", " "], "name must be text of 1 to 128 characters"),
])
def test_a_bad_setting_is_an_error_with_the_apis_message_and_creates_nothing(cli, client, contacts_file, options,
                                                                              words):
    refused_cleanly(cli("campaign", "create", contacts_file, *options), words)
    assert client.get("/voice/campaigns", headers=KEY).get_json()["campaigns"] == []


@pytest.mark.parametrize("content, words", [
    (b"", "the contacts file is empty"),
    (b"number,name\n+254712345678,A\n", "the contacts file needs a 'phone' column"),
    (b"phone,name,name\n+254712345678,A,B\n", "names a column twice"),
    (b"phone\n\xff\xfe+254712345678\n", "the contacts file is not UTF-8"),
    (b"phone,a-b\n+254712345678,x\n", "column names must be letters, digits and _"),
])
def test_a_file_that_is_not_a_contact_list_is_an_error(cli, client, tmp_path, content, words):
    path = tmp_path / "list.csv"
    path.write_bytes(content)
    refused_cleanly(cli("campaign", "create", str(path)), words)
    assert client.get("/voice/campaigns", headers=KEY).get_json()["campaigns"] == []


def test_a_list_without_a_contact_to_call_prints_why_each_row_was_refused(cli, client, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("phone\n12\n+254900123456\n")
    result = cli("campaign", "create", str(path))
    refused_cleanly(result, "Error: The campaign has no contact that may be called.")
    assert "  row 1: 12: " in result.output and "  row 2: +254900123456: " in result.output
    assert client.get("/voice/campaigns", headers=KEY).get_json()["campaigns"] == []


def test_a_missing_file_is_a_usage_error(cli, tmp_path):
    result = cli("campaign", "create", str(tmp_path / "none.csv"))
    assert result.exit_code == 2 and "No such file or directory" in result.output


# --- list, show, pause, resume, cancel --------------------------------------------------------------------------


@pytest.mark.both_databases
def test_list_and_show_print_the_figures_and_json_equal_to_the_apis(cli, client, contacts_file):
    first = created_id(cli("campaign", "create", contacts_file, "--name", "First", "--json"))
    second = created_id(cli("campaign", "create", contacts_file, "--name", "Second", "--budget", "50 KES",
                            "--window", "08:00-20:00", "--json"))
    listed = cli("campaign", "list").output.splitlines()
    assert [line.split()[:3] for line in listed] == [[str(second), "running", "Second:"],
                                                      [str(first), "running", "First:"]]
    assert "2 contacts (2 pending)" in listed[0]
    assert json.loads(cli("campaign", "list", "--json").output) == client.get("/voice/campaigns",
                                                                              headers=KEY).get_json()

    shown = cli("campaign", "show", str(second)).output
    assert shown.startswith(f"Campaign {second}: Second\n")
    for line in ("  status       running", "  window       08:00-20:00 every day", "  retry        30m 2h",
                 "  pacing       5 at once, 30 a minute", "  budget       50 KES", "  contacts     2: 2 pending",
                 "  in progress  0"):
        assert line + "\n" in shown
    assert json.loads(cli("campaign", "show", str(second), "--json").output) == client.get(
        f"/voice/campaigns/{second}", headers=KEY).get_json()


def test_list_without_campaigns_says_so(cli):
    assert cli("campaign", "list").output == "No campaigns.\n"
    assert json.loads(cli("campaign", "list", "--json").output) == {"campaigns": []}


@pytest.mark.both_databases
def test_pause_resume_and_cancel_move_the_status_and_refuse_the_wrong_moves(cli, client, contacts_file):
    campaign_id = str(created_id(cli("campaign", "create", contacts_file, "--json")))

    def status():
        return client.get(f"/voice/campaigns/{campaign_id}", headers=KEY).get_json()["status"]

    assert cli("campaign", "pause", campaign_id).output == f"Campaign {campaign_id} is paused (operator); " \
                                                           "0 calls still in progress.\n"
    assert status() == "paused"
    refused_cleanly(cli("campaign", "pause", campaign_id), f"Campaign {campaign_id} is paused: this needs it "
                                                           "scheduled or running.")
    assert cli("campaign", "resume", campaign_id).output == f"Campaign {campaign_id} is running.\n"
    assert status() == "running"
    refused_cleanly(cli("campaign", "resume", campaign_id), "this needs it paused")
    result = cli("campaign", "cancel", campaign_id)
    assert result.output == f"Campaign {campaign_id} is cancelled: 2 contacts cancelled, 0 calls still in progress.\n"
    assert status() == "cancelled"
    refused_cleanly(cli("campaign", "cancel", campaign_id), f"Campaign {campaign_id} is already cancelled.")


def test_resume_with_a_budget_sets_it(cli, client, contacts_file):
    campaign_id = str(created_id(cli("campaign", "create", contacts_file, "--budget", "10 KES", "--json")))
    cli("campaign", "pause", campaign_id)
    refused_cleanly(cli("campaign", "resume", campaign_id, "--budget", "ten"), "budget must be a positive amount")
    assert cli("campaign", "resume", campaign_id, "--budget", "1000 KES").exit_code == 0
    assert client.get(f"/voice/campaigns/{campaign_id}", headers=KEY).get_json()["budget"] == {
        "amount": 1000.0, "currency": "KES"}


@pytest.mark.both_databases
@pytest.mark.parametrize("command", ["show", "pause", "resume", "cancel", "export"])
@pytest.mark.parametrize("campaign_id", ["41", str(2 ** 31), "9" * 30])
def test_a_missing_campaign_is_an_error_naming_it(cli, command, campaign_id):
    refused_cleanly(cli("campaign", command, campaign_id), f"No campaign {campaign_id} here.")


@pytest.mark.parametrize("campaign_id", ["0", "x", "1.5"])
def test_an_id_that_is_not_a_positive_number_is_a_usage_error(cli, campaign_id):
    result = cli("campaign", "show", campaign_id)
    assert result.exit_code == 2 and "Invalid value for 'ID'" in result.output


# --- export ----------------------------------------------------------------------------------------------------


@pytest.fixture
def finished(app, client, cli, simulated_at, live_app, tmp_path):
    """A campaign created by the CLI and played to its end: its id (callees played by the simulated AT)."""
    simulated_at.service_url, simulated_at.token, simulated_at.answer_delay = live_app, WEBHOOK_TOKEN, 0.05
    path = tmp_path / "finished.csv"
    path.write_text("phone,name\n+254712345678,Amina\n+254700000102,Ben\n+254700000480,=1+1\n+254700000404,Bo\n")
    campaign_id = created_id(cli("campaign", "create", str(path), "--retry", "none", "--per-minute", "600",
                                 "--json"))
    flow = app.extensions["voice_flow"]
    for _ in range(400):  # 20 s at most for three simulated callees
        with app.app_context():
            for attempt_id in dispatch.claim():
                dispatch.place(attempt_id)
            settling.settle(flow)
            settling.expire_and_finish()
            placed = db.session.execute(sa.select(sa.func.count()).select_from(Attempt).where(
                Attempt.status.in_(("claimed", "dialling", "placed")))).scalar()
        if not placed and client.get(f"/voice/campaigns/{campaign_id}", headers=KEY).get_json()["status"] \
                == "completed":
            return campaign_id
        time.sleep(0.05)
    pytest.fail("the campaign did not complete")


@pytest.mark.both_databases
@pytest.mark.parametrize("attempts, name", [(False, "results"), (True, "attempts")])
def test_export_writes_the_same_csv_as_the_api(cli, client, finished, tmp_path, attempts, name):
    target = tmp_path / f"{name}.csv"
    flags = ["--attempts"] if attempts else []
    result = cli("campaign", "export", str(finished), *flags, "-o", str(target))
    assert result.exit_code == 0, result.output
    assert f"Wrote campaign {finished}'s {name} to {target}." in result.output
    from_api = client.get(f"/voice/campaigns/{finished}/{name}.csv", headers=KEY)
    assert target.read_bytes() == from_api.data
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert sorted((row["phone"], row.get("status") or row.get("outcome")) for row in rows) == [
        ("+254700000102", "completed"), ("+254700000404", "failed"), ("+254700000480", "unreached"),
        ("+254712345678", "completed")]
    if attempts:
        assert {row["phone"]: row["answers"] for row in rows}["+254700000102"] == '{"coming": "2"}'
    else:
        assert {row["phone"]: (row["answer_coming"], row["name"]) for row in rows} == {
            "+254712345678": ("1", "Amina"), "+254700000102": ("2", "Ben"), "+254700000480": ("", "'=1+1"),
            "+254700000404": ("", "Bo")}
    assert cli("campaign", "export", str(finished), *flags).stdout_bytes == from_api.data


def test_export_of_a_missing_campaign_writes_no_file(cli, tmp_path):
    target = tmp_path / "out.csv"
    refused_cleanly(cli("campaign", "export", "7", "-o", str(target)), "No campaign 7 here.")
    assert not target.exists()


# --- do-not-call -----------------------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_dnc_add_list_and_remove(cli, client, tmp_path):
    result = cli("dnc", "add", "+254712345678", "+254 712 345 679,+254712345678", "--owner", "ana")
    assert result.output == "Added 2 number(s) to the do-not-call list: +254712345678, +254712345679\n"
    again = cli("dnc", "add", "+254712345679", "+254712345670")
    assert again.output == ("Added 1 number(s) to the do-not-call list: +254712345670\n"
                            "Already on it: +254712345679\n")
    listed = cli("dnc", "list").output.splitlines()
    assert [line.split()[0:4:3] for line in listed] == [["+254712345670", "cli"], ["+254712345678", "ana"],
                                                       ["+254712345679", "ana"]]
    from_api = client.get("/voice/dnc", headers=KEY).get_json()["numbers"]
    assert json.loads(cli("dnc", "list", "--json").output) == from_api
    assert {entry["source"] for entry in from_api} == {"cli"}

    path = tmp_path / "list.csv"
    path.write_text("phone\n+254712345678\n+254712345671\n")
    created = cli("campaign", "create", str(path))
    assert "  row 1: +254712345678: the number is on the do-not-call list" in created.output

    assert cli("dnc", "remove", "+254712345678", "+254799999999").output == \
        "Removed 1 of 2 number(s) from the do-not-call list.\n"
    assert [entry["phone"] for entry in client.get("/voice/dnc", headers=KEY).get_json()["numbers"]] == [
        "+254712345670", "+254712345679"]
    cli("dnc", "remove", "+254712345670", "+254712345679")
    assert cli("dnc", "list").output == "The do-not-call list is empty.\n"


def test_dnc_lists_every_page(cli, client):
    numbers = [f"+2547120{index:05d}" for index in range(501)]
    assert cli("dnc", "add", ",".join(numbers)).exit_code == 0
    assert [line.split()[0] for line in cli("dnc", "list").output.splitlines()] == numbers
    assert len(json.loads(cli("dnc", "list", "--json").output)) == 501


@pytest.mark.parametrize("args, words", [
    (["add", "abc"], "phone may hold only digits"),
    (["remove", "0712345678"], "not a trunk 0"),
    (["add"], "Missing argument 'NUMBER...'"),
])
def test_dnc_with_a_bad_number_is_a_usage_error_and_changes_nothing(cli, client, args, words):
    result = cli("dnc", *args)
    assert result.exit_code == 2 and words in result.output, result.output
    assert client.get("/voice/dnc", headers=KEY).get_json()["numbers"] == []


def test_an_unavailable_database_is_an_error_without_a_traceback(make_app, database_url):
    app = make_app(DATABASE_TIMEOUT_SECONDS=0.2)
    runner = app.test_cli_runner()
    with database_locked(database_url):
        result = runner.invoke(args=["voice", "dnc", "add", "+254712345678"])
    refused_cleanly(result, "the database is unavailable")
