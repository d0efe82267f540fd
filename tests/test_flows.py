"""Call flows as data: rendering every action, checking files, walking menus, Python steps, the CLI."""

import logging
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from tests.helpers import INSTRUCT, KEY, WEBHOOK_TOKEN
from voice import flows
from voice.flows.voicexml import render

EVERY_ACTION = str(Path(__file__).parent / "flows" / "every_action.yaml")
CALL = {"sessionId": "ATVId_flow0001", "isActive": "1", "direction": "Inbound",
        "callerNumber": "+254712345678", "destinationNumber": "+254711000000"}


def xml(response, status=200):
    assert response.status_code == status, response.data
    return ET.fromstring(response.data)


def follow(url):
    """Path and query of a callback URL, for the test client."""
    parsed = urlparse(url)
    return f"{parsed.path}?{parsed.query}"


def params(url):
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


@pytest.fixture
def flow_app(make_app):
    return make_app(VOICE_FLOW_FILE=EVERY_ACTION, VOICE_PUBLIC_URL="https://voice.example.com/")


@pytest.fixture
def flow_client(flow_app):
    return flow_app.test_client()


def write_flow(tmp_path, text):
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


# Rendering every action and attribute

def test_say_play_and_getdigits_render_as_at_expects(flow_client):
    root = xml(flow_client.post(INSTRUCT, data=CALL))
    say, play, get_digits, fallback = list(root)
    assert (say.tag, say.attrib, say.text) == ("Say", {"voice": "man", "playBeep": "true"}, "Hello & welcome")
    assert (play.tag, play.attrib) == ("Play", {"url": "https://media.example.com/intro.mp3"})
    assert get_digits.tag == "GetDigits"
    assert {k: get_digits.get(k) for k in ("numDigits", "timeout", "finishOnKey")} == \
        {"numDigits": "4", "timeout": "20", "finishOnKey": "*"}
    assert "callBackUrl" not in get_digits.attrib
    callback = get_digits.get("callbackUrl")
    assert callback.startswith("https://voice.example.com/voice/instruct?")
    assert params(callback) == {"step": "pin", "token": WEBHOOK_TOKEN}
    assert [(c.tag, c.text) for c in get_digits] == [("Say", "Enter your PIN")]
    assert fallback.tag == "Say"


def test_python_step_reads_the_digits_back(flow_client):
    root = xml(flow_client.post(f"{INSTRUCT}&step=pin", data=dict(CALL, dtmfDigits="12*#")))
    assert [(c.tag, c.text) for c in root] == [("Say", "You entered 1 2 star.")]


def test_dial_and_record_render_every_attribute(flow_app):
    flow = flow_app.extensions["voice_flow"]
    with flow_app.test_request_context(base_url="https://voice.example.com"):
        from voice.flows.ivr import step_actions, step_url

        root = ET.fromstring(render(step_actions(flow, flow.steps["transfer"], {}), step_url))
    dial, record = list(root)
    assert dial.attrib == {
        "phoneNumbers": "+254711000001,+254711000002,agent@ke.sip.africastalking.com",
        "record": "true", "sequential": "false", "callerId": "+254711000000",
        "ringbackTone": "https://media.example.com/ring.mp3", "maxDuration": "600",
    }
    assert {k: v for k, v in record.attrib.items() if k != "callbackUrl"} == {
        "finishOnKey": "#", "maxLength": "30", "timeout": "5", "trimSilence": "true", "playBeep": "false"}
    assert params(record.get("callbackUrl"))["step"] == "queue"
    assert [(c.tag, c.get("url")) for c in record] == [("Play", "https://media.example.com/beep-prompt.wav")]


@pytest.mark.parametrize("step, expected", [
    ("queue", [("Enqueue", {"name": "support", "holdMusic": "https://media.example.com/hold.mp3"}, None)]),
    ("outbound", [("Dequeue", {"phoneNumber": "+254711000000", "name": "support"}, None)]),
    ("conference", [("Conference", {}, None)]),
    ("blocked", [("Reject", {}, None)]),
    ("voicemail_only", [("Say", {}, "Leave a message."), ("Record", {}, None)]),
    ("away", [("Redirect", {}, "https://elsewhere.example.com/voice")]),
])
def test_the_other_actions_render_as_at_expects(flow_client, step, expected):
    root = xml(flow_client.post(f"{INSTRUCT}&step={step}", data=CALL))
    assert [(c.tag, dict(c.attrib), c.text) for c in root] == expected


