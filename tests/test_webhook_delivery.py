"""Webhook deliveries as a receiver meets them: signed so the Standard Webhooks library verifies them, retried with
backoff, in order per call, once per call, refused to private addresses and never redirected; on both databases.

Receivers are real HTTP servers on 127.0.0.1 (tests/webhook_receiver.py). The worker's steps run here, as its tick
and threads would run them (`due()`, then `deliver(id)`), with the clock passed in instead of waited for.
"""

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from werkzeug.wrappers import Response

from tests.helpers import EVENTS, INSTRUCT, KEY
from tests.webhook_receiver import Receiver
from voice import after_calls
from voice.campaigns import settling
from voice.store.db import db, guarded, utcnow
from voice.webhooks import delivery, events
from voice.webhooks.models import Event

pytestmark = pytest.mark.both_databases

CALLER = "+254712345678"
OUR_NUMBER = "+254711000000"


def final(session):
    """A call's final notification, as AT posts it."""
    return {"sessionId": session, "isActive": "0", "direction": "Inbound", "callerNumber": CALLER,
            "destinationNumber": OUR_NUMBER, "callSessionState": "Completed", "status": "Success",
            "durationInSeconds": "42", "amount": "2.5000", "currencyCode": "KES", "hangupCause": "NORMAL_CLEARING"}


@pytest.fixture
def receiver():
    """A receiver answering 200 unless a test says otherwise."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def app(make_app):
    """The app, allowed to deliver to 127.0.0.1 (the receivers are local)."""
    return make_app(VOICE_ALLOW_PRIVATE_TARGETS=True)


def register(client, url, events=("call.completed",)):
    """POST /voice/webhooks; the endpoint with its secret."""
    answer = client.post("/voice/webhooks", json={"url": url, "events": list(events)}, headers=KEY)
    assert answer.status_code == 201, answer.json
    return answer.json


def end_call(app, client, session, url=EVENTS):
    """A call's final notification through the real route, then the worker's hand-over of ended calls."""
    assert client.post(url, data=final(session)).status_code == 200
    with app.app_context():
        after_calls.handle(utcnow() + timedelta(seconds=10))


def run(app, now=None):
    """One tick of the worker and its deliveries: the outcome of each delivery it sent."""
    with app.app_context():
        return [delivery.deliver(delivery_id, now=now) for delivery_id in delivery.due(now)]


def attempts(client, endpoint):
    return client.get(f"/voice/webhooks/{endpoint['id']}/deliveries", headers=KEY).json["attempts"]


def test_a_call_completed_event_is_signed_so_the_standard_webhooks_library_verifies_it(app, receiver):
    client = app.test_client()
    endpoint = register(client, receiver.url)
    assert endpoint["secret"].startswith("whsec_")
    end_call(app, client, "ATVId_signed")
    assert run(app) == ["delivered"]

    [(headers, body)] = receiver.requests
    sent = Webhook(endpoint["secret"]).verify(body, headers)
    assert sent["type"] == "call.completed"
    assert sent["data"] == client.get("/voice/calls/ATVId_signed", headers=KEY).json["call"]
    assert headers["Webhook-Id"].startswith("evt_") and headers["Content-Type"] == "application/json"
    assert b"payload" not in body and b"token" not in body  # no raw AT payload, no webhook token
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(body.replace(b"42", b"43"), headers)
    [attempt] = attempts(client, endpoint)
    assert attempt["statusCode"] == 200 and attempt["error"] is None and attempt["deliveryStatus"] == "delivered"
    assert attempt["eventId"] == headers["Webhook-Id"] and attempt["eventType"] == "call.completed"


def test_final_notifications_on_both_urls_give_one_event(app, receiver):
    client = app.test_client()
    register(client, receiver.url)
    end_call(app, client, "ATVId_twice", EVENTS)
    end_call(app, client, "ATVId_twice", INSTRUCT)  # AT sends the final notification to both URLs
    with app.app_context():
        guarded(lambda: events.calls_ended([]), write=True)
    assert run(app) == ["delivered"]
    assert run(app) == []
    assert len(receiver.requests) == 1
    with app.app_context():
        assert guarded(lambda: db.session.execute(sa.select(sa.func.count()).select_from(Event)).scalar()) == 1


def test_a_receiver_that_fails_then_recovers_gets_the_event_after_retries(app, receiver):
    receiver.answers = [500, 500]
    client = app.test_client()
    endpoint = register(client, receiver.url)
    end_call(app, client, "ATVId_retried")
    start = utcnow()
    assert run(app, start) == ["pending"]
    [first] = attempts(client, endpoint)
    assert first["statusCode"] == 500 and first["error"] == "HTTP 500: no" and first["deliveryStatus"] == "pending"
    retry_at = db_time(first["nextAttemptAt"])
    assert timedelta(0) < retry_at - db_time(first["attemptedAt"]) <= timedelta(seconds=10)
    assert run(app, retry_at - timedelta(seconds=1)) == []  # not before its time
    assert run(app, retry_at) == ["pending"]
    second_retry = db_time(attempts(client, endpoint)[0]["nextAttemptAt"])
    assert second_retry - retry_at > timedelta(seconds=10)  # backing off
    assert run(app, second_retry) == ["delivered"]

    shown = attempts(client, endpoint)
    assert [attempt["statusCode"] for attempt in shown] == [200, 500, 500]  # newest first
    assert {attempt["deliveryStatus"] for attempt in shown} == {"delivered"}
    assert len({headers["Webhook-Id"] for headers, _ in receiver.requests}) == 1  # one event id, for the receiver's dedup


def db_time(text):
    """A time the API shows, as a datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_delivery_that_fails_for_24_hours_is_failed_and_counted(app, receiver):
    receiver.answers = [503] * 100
    client = app.test_client()
    endpoint = register(client, receiver.url)
    end_call(app, client, "ATVId_failing")
    start = now = utcnow()
    outcome = run(app, now)
    while outcome == ["pending"]:
        now = db_time(attempts(client, endpoint)[0]["nextAttemptAt"])
        outcome = run(app, now)
    assert outcome == ["failed"]
    assert now - start >= timedelta(hours=24)
    assert 8 < len(receiver.requests) < 30
    shown = client.get(f"/voice/webhooks/{endpoint['id']}", headers=KEY).json
    assert shown["deliveries"]["failed"] == 1
    scraped = client.get("/metrics", headers=KEY).get_data(as_text=True)
    assert 'voice_webhook_deliveries{status="failed"} 1.0' in scraped
    assert run(app, now + timedelta(days=1)) == []  # given up for good


