"""Webhooks end to end with real processes: the app under gunicorn, the Procfile's worker, a receiver on 127.0.0.1.

Calls end through AT's events URL; the worker hands them over, queues and sends their events. A kill -9 of
the worker mid-delivery, and a receiver that fails before it recovers, lose nothing. A cancelled campaign's
events are queued by the worker's tick, not by the cancel request.
"""

import os
import signal
import threading
import time

import requests
from standardwebhooks import Webhook

from tests.gunicorn_helpers import log_of, served, service_env, start_worker, stop, worker_log_of, worker_process
from tests.helpers import EVENTS, KEY
from tests.webhook_receiver import Receiver

SESSIONS = [f"ATVId_worker_{n}" for n in range(3)]


def final(session):
    """A call's final notification, as AT posts it."""
    return {"sessionId": session, "isActive": "0", "direction": "Inbound", "callerNumber": "+254712345678",
            "destinationNumber": "+254711000000", "callSessionState": "Completed", "durationInSeconds": "7",
            "hangupCause": "NORMAL_CLEARING"}


def delivered(receiver, secret):
    """sessionId -> the event ids the receiver answered 2xx to, each request's signature verified."""
    found = {}
    for headers, body, status in receiver.answered:
        event = Webhook(secret).verify(body, headers)
        if status < 300:
            found.setdefault(event["data"]["sessionId"], set()).add(headers["Webhook-Id"])
    return found


class Answering(Receiver):
    """A Receiver that also notes the status it answered each request with."""

    def __init__(self, answers):
        super().__init__(answers)
        self.answered = []

    def _app(self, environ, start_response):
        def note(status, headers, *rest):
            with self.lock:
                sent = self.requests[len(self.answered)]
                self.answered.append((sent[0], sent[1], int(status.split()[0])))
            return start_response(status, headers, *rest)
        return Receiver._app(self, environ, note)


def test_deliveries_survive_a_failing_receiver_and_kill_9_of_the_worker(tmp_path, simulated_at_url):
    arrived, release = threading.Event(), threading.Event()

    def held(request):
        arrived.set()
        release.wait(30)
        return 200

    receiver = Answering([held, 500, 500]).start()
    env = service_env(tmp_path, simulated_at_url, VOICE_ALLOW_PRIVATE_TARGETS="1", VOICE_WEBHOOK_TIMEOUT_SECONDS="3")
    try:
        with served(env, tmp_path) as (base, _):
            created = requests.post(base + "/voice/webhooks", json={"url": receiver.url, "events": ["call.completed"]},
                                    headers=KEY, timeout=10)
            assert created.status_code == 201, created.text
            endpoint = created.json()
            first = start_worker(env, tmp_path, threads=2, name="worker1")
            try:
                for session in SESSIONS:
                    assert requests.post(base + EVENTS, data=final(session), timeout=10).text == "OK"
                assert arrived.wait(60), worker_log_of(tmp_path, "worker1")
                os.kill(first.pid, signal.SIGKILL)  # while the receiver holds its first delivery
                first.wait()
            finally:
                stop(first)
            release.set()
            before = len(receiver.requests)
            with worker_process(env, tmp_path, threads=2, name="worker2"):
                deadline = time.monotonic() + 120
                detail = None
                while time.monotonic() < deadline:  # until the service knows each event delivered
                    detail = requests.get(f"{base}/voice/webhooks/{endpoint['id']}", headers=KEY, timeout=10).json()
                    if detail["deliveries"]["delivered"] == len(SESSIONS):
                        break
                    time.sleep(0.25)
                shown = requests.get(f"{base}/voice/webhooks/{endpoint['id']}/deliveries", headers=KEY,
                                     timeout=10).json()["attempts"]
    finally:
        receiver.stop()

    assert detail["deliveries"] == {"pending": 0, "delivering": 0, "delivered": 3, "failed": 0}, \
        (detail, worker_log_of(tmp_path, "worker2")[-3000:])
    got = delivered(receiver, endpoint["secret"])
    assert set(got) == set(SESSIONS)
    assert all(len(ids) == 1 for ids in got.values())  # one event per call, whatever was sent again
    held_id = receiver.requests[0][0]["Webhook-Id"]
    assert [headers["Webhook-Id"] for headers, _ in receiver.requests].count(held_id) >= 2  # sent again after the kill
    assert before < len(receiver.requests)
    assert [attempt["statusCode"] for attempt in shown].count(500) == 2
    assert {attempt["deliveryStatus"] for attempt in shown} == {"delivered"}
    assert "Traceback" not in worker_log_of(tmp_path, "worker2") and " 500 " not in log_of(tmp_path)


def test_a_cancel_answers_at_once_and_the_worker_sends_its_events(tmp_path, simulated_at_url):
    receiver = Receiver().start()
    env = service_env(tmp_path, simulated_at_url, VOICE_ALLOW_PRIVATE_TARGETS="1")
    try:
        with served(env, tmp_path) as (base, _):
            created = requests.post(base + "/voice/webhooks", json={
                "url": receiver.url, "events": ["campaign.contact.finished", "campaign.finished"]}, headers=KEY,
                timeout=10)
            secret = created.json()["secret"]
            campaign = requests.post(base + "/voice/campaigns", json={
                "name": "cancelled", "startAt": "2999-01-01T00:00:00Z",
                "contacts": ["+254712345678", "+254712345679", "+254712345670"]}, headers=KEY, timeout=10).json()
            cancelled = requests.post(f"{base}/voice/campaigns/{campaign['campaign']['id']}/cancel", headers=KEY,
                                      timeout=10)
            assert cancelled.status_code == 200 and receiver.requests == []
            with worker_process(env, tmp_path, threads=2):
                deadline = time.monotonic() + 60
                while len(receiver.requests) < 4 and time.monotonic() < deadline:
                    time.sleep(0.25)
    finally:
        receiver.stop()
    sent = [Webhook(secret).verify(body, headers) for headers, body in receiver.requests]
    assert sorted(event["type"] for event in sent) == ["campaign.contact.finished"] * 3 + ["campaign.finished"], \
        worker_log_of(tmp_path, "worker")[-3000:]  # queued in that order; sent on two threads, in any
    assert {event["data"]["status"] for event in sent if event["type"] == "campaign.contact.finished"} == {"cancelled"}
    [finished] = [event["data"] for event in sent if event["type"] == "campaign.finished"]
    assert finished == cancelled.json()
