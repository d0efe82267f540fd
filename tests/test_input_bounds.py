"""Numbers, times and JSON from outside: every field of every route, at the extremes, costs a glance and no 500.

`1e400000` once cost seconds of CPU per field, a date at the calendar's end overflowed into a 500,
and deep JSON crashed the parser. Each route's numeric and time fields are walked here with the
values that did it, and the readers themselves with anything hypothesis makes.
"""

import base64
import tracemalloc
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from tests.helpers import EVENTS, INSTRUCT, KEY
from voice import callbacks, shapes

HUGE_NUMBERS = ["1e400000", "-1e-400000", "9" * 5000, "1" + "0" * 40, "Infinity", "NaN", "sNaN", "1_000", "²",
                "٣", "0x10", "1e3"]
EXTREME_TIMES = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00", "9999-12-31 23:59:59", "0001-01-01",
                 "10000-01-01", "2026-13-01", "2026-11-27T08:00:00+99:00", "2" * 300]
# Every numeric and time field AT sends, and the field of the Notification it fills.
CALLBACK_NUMBERS = {"durationInSeconds": "duration", "queueDurationInSeconds": "queue_seconds", "amount": "amount"}
CALLBACK_TIMES = {"callStartTime": "started_at", "dequeueTime": "dequeued_at"}
FINAL = {"sessionId": "ATVId_bounds", "isActive": "0", "direction": "Inbound", "callerNumber": "+254712345678",
         "destinationNumber": "+254711000000", "callSessionState": "Completed"}


def _parse_peak(form):
    """The notification `form` reads into, and the most memory reading it took."""
    tracemalloc.start()
    try:
        note = callbacks.parse(MultiDict(form))
        return note, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("value", HUGE_NUMBERS)
def test_no_numeric_field_of_a_callback_builds_a_big_number(value):
    """Read by its shape first: `1e400000` is refused without the 166 kB integer (and seconds) it once cost."""
    note, peak = _parse_peak(dict(FINAL, **{name: value for name in CALLBACK_NUMBERS}))
    assert peak < 64 * 1024
    for name, attribute in CALLBACK_NUMBERS.items():
        assert getattr(note, attribute) is None
        assert any(problem.startswith(name) for problem in note.problems)


@pytest.mark.parametrize("value", EXTREME_TIMES)
def test_a_time_at_the_calendars_end_is_dropped_and_noted(value):
    note = callbacks.parse(MultiDict(dict(FINAL, **{name: value for name in CALLBACK_TIMES})))
    for name, attribute in CALLBACK_TIMES.items():
        assert getattr(note, attribute) is None
        assert any(problem.startswith(name) for problem in note.problems)


@pytest.mark.parametrize("name", [*CALLBACK_NUMBERS, *CALLBACK_TIMES])
@pytest.mark.parametrize("value", [HUGE_NUMBERS[0], EXTREME_TIMES[0], "9" * 2000])
def test_events_store_a_notification_with_a_hostile_value_and_say_what_was_dropped(client, name, value):
    session = f"ATVId_{name}"
    assert client.post(EVENTS, data=dict(FINAL, sessionId=session, **{name: value})).data == b"OK"
    detail = client.get(f"/voice/calls/{session}", headers=KEY).json
    assert detail["call"]["state"] == "Completed"
    assert any(problem.startswith(name) for problem in detail["events"][-1]["problems"])


@pytest.mark.parametrize("name", [*CALLBACK_NUMBERS, *CALLBACK_TIMES])
def test_instruct_goes_on_with_the_flow_past_a_hostile_value(client, name):
    form = dict(FINAL, isActive="1", callSessionState="Ringing", **{name: EXTREME_TIMES[0] if "Time" in name
                                                                      else HUGE_NUMBERS[0]})
    response = client.post(INSTRUCT, data=form)
    assert response.status_code == 200
    assert ET.fromstring(response.data).find("GetDigits") is not None  # the menu, not the apology


def _cursor(text):
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# (method, path, field) for every numeric and time parameter a client sends the API.
API_FIELDS = [
    ("get", "/voice/calls", "since"), ("get", "/voice/calls", "until"), ("get", "/voice/calls", "limit"),
    ("get", "/voice/calls/stats", "since"), ("get", "/voice/calls/stats", "until"),
    ("post", "/voice/clients/token", "expire"),
]


