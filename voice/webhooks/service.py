"""What the API, the CLI and the console do with webhook endpoints: register, list, show, remove, re-enable, read
their deliveries, send an event again.

A URL is checked when registered (http or https, a host, no credentials, bounded) and again at each
delivery on the address actually connected to (voice/egress.py).
"""

import base64
import ipaddress
import os
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app

from voice import shapes
from voice.errors import APIError
from voice.store.db import db, guarded, iso, utcnow
from voice.webhooks.events import TYPES
from voice.webhooks.models import Attempt, Delivery, Endpoint, Event

MAX_ENDPOINTS = 20
MAX_DESCRIPTION = 200
PAGE = 50
MAX_ID = 2 ** 31 - 1


def new_secret():
    """A signing secret as the Standard Webhooks specification writes it: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")


def check_url(url):
    """`url` if it may receive webhooks, else APIError 400 saying why."""
    if not isinstance(url, str) or not url.strip():
        raise APIError(400, "bad_url", "url is required: the https URL that receives the events.")
    url = url.strip()
    if len(url) > shapes.MAX_URL or shapes.has_control(url):
        raise APIError(400, "bad_url", f"url must be at most {shapes.MAX_URL} characters, without control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        raise APIError(400, "bad_url", "url is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise APIError(400, "bad_url", "url must be an http or https URL with a host, such as https://example.com/hook.")
    if parts.username is not None or parts.password is not None:
        raise APIError(400, "bad_url", "url must not hold credentials (user:password@); receivers check the "
                                       "signature instead.")
    if parts.fragment:
        raise APIError(400, "bad_url", "url must not have a #fragment.")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        address = None  # a name: its addresses are checked at each delivery, on the one connected to
    if address is not None and not address.is_global and not current_app.config["VOICE_ALLOW_PRIVATE_TARGETS"]:
        raise APIError(400, "bad_url", "url's address is private, loopback or link-local; deliveries go to public "
                                       "addresses only (VOICE_ALLOW_PRIVATE_TARGETS=1 allows others, for development).")
    return url


def check_events(events):
    """The event types asked for, each known and named once, else APIError 400 naming the unknown one."""
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events or not all(isinstance(kind, str) for kind in events):
        raise APIError(400, "bad_events", "events is required: a list of event types, from " + ", ".join(TYPES) + ".")
    for kind in events:
        if kind not in TYPES:
            raise APIError(400, "bad_events", f"Unknown event type {kind[:64]!r}; the types are " + ", ".join(TYPES)
                           + ".")
    return list(dict.fromkeys(events))


def create(url, events, description=None, created_by=None):
    """Register an endpoint; its JSON with the signing secret (shown this once)."""
    url, events = check_url(url), check_events(events)
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION
                                    or shapes.has_control(description)):
        raise APIError(400, "bad_field", f"description must be text of at most {MAX_DESCRIPTION} characters.")
    secret = new_secret()

    def work():
        if db.session.execute(sa.select(sa.func.count()).select_from(Endpoint)).scalar() >= MAX_ENDPOINTS:
            raise APIError(409, "too_many_endpoints", f"There are {MAX_ENDPOINTS} endpoints already; remove one first.")
        endpoint = Endpoint(url=url, events=events, description=description or None, secret=secret,
                            created_by=created_by, created_at=utcnow())
        db.session.add(endpoint)
        db.session.flush()
        return as_json(endpoint)

    return dict(guarded(work, write=True), secret=secret)


def as_json(endpoint):
    """An endpoint as the API shows it (never its secret)."""
    return {"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events), "description": endpoint.description,
            "status": "disabled" if endpoint.disabled_at else "enabled", "disabledAt": iso(endpoint.disabled_at),
            "disabledReason": endpoint.disabled_reason, "failingSince": iso(endpoint.failing_since),
            "createdAt": iso(endpoint.created_at), "createdBy": endpoint.created_by}


def _get(endpoint_id):
    if not 0 < endpoint_id <= MAX_ID:
        raise APIError(404, "not_found", f"No webhook endpoint {endpoint_id} here.")
    endpoint = db.session.get(Endpoint, endpoint_id)
    if endpoint is None:
        raise APIError(404, "not_found", f"No webhook endpoint {endpoint_id} here.")
    return endpoint


def listing():
    """Every endpoint, oldest first."""
    return guarded(lambda: [as_json(endpoint) for endpoint in db.session.execute(
        sa.select(Endpoint).order_by(Endpoint.id)).scalars()])


def show(endpoint_id):
    """One endpoint, with how many of its deliveries are in each status; 404 if unknown."""
    def work():
        body = as_json(_get(endpoint_id))
        counts = dict(db.session.execute(sa.select(Delivery.status, sa.func.count()).where(
            Delivery.endpoint_id == endpoint_id).group_by(Delivery.status)).all())
        body["deliveries"] = {status: counts.get(status, 0) for status in ("pending", "delivering", "delivered",
                                                                            "failed")}
        return body

    return guarded(work)


def remove(endpoint_id):
    """Remove an endpoint with its deliveries and their attempts (their events stay while other endpoints have them)."""
    def work():
        endpoint = _get(endpoint_id)
        deliveries = sa.select(Delivery.id).where(Delivery.endpoint_id == endpoint_id)
        db.session.execute(sa.delete(Attempt).where(Attempt.delivery_id.in_(deliveries)))
        db.session.execute(sa.delete(Delivery).where(Delivery.endpoint_id == endpoint_id))
        db.session.execute(sa.delete(Event).where(~sa.exists().where(Delivery.event_id == Event.id)))
        db.session.delete(endpoint)

    guarded(work, write=True)


def enable(endpoint_id):
    """Re-enable an endpoint that was disabled: its pending deliveries go on, new events are queued for it again."""
    def work():
        endpoint = _get(endpoint_id)
        endpoint.disabled_at = endpoint.disabled_reason = endpoint.failing_since = None
        return as_json(endpoint)

    return guarded(work, write=True)


def attempts(endpoint_id, page=1):
    """A page of the endpoint's delivery attempts, newest first (PAGE each), with their event and delivery."""
    def work():
        _get(endpoint_id)
        rows = db.session.execute(
            sa.select(Attempt, Event.public_id, Event.type, Delivery.status, Delivery.next_attempt_at)
            .join(Delivery, Delivery.id == Attempt.delivery_id).join(Event, Event.id == Attempt.event_id)
            .where(Attempt.endpoint_id == endpoint_id).order_by(Attempt.id.desc())
            .limit(PAGE).offset((page - 1) * PAGE)).all()
        return [{"attemptedAt": iso(attempt.attempted_at), "statusCode": attempt.status_code,
                 "durationMs": attempt.duration_ms, "error": attempt.error, "eventId": public_id, "eventType": kind,
                 "deliveryStatus": status, "nextAttemptAt": iso(next_at)}
                for attempt, public_id, kind, status, next_at in rows]

    return guarded(work)