def test_redirect_to_a_step_points_back_with_the_token(flow_client):
    root = xml(flow_client.post(f"{INSTRUCT}&step=back", data=CALL))
    redirect, = list(root)
    assert redirect.tag == "Redirect" and params(redirect.text) == {"step": "main", "token": WEBHOOK_TOKEN}


# Where calls start

@pytest.mark.parametrize("changes, first", [
    ({}, "Say"),
    ({"direction": "Outbound"}, "Dequeue"),
    ({"destinationNumber": "+254711000099"}, "Say"),
])
def test_calls_start_by_direction_and_number(flow_client, changes, first):
    root = xml(flow_client.post(INSTRUCT, data=dict(CALL, **changes)))
    assert root[0].tag == first
    if "destinationNumber" in changes:
        assert root[0].text == "Second line."


# Menus

@pytest.fixture
def default_client(make_app):
    return make_app(VOICE_PUBLIC_URL="https://voice.example.com").test_client()


def test_the_default_flow_starts_with_its_menu_and_a_no_input_path(default_client):
    root = xml(default_client.post(INSTRUCT, data=CALL))
    assert [c.tag for c in root] == ["GetDigits", "Redirect"]
    assert params(root[0].get("callbackUrl")) == {"step": "welcome", "attempt": "1", "token": WEBHOOK_TOKEN}
    assert params(root[1].text) == {"step": "welcome", "attempt": "1", "input": "none", "token": WEBHOOK_TOKEN}
    assert root[0].get("numDigits") == "1"


def test_callback_urls_follow_each_requests_host_when_no_public_url_is_set(client):
    # Rendered menus are kept per callback address: one host's URLs never reach another's callers.
    for host in ("voice-a.example.com", "voice-b.example.com", "voice-a.example.com"):
        root = xml(client.post(INSTRUCT, data=CALL, base_url=f"https://{host}"))
        assert root[0].get("callbackUrl").startswith(f"https://{host}/voice/instruct?")
        assert root[1].text.startswith(f"https://{host}/voice/instruct?")


def test_a_valid_choice_plays_its_step(default_client):
    menu = xml(default_client.post(INSTRUCT, data=CALL))
    root = xml(default_client.post(follow(menu[0].get("callbackUrl")), data=dict(CALL, dtmfDigits="1")))
    assert root[0].tag == "Say" and "open" in root[0].text
    assert root[1].tag == "Redirect" and params(root[1].text)["step"] == "welcome"


def test_invalid_choices_retry_then_go_to_on_fail(default_client):
    url = follow(xml(default_client.post(INSTRUCT, data=CALL))[0].get("callbackUrl"))
    for attempt in (2, 3):
        root = xml(default_client.post(url, data=dict(CALL, dtmfDigits="7")))
        assert root[0].tag == "Say" and root[0].text == "Sorry, that is not an option."
        url = follow(root[1].get("callbackUrl"))
        assert params(url)["attempt"] == str(attempt)
    root = xml(default_client.post(url, data=dict(CALL, dtmfDigits="7")))
    assert [c.tag for c in root] == ["Say", "Say"]
    assert root[1].text == "Thank you for calling. Goodbye."


def test_no_input_retries_then_goes_to_on_fail(default_client):
    url = follow(xml(default_client.post(INSTRUCT, data=CALL))[1].text)
    for _ in range(2):
        root = xml(default_client.post(url, data=CALL))
        assert root[0].text == "Sorry, we did not hear your choice."
        url = follow(root[2].text)
    root = xml(default_client.post(url, data=CALL))
    assert [c.text for c in root] == ["Sorry, we did not hear your choice.", "Thank you for calling. Goodbye."]


def test_menu_keys_are_strings_never_numbers(flow_client):
    hub = f"{INSTRUCT}&step=hub&attempt=1"
    assert xml(flow_client.post(hub, data=dict(CALL, dtmfDigits="01")))[1].tag == "Record"
    assert xml(flow_client.post(hub, data=dict(CALL, dtmfDigits="1")))[0].tag == "Reject"
    assert xml(flow_client.post(hub, data=dict(CALL, dtmfDigits="*")))[0].tag == "Redirect"