def test_an_endpoint_failing_for_days_is_disabled_says_so_and_gets_nothing_new(app, receiver):
    receiver.answers = [500]
    client = app.test_client()
    endpoint = register(client, receiver.url)
    end_call(app, client, "ATVId_before")
    start = utcnow()
    assert run(app, start) == ["pending"]
    with app.app_context():
        delivery.housekeeping(start + timedelta(days=2))
    assert client.get(f"/voice/webhooks/{endpoint['id']}", headers=KEY).json["status"] == "enabled"
    with app.app_context():
        delivery.housekeeping(start + timedelta(days=3, minutes=1))
    shown = client.get(f"/voice/webhooks/{endpoint['id']}", headers=KEY).json
    assert shown["status"] == "disabled" and shown["disabledAt"] and "failed since" in shown["disabledReason"]
    end_call(app, client, "ATVId_while_disabled")
    assert run(app, start + timedelta(days=4)) == []  # neither the retry nor the new call
    assert len(receiver.requests) == 1

    assert client.post(f"/voice/webhooks/{endpoint['id']}/enable", headers=KEY).json["status"] == "enabled"
    end_call(app, client, "ATVId_after")
    assert run(app, start + timedelta(days=4)) == ["delivered", "delivered"]  # the retry, then the new call
    assert [_session(body) for _, body in receiver.requests[1:]] == ["ATVId_before", "ATVId_after"]


def test_no_delivery_reaches_a_private_address_without_the_setting(make_app, receiver):
    app = make_app()  # VOICE_ALLOW_PRIVATE_TARGETS off
    client = app.test_client()
    refused = client.post("/voice/webhooks", json={"url": receiver.url, "events": ["call.completed"]}, headers=KEY)
    assert refused.status_code == 400 and refused.json["error"] == "bad_url" and "private" in refused.json["message"]
    # A name is taken, and checked on the address it resolves to, at each delivery.
    endpoint = register(client, receiver.url.replace("127.0.0.1", "localhost"))
    end_call(app, client, "ATVId_private")
    assert run(app) == ["pending"]
    assert receiver.requests == []
    [attempt] = attempts(client, endpoint)
    assert attempt["statusCode"] is None and attempt["error"].startswith("refused_address")