def retry(endpoint_id, event_id):
    """Queue the event `event_id` (evt_...) again for the endpoint, due now; 404 if it never had it, 409 while it is
    being sent or the endpoint is disabled."""
    def work():
        endpoint = _get(endpoint_id)
        if endpoint.disabled_at is not None:
            raise APIError(409, "endpoint_disabled", f"Webhook endpoint {endpoint_id} is disabled; enable it first.")
        delivery = db.session.execute(
            sa.select(Delivery).join(Event, Event.id == Delivery.event_id)
            .where(Delivery.endpoint_id == endpoint_id, Event.public_id == event_id[:40]).with_for_update(of=Delivery)
        ).scalar_one_or_none()
        if delivery is None:
            raise APIError(404, "not_found", f"Webhook endpoint {endpoint_id} has no delivery of event {event_id[:40]!r}.")
        if delivery.status == "delivering" and delivery.claimed_until and delivery.claimed_until >= utcnow():
            raise APIError(409, "delivering", "This event is being sent to the endpoint now; look again in a moment.")
        delivery.status, delivery.next_attempt_at, delivery.claimed_until = "pending", utcnow(), None
        delivery.attempts, delivery.first_attempt_at = 0, None  # a fresh round of retries
        return {"endpointId": endpoint_id, "eventId": event_id, "status": "pending"}

    return guarded(work, write=True)
