"""The webhook endpoints API, its CLI and the console's page: registering, listing, removing, re-enabling, reading
deliveries and sending again; every refusal a JSON error with its status; the admin's alone."""

import re

import pytest

from tests.helpers import API_KEY, KEY
from tests.test_console import sign_in
from tests.webhook_receiver import Receiver
from voice import after_calls
from voice.store.db import db, guarded, utcnow
from voice.webhooks import delivery
from voice.webhooks.models import Endpoint

DIALER_KEY, VIEWER_KEY = "dialer-key-0123456789", "viewer-key-0123456789"
ROLES = {"VOICE_API_KEYS": f"acme:{DIALER_KEY}:dialer,board:{VIEWER_KEY}:viewer", "SECRET_KEY": "test-secret-key"}
URL = "https://hooks.example.com/voice?source=calls"


@pytest.fixture
def app(make_app):
    return make_app(VOICE_ALLOW_PRIVATE_TARGETS=True, **ROLES)


@pytest.fixture
def client(app):
    return app.test_client()


def add(client, url=URL, events=("call.completed",), **more):
    return client.post("/voice/webhooks", json={"url": url, "events": list(events), **more}, headers=KEY)


def test_an_endpoint_is_registered_listed_shown_and_removed(client):
    created = add(client, events=["call.completed", "campaign.finished", "call.completed"], description="CRM")
    assert created.status_code == 201
    endpoint = created.json
    assert endpoint["url"] == URL and endpoint["events"] == ["call.completed", "campaign.finished"]
    assert endpoint["status"] == "enabled" and endpoint["description"] == "CRM" and endpoint["createdBy"] == "default"
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", endpoint["secret"])
    assert add(client).json["secret"] != endpoint["secret"]  # each its own

    listed = client.get("/voice/webhooks", headers=KEY).json["endpoints"]
    assert [shown["id"] for shown in listed] == [endpoint["id"], endpoint["id"] + 1]
    assert all("secret" not in shown for shown in listed)  # shown once, at registration
    shown = client.get(f"/voice/webhooks/{endpoint['id']}", headers=KEY).json
    assert "secret" not in shown and shown["deliveries"] == {"pending": 0, "delivering": 0, "delivered": 0, "failed": 0}
    assert client.get(f"/voice/webhooks/{endpoint['id']}/deliveries", headers=KEY).json == {
        "attempts": [], "page": 1, "next": None}

    assert client.delete(f"/voice/webhooks/{endpoint['id']}", headers=KEY).status_code == 204
    assert client.get(f"/voice/webhooks/{endpoint['id']}", headers=KEY).status_code == 404
    assert [shown["id"] for shown in client.get("/voice/webhooks", headers=KEY).json["endpoints"]] == [endpoint["id"] + 1]


@pytest.mark.parametrize("body, code, words", [
    ({"events": ["call.completed"]}, "bad_url", "url is required"),
    ({"url": "ftp://example.com/x", "events": ["call.completed"]}, "bad_url", "http or https"),
    ({"url": "https:///path", "events": ["call.completed"]}, "bad_url", "with a host"),
    ({"url": "https://user:pw@example.com/x", "events": ["call.completed"]}, "bad_url", "credentials"),
    ({"url": "https://example.com:99999/x", "events": ["call.completed"]}, "bad_url", "not a valid URL"),
    ({"url": "https://example.com/" + "a" * 3000, "events": ["call.completed"]}, "bad_url", "at most 2048"),
    ({"url": "https://example.com/x#part", "events": ["call.completed"]}, "bad_url", "fragment"),
    ({"url": URL}, "bad_events", "events is required"),
    ({"url": URL, "events": []}, "bad_events", "events is required"),
    ({"url": URL, "events": ["call.completed", "call.exploded"]}, "bad_events", "'call.exploded'"),
    ({"url": URL, "events": [3]}, "bad_events", "events is required"),
    ({"url": URL, "events": ["call.completed"], "description": "x" * 201}, "bad_field", "200 characters"),
    (["not", "an", "object"], "bad_json", "JSON object"),
])
def test_a_bad_registration_is_a_400_naming_what_to_fix(client, body, code, words):
    answer = client.post("/voice/webhooks", json=body, headers=KEY)
    assert answer.status_code == 400 and answer.json["error"] == code and words in answer.json["message"]
    assert client.get("/voice/webhooks", headers=KEY).json["endpoints"] == []


