"""What campaigns added to flows: saved answers, end steps, opting out, a contact's variables, the campaign's start
step, and the replay that tells how far a call went."""

import csv
import io
import textwrap
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa
import yaml

from tests.helpers import INSTRUCT, KEY, WEBHOOK_TOKEN
from voice import flows
from voice.campaigns import dispatch, progress, settling
from voice.campaigns.models import Attempt, Contact, request_id
from voice.store.db import db

pytestmark = pytest.mark.both_databases

AMINA, BARAKA = "+254712345678", "+254712345679"
SURVEY = """
start:
  inbound: survey
  outbound: intro
  numbers: {"+254711000099": reminder}
ends: [thanks]
steps:
  intro:
    - say: "Hello {name}. {unknown}Call {not a var} now."
    - redirect: survey
  reminder:
    - say: "Reminder for {name}: your visit is on {day}."
    - redirect: survey
  survey:
    menu:
      prompt: {say: "{name}, press 1 if you were satisfied, 2 if not, 9 never to be called again."}
      options: {"1": rate, "2": sorry, "3": thanks, "9": optout}
      save: q1
      retries: 1
      onFail: goodbye
  rate:
    - getDigits: {prompt: {say: Rate us from 1 to 5.}, numDigits: 1, finishOnKey: "#", next: thanks, save: score}
    - say: We did not get your rating.
  sorry:
    - say: We are sorry to hear that.
    - redirect: thanks
  thanks:
    - say: "Thank you {name}."
  goodbye:
    - say: Goodbye.
  optout:
    - optOut: {}
    - say: You will not be called again.
"""
OUTBOUND = {"isActive": "1", "direction": "Outbound", "callerNumber": AMINA, "destinationNumber": "+254711000000",
            "callSessionState": "Answered"}
MENU = "&step=survey&attempt=1&save=q1"  # the survey menu's callback, first round


def survey(changes=None):
    """The survey flow as a parsed document, with `changes` to its top level or steps."""
    document = yaml.safe_load(SURVEY)
    for key, value in (changes or {}).items():
        if key in ("start", "ends"):
            document[key] = value
        elif value is None:
            document["steps"].pop(key)
        else:
            document["steps"][key] = value
    return document


def write(tmp_path, document):
    path = tmp_path / "survey.yaml"
    path.write_text(yaml.safe_dump(document) if isinstance(document, dict) else textwrap.dedent(document))
    return str(path)


def problems_of(document):
    with pytest.raises(flows.FlowError) as caught:
        flows.check_document(document, "survey.yaml")
    return caught.value.problems


def xml(response):
    assert response.status_code == 200, response.data
    return ET.fromstring(response.data)


def params(url):
    return {key: value[0] for key, value in parse_qs(urlparse(url).query).items()}


def follow(url):
    parsed = urlparse(url)
    return f"{parsed.path}?{parsed.query}"


@pytest.fixture
def app(make_app, tmp_path):
    """The app playing the survey flow."""
    return make_app(VOICE_FLOW_FILE=write(tmp_path, SURVEY))


def say_texts(root):
    return [element.text for element in root.iter("Say")]


def post(client, session, query="", **form):
    """A callback of the call `session` as AT sends it, at the step `query` names."""
    return client.post(INSTRUCT + query, data=dict(OUTBOUND, sessionId=session, **form))


def campaign_call(app, client, contacts, step=None, session="ATVId_campaign1", phone=AMINA):
    """A campaign of `contacts` and an attempt of the contact `phone` placed as `session` (None: its answer was
    lost, the callbacks alone name it); the attempt's id."""
    spec = {"name": "Survey", "contacts": contacts, **({"step": step} if step else {})}
    created = client.post("/voice/campaigns", json=spec, headers=KEY)
    assert created.status_code == 201, created.get_json()
    campaign_id = created.get_json()["campaign"]["id"]

    def work():
        contact = db.session.execute(sa.select(Contact).where(
            Contact.campaign_id == campaign_id, Contact.phone == phone)).scalar_one()
        contact.status = "calling"
        attempt = Attempt(campaign_id=campaign_id, contact_id=contact.id, number=1, status="placed",
                          claimed_at=datetime.now(timezone.utc), session_id=session)
        db.session.add(attempt)
        db.session.commit()
        return attempt.id

    with app.app_context():
        return work()