def test_a_hash_option_with_another_finish_key(flow_client):
    keys = f"{INSTRUCT}&step=keys&attempt=1"
    assert params(xml(flow_client.post(keys, data=dict(CALL, dtmfDigits="#")))[0].text)["step"] == "main"
    # retries: 0, so one wrong key goes straight to onFail, after the notice.
    root = xml(flow_client.post(keys, data=dict(CALL, dtmfDigits="5")))
    assert root[0].text == "Wrong key." and root[1].tag == "Redirect"


def test_the_default_agent_step_offers_voicemail_without_agents(default_client):
    url = follow(xml(default_client.post(INSTRUCT, data=CALL))[0].get("callbackUrl"))
    root = xml(default_client.post(url, data=dict(CALL, dtmfDigits="2")))
    assert [c.tag for c in root] == ["Say", "Redirect"] and params(root[1].text)["step"] == "voicemail"


def test_the_default_agent_step_dials_the_agents(make_app):
    client = make_app(VOICE_AGENT_NUMBERS="+254711000001,+254711000002").test_client()
    root = xml(client.post(f"{INSTRUCT}&step=agent", data=CALL))
    dial = root.find("Dial")
    assert dial.get("phoneNumbers") == "+254711000001,+254711000002" and dial.get("sequential") == "true"
    assert root[-1].tag == "Redirect"


def test_the_default_voicemail_records_and_the_recording_reaches_the_call(default_client):
    root = xml(default_client.post(f"{INSTRUCT}&step=voicemail", data=CALL))
    record, = list(root)
    assert record.tag == "Record" and record.get("playBeep") == "true" and record.get("maxLength") == "60"
    assert record[0].tag == "Say"
    after = dict(CALL, recordingUrl="https://rec.example.com/msg.mp3")
    goodbye = xml(default_client.post(follow(record.get("callbackUrl")), data=after))
    assert [c.text for c in goodbye] == ["Thank you for calling. Goodbye."]
    call = default_client.get(f"/voice/calls/{CALL['sessionId']}", headers=KEY).json["call"]
    assert call["recordingUrls"] == ["https://rec.example.com/msg.mp3"]


def test_digits_reach_the_call_record(default_client):
    url = follow(xml(default_client.post(INSTRUCT, data=CALL))[0].get("callbackUrl"))
    default_client.post(url, data=dict(CALL, dtmfDigits="1"))
    call = default_client.get(f"/voice/calls/{CALL['sessionId']}", headers=KEY).json
    assert call["call"]["lastDigits"] == "1"
    assert params_of_events(call) == [{}, {"step": "welcome", "attempt": "1"}]


def params_of_events(found):
    return [event["params"] or {} for event in found["events"]]


def test_an_unknown_step_in_a_callback_is_the_apology(default_client, caplog):
    caplog.set_level(logging.ERROR)
    root = xml(default_client.post(f"{INSTRUCT}&step=gone", data=CALL))
    assert "sorry" in root[0].text.lower()
    assert "unknown step" in caplog.text


# Python steps

def python_flow(tmp_path, target):
    return write_flow(tmp_path, f"""
        start: {{inbound: live}}
        steps:
          live: {{python: "{target}", leadsTo: [end]}}
          end: [{{say: Bye}}]
    """)


def bad_result(call):
    return [{"say": "Hi"}, {"dial": {"phoneNumbers": "not a number"}}, {"redirect": "nowhere"}]


def crashing(call):
    raise KeyError("boom")


def hostile(call):
    return [{"say": call.get("callerNumber", "") + "</Say><Reject/>"}, {"redirect": "end"}]


@pytest.mark.parametrize("target, logged", [
    ("tests.test_flows:bad_result", "invalid result"),
    ("tests.test_flows:crashing", "failed"),
])
def test_a_failing_python_step_is_the_apology_and_logged(make_app, tmp_path, caplog, target, logged):
    caplog.set_level(logging.ERROR)
    client = make_app(VOICE_FLOW_FILE=python_flow(tmp_path, target)).test_client()
    root = xml(client.post(INSTRUCT, data=CALL))
    assert [c.tag for c in root] == ["Say"] and "sorry" in root[0].text.lower()
    assert logged in caplog.text


