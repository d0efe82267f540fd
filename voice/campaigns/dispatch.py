"""What the worker does for campaigns: claim due contacts within the pacing, place each attempt, settle each ending.

Every step is a committed change of rows, so a worker killed at any moment leaves the campaign in
a state the next tick continues from:
- claim: in one transaction a due contact becomes `calling` and gets an attempt row (`claimed`);
- place: the attempt moves `claimed` -> `dialling` in its own transaction before AT is asked, so
  no attempt is ever dialled twice; AT's answer makes it `placed`, with its sessionId;
- settle: once the call's final notification is stored, the attempt ends and the contact moves on
  (done, or due again at its retry's time).
An attempt left `claimed` (its job lost) is withdrawn; one left `dialling` is adopted when AT's
notifications name it (clientRequestId); one without an outcome is settled as a transient failure
after VOICE_CAMPAIGN_OUTCOME_MINUTES (docs/campaigns.md).
"""

import logging
import math
import re
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from voice import phone, refusals, settings
from voice.at.answers import ATError, Busy, NotConfigured
from voice.at.client import get_client
from voice.calls import FINAL_STATES
from voice.campaigns import dnc, progress, rules
from voice.campaigns.models import Attempt, Campaign, Contact, DoNotCall, request_id
from voice.ratelimit import TooManyDials, count_dialouts
from voice.store import records
from voice.store.db import StoreUnavailable, db, guarded, utcnow
from voice.store.records import Call

log = logging.getLogger(__name__)

CLAIM_BACKLOG = timedelta(seconds=2)   # pacing slots a late tick may still use
FIRST_SLOTS = timedelta(seconds=1)     # what a campaign's first claim may use
LOST_JOB = timedelta(minutes=2)        # a claimed attempt whose job never ran is withdrawn after this (or sooner:
                                       # after the outcome timeout, when that is shorter)
BUSY_DELAY = timedelta(seconds=5)      # this worker's AT requests were all in use: try again this soon
FINAL_ENTRY_ERRORS = ("InvalidPhoneNumber", "DestinationNotSupported")


def outcome_timeout():
    """How long a placed call may go without its final notification before it is settled as a transient failure."""
    return timedelta(minutes=float(current_app.config["VOICE_CAMPAIGN_OUTCOME_MINUTES"]))


# --- claiming --------------------------------------------------------------------------------------------------


def start_scheduled(now=None):
    """Campaigns whose start time came move from scheduled to running; how many."""
    now = now or utcnow()
    query = (sa.update(Campaign).where(Campaign.status == "scheduled", Campaign.start_at <= now)
             .values(status="running", updated_at=now))
    return guarded(lambda: db.session.execute(query).rowcount, write=True)


def claim(now=None):
    """Claim the contacts due now in every running campaign, within each one's pacing and the account's caps.

    Returns the ids of the attempts claimed, for the worker to place.
    """
    now = now or utcnow()
    config = current_app.config
    running = guarded(lambda: list(db.session.execute(
        sa.select(Campaign.id).where(Campaign.status == "running").order_by(Campaign.next_dial_at, Campaign.id))
        .scalars()))
    if not running:
        return []
    account_slots = int(config["VOICE_CAMPAIGN_MAX_CONCURRENT"]) - guarded(lambda: db.session.execute(
        sa.select(sa.func.count()).select_from(Attempt).where(Attempt.status.in_(rules.ATTEMPT_IN_PROGRESS))).scalar())
    account_rate = _account_rate(now, int(config["VOICE_CAMPAIGN_PER_MINUTE"]))
    claimed = []
    for campaign_id in running:
        room = min(account_slots, account_rate)
        if room <= 0:
            break
        ids = guarded(lambda: _claim_one(campaign_id, now, room), write=True)
        claimed += ids
        account_slots -= len(ids)
        account_rate -= len(ids)
    return claimed


def _account_rate(now, per_minute):
    """New calls the account may start now: per_minute less the calls placed over the last minute."""
    since = now - timedelta(minutes=1)
    recent = guarded(lambda: db.session.execute(
        sa.select(sa.func.count()).select_from(Attempt).where(Attempt.claimed_at > since)).scalar())
    return per_minute - recent