# --- saved answers in the flow file ------------------------------------------------------------------------------


def test_save_on_a_menu_and_on_a_getdigits_is_accepted():
    flow = flows.check_document(survey(), "survey.yaml")
    assert flow.steps["survey"].menu.save == "q1"
    assert flow.steps["rate"].actions[0].save == "score"


@pytest.mark.parametrize("step, body, where", [
    ("survey", {"menu": {"prompt": {"say": "x"}, "options": {"1": "thanks"}, "save": "first answer"}},
     "step 'survey', menu, field 'save'"),
    ("survey", {"menu": {"prompt": {"say": "x"}, "options": {"1": "thanks"}, "save": 7}},
     "step 'survey', menu, field 'save'"),
    ("survey", {"menu": {"prompt": {"say": "x"}, "options": {"1": "thanks"}, "save": "q" * 65}},
     "step 'survey', menu, field 'save'"),
    ("rate", [{"getDigits": {"next": "thanks", "save": "score-1"}}, {"say": "x"}], "step 'rate', action 1"),
    ("rate", [{"getDigits": {"next": "thanks", "save": ""}}, {"say": "x"}], "step 'rate', action 1"),
    ("rate", [{"getDigits": {"callbackUrl": "https://crm.example.com/in", "save": "score"}}, {"say": "x"}],
     "step 'rate', action 1"),
])
def test_a_bad_save_is_refused_naming_the_step_and_the_field(step, body, where):
    problems = problems_of(survey({step: body}))
    assert any(where in problem and "field 'save'" in problem for problem in problems), problems


def test_save_is_not_taken_where_nothing_is_pressed():
    problems = problems_of(survey({"rate": [{"record": {"next": "thanks", "save": "score"}}, {"say": "x"}]}))
    assert any("step 'rate'" in problem and "save" in problem for problem in problems), problems


def test_flow_check_names_the_bad_save_and_passes_the_good_file(app, tmp_path):
    runner = app.test_cli_runner()
    good = runner.invoke(args=["voice", "flow", "check", write(tmp_path, SURVEY)])
    assert good.exit_code == 0 and "OK" in good.output
    bad = write(tmp_path, survey({"survey": {"menu": {"prompt": {"say": "x"}, "options": {"1": "thanks"},
                                                      "save": "my answer"}}}))
    result = runner.invoke(args=["voice", "flow", "check", bad])
    assert result.exit_code == 1
    assert "step 'survey'" in result.output and "field 'save'" in result.output


def test_the_callback_urls_carry_the_save_key(client):
    menu = xml(post(client, "ATVId_save1", "&step=survey"))
    get_digits = menu.find("GetDigits")
    assert params(get_digits.get("callbackUrl")) == {"step": "survey", "attempt": "1", "save": "q1",
                                                     "token": WEBHOOK_TOKEN}
    assert "save" not in params(menu.find("Redirect").text)  # the no-input path saves nothing
    again = xml(post(client, "ATVId_save1", "&step=survey&attempt=1&save=q1", dtmfDigits="7"))
    assert params(again.find("GetDigits").get("callbackUrl"))["save"] == "q1"
    rate = xml(post(client, "ATVId_save1", "&step=survey&attempt=1&save=q1", dtmfDigits="1"))
    assert params(rate.find("GetDigits").get("callbackUrl")) == {"step": "thanks", "save": "score",
                                                                 "token": WEBHOOK_TOKEN}


# --- end steps ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ends, words", [
    (["thanks", "nowhere"], "nowhere"),
    ("thanks", "must list"),
    ([{"step": "thanks"}], "top level, field 'ends'"),
])
def test_ends_must_name_steps(ends, words):
    problems = problems_of(survey({"ends": ends}))
    assert any("top level, field 'ends'" in problem and words in problem for problem in problems), problems


