"""Random bodies, headers and query strings at every route: never a 5xx but invoke-call's upstream 500."""

import csv as csv_module
import io
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.contract import AT_ROUTES, UPSTREAM_ERRORS
from tests.helpers import API_KEY, WEBHOOK_TOKEN
from voice.campaigns.rules import STATUSES

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
    ("GET", "/voice/campaigns"),
    ("POST", "/voice/campaigns"),
    ("GET", "/voice/campaigns/1"),
    ("POST", "/voice/campaigns/1/pause"),
    ("POST", "/voice/campaigns/1/resume"),
    ("POST", "/voice/campaigns/1/cancel"),
    ("GET", "/voice/campaigns/1/contacts"),
    ("GET", "/voice/campaigns/1/results.csv"),
    ("GET", "/voice/campaigns/1/attempts.csv"),
    ("GET", "/voice/dnc"),
    ("POST", "/voice/dnc"),
    ("DELETE", "/voice/dnc"),
]
FIELDS = ["clientName", "incoming", "outgoing", "expire", "clientDialedNumber", "phone", "url", "callLeg", "holdMusicUrl", "clientRequestId", "callTransferState", "sessionId", "isActive", "dtmfDigits", "callSessionState", "eventType", "durationInSeconds",
          "amount", "currencyCode", "callStartTime", "direction", "callerNumber", "recordingUrl", "since", "until",
          "limit", "cursor", "state", "token", "queueDurationInSeconds", "dequeueTime", "attempt", "step", "input",
          # a campaign's fields and the campaign routes' parameters
          "name", "contacts", "window", "retry", "timezone", "startAt", "notAfter", "maxConcurrent", "perMinute",
          "budget", "page", "status", "after"]


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
                    max_size=5).map(lambda d: json.dumps(d).encode()),
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
    if method in ("POST", "DELETE"):
        kwargs.update(data=body, content_type=content_type)
    response = fuzz_client.open(path, method=method, **kwargs)
    if response.status_code >= 500:
        body_json = response.get_json(silent=True) or {}
        documented = (path.replace("ATVId_fuzz", "{sessionId}") in AT_ROUTES and response.status_code == 500
                      and body_json.get("error") in UPSTREAM_ERRORS)
        assert documented, (response.status_code, response.get_data(as_text=True)[:300])
    assert b"Traceback" not in response.data
    assert b"<html" not in response.data.lower()


# A campaign in every shape, right and wrong: its rules and its contacts as JSON, or as form fields and a CSV file.
# Each rule is mostly right, so that a wrong one is often the only one and its request reaches the store.
GOOD_NUMBERS = ["+254712345678", "+254712345679", "254712345670", "+254 712 345 671", "+254700000480"]
NUMBERS = GOOD_NUMBERS + ["+254900123456", "+1 900 555 0100", "0712345678", "12", "", "ATVId_fuzz"]
anything = st.one_of(values, st.integers(), st.none(), st.booleans(), st.floats(), st.lists(values, max_size=2),
                     st.dictionaries(values, values, max_size=2), st.sampled_from([10 ** 400, -(10 ** 30), 2 ** 63]))


def mostly(right, wrong=()):
    """One of the `right` values most of the time, else one of the `wrong` ones or anything at all."""
    right, wrong = st.sampled_from(right), st.sampled_from(wrong) if wrong else anything
    return st.integers(0, 7).flatmap(lambda n: right if n < 6 else wrong if n == 6 else anything)


zones = mostly(["Africa/Nairobi", "Etc/GMT+5", "UTC", "posixrules"],
               ["Mars/Olympus", "../etc/passwd", "Africa/Nairobi\x00", "/etc/localtime", "", None, ["UTC"], {}])
variables = st.dictionaries(st.one_of(st.sampled_from(["name", "town", "a-b", "_x", "phone", ""]), st.text(max_size=5)),
                            mostly(["Amina", "=cmd()", "", 5, 1.5], ["\x00", "x" * 513]), max_size=3)
contacts = st.one_of(mostly(GOOD_NUMBERS, NUMBERS), st.fixed_dictionaries(
    {"phone": mostly(GOOD_NUMBERS, NUMBERS)}, optional={"timezone": zones, "vars": st.one_of(variables, anything)}))
budgets = mostly(["500 KES", "0.0001 KES", {"amount": 5, "currency": "KES"}, {"amount": "0.5", "currency": "kes"}],
                 ["1e400 KES", "0 KES", "5", "5 KESS", "NaN KES", {"amount": 5}, {"amount": 5, "currency": "K\u00c9S"},
                  {"amount": True, "currency": "KES"}, {"amount": 1e308, "currency": "KES"}])
rules = st.fixed_dictionaries({}, optional={
    "name": mostly(["Reminders", "x" * 128, "\u00dcn\u00efcode \u2713"], ["x" * 129, " ", "a\x00", None]),
    "step": mostly(["welcome", "goodbye"], ["nowhere", None, ""]),
    "window": mostly(["08:00-20:00", "20:00-02:00", "00:00-00:00", {"from": "08:00", "to": "20:00"},
                      {"from": "22:00", "to": "06:00", "days": ["mon", "SUNDAY"], "skip": ["2026-12-25"]}],
                     ["8-20", {"from": "08:00", "to": "20:00", "days": []}, {"from": "08:00", "to": "20:00",
                                                                                "skip": [5, {}]},
                      {"from": "24:00", "to": "20:00"}, {"from": "08:00", "to": "20:00", "other": 1}]),
    "timezone": zones,
    "startAt": mostly(["2999-01-01T00:00:00Z", "2026-01-01"], ["2026-02-30T00:00:00Z", *EXTREMES]),
    "notAfter": mostly(["2999-06-01T00:00:00+03:00"], ["2001-01-01", *EXTREMES]),
    "retry": mostly(["15m 1h", "none", "", "1s", ["1h"]], ["0s", "99999d", "1s " * 11, "1S,2M", ["1h", 5]]),
    "maxConcurrent": mostly([1, 5, "7", 1000], [0, "1e3", 1.5, "\u0663"]),
    "perMinute": mostly([1, 60000, "30"], [60001, " 30 "]),
    "budget": budgets})
