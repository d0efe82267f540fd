"""Random bodies, headers and query strings at every route: never a 5xx but invoke-call's upstream 500."""

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contract import AT_ROUTES, UPSTREAM_ERRORS
from tests.helpers import API_KEY, WEBHOOK_TOKEN

ROUTES = [
    ("GET", "/voice/"),
    ("GET", "/voice/invoke-call"),
    ("POST", "/voice/invoke-call"),
    ("POST", "/voice/instruct"),
    ("POST", "/voice/events"),
    ("GET", "/voice/calls"),
    ("GET", "/voice/calls/stats"),
    ("GET", "/voice/calls/ATVId_fuzz"),
    ("GET", "/voice/queue"),
    ("POST", "/voice/media"),
    ("POST", "/voice/calls/ATVId_fuzz/transfer"),
    ("POST", "/voice/clients/token"),
    ("GET", "/metrics"),
    ("GET", "/voice/health/live"),
    ("GET", "/voice/health/ready"),
]
FIELDS = ["clientName", "incoming", "outgoing", "expire", "clientDialedNumber", "phone", "url", "callLeg", "holdMusicUrl", "clientRequestId", "callTransferState", "sessionId", "isActive", "dtmfDigits", "callSessionState", "eventType", "durationInSeconds",
          "amount", "currencyCode", "callStartTime", "direction", "callerNumber", "recordingUrl", "since", "until",
          "limit", "cursor", "state", "token", "queueDurationInSeconds", "dequeueTime", "attempt", "step", "input"]


@pytest.fixture(scope="module")
def fuzz_client(module_app):
    return module_app.test_client()


# Besides random text: the extremes that once cost seconds or a 500 (huge exponents and integers, dates at the
# calendar's ends with offsets, a cursor naming a 29-digit id).
EXTREMES = ["1e400000", "-1e-400000", "9" * 29, "9" * 4400, "Infinity", "²", "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+14:00", "9999-12-31 23:59:59", "djE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk"]
values = st.one_of(st.text(max_size=40), st.sampled_from(["", "0", "1", "None", "+254712345678", "ATVId_fuzz",
                                                          "2026-11-27T08:00:00Z", "-1", "1e309", "NaN", "#", "%",
                                                          *EXTREMES]))
queries = st.lists(st.tuples(st.sampled_from(FIELDS), values), max_size=3)
bodies = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=8).map(
        lambda d: "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in d.items()).encode()),
    st.dictionaries(st.sampled_from(FIELDS), st.one_of(values, st.integers(), st.none(), st.booleans(),
                                                      st.sampled_from([10 ** 400, -(10 ** 30), 1e308])),
                    max_size=5).map(lambda d: __import__("json").dumps(d).encode()),
    st.sampled_from([1000, 65000]).map(lambda depth: b"[" * depth),  # nested past the parser's recursion limit
    st.sampled_from([1000, 7000]).map(lambda depth: b'{"phone":' * depth),
)
content_types = st.sampled_from([None, "application/x-www-form-urlencoded", "application/json", "text/plain",
                                 "multipart/form-data", "application/json; charset=latin-1", "application/xml"])
# Mostly the right key and token, so that the fuzz reaches past the checks into each view.
keys = st.sampled_from([API_KEY, API_KEY, "Bearer " + API_KEY, None, "wrong", ""])


@pytest.mark.parametrize("method, path", ROUTES)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries, body=bodies, content_type=content_types, key=keys,
       with_token=st.sampled_from([True, True, True, False]))
def test_no_route_answers_5xx_to_anything(fuzz_client, method, path, query, body, content_type, key, with_token):
    pairs = list(query) + ([("token", WEBHOOK_TOKEN)] if with_token else [])
    query_string = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs)
    headers = {}
    if key is not None:
        headers["Authorization" if key.startswith("Bearer") else "X-API-Key"] = key
    kwargs = {"query_string": query_string, "headers": headers}
    if method == "POST":
        kwargs.update(data=body, content_type=content_type)
    response = fuzz_client.open(path, method=method, **kwargs)
    if response.status_code >= 500:
        body_json = response.get_json(silent=True) or {}
        documented = (path.replace("ATVId_fuzz", "{sessionId}") in AT_ROUTES and response.status_code == 500
                      and body_json.get("error") in UPSTREAM_ERRORS)
        assert documented, (response.status_code, response.get_data(as_text=True)[:300])
    assert b"Traceback" not in response.data
    assert b"<html" not in response.data.lower()