def test_a_redirect_to_another_host_is_not_followed(app, receiver):
    elsewhere = Receiver().start()
    try:
        receiver.answers = [Response("moved", status=302, headers={"Location": elsewhere.url})]
        client = app.test_client()
        endpoint = register(client, receiver.url)
        end_call(app, client, "ATVId_redirected")
        assert run(app) == ["pending"]
        assert len(receiver.requests) == 1 and elsewhere.requests == []
        [attempt] = attempts(client, endpoint)
        assert attempt["statusCode"] == 302 and "redirect" in attempt["error"]
    finally:
        elsewhere.stop()


def test_the_events_of_a_call_arrive_in_order_and_other_calls_do_not_wait(app, receiver):
    receiver.answers = [lambda request: 500 if b"ATVId_first" in request.get_data() else 200]
    client = app.test_client()
    endpoint = register(client, receiver.url, ("call.completed", "recording.archived"))
    end_call(app, client, "ATVId_first")
    with app.app_context():
        guarded(lambda: events.recording_archived("ATVId_first", {"n": 1, "status": "archived"}), write=True)
    end_call(app, client, "ATVId_other")
    start = utcnow()
    assert sorted(run(app, start)) == ["delivered", "pending"]  # the first call's completion failed; the other went
    assert run(app, start + timedelta(seconds=1)) == []  # its recording waits for its completion
    [failed] = [attempt for attempt in attempts(client, endpoint) if attempt["deliveryStatus"] == "pending"]
    retry_at = db_time(failed["nextAttemptAt"])
    assert run(app, retry_at) == ["delivered"]
    assert run(app, retry_at) == ["delivered"]
    kinds = [(_type(body), _session(body)) for _, body in receiver.requests]
    first = [kind for kind, session in kinds if session == "ATVId_first"]
    assert first == ["call.completed", "call.completed", "recording.archived"]


def _type(body):
    return json.loads(body)["type"]


def _session(body):
    return json.loads(body)["data"]["sessionId"]


def test_a_claim_runs_out_so_a_killed_workers_delivery_is_due_again(app, receiver):
    client = app.test_client()
    register(client, receiver.url)
    end_call(app, client, "ATVId_claimed")
    start = utcnow()
    with app.app_context():
        [claimed] = delivery.due(start)
        assert delivery.due(start + timedelta(seconds=1)) == []  # claimed: no second tick takes it
        lease = delivery.lease()
        assert delivery.due(start + lease + timedelta(seconds=1)) == [claimed]
        assert delivery.deliver(claimed, now=start + lease + timedelta(seconds=2)) == "delivered"


def test_a_receiver_that_never_stops_answering_is_read_only_so_far(app, receiver):
    def endless(request):
        return Response((b"x" * 65536 for _ in iter(int, 1)), status=500)

    receiver.answers = [endless]
    client = app.test_client()
    endpoint = register(client, receiver.url)
    end_call(app, client, "ATVId_endless")
    assert run(app) == ["pending"]
    [attempt] = attempts(client, endpoint)
    assert attempt["statusCode"] == 500 and attempt["error"] == "HTTP 500: " + "x" * 200


def test_campaign_events_carry_the_contact_and_the_campaign_as_the_api_shows_them(app, receiver):
    client = app.test_client()
    endpoint = register(client, receiver.url, ("campaign.contact.finished", "campaign.finished"))
    created = client.post("/voice/campaigns", json={"name": "reminders", "startAt": "2999-01-01T00:00:00Z",
                                                    "contacts": ["+254712345678", "+254712345679"]}, headers=KEY)
    campaign_id = created.json["campaign"]["id"]
    cancelled = client.post(f"/voice/campaigns/{campaign_id}/cancel", headers=KEY).json
    shown_contacts = client.get(f"/voice/campaigns/{campaign_id}/contacts", headers=KEY).json["contacts"]
    assert run(app) == []  # the cancel only changed statuses: the worker's tick queues the events
    with app.app_context():
        settling.expire_and_finish()
    assert run(app) == ["delivered"] * 3
    sent = [Webhook(endpoint["secret"]).verify(body, headers) for headers, body in receiver.requests]
    assert [event["type"] for event in sent] == ["campaign.contact.finished"] * 2 + ["campaign.finished"]
    contacts = sorted((event["data"] for event in sent if event["type"] == "campaign.contact.finished"),
                      key=lambda contact: contact["id"])
    assert contacts == [dict(contact, campaignId=campaign_id) for contact in shown_contacts]
    assert {contact["status"] for contact in contacts} == {"cancelled"}
    [campaign] = [event["data"] for event in sent if event["type"] == "campaign.finished"]
    assert campaign == cancelled


