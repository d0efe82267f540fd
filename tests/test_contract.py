"""The OpenAPI contract: served by the app, and a bounded schemathesis run against the app under gunicorn."""

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
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


def test_every_route_is_in_the_contract(app):
    documented = set(json.loads(SPEC.read_text())["paths"])
    routes = {rule.rule.replace("<session_id>", "{sessionId}") for rule in app.url_map.iter_rules()
              if rule.endpoint.split(".")[0] in ("webhooks", "api", "history", "ops")}
    assert routes == documented


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
