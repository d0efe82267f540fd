"""How an attempt ends when no call of it is to be settled, and what a contact does next: shared by placing
(voice.campaigns.dispatch) and settling (voice.campaigns.settling).

Each function is one transaction in the host's write turn, and re-reads what it changes, so a cancel, a
settle or another worker meanwhile is never undone.
"""

import logging
from datetime import timedelta

import sqlalchemy as sa

from voice.campaigns import rules
from voice.campaigns.models import Attempt, Campaign, Contact, costs_of
from voice.store.db import db, guarded, utcnow
from voice.webhooks import events

log = logging.getLogger(__name__)


def withdraw(attempt_id, due_at, error=None):
    """Nobody was dialled: the attempt is withdrawn and its contact waits again (due at `due_at`), uncounted; or is
    cancelled with its campaign (read in this transaction: a cancel may have come while AT was asked)."""

    def work():
        attempt = db.session.get(Attempt, attempt_id)
        contact = db.session.get(Contact, attempt.contact_id)
        cancelled = db.session.execute(sa.select(Campaign.status).where(
            Campaign.id == attempt.campaign_id)).scalar() == "cancelled"
        attempt.status, attempt.outcome, attempt.error = "withdrawn", "withdrawn", (error or "")[:255]
        contact.attempts -= 1
        if cancelled:
            contact.status, contact.next_attempt_at = "cancelled", None
            events.contacts_finished([contact.id])
        elif contact.status == "calling":
            contact.status = "pending" if contact.attempts == 0 else "retry"
            contact.next_attempt_at = due_at
        contact.updated_at = utcnow()

    guarded(work, write=True)
    return "withdrawn"


def finish(attempt_id, now, outcome, status, error=None):
    """The attempt ends before any call, and its contact with `status` for good."""

    def work():
        attempt = db.session.get(Attempt, attempt_id)
        contact = db.session.get(Contact, attempt.contact_id)
        attempt.status, attempt.outcome, attempt.ended_at, attempt.error = "ended", outcome, now, (error or "")[:255]
        contact.status, contact.next_attempt_at, contact.updated_at = status, None, now
        events.contacts_finished([contact.id])

    guarded(work, write=True)
    return outcome


def transient(attempt_id, now, error=None):
    """AT failed for now (5xx, a timeout): the attempt ends as transient and its contact gets a short retry."""

    def work():
        attempt = db.session.execute(sa.select(Attempt).where(Attempt.id == attempt_id).with_for_update()).scalar_one()
        if attempt.status not in ("dialling", "placed"):  # settled meanwhile (by a tick, or another worker)
            return
        attempt.status, attempt.outcome, attempt.ended_at, attempt.error = "ended", "transient", now, (error or "")[:255]
        contact = plan_next(attempt, rules.TRANSIENT, now)
        if contact.status in rules.FINISHED:
            attempt.outcome = contact.status
            events.contacts_finished([contact.id])

    guarded(work, write=True)
    return "transient"


def pause(campaign_id, reason):
    query = (sa.update(Campaign).where(Campaign.id == campaign_id, Campaign.status == "running")
             .values(status="paused", paused_reason=reason, updated_at=utcnow()))
    if guarded(lambda: db.session.execute(query).rowcount, write=True):
        log.warning("campaign %s paused: %s", campaign_id, reason)


def plan_next(attempt, kind, ended, contact=None, campaign=None):
    """Plan the contact's next call after an unanswered `attempt`: a planned retry or a short transient one."""
    contact = contact or db.session.get(Contact, attempt.contact_id)
    campaign = campaign or db.session.get(Campaign, attempt.campaign_id)
    now = utcnow()
    if kind == rules.TRANSIENT and contact.transients < len(rules.TRANSIENT_DELAYS):
        delay = rules.TRANSIENT_DELAYS[contact.transients]
        contact.transients += 1
    else:
        delays = campaign.retry or []
        if contact.planned >= len(delays):
            contact.status, contact.next_attempt_at, contact.updated_at = "unreached", None, now
            return contact
        delay = delays[contact.planned]
        contact.planned += 1
        contact.transients = 0
    if campaign.status == "cancelled":
        contact.status, contact.next_attempt_at, contact.updated_at = "cancelled", None, now
        return contact
    # The later of the delay after this call ended and the window's next opening in the contact's zone.
    due = rules.due(rules.window_from_json(campaign.window), rules.zone(contact.zone),
                    ended + timedelta(seconds=delay), campaign.not_after)
    if due is None:
        contact.status, contact.next_attempt_at = "expired", None
    else:
        contact.status, contact.next_attempt_at = "retry", due
    contact.updated_at = now
    return contact


def check_budget(campaign):
    """Pause a campaign whose calls have cost its budget or more, or cost anything in another currency (which the
    budget cannot be compared with)."""
    if campaign.budget_amount is None or campaign.status != "running":
        return
    costs = {currency: amount for currency, amount in costs_of(campaign.id).items() if amount > 0}
    spent = costs.pop(campaign.budget_currency, 0)
    if spent >= campaign.budget_amount or costs:
        # Only a running campaign is paused: a cancel or an operator's pause meanwhile stands.
        paused = db.session.execute(sa.update(Campaign).where(Campaign.id == campaign.id, Campaign.status == "running")
                                    .values(status="paused", paused_reason="budget", updated_at=utcnow())).rowcount
        if paused:
            log.warning("campaign %s paused: its calls cost %s %s%s, its budget is %s", campaign.id, spent,
                        campaign.budget_currency, f" and {sorted(costs)}" if costs else "", campaign.budget_amount)
