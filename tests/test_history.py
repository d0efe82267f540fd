"""The history API: listing, filters, pagination, one call, figures; on SQLite and PostgreSQL."""

import pytest

from tests.helpers import EVENTS, KEY

pytestmark = pytest.mark.both_databases


def final(session, caller="+254712345678", direction="Inbound", state="Completed", duration="60",
          amount="1.5", currency="KES", cause="NORMAL_CLEARING", start="2026-11-20 10:00:00"):
    return {"sessionId": session, "isActive": "0", "direction": direction, "callerNumber": caller,
            "destinationNumber": "+254711000000", "callSessionState": state, "durationInSeconds": duration,
            "amount": amount, "currencyCode": currency, "hangupCause": cause, "callStartTime": start}


def post_all(client, forms):
    for form in forms:
        assert client.post(EVENTS, data=form).data == b"OK"


def test_history_needs_the_key(client):
    for path in ("/voice/calls", "/voice/calls/stats", "/voice/calls/ATVId_x"):
        assert client.get(path).status_code == 401


def test_unknown_call_is_404_json(client):
    response = client.get("/voice/calls/ATVId_unknown", headers=KEY)
    assert response.status_code == 404 and response.json["error"] == "not_found"


def test_calls_are_listed_newest_first_with_whole_numbers(client):
    post_all(client, [final("ATVId_first"), final("ATVId_second", caller="+255700000001")])
    response = client.get("/voice/calls", headers=KEY)
    assert response.headers["Cache-Control"] == "no-store"
    calls = response.json["calls"]
    assert [c["sessionId"] for c in calls] == ["ATVId_second", "ATVId_first"]
    assert calls[0]["callerNumber"] == "+255700000001"
    assert set(calls[0]) >= {"sessionId", "direction", "callerNumber", "destinationNumber", "state", "startedAt",
                             "endedAt", "durationSeconds", "amount", "currencyCode", "hangupCause"}
    assert response.json["next"] is None


def test_pages_cover_every_call_once(client):
    sessions = [f"ATVId_page{i:03d}" for i in range(23)]
    post_all(client, [final(s) for s in sessions])
    seen, cursor, pages = [], None, 0
    while True:
        url = "/voice/calls?limit=5" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=KEY).json
        seen += [c["sessionId"] for c in body["calls"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 5
    assert seen == list(reversed(sessions))


def test_a_call_arriving_between_pages_is_neither_lost_nor_repeated(client):
    post_all(client, [final(f"ATVId_old{i}") for i in range(4)])
    first = client.get("/voice/calls?limit=2", headers=KEY).json
    post_all(client, [final("ATVId_new")])
    second = client.get(f"/voice/calls?limit=2&cursor={first['next']}", headers=KEY).json
    assert second["next"] is None
    listed = [c["sessionId"] for page in (first, second) for c in page["calls"]]
    assert listed == ["ATVId_old3", "ATVId_old2", "ATVId_old1", "ATVId_old0"]


def test_filters(client):
    post_all(client, [
        final("ATVId_a", caller="+254712345678", start="2026-11-01 09:00:00"),
        final("ATVId_b", caller="+254799999999", direction="Outbound", state="NotAnswered", duration="0",
              cause="USER_BUSY", start="2026-11-10 09:00:00"),
        final("ATVId_c", caller="+254712345678", start="2026-11-20 09:00:00"),
    ])

    def listed(query):
        response = client.get(f"/voice/calls?{query}", headers=KEY)
        assert response.status_code == 200, response.json
        return sorted(c["sessionId"] for c in response.json["calls"])

    assert listed("phone=254712345678") == ["ATVId_a", "ATVId_c"]
    assert listed("phone=%2B254712345678") == ["ATVId_a", "ATVId_c"]
    # Outbound: we called +254799999999 from our AT number; either side matches.
    assert listed("phone=254799999999") == ["ATVId_b"]
    assert listed("phone=254711000000") == ["ATVId_a", "ATVId_b", "ATVId_c"]
    assert listed("direction=outbound") == ["ATVId_b"]
    assert listed("state=NotAnswered") == ["ATVId_b"]
    assert listed("since=2026-11-05") == ["ATVId_b", "ATVId_c"]
    assert listed("until=2026-11-15T00:00:00Z") == ["ATVId_a", "ATVId_b"]
    assert listed("since=2026-11-05T00:00:00%2B03:00&until=2026-11-15") == ["ATVId_b"]


@pytest.mark.parametrize("query, word", [
    ("limit=0", "limit"), ("limit=201", "limit"), ("limit=ten", "limit"), ("since=yesterday", "since"),
    ("until=2026-13-01", "until"), ("since=2026-11-10&until=2026-11-01", "since"), ("cursor=garbage!", "cursor"),
    ("direction=sideways", "direction"), ("phone=12", "phone"),
])
def test_bad_filters_are_400_naming_the_problem(client, query, word):
    response = client.get(f"/voice/calls?{query}", headers=KEY)
    assert response.status_code == 400
    assert response.json["error"] == "bad_filter"
    assert word in response.json["message"]


def test_stats_arithmetic(client):
    post_all(client, [
        final("ATVId_s1", duration="60", amount="1.5"),
        final("ATVId_s2", duration="30", amount="0.75"),
        final("ATVId_s3", state="NotAnswered", duration="0", amount="0", cause="USER_BUSY"),
        final("ATVId_s4", duration="90", amount="300", currency="UGX", start="2026-11-21 10:00:00"),
        final("ATVId_old", duration="999", amount="99", start="2026-10-01 10:00:00"),
    ])
    response = client.get("/voice/calls/stats?since=2026-11-01&until=2026-12-01", headers=KEY)
    assert response.status_code == 200
    stats = response.json
    assert stats["calls"] == 4
    assert stats["byState"] == {"Completed": 3, "NotAnswered": 1}
    assert stats["byHangupCause"] == {"NORMAL_CLEARING": 3, "USER_BUSY": 1}
    assert stats["answered"] == 3 and stats["finished"] == 4
    assert stats["answerRate"] == 0.75
    assert stats["totalDurationSeconds"] == 180
    assert stats["averageDurationSeconds"] == 60.0
    assert stats["costByCurrency"] == {"KES": 2.25, "UGX": 300.0}


def test_stats_of_an_empty_window(client):
    stats = client.get("/voice/calls/stats", headers=KEY).json
    assert stats["calls"] == 0 and stats["answerRate"] is None and stats["averageDurationSeconds"] is None


def test_stats_bad_window_is_400(client):
    assert client.get("/voice/calls/stats?since=nope", headers=KEY).status_code == 400
