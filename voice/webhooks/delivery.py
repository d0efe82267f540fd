"""Delivering events to endpoints, in the worker: claim what is due, send it signed, note how it went, retry.

The worker's tick asks `due()` for deliveries to send (claimed with a lease, `claimed_until`: a
killed worker's claim runs out and the delivery is due again) and runs `deliver(id)` on its threads.
A delivery is not due while an earlier one of the same endpoint and ordering key (a call, a campaign
contact, a campaign) is neither delivered nor failed, so each call's events arrive in order.
A failed attempt (no 2xx: an error status, a redirect, a timeout, a refused connection or address) is
retried after RETRY_DELAYS with jitter, for at least RETRY_FOR from the first attempt, then the delivery
is `failed`. Housekeeping disables an endpoint whose deliveries have all failed for
VOICE_WEBHOOK_DISABLE_DAYS and forgets finished deliveries after KEEP; `voice prune` forgets every event older
than its cut-off (forget_before).
"""

import json
import logging
import random
import time
from datetime import timedelta, timezone

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import aliased
from standardwebhooks import Webhook

from voice import egress
from voice.store.db import db, guarded, iso, utcnow
from voice.webhooks.models import Attempt, Delivery, Endpoint, Event

log = logging.getLogger(__name__)

RETRY_DELAYS = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800)  # seconds; the last repeats
JITTER = 0.2            # each delay is stretched or shrunk by up to this share, so retries do not come in waves
RETRY_FOR = timedelta(hours=24)
KEEP = timedelta(days=30)  # delivered and failed deliveries are kept this long for the deliveries API
ANSWER_BYTES = 4096     # read of a receiver's answer, at most
EXCERPT = 200           # of which the attempt log keeps this much, on a failure
STATUSES = ("pending", "delivering", "delivered", "failed")
OPEN = ("pending", "delivering")


def timeout():
    """Seconds a receiver has to connect, and to answer (VOICE_WEBHOOK_TIMEOUT_SECONDS)."""
    return float(current_app.config["VOICE_WEBHOOK_TIMEOUT_SECONDS"])


def lease():
    """How long a claim holds: longer than a delivery can take, with its wait in the queue."""
    return timedelta(seconds=4 * timeout() + 10)


def due(now=None):
    """The ids of deliveries due now, claimed for this worker (at most twice the worker's threads in flight)."""
    now = now or utcnow()
    room = 2 * int(current_app.config["VOICE_WORKER_THREADS"])
    earlier = aliased(Delivery)
    blocked = sa.exists().where(earlier.endpoint_id == Delivery.endpoint_id,
                                earlier.ordering_key == Delivery.ordering_key,
                                earlier.event_id < Delivery.event_id, earlier.status.in_(OPEN))
    ready = sa.or_(sa.and_(Delivery.status == "pending", Delivery.next_attempt_at <= now),
                   sa.and_(Delivery.status == "delivering", Delivery.claimed_until < now))

    def work():
        busy = db.session.execute(sa.select(sa.func.count()).select_from(Delivery).where(
            Delivery.status == "delivering", Delivery.claimed_until >= now)).scalar()
        if busy >= room:
            return []
        ids = db.session.execute(
            sa.select(Delivery.id).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
            .where(Endpoint.disabled_at.is_(None), ready, ~blocked).order_by(Delivery.id).limit(room - busy)
            .with_for_update(of=Delivery, skip_locked=True)).scalars().all()
        if ids:
            db.session.execute(sa.update(Delivery).where(Delivery.id.in_(ids)).values(
                status="delivering", claimed_until=now + lease()))
        return ids

    return guarded(work, write=True)


def deliver(delivery_id, now=None, delays=RETRY_DELAYS):
    """Send one claimed delivery and note the attempt; its status after it (None if it was not ours to send)."""
    now = now or utcnow()

    def claimed():
        found = db.session.execute(
            sa.select(Delivery, Endpoint, Event).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
            .join(Event, Event.id == Delivery.event_id)
            .where(Delivery.id == delivery_id, Delivery.status == "delivering", Delivery.claimed_until >= now)).first()
        if found is None:
            return None
        _, endpoint, event = found
        return endpoint.url, endpoint.secret, event.public_id, signed_body(event)

    sending = guarded(claimed)
    if sending is None:  # delivered, or its claim ran out meanwhile (a later tick claims it again)
        return None
    url, secret, public_id, body = sending
    started = time.monotonic()
    status, error = send(url, secret, public_id, body, now)
    elapsed = int((time.monotonic() - started) * 1000)
    return guarded(lambda: _note(delivery_id, public_id, now, status, error, elapsed, delays), write=True)


def signed_body(event):
    """The JSON body an event is sent as: its type, when it happened, and its payload as `data`."""
    return json.dumps({"type": event.type, "timestamp": iso(event.created_at), "data": event.payload},
                      separators=(",", ":"), ensure_ascii=False)


def send(url, secret, message_id, body, now):
    """POST a body signed as the Standard Webhooks specification says; (status code or None, error or None)."""
    sent_at = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    headers = {"content-type": "application/json", "webhook-id": message_id,
               "webhook-timestamp": str(int(sent_at.timestamp())),
               "webhook-signature": Webhook(secret).sign(message_id, sent_at, body)}
    seconds = timeout()
    try:
        response = egress.stream("POST", url, timeout=seconds, data=body.encode("utf-8"), headers=headers)
    except egress.EgressError as exc:
        return None, f"{exc.reason}: {exc}"[:255]
    try:
        answer = egress.read_some(response, ANSWER_BYTES, seconds)
    finally:
        egress.close(response)
    code = response.status_code
    if 200 <= code < 300:
        return code, None
    said = " ".join(answer[:EXCERPT].decode("utf-8", "replace").split())
    if 300 <= code < 400:
        return code, f"redirect: HTTP {code}, not followed"
    return code, (f"HTTP {code}" + (f": {said}" if said else ""))[:255]


