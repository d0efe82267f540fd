"""Offline development: the call simulator, the simulated AT beside the app, and simulated mode."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.gunicorn_helpers import free_port, log_of, served, service_env
from tests.helpers import KEY, WEBHOOK_TOKEN
from voice.at.simulator import SimulatedCall, SimulationError, check_document


def simulate(base, **options):
    lines = []
    call = SimulatedCall(base, token=WEBHOOK_TOKEN, say=lines.append, **options)
    final = call.run()
    return call, final, lines


def history(client, session):
    return client.get(f"/voice/calls/{session}", headers=KEY).json


def test_an_inbound_call_walks_the_menu_and_lands_in_the_history(live_app, client):
    call, final, lines = simulate(live_app, digits=["1"])
    assert lines[0].startswith("CALL inbound")
    assert any(line.startswith("  SAY (woman): Welcome") for line in lines)
    assert "  PRESS 1" in lines
    assert any("We are open Monday to Friday" in line for line in lines)
    assert lines.count("  (no input)") == 3  # the menu again after hours, its two retries, then goodbye
    assert "SAY (woman): Thank you for calling. Goodbye." in lines
    found = history(client, call.session_id)
    assert found["call"]["state"] == "Completed"
    assert found["call"]["durationSeconds"] == int(final["durationInSeconds"]) > 0
    assert found["call"]["amount"] == float(final["amount"]) > 0 and found["call"]["currencyCode"] == "KES"
    assert found["call"]["lastDigits"] == "1"


def test_a_voicemail_recording_reaches_the_call_record(live_app, client):
    call, _, lines = simulate(live_app, digits=["3"])
    assert "RECORD up to 60 s" in lines
    assert history(client, call.session_id)["call"]["recordingUrls"] == call.recordings


def test_an_outbound_call_is_recorded_as_ours(live_app, client):
    call, _, lines = simulate(live_app, direction="Outbound", digits=["2"])
    assert lines[0].startswith("CALL outbound")
    assert any(line.startswith("SAY (woman): No agent is available") for line in lines)
    found = history(client, call.session_id)["call"]
    assert found["direction"] == "Outbound" and found["destinationNumber"] == "+254712345678"


@pytest.mark.parametrize("text, problem", [
    ("<Response><Say>hi</Response>", "not valid XML"),
    ("<Reply><Say>hi</Say></Reply>", "root is <Reply>"),
    ("<Response><Hangup/></Response>", "not an AT action"),
    ("<Response><Say><Play url='x'/></Say></Response>", "nests only inside"),
    ("<Response><GetDigits><Dial phoneNumbers='+1'/></GetDigits></Response>", "one <Say> or <Play>"),
    ("<Response><Redirect>http://x/</Redirect><Say>a</Say></Response>", "not the last action"),
    ("<Response><GetDigits callBackUrl='http://x/'><Say>a</Say></GetDigits></Response>", "callbackUrl"),
])
def test_the_simulator_refuses_what_at_would_choke_on(text, problem):
    with pytest.raises(SimulationError, match=problem):
        check_document(text)


@pytest.fixture
def broken_service():
    """A service answering its webhooks with XML AT forbids, or an error status."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if "fail" in self.path:
                self.send_response(500)
                body = b"oops"
            else:
                self.send_response(200)
                body = b"<Response><GetDigits><Dial phoneNumbers='+254711000001'/></GetDigits></Response>"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_the_simulate_command_exits_non_zero_naming_the_problem(app, broken_service):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["voice", "simulate", "--url", broken_service, "--digits", "1"])
    assert result.exit_code == 1
    assert "may hold one <Say> or <Play> only" in result.output
    failing = runner.invoke(args=["voice", "simulate", "--url", broken_service + "/fail"])
    assert failing.exit_code == 1


def test_the_simulate_command_prints_a_transcript(app, live_app):
    result = app.test_cli_runner().invoke(args=["voice", "simulate", "--url", live_app, "--digits", "3,", "--caller",
                                                "+254722000111"])
    assert result.exit_code == 0, result.output
    assert "SAY (woman): Welcome" in result.output and "RECORD up to 60 s" in result.output
    assert "END after" in result.output


def test_the_simulator_under_gunicorn(tmp_path):
    from voice.at.simulated import SimulatedAT

    fake = SimulatedAT().start()
    try:
        with served(service_env(tmp_path, fake.url), tmp_path) as (base, _):
            call, final, lines = simulate(base, digits=["7", "1"])
            assert "SAY (woman): Sorry, that is not an option." in lines
            found = requests.get(f"{base}/voice/calls/{call.session_id}", headers=KEY, timeout=5).json()
            assert found["call"]["state"] == "Completed"
    finally:
        fake.stop()


def offline_env(tmp_path):
    """What `make run` gives a fresh clone: no AT credentials, VOICE_SIMULATE=auto from .env.example."""
    env = service_env(tmp_path, "unused", VOICE_SIMULATE="auto", VOICE_SIMULATED_AT_PORT=free_port())
    for name in ("AT_USERNAME", "AT_API_KEY", "AT_VOICE_NUMBER", "AT_VOICE_API_URL", "AT_WEBRTC_API_URL"):
        env.pop(name)
    return env