def test_ends_name_the_end_steps_and_without_them_any_step_that_leads_nowhere_is_one():
    flow = flows.check_document(survey(), "survey.yaml")
    assert [name for name in flow.steps if flow.is_end(name)] == ["thanks"]
    document = survey()
    del document["ends"]
    flow = flows.check_document(document, "survey.yaml")
    assert sorted(name for name in flow.steps if flow.is_end(name)) == ["goodbye", "optout", "thanks"]


# --- opting out --------------------------------------------------------------------------------------------------


def dnc(client):
    return [(entry["phone"], entry["source"]) for entry in client.get("/voice/dnc", headers=KEY).get_json()["numbers"]]


def test_opt_out_takes_no_attributes():
    problems = problems_of(survey({"optout": [{"optOut": {"reason": "asked"}}, {"say": "Bye."}]}))
    assert any("step 'optout', action 1" in problem and "no attributes" in problem for problem in problems), problems


def test_opt_out_adds_nothing_to_the_xml(app):
    result = app.test_cli_runner().invoke(args=["voice", "flow", "show", app.extensions["voice_flow"].source,
                                                "optout"])
    assert result.exit_code == 0
    root = ET.fromstring(result.output.strip())
    assert [(element.tag, element.text) for element in root] == [("Say", "You will not be called again.")]


def test_choosing_to_opt_out_puts_the_caller_on_the_do_not_call_list(client):
    xml(post(client, "ATVId_optout1", "&step=survey"))
    assert dnc(client) == []  # hearing the question is not opting out
    root = xml(post(client, "ATVId_optout1", "&step=survey&attempt=1&save=q1", dtmfDigits="9",
                    callerNumber="+2540712345678"))
    assert [(element.tag, element.text) for element in root] == [("Say", "You will not be called again.")]
    assert dnc(client) == [(AMINA, "flow")]
    xml(post(client, "ATVId_optout1", "&step=optout"))  # a repeated callback
    assert dnc(client) == [(AMINA, "flow")]


def test_a_step_that_opts_out_reached_by_a_menus_on_fail_opts_out_too(make_app, tmp_path):
    flow = survey({"survey": {"menu": {"prompt": {"say": "Press 1 to stay on our list."}, "options": {"1": "thanks"},
                                       "retries": 0, "onFail": "optout"}}, "sorry": None, "rate": None,
                   "goodbye": None})
    client = make_app(VOICE_FLOW_FILE=write(tmp_path, flow)).test_client()
    root = xml(post(client, "ATVId_optout2", "&step=survey&attempt=1", dtmfDigits="5"))
    assert say_texts(root) == ["Sorry, that is not an option.", "You will not be called again."]
    assert dnc(client) == [(AMINA, "flow")]


def test_an_opted_out_contact_is_refused_by_the_next_campaign(client):
    xml(post(client, "ATVId_optout3", "&step=optout"))
    refused = client.post("/voice/campaigns", json={"contacts": [AMINA]}, headers=KEY)
    assert refused.status_code == 400 and "do-not-call" in refused.get_json()["refused"][0]["error"]


# --- a contact's variables ---------------------------------------------------------------------------------------


def test_a_campaign_call_says_the_contacts_variables(app, client):
    campaign_call(app, client, [{"phone": AMINA, "vars": {"name": "Amina"}}], session="ATVId_vars1")
    root = xml(post(client, "ATVId_vars1"))
    assert say_texts(root) == ["Hello Amina. Call {not a var} now."]
    menu = xml(post(client, "ATVId_vars1", "&step=survey"))
    assert say_texts(menu) == ["Amina, press 1 if you were satisfied, 2 if not, 9 never to be called again."]
    thanks = xml(post(client, "ATVId_vars1", "&step=thanks&save=score", dtmfDigits="4"))
    assert say_texts(thanks) == ["Thank you Amina."]


def test_the_attempt_is_found_by_the_client_request_id_when_the_session_was_not_stored(app, client):
    attempt_id = campaign_call(app, client, [{"phone": AMINA, "vars": {"name": "Amina"}}], session=None)
    root = xml(post(client, "ATVId_lost_answer", clientRequestId=request_id(attempt_id)))
    assert say_texts(root) == ["Hello Amina. Call {not a var} now."]


