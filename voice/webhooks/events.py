"""The events webhook endpoints receive, queued as rows in the transaction of what they tell (docs/webhooks.md).

Each function only adds rows through db.session, never commits: an event with its payload as it is
now (the same JSON the API shows), and a delivery for each enabled endpoint that asked for its type.
Each is idempotent: an event has a key (one `call.completed` per call, one `campaign.finished` per
campaign...), and queueing it again adds nothing. With no endpoint asking for a type, nothing is read.
"""

import secrets

import sqlalchemy as sa

from voice.store.db import db, insert, utcnow
from voice.webhooks.models import Delivery, Endpoint, Event

CALL_COMPLETED = "call.completed"
CONTACT_FINISHED = "campaign.contact.finished"
CAMPAIGN_FINISHED = "campaign.finished"
RECORDING_ARCHIVED = "recording.archived"
TYPES = (CALL_COMPLETED, CONTACT_FINISHED, CAMPAIGN_FINISHED, RECORDING_ARCHIVED)
CHUNK = 500


def calls_ended(calls):
    """Queue a `call.completed` event for each ended call, for every endpoint that asked for it."""
    from voice.store.history import call_json

    _queue(CALL_COMPLETED, [(call.session_id, call.session_id, lambda call=call: call_json(call)) for call in calls])


def contacts_finished(contact_ids):
    """Queue a `campaign.contact.finished` event for each contact (by id) that reached a final status."""
    from voice.campaigns.models import Contact
    from voice.campaigns.service import contacts_json

    if not contact_ids or not _subscribers(CONTACT_FINISHED):
        return
    ids = list(dict.fromkeys(contact_ids))
    for start in range(0, len(ids), CHUNK):
        rows = db.session.execute(sa.select(Contact).where(Contact.id.in_(ids[start:start + CHUNK]))
                                  .order_by(Contact.id)).scalars().all()
        shown = contacts_json(rows)
        _queue(CONTACT_FINISHED, [
            (f"campaign-{row.campaign_id}-contact-{row.id}", str(row.id),
             lambda row=row, body=body: dict(body, campaignId=row.campaign_id)) for row, body in zip(rows, shown)])


def campaign_finished(campaign_id):
    """Queue a `campaign.finished` event: the campaign completed, was cancelled, or its notAfter passed."""
    from voice.campaigns.models import Campaign
    from voice.campaigns.service import as_json, figures_now

    def payload():
        return as_json(db.session.get(Campaign, campaign_id), figures_now(campaign_id))

    _queue(CAMPAIGN_FINISHED, [(f"campaign-{campaign_id}", str(campaign_id), payload)])


def recording_archived(session_id, recording):
    """Queue a `recording.archived` event: `{sessionId, recording}`, `recording` as the call's JSON shows it.

    One per recording (its `n`), however many times it is archived: a second fetch adds nothing."""
    key = f"{session_id}:{recording['n']}"
    _queue(RECORDING_ARCHIVED, [(session_id, key, lambda: {"sessionId": session_id, "recording": recording})])


def wanted(kind):
    """Whether an enabled endpoint asked for events of `kind` (when none did, queueing them reads nothing)."""
    return bool(_subscribers(kind))


def _subscribers(kind):
    """The ids of the enabled endpoints that asked for events of `kind`."""
    rows = db.session.execute(sa.select(Endpoint.id, Endpoint.events).where(Endpoint.disabled_at.is_(None))).all()
    return [endpoint_id for endpoint_id, kinds in rows if kind in (kinds or ())]


def _queue(kind, items):
    """Add an event per (ordering key, key, payload function) not queued before, and its deliveries."""
    endpoints = _subscribers(kind) if items else []
    if not endpoints:
        return
    for start in range(0, len(items), CHUNK):
        chunk = {f"{kind}:{key}": (ordering, make) for ordering, key, make in items[start:start + CHUNK]}
        known = set(db.session.execute(sa.select(Event.dedup_key).where(Event.dedup_key.in_(list(chunk)))).scalars())
        now = utcnow()
        rows = [{"public_id": "evt_" + secrets.token_hex(12), "type": kind, "ordering_key": ordering[:160],
                 "dedup_key": key, "payload": make(), "created_at": now}
                for key, (ordering, make) in chunk.items() if key not in known]
        if not rows:
            continue
        added = _insert_new(rows)
        db.session.execute(sa.insert(Delivery), [
            {"endpoint_id": endpoint_id, "event_id": event_id, "ordering_key": ordering, "status": "pending",
             "attempts": 0, "next_attempt_at": now, "created_at": now}
            for event_id, ordering in sorted(added) for endpoint_id in endpoints])


def _insert_new(rows):
    """Insert the events whose key is new (another transaction may have queued one meanwhile); their (id, key)."""
    statement = (insert(Event.__table__).on_conflict_do_nothing(index_elements=["dedup_key"])
                 .returning(Event.__table__.c.id, Event.__table__.c.ordering_key))
    return [tuple(row) for row in db.session.execute(statement, rows)]