def test_a_campaign_past_its_end_sends_its_expired_contacts_then_finished(app, receiver):
    client = app.test_client()
    endpoint = register(client, receiver.url, ("campaign.contact.finished", "campaign.finished"))
    created = client.post("/voice/campaigns", json={
        "name": "ends", "startAt": "2999-01-01T00:00:00Z", "notAfter": "2999-01-02T00:00:00Z",
        "contacts": ["+254712345678", "+254712345679"]}, headers=KEY)
    campaign_id = created.json["campaign"]["id"]
    with app.app_context():
        settling.expire_and_finish(datetime(2999, 1, 3, tzinfo=timezone.utc))
        settling.expire_and_finish(datetime(2999, 1, 4, tzinfo=timezone.utc))  # nothing finishes twice
    assert sorted(run(app)) == ["delivered"] * 3
    sent = [Webhook(endpoint["secret"]).verify(body, headers) for headers, body in receiver.requests]
    assert sorted((event["type"], event["data"]["status"]) for event in sent) == [
        ("campaign.contact.finished", "expired"), ("campaign.contact.finished", "expired"),
        ("campaign.finished", "completed")]
    [campaign] = [event["data"] for event in sent if event["type"] == "campaign.finished"]
    assert campaign["id"] == campaign_id and campaign["counts"]["expired"] == 2


def test_a_large_cancel_is_announced_by_the_worker_in_chunks_contacts_first_and_once(app, receiver, monkeypatch):
    monkeypatch.setattr(events, "CHUNK", 2)  # five contacts take three transactions
    client = app.test_client()
    register(client, receiver.url, ("campaign.contact.finished", "campaign.finished"))
    contacts = [f"+25471234560{n}" for n in range(5)]
    created = client.post("/voice/campaigns", json={"name": "large", "startAt": "2999-01-01T00:00:00Z",
                                                    "contacts": contacts}, headers=KEY)
    campaign_id = created.json["campaign"]["id"]
    assert client.post(f"/voice/campaigns/{campaign_id}/cancel", headers=KEY).status_code == 200
    with app.app_context():
        assert queued(app) == []
        assert settling.announce_cancelled() == 1
        assert settling.announce_cancelled() == 0  # announced: the next ticks pass it by
        settling.expire_and_finish()
    kinds = queued(app)
    shown = client.get(f"/voice/campaigns/{campaign_id}/contacts", headers=KEY).json["contacts"]
    assert kinds == [("campaign.contact.finished", str(contact["id"])) for contact in shown] + [
        ("campaign.finished", str(campaign_id))]


def test_a_cancel_nobody_listened_to_is_not_announced_to_an_endpoint_registered_later(app, receiver):
    client = app.test_client()
    created = client.post("/voice/campaigns", json={"name": "quiet", "startAt": "2999-01-01T00:00:00Z",
                                                    "contacts": ["+254712345678"]}, headers=KEY)
    campaign_id = created.json["campaign"]["id"]
    client.post(f"/voice/campaigns/{campaign_id}/cancel", headers=KEY)
    with app.app_context():
        assert settling.announce_cancelled() == 1  # nothing to queue, nothing read: only marked as done
    register(client, receiver.url, ("campaign.contact.finished", "campaign.finished"))
    with app.app_context():
        assert settling.announce_cancelled() == 0
        settling.expire_and_finish()
    assert queued(app) == [] and run(app) == []


def queued(app):
    """The events queued so far, in the order they were queued: (type, what they are about)."""
    with app.app_context():
        return guarded(lambda: [(kind, key.split(":", 1)[1]) for kind, key in db.session.execute(
            sa.select(Event.type, Event.dedup_key).order_by(Event.id))])