@pytest.mark.parametrize("name", ["<Say>x</Say>&amp;", "]]><Reject/>", "Amina \"A\" O'Neil & co", "{day}"])
def test_a_variable_is_said_as_written_and_escaped(app, client, name):
    campaign_call(app, client, [{"phone": AMINA, "vars": {"name": name, "day": "Monday"}}], session="ATVId_vars2")
    root = xml(post(client, "ATVId_vars2"))
    assert [element.tag for element in root] == ["Say", "Redirect"]
    assert say_texts(root) == [f"Hello {name}. Call {{not a var}} now."]


def test_each_contact_hears_its_own_name_at_the_same_menu(app, client):
    campaign_call(app, client, [{"phone": AMINA, "vars": {"name": "Amina"}},
                                {"phone": BARAKA, "vars": {"name": "Baraka"}}], session="ATVId_amina")
    with app.app_context():
        contact = db.session.execute(sa.select(Contact).where(Contact.phone == BARAKA)).scalar_one()
        db.session.add(Attempt(campaign_id=contact.campaign_id, contact_id=contact.id, number=1, status="placed",
                               claimed_at=datetime.now(timezone.utc), session_id="ATVId_baraka"))
        db.session.commit()
    for session, name in (("ATVId_amina", "Amina"), ("ATVId_baraka", "Baraka"), ("ATVId_amina", "Amina")):
        root = xml(post(client, session, "&step=survey", callerNumber=AMINA if name == "Amina" else BARAKA))
        assert say_texts(root)[0].startswith(f"{name}, press 1")
    # After a wrong key the menu is asked again, still with the contact's name.
    again = xml(post(client, "ATVId_baraka", "&step=survey&attempt=1&save=q1", dtmfDigits="7", callerNumber=BARAKA))
    assert say_texts(again) == ["Sorry, that is not an option.",
                                "Baraka, press 1 if you were satisfied, 2 if not, 9 never to be called again."]


def test_a_call_of_no_campaign_says_nothing_for_a_variable(client):
    outbound = xml(post(client, "ATVId_plain1"))
    assert say_texts(outbound) == ["Hello . Call {not a var} now."]
    inbound = xml(client.post(INSTRUCT, data=dict(OUTBOUND, sessionId="ATVId_plain2", direction="Inbound")))
    assert say_texts(inbound)[0] == ", press 1 if you were satisfied, 2 if not, 9 never to be called again."


def test_a_contact_without_the_variable_hears_nothing_in_its_place(app, client):
    campaign_call(app, client, [{"phone": AMINA, "vars": {"city": "Nairobi"}}], session="ATVId_vars3")
    assert say_texts(xml(post(client, "ATVId_vars3"))) == ["Hello . Call {not a var} now."]


# --- where a campaign's call starts ------------------------------------------------------------------------------


def test_the_first_callback_of_a_campaign_call_starts_at_the_campaigns_step(app, client):
    campaign_call(app, client, [{"phone": AMINA, "vars": {"name": "Amina", "day": "Monday"}}], step="reminder",
                  session="ATVId_step1")
    root = xml(post(client, "ATVId_step1"))
    assert say_texts(root) == ["Reminder for Amina: your visit is on Monday."]
    assert params(root.find("Redirect").text)["step"] == "survey"
    # Later callbacks go where their URL says.
    assert xml(post(client, "ATVId_step1", "&step=thanks")).find("Say").text == "Thank you Amina."


def test_a_campaign_without_a_step_starts_at_the_flows_outbound_start(app, client):
    campaign_call(app, client, [{"phone": AMINA, "vars": {"name": "Amina"}}], session="ATVId_step2")
    assert say_texts(xml(post(client, "ATVId_step2"))) == ["Hello Amina. Call {not a var} now."]


def test_a_campaign_step_must_be_a_step_of_the_flow(client):
    refused = client.post("/voice/campaigns", json={"contacts": [AMINA], "step": "remind"}, headers=KEY)
    assert refused.status_code == 400 and "step" in refused.get_json()["message"]


