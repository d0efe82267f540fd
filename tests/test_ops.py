"""Operations: /metrics (each metric moves when its event happens), health checks, request ids, retention."""

import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from tests.helpers import BEARER, EVENTS, KEY, database_locked
from voice.store.db import db, utcnow

ROOT = Path(__file__).resolve().parent.parent
FINAL = {"isActive": "0", "direction": "Inbound", "callSessionState": "Completed", "durationInSeconds": "42",
         "amount": "2.5", "currencyCode": "KES", "hangupCause": "NORMAL_CLEARING", "callerNumber": "+254712345678",
         "destinationNumber": "+254711000000"}

pytestmark = pytest.mark.both_databases


def samples(client):
    """Every sample of a scrape, as {(name, (label pairs...)): value}."""
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.data
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape, name, **labels):
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


class Moves:
    """The change of one sample across an action: `with Moves(client, name, **labels) as moved: ...; moved.by`."""

    def __init__(self, client, name, **labels):
        self.client, self.name, self.labels = client, name, labels

    def __enter__(self):
        self.before = value(samples(self.client), self.name, **self.labels)
        return self

    def __exit__(self, *exc):
        self.by = value(samples(self.client), self.name, **self.labels) - self.before


def test_metrics_need_the_api_key_as_a_bearer_token(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers=BEARER)
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    assert b"voice_http_requests_total" in answer.data


def test_metrics_are_open_to_the_allowed_addresses_only(make_app):
    assert make_app(VOICE_METRICS_ALLOWED_IPS="127.0.0.0/8").test_client().get("/metrics").status_code == 200
    assert make_app(VOICE_METRICS_ALLOWED_IPS="10.0.0.0/8").test_client().get("/metrics").status_code == 401


def test_metrics_can_be_turned_off(make_app):
    assert make_app(VOICE_METRICS=False).test_client().get("/metrics", headers=BEARER).status_code == 404


def test_http_requests_are_counted_by_route_and_status_with_their_latency(client):
    with Moves(client, "voice_http_requests_total", route="/voice/", method="GET", status="200") as moved:
        client.get("/voice/")
        client.get("/voice/")
    assert moved.by == 2
    with Moves(client, "voice_http_request_duration_seconds_count", route="/voice/calls/<session_id>") as moved:
        client.get("/voice/calls/ATVId_none", headers=KEY)
    assert moved.by == 1
    with Moves(client, "voice_http_requests_total", route="unmatched", method="GET", status="404") as moved:
        client.get("/no/such/path/ATVId_123")  # never a path as a label
    assert moved.by == 1


def test_a_dialout_is_counted_with_ats_status_and_the_request_to_at_timed(client, simulated_at):
    with Moves(client, "voice_dialouts_total", outcome="queued", at_status="Queued") as queued, \
            Moves(client, "voice_at_requests_total", endpoint="call", outcome="ok") as asked, \
            Moves(client, "voice_at_request_duration_seconds_count", endpoint="call") as timed:
        assert client.post("/voice/invoke-call", data={"phone": "254712345678"}, headers=KEY).status_code == 200
    assert (queued.by, asked.by, timed.by) == (1, 1, 1)


@pytest.mark.parametrize("phone, outcome, at_status", [
    ("254700000003", "at_call_failed", "InsufficientCredit"),
    ("254700000500", "at_rejected", "none"),
])
def test_a_failed_dialout_is_counted_by_outcome(client, simulated_at, phone, outcome, at_status):
    with Moves(client, "voice_dialouts_total", outcome=outcome, at_status=at_status) as failed, \
            Moves(client, "voice_at_requests_total", endpoint="call", outcome=outcome) as asked:
        assert client.post("/voice/invoke-call", data={"phone": phone}, headers=KEY).status_code == 500
    assert (failed.by, asked.by) == (1, 1)