def _note(delivery_id, public_id, now, status, error, elapsed, delays):
    """Note an attempt and what the delivery does next: delivered, retried after a delay, or failed."""
    delivery = db.session.execute(sa.select(Delivery).where(Delivery.id == delivery_id).with_for_update()
                                  ).scalar_one_or_none()
    if delivery is None:  # its endpoint was removed meanwhile
        return None
    endpoint = db.session.get(Endpoint, delivery.endpoint_id)
    db.session.add(Attempt(delivery_id=delivery.id, endpoint_id=delivery.endpoint_id, event_id=delivery.event_id,
                           attempted_at=now, status_code=status, duration_ms=elapsed, error=error))
    delivery.attempts += 1
    delivery.first_attempt_at = delivery.first_attempt_at or now
    delivery.last_attempt_at, delivery.last_status, delivery.last_error = now, status, error
    delivery.claimed_until = None
    if error is None:
        delivery.status, delivery.next_attempt_at = "delivered", None
        endpoint.failing_since = None
        outcome = "delivered"
    elif now - delivery.first_attempt_at >= RETRY_FOR:
        delivery.status, delivery.next_attempt_at = "failed", None
        endpoint.failing_since = endpoint.failing_since or now
        outcome = "failed"
    else:
        delivery.status, delivery.next_attempt_at = "pending", now + retry_delay(delivery.attempts, delays)
        endpoint.failing_since = endpoint.failing_since or now
        outcome = "pending"
    log.info("webhook %s to endpoint %s: %s after %s ms%s", public_id, delivery.endpoint_id, outcome, elapsed,
             f" ({error})" if error else "")
    return outcome


def retry_delay(attempts, delays=RETRY_DELAYS):
    """How long after its `attempts`th failed attempt a delivery is tried again: the delays in turn, with jitter."""
    base = delays[min(attempts, len(delays)) - 1]
    return timedelta(seconds=base * random.uniform(1 - JITTER, 1 + JITTER))


def housekeeping(now=None):
    """Disable endpoints failing for VOICE_WEBHOOK_DISABLE_DAYS; forget deliveries finished KEEP ago."""
    now = now or utcnow()
    days = float(current_app.config["VOICE_WEBHOOK_DISABLE_DAYS"])

    def disable():
        failing = db.session.execute(sa.select(Endpoint).where(
            Endpoint.disabled_at.is_(None), Endpoint.failing_since <= now - timedelta(days=days))).scalars().all()
        for endpoint in failing:
            endpoint.disabled_at = now
            endpoint.disabled_reason = f"every delivery failed since {iso(endpoint.failing_since)} ({days:g} days)"
            log.warning("webhook endpoint %s disabled: %s", endpoint.id, endpoint.disabled_reason)
        return len(failing)

    def forget():
        old = sa.select(Delivery.id).where(Delivery.status.in_(("delivered", "failed")),
                                           Delivery.last_attempt_at < now - KEEP).limit(1000)
        ids = db.session.execute(old).scalars().all()
        if ids:
            db.session.execute(sa.delete(Attempt).where(Attempt.delivery_id.in_(ids)))
            db.session.execute(sa.delete(Delivery).where(Delivery.id.in_(ids)))
            db.session.execute(sa.delete(Event).where(Event.created_at < now - KEEP, ~sa.exists().where(
                Delivery.event_id == Event.id)))
        return len(ids)

    disabled = guarded(disable, write=True)
    while guarded(forget, write=True) == 1000:
        pass
    return disabled


def forget_before(cutoff, size=500):
    """Delete the events that happened before `cutoff`, with their deliveries and attempts, whatever their status
    (`voice prune`: a payload holds a call or a contact, with its numbers), `size` events a transaction; how many."""
    def batch():
        ids = db.session.execute(sa.select(Event.id).where(Event.created_at < cutoff).order_by(Event.id)
                                 .limit(size)).scalars().all()
        if ids:
            deliveries = sa.select(Delivery.id).where(Delivery.event_id.in_(ids))
            db.session.execute(sa.delete(Attempt).where(Attempt.delivery_id.in_(deliveries)))
            db.session.execute(sa.delete(Delivery).where(Delivery.event_id.in_(ids)))
            db.session.execute(sa.delete(Event).where(Event.id.in_(ids)))
        return len(ids)

    total = 0
    while True:
        removed = guarded(batch, write=True)
        total += removed
        if removed < size:
            return total


def figures():
    """The deliveries by status and the endpoints enabled or disabled, for /metrics (read at each scrape)."""
    def work():
        deliveries = dict(db.session.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status))
                          .all())
        disabled = db.session.execute(sa.select(sa.func.count()).select_from(Endpoint).where(
            Endpoint.disabled_at.is_not(None))).scalar()
        total = db.session.execute(sa.select(sa.func.count()).select_from(Endpoint)).scalar()
        return deliveries, disabled, total

    deliveries, disabled, total = guarded(work)
    return {"deliveries": {status: deliveries.get(status, 0) for status in STATUSES},
            "endpoints": {"enabled": total - disabled, "disabled": disabled}}