def test_python_output_is_escaped_like_a_static_step(make_app, tmp_path):
    client = make_app(VOICE_FLOW_FILE=python_flow(tmp_path, "tests.test_flows:hostile")).test_client()
    root = xml(client.post(INSTRUCT, data=CALL))
    assert [c.tag for c in root] == ["Say", "Redirect"]
    assert root[0].text == "+254712345678</Say><Reject/>"


# Checking files

PROBLEMS = [
    ("unknown action", "steps: {a: [{speak: hi}]}", "step 'a', action 1", "not an AT action"),
    ("miscased attribute", "steps: {a: [{getDigits: {callBackUrl: 'https://x.example/a'}}, {say: x}]}",
     "field 'callBackUrl'", "AT spells it 'callbackUrl'"),
    ("wrong type", "steps: {a: [{dial: {phoneNumbers: ['+254711000001'], record: 'yes'}}]}",
     "field 'record'", "true or false"),
    ("bad url", "steps: {a: [{play: 'ftp://x/y.mp3'}]}", "field 'url'", "http(s) URL"),
    ("bad phone", "steps: {a: [{dial: {phoneNumbers: ['12']}}]}", "phoneNumbers", "7 to 15 digits"),
    ("missing step", "steps: {a: {menu: {prompt: {say: x}, options: {'1': b}}}}", "option '1'", "names no step"),
    ("unreachable", "steps: {a: [{say: x}], b: [{say: y}]}", "step 'b'", "cannot be reached"),
    ("nesting", "steps: {a: [{getDigits: {prompt: {dial: {phoneNumbers: ['+254711000001']}}, next: a}}, {say: x}]}",
     "field 'prompt'", "only actions AT allows"),
    ("redirect not last", "steps: {a: [{redirect: a}, {say: x}]}", "action 1", "must be the last"),
    ("reject not alone", "steps: {a: [{say: x}, {reject: }]}", "action 2", "only action"),
    ("getdigits last", "steps: {a: [{getDigits: {next: a}}]}", "action 1", "moves on silently"),
    ("unquoted key", "steps: {a: {menu: {prompt: {say: x}, options: {1: a}}}}", "option 1", "in quotes"),
    ("terminal record not last", "steps: {a: [{record: }, {say: x}]}", "action 1", "terminal Record"),
    ("no next", "steps: {a: [{getDigits: {numDigits: 2}}, {say: x}]}", "action 1", "needs 'next'"),
    ("python import", "steps: {a: {python: 'no_such_module:f'}}", "field 'python'", "cannot be imported"),
    ("bad voice", "steps: {a: [{say: {text: hi, voice: robot}}]}", "field 'voice'", "man, woman"),
    ("finish key in option", "steps: {a: {menu: {prompt: {say: x}, options: {'1#': a}}}}", "option '1#'", "finishOnKey"),
]