# --- replaying a call: did it reach the end, what was answered ---------------------------------------------------


def replayed(app, client, session, steps, start=None):
    """Post a call's callbacks (the first, then each (query, digits or None), then its end) as AT would, and
    replay them from the store: the call's Progress."""
    xml(post(client, session))
    for query, digits in steps:
        xml(post(client, session, query, **({"dtmfDigits": digits} if digits is not None else {})))
    post(client, session, isActive="0", callSessionState="Completed", durationInSeconds="30")
    with app.app_context():
        return progress.replay(app.extensions["voice_flow"], start, progress.callbacks_of(session))


def test_a_call_that_chose_its_way_to_the_end_reached_it_with_its_answers(app, client):
    done = replayed(app, client, "ATVId_r1", [("&step=survey", None), (MENU, "1"), ("&step=thanks&save=score", "4#")])
    assert done.reached_end and done.answers == {"q1": "1", "score": "4"}
    assert done.played == ["intro", "rate", "thanks"]


def test_a_call_that_chose_an_end_step_reached_it_though_no_callback_came_from_there(app, client):
    done = replayed(app, client, "ATVId_r2", [("&step=survey", None), (MENU, "3")])
    assert done.reached_end and done.answers == {"q1": "3"} and done.played == ["intro", "thanks"]


def test_a_call_that_stopped_at_the_menu_did_not_reach_the_end(app, client):
    stopped = replayed(app, client, "ATVId_r3", [("&step=survey", None)])
    assert not stopped.reached_end and stopped.answers == {}


def test_a_call_that_stopped_before_its_rating_kept_its_menu_answer(app, client):
    stopped = replayed(app, client, "ATVId_r4", [("&step=survey", None), (MENU, "1#")])
    assert not stopped.reached_end and stopped.answers == {"q1": "1"}
    assert "rate" in stopped.played and "thanks" not in stopped.played


def test_an_invalid_option_is_not_recorded(app, client):
    wrong = replayed(app, client, "ATVId_r5", [("&step=survey", None), (MENU, "7")])
    assert wrong.answers == {} and not wrong.reached_end
    corrected = replayed(app, client, "ATVId_r6", [("&step=survey", None), (MENU, "7"),
                                                   ("&step=survey&attempt=2&save=q1", "2"), ("&step=thanks", None)])
    assert corrected.answers == {"q1": "2"} and corrected.reached_end


def test_a_menu_that_ran_out_of_tries_did_not_reach_the_end(app, client):
    failed = replayed(app, client, "ATVId_r7", [("&step=survey", None), (MENU, "7"),
                                                ("&step=survey&attempt=2&save=q1", "8")])
    assert failed.answers == {} and not failed.reached_end and failed.played[-1] == "goodbye"


def test_a_replay_starts_at_the_campaigns_step(app, client):
    # The first callback of a call started at `reminder`; replayed from the outbound start it would seem to be intro.
    done = replayed(app, client, "ATVId_r8", [("&step=survey", None), (MENU, "2"), ("&step=thanks", None)],
                    start="reminder")
    assert done.played[0] == "reminder" and done.reached_end and done.answers == {"q1": "2"}


def test_replay_of_callbacks_without_the_store():
    flow = flows.check_document(survey(), "survey.yaml")
    calls = [({}, {"isActive": "1"}), ({"step": "survey"}, {"isActive": "1"}),
             ({"step": "survey", "attempt": "1", "save": "q1"}, {"isActive": "1", "dtmfDigits": "9"}),
             ({}, {"isActive": "0", "hangupCause": "NORMAL_CLEARING"})]
    out = progress.replay(flow, None, calls)
    assert out.answers == {"q1": "9"} and out.played[-1] == "optout" and not out.reached_end
    # A key sent to a step that is no menu and saves nothing is no answer.
    out = progress.replay(flow, None, [({"step": "thanks"}, {"dtmfDigits": "5"})])
    assert out.answers == {} and out.reached_end