def test_a_final_notification_counts_the_call_its_duration_and_cost_and_a_repeat_counts_as_duplicate(client):
    with Moves(client, "voice_callbacks_total", source="events", type="Completed") as stored, \
            Moves(client, "voice_calls_ended_total", state="Completed", hangup_cause="NORMAL_CLEARING") as ended, \
            Moves(client, "voice_call_duration_seconds_sum") as duration, \
            Moves(client, "voice_call_cost_total", currency="KES") as cost, \
            Moves(client, "voice_store_batches_total", outcome="committed") as batches, \
            Moves(client, "voice_store_commit_seconds_count") as commits:
        assert client.post(EVENTS, data=dict(FINAL, sessionId="ATVId_m1")).data == b"OK"
    assert (stored.by, ended.by, duration.by, cost.by, batches.by, commits.by) == (1, 1, 42, 2.5, 1, 1)
    with Moves(client, "voice_callback_duplicates_total", source="events") as duplicates, \
            Moves(client, "voice_calls_ended_total", state="Completed", hangup_cause="NORMAL_CLEARING") as ended:
        assert client.post(EVENTS, data=dict(FINAL, sessionId="ATVId_m1")).data == b"OK"
    assert (duplicates.by, ended.by) == (1, 0)


def test_values_from_callers_never_become_new_labels(client):
    with Moves(client, "voice_calls_ended_total", state="Completed", hangup_cause="other") as ended:
        client.post(EVENTS, data=dict(FINAL, sessionId="ATVId_m2", hangupCause="MADE_UP_BY_A_FORGER"))
    assert ended.by == 1
    assert "MADE_UP" not in client.get("/metrics", headers=BEARER).get_data(as_text=True)
    assert "ATVId_m2" not in client.get("/metrics", headers=BEARER).get_data(as_text=True)


def test_a_locked_database_counts_failed_batches_and_shows_writes_waiting(make_app, database_url):
    client = make_app(DATABASE_TIMEOUT_SECONDS=1.0).test_client()
    client.post(EVENTS, data=dict(FINAL, sessionId="ATVId_m0"))  # the tables exist and are in use
    answers = []
    with Moves(client, "voice_store_batches_total", outcome="failed") as failed:
        with database_locked(database_url):
            waiting = threading.Thread(target=lambda: answers.append(
                client.application.test_client().post(EVENTS, data=dict(FINAL, sessionId="ATVId_m3")).status_code))
            waiting.start()
            time.sleep(0.4)
            assert value(samples(client), "voice_store_waiting_writes") >= 1
            waiting.join()
    assert answers == [503] and failed.by == 1
    assert value(samples(client), "voice_store_waiting_writes") == 0


@pytest.mark.parametrize("reason, settings, request_args", [
    ("bad_key", {}, ("get", "/voice/calls", {"headers": {"X-API-Key": "wrong"}})),
    ("bad_token", {}, ("post", "/voice/events?token=wrong", {"data": {"sessionId": "ATVId_r"}})),
    ("ip", {"VOICE_WEBHOOK_ALLOWED_IPS": "10.0.0.0/8"}, ("post", EVENTS, {"data": {"sessionId": "ATVId_r"}})),
    ("country", {"VOICE_ALLOWED_COUNTRY_CODES": "255"},
     ("post", "/voice/invoke-call", {"data": {"phone": "254712345678"}, "headers": KEY})),
    ("premium_number", {}, ("post", "/voice/invoke-call", {"data": {"phone": "449012345678"}, "headers": KEY})),
    ("busy", {"VOICE_MAX_DIALOUTS_IN_FLIGHT": 0},
     ("post", "/voice/invoke-call", {"data": {"phone": "254712345678"}, "headers": KEY})),
    ("role", {"VOICE_API_KEYS": "ro:viewer-key-1234:viewer"},
     ("post", "/voice/invoke-call", {"data": {"phone": "254712345678"}, "headers": {"X-API-Key": "viewer-key-1234"}})),
    ("unknown_session", {"VOICE_VERIFY_SESSIONS": True},
     ("post", EVENTS, {"data": dict(FINAL, sessionId="ATVId_r", direction="Outbound")})),
])
def test_each_refusal_is_counted_by_its_reason(make_app, reason, settings, request_args):
    client = make_app(**settings).test_client()
    method, path, kwargs = request_args
    with Moves(client, "voice_refusals_total", reason=reason) as refused:
        assert getattr(client, method)(path, **kwargs).status_code in (400, 401, 403, 503)
    assert refused.by == 1


def test_rate_limited_dialouts_are_counted(make_app, simulated_at):
    client = make_app(VOICE_RATE_LIMIT_PER_KEY="1 per minute").test_client()
    with Moves(client, "voice_refusals_total", reason="rate_limit") as refused:
        client.post("/voice/invoke-call", data={"phone": "254712345678"}, headers=KEY)
        assert client.post("/voice/invoke-call", data={"phone": "254712345679"}, headers=KEY).status_code == 429
    assert refused.by == 1


