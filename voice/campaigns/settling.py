"""Settling what the worker's dials became: each ended call's attempt and contact, and what a killed worker or a
lost notification left (voice.campaigns.dispatch places the calls).
"""

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from voice.calls import FINAL_STATES
from voice.campaigns import progress, rules
from voice.campaigns.models import Attempt, Campaign, Contact, DoNotCall, add_costs, request_id
from voice.campaigns.outcomes import check_budget, plan_next, transient, withdraw
from voice.store.db import db, guarded, utcnow
from voice.store.records import Call
from voice.webhooks import events

log = logging.getLogger(__name__)

LOST_JOB = timedelta(minutes=2)  # a claimed attempt whose job never ran is withdrawn after this (or sooner: after
                                 # the outcome timeout, when that is shorter)


def outcome_timeout():
    """How long a placed call may go without its final notification before it is settled as a transient failure."""
    return timedelta(minutes=float(current_app.config["VOICE_CAMPAIGN_OUTCOME_MINUTES"]))


SETTLE_BATCH = 100


def settle(flow, now=None):
    """Settle every placed attempt whose call has ended, SETTLE_BATCH a transaction; how many."""
    now = now or utcnow()
    total = 0
    while True:
        settled = guarded(lambda: _settle_batch(flow, now), write=True)
        total += settled
        if settled < SETTLE_BATCH:
            return total


def _settle_batch(flow, now):
    """Settle up to SETTLE_BATCH ended calls' attempts in this transaction; how many. Rows are read in bulk: the
    calls, contacts, campaigns, the do-not-call list and the answered calls' callbacks, a query each."""
    rows = db.session.execute(
        sa.select(Attempt, Call).join(Call, Call.session_id == Attempt.session_id)
        .where(Attempt.status == "placed", sa.or_(Call.ended_at.is_not(None), Call.state.in_(sorted(FINAL_STATES))))
        .order_by(Attempt.id).limit(SETTLE_BATCH).with_for_update(of=Attempt, skip_locked=True)).all()
    if not rows:
        return 0
    contacts = {contact.id: contact for contact in db.session.execute(sa.select(Contact).where(
        Contact.id.in_({attempt.contact_id for attempt, _ in rows}))).scalars()}
    campaigns = {campaign.id: campaign for campaign in db.session.execute(sa.select(Campaign).where(
        Campaign.id.in_({attempt.campaign_id for attempt, _ in rows}))).scalars()}
    listed = set(db.session.execute(sa.select(DoNotCall.phone).where(
        DoNotCall.phone.in_({contact.phone for contact in contacts.values()}))).scalars())
    answered = {call.session_id for _, call in rows if _answered(call)}
    callbacks = progress.callbacks_of_many(answered)
    costs = {}
    for attempt, call in rows:
        campaign, contact = campaigns[attempt.campaign_id], contacts[attempt.contact_id]
        if call.amount is not None and call.currency_code:
            key = (attempt.campaign_id, call.currency_code)
            costs[key] = costs.get(key, 0) + call.amount
        played = None
        if call.session_id in answered:
            played = progress.replay(flow, campaign.step, callbacks.get(call.session_id, []))
        _settle_one(attempt, call, contact, campaign, played, contact.phone in listed, now)
        if played is not None and set(played.answers) - set(campaign.answer_keys or ()):
            campaign.answer_keys = list(dict.fromkeys([*(campaign.answer_keys or ()), *played.answers]))
    add_costs(costs)
    for campaign in campaigns.values():
        check_budget(campaign)
    events.contacts_finished([contact.id for contact in contacts.values() if contact.status in rules.FINISHED])
    return len(rows)


def _answered(call):
    return call.answered_at is not None or (call.duration_seconds or 0) > 0