def test_a_dial_out_cannot_borrow_a_campaign_attempts_request_id(app, client):
    # A key that dials with clientRequestId "campaign-attempt-<id>" must not make its callee hear that contact's
    # variables (nor start at that campaign's step): refused when placed, or ignored when its callbacks come.
    attempt_id = campaign_call(app, client, [{"phone": AMINA, "vars": {"name": "Amina"}}], step="reminder",
                               session=None)
    placed = client.post("/voice/invoke-call", data={"phone": BARAKA, "clientRequestId": request_id(attempt_id)},
                         headers=KEY)
    if placed.status_code == 400:
        return
    assert placed.status_code == 200, placed.get_json()
    session = placed.get_json()["response"]["entries"][0]["sessionId"]
    root = xml(post(client, session, callerNumber=BARAKA, clientRequestId=request_id(attempt_id)))
    assert say_texts(root) == ["Hello . Call {not a var} now."]


# --- a whole campaign against the simulated AT -------------------------------------------------------------------


def test_a_survey_campaign_runs_to_its_results(app, client, live_app, simulated_at):
    simulated_at.service_url, simulated_at.token, simulated_at.answer_delay = live_app, WEBHOOK_TOKEN, 0.05
    simulated_at.press = {AMINA: "14", BARAKA: "2"}
    hangs_up, opts_out = "+254700000487", "+254700000109"
    created = client.post("/voice/campaigns", headers=KEY, json={
        "name": "Survey", "perMinute": 600, "contacts": [
            {"phone": AMINA, "vars": {"name": "Amina"}}, {"phone": BARAKA, "vars": {"name": "Baraka"}},
            hangs_up, opts_out]})
    campaign_id = created.get_json()["campaign"]["id"]
    flow = app.extensions["voice_flow"]
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        with app.app_context():
            settling.settle(flow)
            settling.expire_and_finish()
            for attempt_id in dispatch.claim():
                dispatch.place(attempt_id)
        status = client.get(f"/voice/campaigns/{campaign_id}", headers=KEY).get_json()
        if status["status"] == "completed":
            break
        time.sleep(0.1)
    assert status["status"] == "completed", status
    contacts = {c["phone"]: c for c in client.get(f"/voice/campaigns/{campaign_id}/contacts",
                                                  headers=KEY).get_json()["contacts"]}
    assert {phone: (c["status"], c["answers"]) for phone, c in contacts.items()} == {
        AMINA: ("completed", {"q1": "1", "score": "4"}),
        BARAKA: ("completed", {"q1": "2"}),
        hangs_up: ("breakoff", {}),
        opts_out: ("optedOut", {"q1": "9"}),
    }
    assert (opts_out, "flow") in dnc(client)
    results = list(csv.DictReader(io.StringIO(
        client.get(f"/voice/campaigns/{campaign_id}/results.csv", headers=KEY).get_data(as_text=True))))
    assert {row["phone"]: (row["answer_q1"], row["answer_score"], row["name"]) for row in results} == {
        AMINA: ("1", "4", "Amina"), BARAKA: ("2", "", "Baraka"), hangs_up: ("", "", ""), opts_out: ("9", "", "")}



def test_a_menus_notices_say_the_contacts_variables_too(make_app, tmp_path):
    document = survey()
    document["steps"]["survey"]["menu"].update(prompt={"say": "Press 1 if you were satisfied."},
                                               invalid="Sorry {name}, that is not an option.",
                                               noInput="{name}, we did not hear you.")
    app = make_app(VOICE_FLOW_FILE=write(tmp_path, document))
    client = app.test_client()
    campaign_call(app, client, [{"phone": AMINA, "vars": {"name": "Amina"}}], session="ATVId_notice")
    wrong = xml(post(client, "ATVId_notice", MENU, dtmfDigits="7"))
    assert say_texts(wrong) == ["Sorry Amina, that is not an option.", "Press 1 if you were satisfied."]
    silent = xml(post(client, "ATVId_notice", "&step=survey&attempt=1&input=none"))
    assert say_texts(silent)[0] == "Amina, we did not hear you."
    failed = xml(post(client, "ATVId_notice", "&step=survey&attempt=2&save=q1", dtmfDigits="7"))
    assert say_texts(failed) == ["Sorry Amina, that is not an option.", "Goodbye."]