@pytest.mark.parametrize("method, path, name", API_FIELDS)
@pytest.mark.parametrize("value", HUGE_NUMBERS + EXTREME_TIMES)
def test_every_numeric_and_time_parameter_answers_400_to_extremes(client, method, path, name, value):
    kwargs = {"query_string": {name: value}} if method == "get" else {"data": {"clientName": "jonah", name: value}}
    response = getattr(client, method)(path, headers=KEY, **kwargs)
    if name in ("since", "until") and shapes.moment(value) is not None:
        assert response.status_code == 200  # an ordinary time among the extremes
        return
    assert response.status_code == 400, response.json
    assert response.json["error"] in ("bad_filter", "bad_field") and name in response.json["message"]


@pytest.mark.parametrize("number", ["9" * 29, "9" * 5000, "0", "-1", "²", "1e3"])
def test_a_cursor_naming_an_impossible_id_is_400(client, number):
    response = client.get("/voice/calls", query_string={"cursor": _cursor(f"v1:{number}")}, headers=KEY)
    assert response.status_code == 400 and response.json["error"] == "bad_filter"


@pytest.mark.parametrize("attempt", ["9" * 5000, "²", "1e400000"])
def test_a_hostile_attempt_count_in_a_callback_url_starts_the_menu_over(client, attempt):
    form = dict(FINAL, isActive="1", callSessionState="Answered")
    response = client.post(INSTRUCT + f"&step=welcome&input=none&attempt={attempt}", data=form)
    assert response.status_code == 200
    assert ET.fromstring(response.data).find("GetDigits") is not None  # the menu again, not the apology


# JSON bodies: every route that reads one.
JSON_ROUTES = ["/voice/invoke-call", "/voice/media", "/voice/clients/token", "/voice/calls/ATVId_x/transfer"]


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("depth", [1000, 65000])
def test_deeply_nested_json_is_400(client, path, depth):
    response = client.post(path, data="[" * depth, content_type="application/json", headers=KEY)
    assert response.status_code == 400 and response.is_json
    assert response.json["error"] in ("bad_json", "bad_request")


# The readers themselves, with anything.

@given(st.text(max_size=60))
def test_whole_is_an_int_in_its_bounds_or_none(text):
    number = shapes.whole(text, 0, 864000)
    assert number is None or (isinstance(number, int) and 0 <= number <= 864000)


@given(st.one_of(st.text(max_size=60), st.from_regex(r"[+-]?[0-9]{1,30}(\.[0-9]{0,12})?(e[+-]?[0-9]{1,7})?")))
def test_decimal_is_small_and_finite_or_none(text):
    number = shapes.decimal(text, Decimal(0), Decimal(10) ** 9)
    assert number is None or (number.is_finite() and 0 <= number < 10 ** 9)


@given(st.one_of(st.text(max_size=40), st.datetimes().map(str), st.datetimes().map(lambda d: d.isoformat() + "-23:59"),
                 st.datetimes().map(lambda d: d.isoformat() + "+14:00")))
def test_moment_is_an_aware_utc_time_within_the_years_or_none(text):
    moment = shapes.moment(text)
    assert moment is None or (moment.utcoffset().total_seconds() == 0
                              and shapes.FIRST_YEAR <= moment.year <= shapes.LAST_YEAR)


@given(st.text(max_size=30))
def test_counted_gives_an_int_in_bounds_or_a_bad_value(text):
    try:
        number = shapes.counted("limit", text, 1, 200)
    except shapes.BadValue as exc:
        assert "limit" in str(exc)
    else:
        assert 1 <= number <= 200


# Control characters: PostgreSQL's text columns refuse a NUL, which once made AT's retries of a callback endless.

@pytest.mark.both_databases
@pytest.mark.parametrize("name", ["callerNumber", "destinationNumber", "hangupCause", "callerCarrierName",
                                  "dialDestinationNumber", "recordingUrl"])
def test_a_control_character_in_a_callback_field_drops_that_field_only(client, name):
    session = f"ATVId_nul_{name}"
    value = "https://x.example/a.mp3\x00" if name == "recordingUrl" else "+254712\x00345678"
    assert client.post(EVENTS, data=dict(FINAL, sessionId=session, **{name: value})).data == b"OK"
    detail = client.get(f"/voice/calls/{session}", headers=KEY).json
    assert detail["call"]["state"] == "Completed"
    assert any(problem.startswith(name) for problem in detail["events"][-1]["problems"])


@pytest.mark.both_databases
@pytest.mark.parametrize("name", ["state", "client", "clientRequestId", "direction"])
def test_a_control_character_in_a_filter_is_400(client, name):
    response = client.get("/voice/calls", query_string={name: "Completed\x00"}, headers=KEY)
    assert response.status_code == 400 and response.json["error"] == "bad_filter"


@pytest.mark.both_databases
def test_a_control_character_in_a_call_id_is_404(client):
    assert client.get("/voice/calls/ATVId_%00x", headers=KEY).status_code == 404