def test_a_recording_archived_again_is_one_event(app, receiver):
    client = app.test_client()
    register(client, receiver.url, ("recording.archived",))
    with app.app_context():
        for n, archived_at in ((1, "2026-12-02T08:00:00Z"), (1, "2026-12-02T08:05:00Z"), (2, "2026-12-02T08:06:00Z")):
            recording = {"n": n, "status": "archived", "archivedAt": archived_at}  # fetched twice: a new archivedAt
            guarded(lambda recording=recording: events.recording_archived("ATVId_kept", recording), write=True)
    assert run(app) == ["delivered"]
    assert run(app) == ["delivered"]  # in order: the second recording after the first
    assert run(app) == []
    sent = [json.loads(body)["data"]["recording"] for _, body in receiver.requests]
    assert [(recording["n"], recording["archivedAt"]) for recording in sent] == [
        (1, "2026-12-02T08:00:00Z"), (2, "2026-12-02T08:06:00Z")]


@pytest.mark.parametrize("status, outcome", [(200, "delivered"), (500, "pending")])
def test_a_receiver_dripping_its_answer_is_left_after_the_timeout(make_app, receiver, status, outcome):
    """Headers at once, then a byte every 0.2 s for ten minutes (one body, not HTTP chunks, each of which could be
    read as it comes): the delivery ends soon after the timeout, its outcome decided by the status the receiver
    sent, instead of holding a worker's thread until the drip ends."""
    app = make_app(VOICE_ALLOW_PRIVATE_TARGETS=True, VOICE_WEBHOOK_TIMEOUT_SECONDS=1)
    hung_up = threading.Event()

    def dripping(request):
        def drip():
            try:
                for _ in range(3000):
                    yield b"x"
                    time.sleep(0.2)
            finally:  # the service closed the connection before the answer's end
                hung_up.set()
        return Response(drip(), status=status, headers={"Content-Length": "3000"})  # not chunked: one stream

    receiver.answers = [dripping]
    client = app.test_client()
    endpoint = register(client, receiver.url)
    end_call(app, client, "ATVId_dripping")
    outcomes = []
    sender = threading.Thread(target=lambda: outcomes.extend(run(app)), daemon=True)
    sender.start()
    sender.join(60)  # generous: the drip lasts ten minutes, and a 4 KB read of it fourteen
    assert outcomes == [outcome]
    [attempt] = attempts(client, endpoint)
    assert attempt["statusCode"] == status
    if status == 500:
        assert attempt["error"].startswith("HTTP 500: x")  # what came before the service hung up
    assert hung_up.wait(10)


def test_prune_deletes_the_webhook_events_from_before_its_cut_off_with_their_deliveries(app, receiver):
    receiver.answers = [500]
    client = app.test_client()
    endpoint = register(client, receiver.url)
    end_call(app, client, "ATVId_long_ago")
    end_call(app, client, "ATVId_lately")
    assert run(app) == ["pending", "delivered"]  # the first call's event failed once: a retry is pending
    with app.app_context():  # its event happened 40 days ago (its call record is kept: it ended now)
        guarded(lambda: db.session.execute(sa.update(Event).where(Event.ordering_key == "ATVId_long_ago").values(
            created_at=utcnow() - timedelta(days=40))), write=True)
    result = app.test_cli_runner().invoke(args=["voice", "prune", "--older-than", "30"])
    assert result.exit_code == 0, result.output

    sessions = {headers["Webhook-Id"]: _session(body) for headers, body in receiver.requests}
    assert [sessions[attempt["eventId"]] for attempt in attempts(client, endpoint)] == ["ATVId_lately"]
    shown = client.get(f"/voice/webhooks/{endpoint['id']}", headers=KEY).json
    assert shown["deliveries"] == {"pending": 0, "delivering": 0, "delivered": 1, "failed": 0}
    assert run(app, utcnow() + timedelta(days=1)) == []  # its retry is gone with it
    with app.app_context():
        kept = guarded(lambda: [json.dumps(payload) for payload in db.session.execute(sa.select(Event.payload)).scalars()])
    assert len(kept) == 1 and "ATVId_lately" in kept[0]
    assert client.get("/voice/calls/ATVId_long_ago", headers=KEY).status_code == 200  # calls follow their own cut-off