def test_a_form_body_is_a_400_too(client):
    answer = client.post("/voice/webhooks", data={"url": URL, "events": "call.completed"}, headers=KEY)
    assert answer.status_code == 400 and answer.json["error"] == "bad_json"


def test_only_an_admin_key_may_touch_webhooks(client):
    endpoint = add(client).json
    routes = [("get", "/voice/webhooks"), ("post", "/voice/webhooks"), ("get", f"/voice/webhooks/{endpoint['id']}"),
              ("delete", f"/voice/webhooks/{endpoint['id']}"), ("post", f"/voice/webhooks/{endpoint['id']}/enable"),
              ("get", f"/voice/webhooks/{endpoint['id']}/deliveries"),
              ("post", f"/voice/webhooks/{endpoint['id']}/deliveries/evt_x/retry")]
    for method, path in routes:
        assert getattr(client, method)(path).status_code == 401, path
        for key in (DIALER_KEY, VIEWER_KEY):
            refused = getattr(client, method)(path, headers={"X-API-Key": key})
            assert refused.status_code == 403 and refused.json["error"] == "forbidden", path
    assert client.get(f"/voice/webhooks/{endpoint['id']}", headers=KEY).status_code == 200  # still there


@pytest.mark.parametrize("method, path", [
    ("get", "/voice/webhooks/99"), ("delete", "/voice/webhooks/99"), ("post", "/voice/webhooks/99/enable"),
    ("get", "/voice/webhooks/99/deliveries"), ("post", "/voice/webhooks/99/deliveries/evt_x/retry"),
    ("get", "/voice/webhooks/99999999999"),
])
def test_an_unknown_endpoint_is_a_404(client, method, path):
    answer = getattr(client, method)(path, headers=KEY)
    assert answer.status_code == 404 and answer.json["error"] == "not_found"


def test_a_bad_page_is_a_400(client):
    endpoint = add(client).json
    for page in ("0", "x", "10001"):
        answer = client.get(f"/voice/webhooks/{endpoint['id']}/deliveries?page={page}", headers=KEY)
        assert answer.status_code == 400 and answer.json["error"] == "bad_field"


def test_at_most_twenty_endpoints(client):
    for _ in range(20):
        assert add(client).status_code == 201
    refused = add(client)
    assert refused.status_code == 409 and refused.json["error"] == "too_many_endpoints"


def test_an_event_is_sent_again_on_request(app, client):
    receiver = Receiver().start()
    try:
        endpoint = add(client, receiver.url).json
        assert client.post("/voice/events?token=test-token-abcdef", data={
            "sessionId": "ATVId_again", "isActive": "0", "direction": "Inbound", "callerNumber": "+254712345678",
            "destinationNumber": "+254711000000", "callSessionState": "Completed"}).status_code == 200
        with app.app_context():
            after_calls.handle(utcnow().replace(year=utcnow().year + 1))
            [first] = delivery.due()
            assert delivery.deliver(first) == "delivered"
        [attempt] = client.get(f"/voice/webhooks/{endpoint['id']}/deliveries", headers=KEY).json["attempts"]
        event_id = attempt["eventId"]
        unknown = client.post(f"/voice/webhooks/{endpoint['id']}/deliveries/evt_unknown/retry", headers=KEY)
        assert unknown.status_code == 404 and unknown.json["error"] == "not_found"
        again = client.post(f"/voice/webhooks/{endpoint['id']}/deliveries/{event_id}/retry", headers=KEY)
        assert again.status_code == 202 and again.json == {"endpointId": endpoint["id"], "eventId": event_id,
                                                           "status": "pending"}
        with app.app_context():
            [second] = delivery.due()
            assert second == first and delivery.deliver(second) == "delivered"
        assert [headers["Webhook-Id"] for headers, _ in receiver.requests] == [event_id, event_id]
        assert len(client.get(f"/voice/webhooks/{endpoint['id']}/deliveries", headers=KEY).json["attempts"]) == 2
    finally:
        receiver.stop()


