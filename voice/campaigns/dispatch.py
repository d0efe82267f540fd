"""What the worker does for campaigns: claim due contacts within the pacing, and place each attempt.

Every step is a committed change of rows, so a worker killed at any moment leaves the campaign in
a state the next tick continues from:
- claim: in one transaction a due contact becomes `calling` and gets an attempt row (`claimed`);
- place: the attempt moves `claimed` -> `dialling` in its own transaction before AT is asked, so
  no attempt is ever dialled twice; AT's answer makes it `placed`, with its sessionId;
- settle (voice.campaigns.settling): once the call's final notification is stored, the attempt
  ends and the contact moves on (done, or due again at its retry's time). An attempt left
  `claimed` (its job lost) is withdrawn; one left `dialling` is adopted when AT's notifications
  name it (clientRequestId); one without an outcome is settled as a transient failure after
  VOICE_CAMPAIGN_OUTCOME_MINUTES (docs/campaigns.md).
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
from voice.campaigns import rules
from voice.campaigns.models import Attempt, Campaign, Contact, DoNotCall, request_id
from voice.campaigns.outcomes import finish, pause, transient, withdraw
from voice.ratelimit import TooManyDials, count_dialouts
from voice.store import records
from voice.store.db import StoreUnavailable, db, guarded, utcnow
from voice.webhooks import events

log = logging.getLogger(__name__)

CLAIM_BACKLOG = timedelta(seconds=2)   # pacing slots a late tick may still use
FIRST_SLOTS = timedelta(seconds=1)     # what a campaign's first claim may use
BUSY_DELAY = timedelta(seconds=5)      # this worker's AT requests were all in use: try again this soon
FINAL_ENTRY_ERRORS = ("InvalidPhoneNumber", "DestinationNotSupported")


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
        events.contacts_finished([contact.id])
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
        return withdraw(attempt_id, now, error="campaign " + status)
    if listed:
        return finish(attempt_id, now, "optedOut", "optedOut", error="on the do-not-call list")
    try:
        phone.check_dialable(number, settings.current().allowed_country_codes)
        count_dialouts(None, [number])  # the destination's limit; the campaign's own pacing stands for a key's
        client = get_client()
        answer = client.call(number, client_request_id=request_id(attempt_id))
    except TooManyDials as exc:
        return withdraw(attempt_id, now + timedelta(seconds=max(1, exc.retry_after)), error=str(exc))
    except Busy:
        return withdraw(attempt_id, now + BUSY_DELAY, error="busy")
    except refusals.REFUSED as exc:
        return finish(attempt_id, now, "refused", "refused", error=refusals.message(exc))
    except ATError as exc:
        if exc.at_status in FINAL_ENTRY_ERRORS:
            return finish(attempt_id, now, "failed", "failed", error=exc.at_status)
        if exc.at_status == "InsufficientCredit":
            pause(campaign_id, "credit")
            return withdraw(attempt_id, now, error="InsufficientCredit")
        status = _http_status(exc)
        if status in (401, 403):  # AT refuses our credentials: every dial would fail alike
            pause(campaign_id, "credentials")
            return withdraw(attempt_id, now, error=exc.code)
        if exc.code == "at_unreachable" or (status is not None and status < 500):
            return transient(attempt_id, now, error=exc.code)  # AT surely took no call
        # A timeout, a 5xx or an answer we cannot read: AT may have queued the call. The attempt stays
        # `dialling`: AT's notifications (its clientRequestId) adopt it, else it is transient after a while.
        log.warning("campaign attempt %s: AT's answer to the dial was lost (%s)", attempt_id, exc.code)
        return "unknown"
    except NotConfigured as exc:
        pause(campaign_id, "credentials")
        return withdraw(attempt_id, now, error=str(exc)[:255])
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