def _claim_one(campaign_id, now, room):
    """In one transaction: a campaign's due contacts, at most `room`, become `calling` with an attempt each."""
    campaign = db.session.execute(sa.select(Campaign).where(Campaign.id == campaign_id)
                                  .with_for_update(skip_locked=True)).scalar_one_or_none()
    if campaign is None or campaign.status != "running":
        return []  # another worker holds it this moment, or it changed
    in_progress = db.session.execute(sa.select(sa.func.count()).select_from(Contact).where(
        Contact.campaign_id == campaign_id, Contact.status == "calling")).scalar()
    interval = timedelta(seconds=60 / campaign.per_minute)
    last_minute = db.session.execute(sa.select(sa.func.count()).select_from(Attempt).where(
        Attempt.campaign_id == campaign_id, Attempt.claimed_at > now - timedelta(minutes=1),
        Attempt.status != "withdrawn")).scalar()
    # Slots 60/perMinute apart from the last one used; a campaign's first tick may use a second's worth.
    base = max(campaign.next_dial_at or now - FIRST_SLOTS, now - CLAIM_BACKLOG)
    by_rate = 0 if base > now else math.floor((now - base) / interval) + 1
    room = min(room, campaign.max_concurrent - in_progress, by_rate, campaign.per_minute - last_minute)
    if room <= 0:
        return []
    window = rules.window_from_json(campaign.window)
    contacts = db.session.execute(
        sa.select(Contact).where(Contact.campaign_id == campaign_id, Contact.status.in_(rules.WAITING),
                                 Contact.next_attempt_at <= now)
        .order_by(Contact.next_attempt_at, Contact.id).limit(room).with_for_update(skip_locked=True)).scalars().all()
    attempts = []
    for contact in contacts:
        opening = rules.due(window, rules.zone(contact.zone), now, campaign.not_after)
        if opening != now:  # the window closed (or notAfter passed) while it waited
            _wait_or_expire(contact, opening, now)
            continue
        contact.status, contact.attempts, contact.updated_at = "calling", contact.attempts + 1, now
        attempt = Attempt(campaign_id=campaign_id, contact_id=contact.id, number=contact.attempts, status="claimed",
                          claimed_at=now)
        db.session.add(attempt)
        attempts.append(attempt)
    if attempts:
        campaign.next_dial_at = base + interval * len(attempts)
    db.session.flush()
    return [attempt.id for attempt in attempts]


def _wait_or_expire(contact, opening, now):
    if opening is None:
        contact.status, contact.next_attempt_at = "expired", None
    else:
        contact.next_attempt_at = opening
    contact.updated_at = now


# --- placing ---------------------------------------------------------------------------------------------------