def _settle_one(attempt, call, contact, campaign, played, listed, now):
    """An attempt's call ended: the attempt takes the call's figures, and its contact moves on."""
    attempt.status, attempt.ended_at = "ended", call.ended_at or now
    attempt.state, attempt.hangup_cause = call.state, call.hangup_cause
    attempt.duration, attempt.amount, attempt.currency = call.duration_seconds, call.amount, call.currency_code
    contact.last_state, contact.last_hangup_cause = call.state, call.hangup_cause
    if played is not None:
        attempt.answers = played.answers or None
        if played.answers:
            contact.answers = dict(contact.answers or {}, **played.answers)
        contact.duration = call.duration_seconds
        status = "optedOut" if listed else "completed" if played.reached_end else "breakoff"
        attempt.outcome = status
        contact.status, contact.next_attempt_at, contact.updated_at = status, None, now
        return
    kind = rules.outcome_of(call.hangup_cause)
    attempt.outcome = kind
    if kind == rules.FAILED:
        contact.status, contact.next_attempt_at, contact.updated_at = "failed", None, now
    elif campaign.status == "cancelled":
        contact.status, contact.next_attempt_at, contact.updated_at = "cancelled", None, now
    else:
        plan_next(attempt, kind, attempt.ended_at, contact, campaign)
    if contact.status in rules.FINISHED:  # the last try: the attempt says how the contact ended
        attempt.outcome = contact.status


# --- housekeeping -----------------------------------------------------------------------------------------------


def recover(now=None):
    """Settle what a killed worker or a lost notification left: lost jobs, dials without answer, calls without end."""
    now = now or utcnow()
    lost_after = min(LOST_JOB, outcome_timeout())
    lost = guarded(lambda: list(db.session.execute(sa.select(Attempt.id).where(
        Attempt.status == "claimed", Attempt.claimed_at < now - lost_after)).scalars()))
    for attempt_id in lost:
        if guarded(lambda: db.session.execute(sa.update(Attempt).where(
                Attempt.id == attempt_id, Attempt.status == "claimed").values(status="dialling")).rowcount,
                write=True):
            withdraw(attempt_id, now, error="its job was lost before any dial")
    # A dial whose answer was lost: AT's notifications carry the attempt's clientRequestId.
    dialling = guarded(lambda: list(db.session.execute(sa.select(Attempt.id).where(
        Attempt.status == "dialling", sa.func.coalesce(Attempt.dialled_at, Attempt.claimed_at) < now - lost_after))
        .scalars()))
    for attempt_id in dialling:
        session_id = guarded(lambda: db.session.execute(
            sa.select(Call.session_id).join(Attempt, Attempt.id == attempt_id)
            .join(Contact, Contact.id == Attempt.contact_id)
            .where(Call.client_request_id == request_id(attempt_id),
                   Call.destination_number == Contact.phone)).scalar())  # an outbound call's callee
        if session_id:  # AT placed it: its outcome timer starts now
            guarded(lambda: db.session.execute(sa.update(Attempt).where(
                Attempt.id == attempt_id, Attempt.status == "dialling").values(
                status="placed", session_id=session_id, dialled_at=now)), write=True)
    # A dial still waiting on AT is not lost before AT's own timeout has passed, twice over.
    unanswered = max(outcome_timeout(), timedelta(seconds=2 * float(current_app.config["AT_TIMEOUT_SECONDS"]) + 10))
    ended = sa.select(Call.id).where(Call.session_id == Attempt.session_id, sa.or_(
        Call.ended_at.is_not(None), Call.state.in_(sorted(FINAL_STATES))))
    stale = guarded(lambda: list(db.session.execute(sa.select(Attempt.id).where(sa.or_(
        sa.and_(Attempt.status == "placed", Attempt.dialled_at < now - outcome_timeout(), ~ended.exists()),
        sa.and_(Attempt.status == "dialling",
                sa.func.coalesce(Attempt.dialled_at, Attempt.claimed_at) < now - unanswered)))).scalars()))
    for attempt_id in stale:
        log.warning("campaign attempt %s had no outcome within %s: settled as a transient failure", attempt_id,
                    outcome_timeout())
        transient(attempt_id, now, error="no outcome from Africa's Talking")
    return len(lost) + len(stale)