def test_a_disabled_endpoint_is_enabled_before_anything_is_sent_again(app, client):
    endpoint = add(client).json
    with app.app_context():
        def disable():
            db.session.get(Endpoint, endpoint["id"]).disabled_at = utcnow()
        guarded(disable, write=True)
    refused = client.post(f"/voice/webhooks/{endpoint['id']}/deliveries/evt_x/retry", headers=KEY)
    assert refused.status_code == 409 and refused.json["error"] == "endpoint_disabled"
    assert client.post(f"/voice/webhooks/{endpoint['id']}/enable", headers=KEY).json["status"] == "enabled"


def test_the_cli_registers_lists_shows_deliveries_retries_and_removes(app, client):
    runner = app.test_cli_runner()
    added = runner.invoke(args=["voice", "webhook", "add", URL, "--event", "call.completed", "--event",
                                "recording.archived", "--description", "from the shell"])
    assert added.exit_code == 0, added.output
    secret = re.search(r"signing secret \(shown this once\): (whsec_\S+)", added.output).group(1)
    [endpoint] = client.get("/voice/webhooks", headers=KEY).json["endpoints"]
    assert endpoint["url"] == URL and endpoint["events"] == ["call.completed", "recording.archived"]
    assert endpoint["createdBy"] == "cli" and secret not in str(endpoint)

    listed = runner.invoke(args=["voice", "webhook", "list"])
    assert listed.exit_code == 0 and URL in listed.output and "enabled" in listed.output
    assert "no delivery attempt yet" in runner.invoke(args=["voice", "webhook", "deliveries", str(endpoint["id"])]).output
    refused = runner.invoke(args=["voice", "webhook", "retry", str(endpoint["id"]), "evt_nothing"])
    assert refused.exit_code != 0 and "has no delivery of event 'evt_nothing'" in refused.output
    bad = runner.invoke(args=["voice", "webhook", "add", "ftp://x", "--event", "call.completed"])
    assert bad.exit_code != 0 and "http or https" in bad.output and "Traceback" not in bad.output
    assert runner.invoke(args=["voice", "webhook", "add", URL, "--event", "nope"]).exit_code != 0
    removed = runner.invoke(args=["voice", "webhook", "remove", str(endpoint["id"])])
    assert removed.exit_code == 0 and client.get("/voice/webhooks", headers=KEY).json["endpoints"] == []
    assert runner.invoke(args=["voice", "webhook", "remove", str(endpoint["id"])]).exit_code != 0


def test_the_console_shows_endpoints_and_their_deliveries_to_admins_only(app, client):
    add(client, description='<img src=x onerror="window.pwned=1">')
    admin = app.test_client()
    assert sign_in(admin).status_code == 302
    page = admin.get("/voice/console/webhooks")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and URL.replace("&", "&amp;") in text and "No delivery yet" in text
    assert "<img src=x" not in text and "&lt;img src=x onerror=" in text  # the description is inert text
    assert 'id="nav-webhooks"' in admin.get("/voice/console/calls").get_data(as_text=True)
    viewer = app.test_client()
    assert sign_in(viewer, "board", VIEWER_KEY).status_code == 302
    assert viewer.get("/voice/console/webhooks").status_code == 403
    assert 'id="nav-webhooks"' not in viewer.get("/voice/console/calls").get_data(as_text=True)


def test_the_secret_is_never_logged(client, caplog):
    secret = add(client).json["secret"]
    assert secret not in caplog.text and API_KEY not in caplog.text


@pytest.mark.parametrize("body", [
    b"[" * 65000, b'{"url":' * 7000, b'{"url": 5, "events": {"a": 1}}', b'{"url": "https://x.example/\\u0000", '
    b'"events": ["call.completed"]}', b'{"url": "https://x.example/", "events": "call.completed", "description": []}',
    b'{"url": "https://[::1/", "events": ["call.completed"]}', b'{"url": "http://\\u00e9\\u00e9/", "events": [null]}',
    b"\xff\xfe", b'{"url": "https://x.example/", "events": ["call.completed"], "description": 1e400}',
])
def test_odd_bodies_are_a_400_never_a_500(client, body):
    answer = client.post("/voice/webhooks", data=body, content_type="application/json", headers=KEY)
    assert answer.status_code == 400 and answer.json["error"] in ("bad_json", "bad_url", "bad_events", "bad_field")


def test_a_body_past_the_limit_is_a_413(client):
    answer = client.post("/voice/webhooks", json={"url": URL, "events": ["call.completed"], "description": "x" * 70_000},
                         headers=KEY)
    assert answer.status_code == 413 and answer.is_json