def place(attempt_id):
    """Dial one claimed attempt through the dial-out path (its checks, limits, the in-flight cap, AT); its outcome word.

    The attempt moves to `dialling` in its own transaction before AT is asked: run twice (a job
    delivered again after a restart), the second run finds it taken and dials nobody.
    """
    now = utcnow()

    def take():
        taken = db.session.execute(sa.update(Attempt).where(
            Attempt.id == attempt_id, Attempt.status == "claimed").values(status="dialling", dialled_at=now)).rowcount
        if not taken:
            return None
        return db.session.execute(
            sa.select(Contact.phone, Campaign.id, Campaign.owner, Campaign.status, DoNotCall.phone)
            .select_from(Attempt).join(Contact, Contact.id == Attempt.contact_id)
            .join(Campaign, Campaign.id == Attempt.campaign_id)
            .outerjoin(DoNotCall, DoNotCall.phone == Contact.phone).where(Attempt.id == attempt_id)).one()

    taken = guarded(take, write=True)  # committed before AT is asked
    if taken is None:
        return "taken"
    number, campaign_id, owner, status, listed = taken
    if status != "running":
        return _withdraw(attempt_id, now, error="campaign " + status)
    if listed:
        return _finish(attempt_id, now, "optedOut", "optedOut", error="on the do-not-call list")
    try:
        phone.check_dialable(number, settings.current().allowed_country_codes)
        count_dialouts(None, [number])  # the destination's limit; the campaign's own pacing stands for a key's
        client = get_client()
        answer = client.call(number, client_request_id=request_id(attempt_id))
    except TooManyDials as exc:
        return _withdraw(attempt_id, now + timedelta(seconds=max(1, exc.retry_after)), error=str(exc))
    except Busy:
        return _withdraw(attempt_id, now + BUSY_DELAY, error="busy")
    except refusals.REFUSED as exc:
        return _finish(attempt_id, now, "refused", "refused", error=refusals.message(exc))
    except ATError as exc:
        if exc.at_status in FINAL_ENTRY_ERRORS:
            return _finish(attempt_id, now, "failed", "failed", error=exc.at_status)
        if exc.at_status == "InsufficientCredit":
            _pause(campaign_id, "credit")
            return _withdraw(attempt_id, now, error="InsufficientCredit")
        status = _http_status(exc)
        if status in (401, 403):  # AT refuses our credentials: every dial would fail alike
            _pause(campaign_id, "credentials")
            return _withdraw(attempt_id, now, error=exc.code)
        if exc.code == "at_unreachable" or (status is not None and status < 500):
            return _transient(attempt_id, now, error=exc.code)  # AT surely took no call
        # A timeout, a 5xx or an answer we cannot read: AT may have queued the call. The attempt stays
        # `dialling`: AT's notifications (its clientRequestId) adopt it, else it is transient after a while.
        log.warning("campaign attempt %s: AT's answer to the dial was lost (%s)", attempt_id, exc.code)
        return "unknown"
    except NotConfigured as exc:
        _pause(campaign_id, "credentials")
        return _withdraw(attempt_id, now, error=str(exc)[:255])
    entry = next(iter(answer.get("entries") or []), {})
    session_id = entry.get("sessionId")
    if not guarded(lambda: db.session.execute(sa.update(Attempt).where(
            Attempt.id == attempt_id, Attempt.status == "dialling").values(status="placed", session_id=session_id))
            .rowcount, write=True):
        log.warning("campaign attempt %s was settled while AT took its call", attempt_id)
    try:
        records.record_dialout(answer, client.voice_number, owner, request_id(attempt_id))
    except StoreUnavailable as exc:
        log.error("campaign %s: call to %s placed but not recorded: %s", campaign_id, phone.mask(number), exc)
    return "placed"


def _http_status(exc):
    """The HTTP status AT answered with, as the client's message of a refused request gives it, or None."""
    found = re.search(r"\bHTTP (\d{3})\b", exc.message or "")
    return int(found.group(1)) if found else None


def _withdraw(attempt_id, due_at, error=None):
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
        elif contact.status == "calling":
            contact.status = "pending" if contact.attempts == 0 else "retry"
            contact.next_attempt_at = due_at
        contact.updated_at = utcnow()

    guarded(work, write=True)
    return "withdrawn"


def _finish(attempt_id, now, outcome, status, error=None):
    """The attempt ends before any call, and its contact with `status` for good."""

    def work():
        attempt = db.session.get(Attempt, attempt_id)
        contact = db.session.get(Contact, attempt.contact_id)
        attempt.status, attempt.outcome, attempt.ended_at, attempt.error = "ended", outcome, now, (error or "")[:255]
        contact.status, contact.next_attempt_at, contact.updated_at = status, None, now

    guarded(work, write=True)
    return outcome


def _transient(attempt_id, now, error=None):
    """AT failed for now (5xx, a timeout): the attempt ends as transient and its contact gets a short retry."""

    def work():
        attempt = db.session.execute(sa.select(Attempt).where(Attempt.id == attempt_id).with_for_update()).scalar_one()
        if attempt.status not in ("dialling", "placed"):  # settled meanwhile (by a tick, or another worker)
            return
        attempt.status, attempt.outcome, attempt.ended_at, attempt.error = "ended", "transient", now, (error or "")[:255]
        contact = _next(attempt, rules.TRANSIENT, now)
        if contact.status in rules.FINISHED:
            attempt.outcome = contact.status

    guarded(work, write=True)
    return "transient"


