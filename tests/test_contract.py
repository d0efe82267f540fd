"""The OpenAPI contract: served by the app, and a bounded schemathesis run against the app under gunicorn."""

import io
import json

import pytest
import schemathesis
from flask import request
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from tests.contract import AT_ROUTES, SPEC, UPSTREAM_ERRORS
from tests.gunicorn_helpers import served, service_env
from tests.helpers import AT_KEY, KEY, WEBHOOK_TOKEN
from voice.at.simulated import SimulatedAT


def test_the_contract_is_served_as_kept_in_the_repository(client):
    response = client.get("/voice/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == json.loads(SPEC.read_text())
    assert response.json["openapi"].startswith("3.1")


def templated(rule):
    """A Flask rule as the contract's path: `<int:campaign_id>` is `{campaignId}`."""
    return (rule.replace("<session_id>", "{sessionId}").replace("<int:campaign_id>", "{campaignId}").replace("<int:n>", "{n}")
            .replace("<int:endpoint_id>", "{endpointId}").replace("<event_id>", "{eventId}"))


def test_every_route_is_in_the_contract(app):
    documented = set(json.loads(SPEC.read_text())["paths"])
    routes = {templated(rule.rule) for rule in app.url_map.iter_rules()
              if rule.endpoint.split(".")[0] in ("webhooks", "api", "history", "ops", "campaigns", "endpoints")}
    assert routes == documented


def test_every_answer_of_the_campaign_routes_is_met_and_keeps_the_contract(make_app, tmp_path):
    """Each status the contract documents for the campaign and do-not-call routes, produced once (and checked
    against the contract by make_app), but for 403, 429 and 503, which every keyed route shares."""
    app = make_app(VOICE_CAMPAIGN_UPLOAD_MB=1)
    met = set()

    @app.after_request
    def note(response):
        met.add((templated(request.url_rule.rule) if request.url_rule else None, request.method.lower(),
                 str(response.status_code)))
        return response

    client = app.test_client()
    contacts = ["+254712345678", "+254712345679", "not a number"]
    created = client.post("/voice/campaigns", json={"name": "first", "contacts": contacts, "window": "08:00-20:00",
                                                    "budget": {"amount": 5, "currency": "KES"}}, headers=KEY)
    assert created.status_code == 201 and created.json["refused"][0]["row"] == 3
    upload = {"contacts": (io.BytesIO(b"phone,name\n+254712345678,Amina\n"), "list.csv"), "retry": "15m 1h",
              "budget": "500 KES", "startAt": "2999-01-01T00:00:00Z"}
    assert client.post("/voice/campaigns", data=upload, headers=KEY).json["campaign"]["status"] == "scheduled"
    assert client.post("/voice/campaigns", json={"contacts": ["12"]}, headers=KEY).json["refused"][0]["row"] == 1
    assert client.post("/voice/campaigns", data="phone\n", content_type="text/csv", headers=KEY).status_code == 415
    assert client.post("/voice/campaigns", json={"contacts": contacts}).status_code == 401
    too_large = {"contacts": (io.BytesIO(b"phone\n" + b"+254712345678\n" * 80_000), "list.csv")}
    assert client.post("/voice/campaigns", data=too_large, headers=KEY).status_code == 413
    campaign = "/voice/campaigns/1"
    for path in ("/voice/campaigns", campaign, f"{campaign}/contacts", f"{campaign}/results.csv",
                 f"{campaign}/attempts.csv", "/voice/dnc"):
        client.get(path, headers=KEY)
        client.get(path)
        client.get(path.replace("/1", "/9"), headers=KEY)
    for query in ("page=0", "status=asleep", "after=abc"):
        for path in ("/voice/campaigns", f"{campaign}/contacts", "/voice/dnc"):
            client.get(f"{path}?{query}", headers=KEY)
    for change in ("pause", "pause", "resume", "resume", "cancel", "cancel"):
        client.post(f"{campaign}/{change}", headers=KEY)
        client.post(f"/voice/campaigns/9/{change}", headers=KEY)
        client.post(f"{campaign}/{change}")
    client.post("/voice/campaigns/2/pause", headers=KEY)
    client.post("/voice/campaigns/2/resume", json={"budget": "ten"}, headers=KEY)
    client.post("/voice/campaigns/2/resume", json={"budget": "x" * 70_000}, headers=KEY)
    for method in ("post", "delete"):
        send = getattr(client, method)
        send("/voice/dnc", json={"phone": ["+254712345678"]}, headers=KEY)
        send("/voice/dnc", json={"phone": "abc"}, headers=KEY)
        send("/voice/dnc", data="+254712345678", content_type="text/plain", headers=KEY)
        send("/voice/dnc", json={"phone": "1" * 70_000}, headers=KEY)
        send("/voice/dnc")

    spec = json.loads(SPEC.read_text())
    documented = {(path, method, status) for path, operations in spec["paths"].items()
                  if path.startswith(("/voice/campaigns", "/voice/dnc"))
                  for method, operation in operations.items() for status in operation["responses"]
                  if status not in ("403", "429", "503")}
    assert documented - met == set()


# A campaign's contacts file, for the multipart form of POST /voice/campaigns: numbers right and wrong.
schemathesis.openapi.media_type("text/csv", st.lists(st.sampled_from(
    ["+254712345678", "+254712345679", "+254700000480", "12", "+254900123456", "", "=cmd()"]), max_size=5).map(
    lambda numbers: ("phone,name\n" + "".join(f"{number},x\n" for number in numbers)).encode()))
schema = schemathesis.openapi.from_path(str(SPEC))


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """The app under gunicorn (the Procfile's command) with a simulated AT, limits high enough for a generated run."""
    folder = tmp_path_factory.mktemp("contract")
    fake = SimulatedAT(api_key=AT_KEY, hang_seconds=2).start()
    env = service_env(folder, fake.url, AT_TIMEOUT_SECONDS="1", VOICE_RATE_LIMIT_PER_KEY="1000000 per minute",
                      VOICE_RATE_LIMIT_PER_DESTINATION="1000000 per hour")
    try:
        with served(env, folder) as (base, _):
            yield base
    finally:
        fake.stop()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_keep_the_contract(case, running):
    if case.path in ("/voice/instruct", "/voice/events"):
        case.query = dict(case.query or {}, token=WEBHOOK_TOKEN)
    response = case.call(base_url=running, headers=KEY, timeout=10)
    # Status codes, content types and bodies must match the contract. A schema-valid value may
    # still be refused with a documented 400 (a number outside every numbering plan, a bad date),
    # and the valid key sent with every case is on purpose (refusals have their own tests).
    case.validate_response(response, excluded_checks=[not_a_server_error, positive_data_acceptance, ignored_auth])
    # ... and the only 5xx allowed are the documented ones: AT's failures on the routes that ask AT, and 503s.
    if response.status_code >= 500:
        body = response.json()
        assert response.status_code == 503 or (case.path in AT_ROUTES and body.get("error") in UPSTREAM_ERRORS), body