def expire_and_finish(now=None):
    """Contacts still waiting past their campaign's notAfter expire; campaigns with nobody left to call complete."""
    now = now or utcnow()
    done = 0

    def work():
        nonlocal done
        past = db.session.execute(sa.select(Campaign.id).where(
            Campaign.status.in_(("running", "paused", "scheduled")), Campaign.not_after.is_not(None),
            Campaign.not_after <= now)).scalars().all()
        for campaign_id in past:
            events.contacts_finished(db.session.execute(
                sa.update(Contact).where(Contact.campaign_id == campaign_id, Contact.status.in_(rules.WAITING))
                .values(status="expired", next_attempt_at=None, updated_at=now).returning(Contact.id)).scalars().all())
        # A contact a settle planned again while its campaign was being cancelled: cancelled too.
        for campaign_id in db.session.execute(sa.select(Contact.campaign_id).distinct().join(
                Campaign, Campaign.id == Contact.campaign_id).where(
                Campaign.status == "cancelled", Contact.status.in_(rules.WAITING))).scalars().all():
            events.contacts_finished(db.session.execute(
                sa.update(Contact).where(Contact.campaign_id == campaign_id, Contact.status.in_(rules.WAITING))
                .values(status="cancelled", next_attempt_at=None, updated_at=now).returning(Contact.id))
                .scalars().all())
        open_ = sa.or_(Campaign.status == "running", sa.and_(Campaign.status.in_(("paused", "scheduled")),
                                                             Campaign.not_after.is_not(None), Campaign.not_after <= now))
        for campaign in db.session.execute(sa.select(Campaign).where(open_)).scalars():
            left = db.session.execute(sa.select(Contact.id).where(
                Contact.campaign_id == campaign.id, Contact.status.in_(rules.OPEN)).limit(1)).first()
            if left is None:
                campaign.status, campaign.finished_at, campaign.updated_at = "completed", now, now
                campaign.finish_announced_at = now
                events.campaign_finished(campaign.id)
                done += 1
                log.info("campaign %s completed", campaign.id)

    guarded(work, write=True)
    announce_cancelled(now)
    return done


def announce_cancelled(now=None):
    """Queue the webhook events of each cancelled campaign not announced yet: its cancelled contacts'
    `campaign.contact.finished`, events.CHUNK a transaction, then its `campaign.finished`, with the mark that it
    was done (cancel() in the web request only changes statuses). Once a campaign is marked this costs nothing,
    and without an endpoint asking for contacts' events, no contact is read. A stopped run starts the campaign
    again: the events it queued are not queued twice."""
    now = now or utcnow()
    unannounced = guarded(lambda: list(db.session.execute(sa.select(Campaign.id).where(
        Campaign.status == "cancelled", Campaign.finish_announced_at.is_(None)).order_by(Campaign.id)).scalars()))
    for campaign_id in unannounced:
        after = 0
        while after is not None:
            after = guarded(lambda: _announce_contacts(campaign_id, after), write=True)

        def finished():
            events.campaign_finished(campaign_id)
            db.session.execute(sa.update(Campaign).where(Campaign.id == campaign_id).values(finish_announced_at=now))

        guarded(finished, write=True)
    return len(unannounced)


def _announce_contacts(campaign_id, after):
    """Queue the events of a cancelled campaign's next events.CHUNK cancelled contacts (by id, past `after`); the
    last id queued, or None once none are left."""
    if not events.wanted(events.CONTACT_FINISHED):
        return None
    ids = db.session.execute(sa.select(Contact.id).where(
        Contact.campaign_id == campaign_id, Contact.status == "cancelled", Contact.id > after)
        .order_by(Contact.id).limit(events.CHUNK)).scalars().all()
    events.contacts_finished(ids)
    return ids[-1] if len(ids) == events.CHUNK else None