def _pause(campaign_id, reason):
    query = (sa.update(Campaign).where(Campaign.id == campaign_id, Campaign.status == "running")
             .values(status="paused", paused_reason=reason, updated_at=utcnow()))
    if guarded(lambda: db.session.execute(query).rowcount, write=True):
        log.warning("campaign %s paused: %s", campaign_id, reason)


# --- settling --------------------------------------------------------------------------------------------------


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
    for attempt, call in rows:
        campaign, contact = campaigns[attempt.campaign_id], contacts[attempt.contact_id]
        played = None
        if call.session_id in answered:
            played = progress.replay(flow, campaign.step, callbacks.get(call.session_id, []))
        _settle_one(attempt, call, contact, campaign, played, contact.phone in listed, now)
        if played is not None and set(played.answers) - set(campaign.answer_keys or ()):
            campaign.answer_keys = list(dict.fromkeys([*(campaign.answer_keys or ()), *played.answers]))
    for campaign in campaigns.values():
        _check_budget(campaign)
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
        _next(attempt, kind, attempt.ended_at, contact, campaign)
    if contact.status in rules.FINISHED:  # the last try: the attempt says how the contact ended
        attempt.outcome = contact.status


def _next(attempt, kind, ended, contact=None, campaign=None):
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


def _check_budget(campaign):
    """Pause a campaign whose calls have cost its budget or more, or cost anything in another currency (which the
    budget cannot be compared with)."""
    if campaign.budget_amount is None or campaign.status != "running":
        return
    costs = dict(db.session.execute(sa.select(Attempt.currency, sa.func.sum(Attempt.amount)).where(
        Attempt.campaign_id == campaign.id, Attempt.amount > 0).group_by(Attempt.currency)).all())
    spent = costs.pop(campaign.budget_currency, 0)
    if spent >= campaign.budget_amount or costs:
        # Only a running campaign is paused: a cancel or an operator's pause meanwhile stands.
        paused = db.session.execute(sa.update(Campaign).where(Campaign.id == campaign.id, Campaign.status == "running")
                                    .values(status="paused", paused_reason="budget", updated_at=utcnow())).rowcount
        if paused:
            log.warning("campaign %s paused: its calls cost %s %s%s, its budget is %s", campaign.id, spent,
                        campaign.budget_currency, f" and {sorted(costs)}" if costs else "", campaign.budget_amount)


# --- housekeeping ----------------------------------------------------------------------------------------------


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
            _withdraw(attempt_id, now, error="its job was lost before any dial")
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
        _transient(attempt_id, now, error="no outcome from Africa's Talking")
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
            db.session.execute(sa.update(Contact).where(Contact.campaign_id == campaign_id,
                                                        Contact.status.in_(rules.WAITING))
                               .values(status="expired", next_attempt_at=None, updated_at=now))
        # A contact a settle planned again while its campaign was being cancelled: cancelled too.
        for campaign_id in db.session.execute(sa.select(Contact.campaign_id.distinct()).join(
                Campaign, Campaign.id == Contact.campaign_id).where(
                Campaign.status == "cancelled", Contact.status.in_(rules.WAITING))).scalars().all():
            db.session.execute(sa.update(Contact).where(Contact.campaign_id == campaign_id,
                                                        Contact.status.in_(rules.WAITING))
                               .values(status="cancelled", next_attempt_at=None, updated_at=now))
        open_ = sa.or_(Campaign.status == "running", sa.and_(Campaign.status.in_(("paused", "scheduled")),
                                                             Campaign.not_after.is_not(None), Campaign.not_after <= now))
        for campaign in db.session.execute(sa.select(Campaign).where(open_)).scalars():
            left = db.session.execute(sa.select(Contact.id).where(
                Contact.campaign_id == campaign.id, Contact.status.in_(rules.OPEN)).limit(1)).first()
            if left is None:
                campaign.status, campaign.finished_at, campaign.updated_at = "completed", now, now
                done += 1
                log.info("campaign %s completed", campaign.id)

    guarded(work, write=True)
    return done