def metric_names(text):
    """The voice_* metric names a dashboard or rule file uses, without _bucket/_count/_sum/_total."""
    return {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in re.findall(r"\bvoice_[a-z_]+", text)}


@pytest.mark.parametrize("path", ["ops/grafana/voice.json", "ops/prometheus/alerts.yml"])
def test_every_metric_the_dashboard_and_alerts_use_exists_in_a_scrape(client, path):
    text = (ROOT / path).read_text()
    if path.endswith(".yml"):
        rules = yaml.safe_load(text)
        assert all(rule["expr"] and rule["alert"] for group in rules["groups"] for rule in group["rules"])
    scraped = client.get("/metrics", headers=BEARER).get_data(as_text=True)
    families = {line.split()[2] for line in scraped.splitlines() if line.startswith("# TYPE")}
    used = metric_names(text)
    assert used, f"{path} names no metric"
    assert used <= {re.sub(r"_total$", "", name) for name in families}, used - families


def test_liveness_and_readiness(client):
    assert client.get("/voice/health/live").json == {"status": "live"}
    assert client.get("/voice/health/ready").json == {"status": "ready"}


def test_readiness_names_the_failing_part_and_no_secret(config):
    app = create_app(dict(config, DATABASE_URL="postgresql://voice:s3cret@127.0.0.1:1/none", DATABASE_TIMEOUT_SECONDS=0.5))
    answer = app.test_client().get("/voice/health/ready")
    assert answer.status_code == 503 and answer.json == {"status": "unavailable", "failing": ["database"]}
    assert b"s3cret" not in answer.data and b"127.0.0.1" not in answer.data


def test_every_response_carries_a_request_id_and_a_well_formed_one_is_kept(client):
    fresh = client.get("/voice/").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh) and client.get("/voice/").headers["X-Request-ID"] != fresh
    assert client.get("/voice/", headers={"X-Request-ID": "lb-1234.abc"}).headers["X-Request-ID"] == "lb-1234.abc"
    replaced = client.get("/voice/", headers={"X-Request-ID": "<script>" + "x" * 300}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert client.get("/no/such/path").headers["X-Request-ID"]


def old_calls(app, count, days_ago=100, ended=True):
    """`count` calls (each with one event) that started, and ended, `days_ago` days ago."""
    moment = utcnow() - timedelta(days=days_ago)
    calls = sa.table("calls", *(sa.column(name) for name in (
        "session_id", "state", "started_at", "ended_at", "created_at", "updated_at")))
    events = sa.table("events", *(sa.column(name) for name in (
        "call_id", "source", "received_at", "type", "fingerprint", "payload")))
    from voice.store.db import UTCDateTime
    with app.app_context():
        tag = f"ATVId_old{days_ago}_{'e' if ended else 'o'}_{time.monotonic_ns()}_"
        stamp = UTCDateTime().process_bind_param(moment, None)
        db.session.execute(calls.insert(), [
            {"session_id": f"{tag}{n}", "state": "Completed", "started_at": stamp,
             "ended_at": stamp if ended else None, "created_at": stamp, "updated_at": stamp} for n in range(count)])
        ids = db.session.execute(sa.text("SELECT id FROM calls WHERE session_id LIKE :tag"),
                                 {"tag": tag + "%"}).scalars().all()
        db.session.execute(events.insert(), [
            {"call_id": call_id, "source": "events", "received_at": stamp, "type": "Completed",
             "fingerprint": f"{call_id:064d}", "payload": "{}"} for call_id in ids])
        db.session.commit()


def counts(app):
    with app.app_context():
        return tuple(db.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                     for table in ("calls", "events"))


def test_prune_removes_only_calls_that_ended_before_the_cut_off(app):
    old_calls(app, 5)
    old_calls(app, 2, ended=False)  # never ended: kept
    old_calls(app, 3, days_ago=10)  # recent: kept
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["voice", "prune", "--older-than", "30", "--dry-run"])
    assert "would remove 5 calls and 5 events" in dry.output and counts(app) == (10, 10)
    done = runner.invoke(args=["voice", "prune", "--older-than", "30"])
    assert done.exit_code == 0 and "removed 5 calls and 5 events" in done.output
    assert counts(app) == (5, 5)