def wait_for_state(base, session, state, seconds=20):
    """The call `session` from the history API once it reaches `state` (or as it is when time runs out)."""
    deadline = time.monotonic() + seconds
    while True:
        call = requests.get(f"{base}/voice/calls/{session}", headers=KEY, timeout=5).json()["call"]
        if call["state"] == state or time.monotonic() > deadline:
            return call
        time.sleep(0.3)


def test_offline_mode_places_a_simulated_call_that_walks_the_flow_into_the_history(tmp_path):
    with served(offline_env(tmp_path), tmp_path) as (base, _):
        assert requests.get(base + "/voice/", timeout=5).json()["mode"] == "simulated"
        # No request is answered before the simulated AT listens: the first dial-out goes through.
        answer = requests.post(base + "/voice/invoke-call", data={"phone": "254712345678"}, headers=KEY, timeout=15)
        assert answer.status_code == 200, answer.text
        assert answer.json()["simulated"] is True
        call = wait_for_state(base, answer.json()["response"]["entries"][0]["sessionId"], "Completed")
        assert call["state"] == "Completed" and call["lastDigits"] == "1"
        assert call["durationSeconds"] > 0 and call["amount"] > 0 and call["currencyCode"] == "KES"
        unanswered = requests.post(base + "/voice/invoke-call", data={"phone": "254700000486"}, headers=KEY, timeout=15)
        call = wait_for_state(base, unanswered.json()["response"]["entries"][0]["sessionId"], "NotAnswered")
        assert call["state"] == "NotAnswered" and call["hangupCause"] == "USER_BUSY"
    output = log_of(tmp_path)
    assert "SIMULATED Africa's Talking" in output and "To go live" in output


def test_with_credentials_everything_is_live(tmp_path):
    env = offline_env(tmp_path)
    env.update(AT_USERNAME="acme", AT_API_KEY="key", AT_VOICE_NUMBER="+254711000000", AT_VOICE_API_URL="http://127.0.0.1:9")
    with served(env, tmp_path) as (base, _):
        assert "mode" not in requests.get(base + "/voice/", timeout=5).json()
    output = log_of(tmp_path)
    assert "SIMULATED" not in output and "started the simulated" not in output


def test_init_env_writes_fresh_secrets_once(app, tmp_path):
    example = tmp_path / ".env.example"
    example.write_text("# key\nVOICE_API_KEY=\n# token\nVOICE_WEBHOOK_TOKEN=\nPORT=8000\n")
    target = tmp_path / ".env"
    runner = app.test_cli_runner()
    first = runner.invoke(args=["voice", "init-env", "--example", str(example), "--target", str(target)])
    written = target.read_text()
    key = next(line for line in written.splitlines() if line.startswith("VOICE_API_KEY=")).split("=", 1)[1]
    assert len(key) >= 32 and key in first.output and "PORT=8000" in written
    second = runner.invoke(args=["voice", "init-env", "--example", str(example), "--target", str(target)])
    assert target.read_text() == written and key not in second.output


def test_init_env_adds_a_secret_an_older_env_lacks(app, tmp_path):
    target = tmp_path / ".env"
    target.write_text("VOICE_API_KEY=kept-as-it-was\nVOICE_WEBHOOK_TOKEN=also-kept\n")
    result = app.test_cli_runner().invoke(args=["voice", "init-env", "--example", str(tmp_path / "none"),
                                                "--target", str(target)])
    written = target.read_text()
    assert "VOICE_API_KEY=kept-as-it-was" in written and "VOICE_WEBHOOK_TOKEN=also-kept" in written
    secret = next(line for line in written.splitlines() if line.startswith("SECRET_KEY=")).split("=", 1)[1]
    assert len(secret) >= 32 and "SECRET_KEY" in result.output and secret not in result.output


def test_the_simulated_ats_old_setting_names_still_work():
    from voice import settings

    read = settings.from_environ({"VOICE_FAKE_AT_PORT": "9001", "VOICE_FAKE_AT_DIGITS": "2",
                                  "VOICE_FAKE_AT_ANSWER_SECONDS": "0.5"})
    assert read == {"VOICE_SIMULATED_AT_PORT": 9001, "VOICE_SIMULATED_AT_DIGITS": "2",
                    "VOICE_SIMULATED_AT_ANSWER_SECONDS": 0.5}
    assert settings.from_environ({"VOICE_FAKE_AT_PORT": "9001", "VOICE_SIMULATED_AT_PORT": "9002"}) == {
        "VOICE_SIMULATED_AT_PORT": 9002}


def test_the_simulated_ats_old_command_name_still_works(app):
    result = app.test_cli_runner().invoke(args=["voice", "fake-at", "--help"])
    assert result.exit_code == 0 and "--bridge-seconds" in result.output