contact_lists = st.lists(contacts, min_size=1, max_size=5)
campaign_bodies = st.tuples(rules, st.integers(0, 7).flatmap(lambda n: contact_lists if n else anything)).map(
    lambda pair: dict(pair[0], contacts=pair[1]))


def mostly_of(right, wrong):
    """One of the `right` strategies' values most of the time, else the `wrong` one's."""
    return st.integers(0, 7).flatmap(lambda n: right if n < 6 else wrong)


cells = st.one_of(mostly(GOOD_NUMBERS, NUMBERS).map(str), st.text(max_size=10), st.sampled_from(
    ["Africa/Nairobi", "Mars/Olympus", "=cmd()", '"', "\r", "x,y", "\x00", ""]))
csv_headers = mostly_of(st.sampled_from([["phone"], ["phone", "timezone"], ["Phone", "name"], ["\ufeffphone"],
                                         ["phone", "timezone", "name"]]),
                        st.one_of(st.sampled_from([["phone", "phone"], ["name"], ["phone", "a-b"], []]),
                                  st.lists(st.text(max_size=6), max_size=3)))
csv_rows = st.lists(st.tuples(mostly_of(st.sampled_from(GOOD_NUMBERS), cells), st.lists(cells, max_size=3)).map(
    lambda row: [row[0], *row[1]]), max_size=6)


def csv_bytes(header, rows, encoding):
    """A CSV file of `header` and `rows` in `encoding` (what cannot be encoded is replaced)."""
    out = io.StringIO()
    csv_module.writer(out).writerows([header] + rows)
    return out.getvalue().encode(encoding, errors="replace")


csv_files = mostly_of(
    st.builds(csv_bytes, csv_headers, csv_rows, mostly_of(st.just("utf-8"), st.sampled_from(
        ["utf-8-sig", "utf-16", "latin-1"]))),
    st.binary(max_size=200))


def form_value(value):
    """A rule as a form field: text as it is, objects as JSON, anything else as its text."""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


@pytest.fixture(scope="module")
def campaign_client(fuzz_client):
    """The fuzz client, with a campaign 1 in place so that its routes reach past the 404."""
    response = fuzz_client.post("/voice/campaigns", json={"contacts": ["+254712345678"]},
                                headers={"X-API-Key": API_KEY})
    assert response.status_code == 201, response.get_json()
    return fuzz_client


def assert_answered_in_json_below_500(response):
    """A client's mistake is a JSON 4xx: never a 5xx (a 503 included: the store is fine), never a traceback."""
    assert response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.is_json and set(response.get_json()) >= ({"campaign", "accepted", "refused"}
                                                             if response.status_code == 201 else {"error", "message"})


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=campaign_bodies)
# What the fuzz and schemathesis found once, tried every run.
@example(body={"name": None, "contacts": ["+254712345678"]})
@example(body={"contacts": [{"phone": "+254712345678", "timezone": ["UTC"]}]})
@example(body={"contacts": ["+254712345678"], "window": {"from": "08:00", "to": "20:00", "skip": [{}]}})
def test_a_campaign_in_any_json_shape_never_answers_5xx(campaign_client, body):
    response = campaign_client.post("/voice/campaigns", data=json.dumps(body), content_type="application/json",
                                    headers={"X-API-Key": API_KEY})
    assert_answered_in_json_below_500(response)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=rules, contacts_file=csv_files, file_field=st.sampled_from(["contacts", "contacts", "contacts", "list"]))
def test_a_campaign_uploaded_in_any_shape_never_answers_5xx(campaign_client, fields, contacts_file, file_field):
    form = {name: form_value(value) for name, value in fields.items()}
    form[file_field] = (io.BytesIO(contacts_file), "contacts.csv")
    response = campaign_client.post("/voice/campaigns", data=form, content_type="multipart/form-data",
                                    headers={"X-API-Key": API_KEY})
    assert_answered_in_json_below_500(response)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget=budgets, status=mostly(STATUSES, ["calling ", "Completed"]), page=mostly(["1", "2", "10000"],
                                                                                     ["10001", "0", "\u00b2"]))
def test_a_campaign_is_watched_and_changed_with_any_parameters_below_500(campaign_client, budget, status, page):
    key = {"X-API-Key": API_KEY}
    for response in (
            campaign_client.post("/voice/campaigns/1/pause", headers=key),
            campaign_client.post("/voice/campaigns/1/resume", json={"budget": budget}, headers=key),
            campaign_client.get("/voice/campaigns/1/contacts", query_string={"status": form_value(status),
                                                                            "page": form_value(page)}, headers=key),
            campaign_client.get("/voice/campaigns", query_string={"page": form_value(page)}, headers=key)):
        assert response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])


@pytest.mark.both_databases
@pytest.mark.parametrize("campaign_id", [2 ** 31, 2 ** 63, 10 ** 20])
def test_a_campaign_id_past_the_databases_integers_is_a_404(client, campaign_id):
    for method, path in ROUTES:
        if path.startswith("/voice/campaigns/1"):
            response = client.open(path.replace("/1", f"/{campaign_id}", 1), method=method,
                                   headers={"X-API-Key": API_KEY})
            assert (response.status_code, response.get_json()["error"]) == (404, "not_found"), (method, path)