def test_prune_needs_a_retention_period(app, make_app):
    assert "VOICE_RETENTION_DAYS" in app.test_cli_runner().invoke(args=["voice", "prune"]).output
    configured = make_app(VOICE_RETENTION_DAYS=30)
    old_calls(configured, 3)
    assert "removed 3 calls" in configured.test_cli_runner().invoke(args=["voice", "prune"]).output


def test_pruning_50000_calls_never_blocks_the_webhooks_for_long(app):
    old_calls(app, 50_000)
    pruned = {}
    pruner = threading.Thread(target=lambda: pruned.update(
        output=app.test_cli_runner().invoke(args=["voice", "prune", "--older-than", "30"]).output))
    answers, slowest = [], 0.0
    client = app.test_client()
    pruner.start()
    n = 0
    while pruner.is_alive() or n < 20:
        n += 1
        started = time.monotonic()
        answers.append(client.post(EVENTS, data=dict(FINAL, sessionId=f"ATVId_live{n}")).data)
        slowest = max(slowest, time.monotonic() - started)
    pruner.join()
    assert "removed 50000 calls and 50000 events" in pruned["output"]
    assert set(answers) == {b"OK"} and slowest < 2.0
    assert counts(app) == (n, n)  # every acknowledged event is there, every old call is gone


def workers_that_served(log):
    """The worker processes whose JSON access lines show a GET of /voice/."""
    import json

    lines = (json.loads(line) for line in log.splitlines() if line.strip().startswith("{"))
    return {line["process"] for line in lines if line.get("logger") == "voice.access" and line.get("path") == "/voice/"}


def test_under_gunicorn_one_scrape_sums_every_worker_and_every_log_line_is_json(tmp_path, simulated_at):
    import json

    import requests

    from tests.gunicorn_helpers import log_of, served, service_env

    env = service_env(tmp_path, simulated_at.url, WEB_CONCURRENCY=3, GUNICORN_THREADS=2, LOG_FORMAT="json")
    with served(env, tmp_path) as (base, _):
        for _ in range(100):  # every worker up before the count starts
            if log_of(tmp_path).count("Booting worker") == 3:
                break
            time.sleep(0.1)
        before = requests.get(f"{base}/metrics", headers=BEARER, timeout=5).text
        sessions = [requests.Session() for _ in range(6)]  # several connections: several workers
        made = 0
        for n in range(10):
            for session in sessions:
                assert session.get(f"{base}/voice/", timeout=5).status_code == 200
                made += 1
        # A gthread worker may accept every kept-alive connection; fresh ones until a second worker served one.
        while len(workers_that_served(log_of(tmp_path))) < 2 and made < 400:
            assert requests.get(f"{base}/voice/", timeout=5, headers={"Connection": "close"}).status_code == 200
            made += 1
        answer = sessions[0].post(base + EVENTS, timeout=5,
                                  data=dict(FINAL, sessionId="ATVId_g1"), headers={"X-Request-ID": "trace-42"})
        assert answer.text == "OK" and answer.headers["X-Request-ID"] == "trace-42"
        scrape = requests.get(f"{base}/metrics", headers=BEARER, timeout=5).text
        for session in sessions:
            session.close()
    found, earlier = ({(s.name, tuple(sorted(s.labels.items()))): s.value
                       for family in text_string_to_metric_families(text) for s in family.samples}
                      for text in (scrape, before))
    assert (value(found, "voice_http_requests_total", route="/voice/", method="GET", status="200")
            - value(earlier, "voice_http_requests_total", route="/voice/", method="GET", status="200")) == made
    assert value(found, "voice_callbacks_total", source="events", type="Completed") == 1
    lines = [json.loads(line) for line in log_of(tmp_path).splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert len(workers_that_served(log_of(tmp_path))) >= 2  # the count above is a sum over workers
    access = [line for line in lines if line["logger"] == "voice.access" and line.get("path") == "/voice/events"]
    assert access and access[0]["request_id"] == "trace-42" and access[0]["status"] == 200
    assert access[0]["session_id"] == "ATVId_g1" and access[0]["caller"] == "+2547****5678"
    assert "token" not in json.dumps(access) and "+254712345678" not in log_of(tmp_path)