@pytest.mark.parametrize("name, steps, where, message", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_each_problem_is_named_with_its_file_step_and_field(tmp_path, name, steps, where, message):
    path = write_flow(tmp_path, "start: {inbound: a}\n" + steps + "\n")
    with pytest.raises(flows.FlowError) as caught:
        flows.load(path)
    text = str(caught.value)
    assert path in text
    assert any(where in p and message in p for p in caught.value.problems), caught.value.problems


def test_every_problem_is_listed_at_once(tmp_path):
    path = write_flow(tmp_path, """
        start: {inbound: a}
        steps:
          a: [{speak: hi}, {play: 'nope'}]
          b: [{say: x}]
    """)
    with pytest.raises(flows.FlowError) as caught:
        flows.load(path)
    assert len(caught.value.problems) == 2


def test_control_characters_are_refused(tmp_path):
    path = write_flow(tmp_path, 'start: {inbound: a}\nsteps: {a: [{say: "bell\\a here"}]}\n')
    with pytest.raises(flows.FlowError, match="control characters"):
        flows.load(path)


def test_an_invalid_flow_file_stops_the_app_from_starting(config, tmp_path):
    path = write_flow(tmp_path, "start: {inbound: a}\nsteps: {a: [{say: ''}]}\n")
    with pytest.raises(flows.FlowError, match="step 'a'"):
        create_app(dict(config, VOICE_FLOW_FILE=path))
    with pytest.raises(flows.FlowError, match="cannot be read"):
        create_app(dict(config, VOICE_FLOW_FILE=str(tmp_path / "missing.yaml")))


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    path = write_flow(tmp_path, "start: !!python/object/apply:os.system ['echo pwned']\nsteps: {a: [{say: x}]}\n")
    with pytest.raises(flows.FlowError, match="not valid YAML"):
        flows.load(path)


def test_the_documented_example_flow_is_valid(tmp_path):
    page = (Path(__file__).parent.parent / "docs" / "flows.md").read_text()
    example = page.split("## A complete example", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    flow = flows.check_document(yaml.safe_load(example), "docs/flows.md")
    assert {"welcome", "sales", "support", "voicemail", "goodbye"} <= set(flow.steps)


def test_the_shipped_flows_are_valid():
    default = flows.load()
    assert {"welcome", "agent", "voicemail", "goodbye"} <= set(default.steps)
    assert flows.load(EVERY_ACTION).numbers == {"+254711000099": "second_line"}


# The CLI

def test_flow_check_passes_a_good_file(app):
    result = app.test_cli_runner().invoke(args=["voice", "flow", "check", EVERY_ACTION])
    assert result.exit_code == 0 and "OK" in result.output


def test_flow_check_lists_every_problem_and_exits_1(app, tmp_path):
    path = write_flow(tmp_path, "start: {inbound: a}\nsteps:\n  a: [{speak: hi}, {play: nope}]\n")
    result = app.test_cli_runner().invoke(args=["voice", "flow", "check", path])
    assert result.exit_code == 1
    assert "2 problem(s)" in result.output and "speak" in result.output and "'url'" in result.output


def test_flow_show_prints_a_steps_xml(app):
    result = app.test_cli_runner().invoke(args=["voice", "flow", "show", EVERY_ACTION, "transfer"])
    assert result.exit_code == 0
    root = ET.fromstring(result.output.strip())
    assert [c.tag for c in root] == ["Dial", "Record"]


# Properties over generated flows

hostile_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                       min_size=1, max_size=60).filter(lambda t: t.strip() and all(
                           c in "\t\n\r" or ord(c) >= 32 for c in t))
say = hostile_text.map(lambda t: {"say": t})
play = st.sampled_from(["https://m.example.com/a.mp3", "http://m.example.com/<b>&c.wav"]).map(lambda u: {"play": u})
prompt = st.one_of(say, play)
plain = st.one_of(
    say, play,
    st.builds(lambda p, n: {"getDigits": {"prompt": p, "numDigits": n, "next": "s0"}}, prompt, st.integers(1, 9)),
    st.builds(lambda p: {"record": {"prompt": p, "maxLength": 10, "next": "s0"}}, prompt),
    st.builds(lambda name: {"enqueue": {"name": name}}, hostile_text),
    st.just({"dial": {"phoneNumbers": ["+254711000001"]}}),
    st.just({"conference": None}),
)


def make_document(action_lists):
    steps = {}
    for i, actions in enumerate(action_lists):
        if actions[-1].get("getDigits"):
            actions = actions + [{"say": "fallback"}]
        steps[f"s{i}"] = actions + ([{"redirect": f"s{i + 1}"}] if i + 1 < len(action_lists) else [])
    return {"start": {"inbound": "s0"}, "steps": steps}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(plain, min_size=1, max_size=4), min_size=1, max_size=3))
def test_generated_flows_always_render_safe_xml(app, action_lists):
    document = make_document(action_lists)
    flow = flows.check_document(yaml.safe_load(yaml.safe_dump(document)), "generated")
    allowed = {"Response", "Say", "Play", "GetDigits", "Record", "Enqueue", "Dial", "Conference", "Redirect"}
    with app.test_request_context():
        from voice.flows.ivr import step_actions, step_url

        for step in flow.steps.values():
            root = ET.fromstring(render(step_actions(flow, step, {}), step_url))
            assert {e.tag for e in root.iter()} <= allowed
            expected = [next(iter(a)).capitalize().replace("Getdigits", "GetDigits") for a in document["steps"][step.name]]
            assert [c.tag for c in root] == expected
            for parent in root:
                for child in parent:
                    assert parent.tag in ("GetDigits", "Record") and child.tag in ("Say", "Play")
            texts = [a["say"] for a in document["steps"][step.name] if "say" in a]
            assert [c.text for c in root if c.tag == "Say"] == [" ".join(t.split()) for t in texts]
