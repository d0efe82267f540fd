"""What the console draws of a campaign beyond service.figures() (its attempts over time, the answers per question),
and what /metrics shows of every campaign.

Each is one grouped, indexed pass over the campaign's own rows, so a page stays quick with 100,000 contacts.
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from flask import current_app

from voice.campaigns import rules
from voice.campaigns.models import Attempt, Campaign, Contact
from voice.store.db import db, guarded, utcnow

# Bucket lengths (seconds) for the attempts chart, the shortest that gives at most MAX_BUCKETS over the campaign.
BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 60
MAX_VALUES = 12  # the most frequent answers of a question drawn; the rest are added up as "other"
ANSWERED = ("completed", "breakoff", "optedOut")  # the statuses of contacts whose call was answered


def _span(campaign, now):
    """The campaign's time so far: from its start to its end (or now)."""
    start = min(campaign.start_at, campaign.created_at) if campaign.start_at else campaign.created_at
    return start, max(start, campaign.finished_at or now)


def bucket_length(start, end):
    """The shortest of BUCKETS that cuts [start, end] into at most MAX_BUCKETS pieces."""
    seconds = (end - start).total_seconds()
    return next((length for length in BUCKETS if seconds / length < MAX_BUCKETS), BUCKETS[-1])


def attempts_over_time(campaign, now=None):
    """Attempts (calls dialled or tried, withdrawn ones not counted) and answered ones per time bucket since the
    campaign started: {"seconds": bucket length, "buckets": [(start, attempts, answered)]}, every bucket listed.

    One statement, a range count per bucket on ix_campaign_attempts_time: no function of each row, no row read.
    """
    start, end = _span(campaign, now or utcnow())
    length = bucket_length(start, end)
    origin = int(start.timestamp()) // length * length
    edges = [datetime.fromtimestamp(origin + n * length, timezone.utc)
             for n in range(int((end.timestamp() - origin) // length) + 2)]
    answered = sa.func.count().filter(Attempt.outcome.in_(ANSWERED))
    pairs = list(zip(edges, edges[1:]))
    query = sa.union_all(*[sa.select(sa.literal(n), sa.func.count(), answered).where(
        Attempt.campaign_id == campaign.id, Attempt.claimed_at >= low, Attempt.claimed_at < high,
        Attempt.status != "withdrawn") for n, (low, high) in enumerate(pairs)])
    counted = {n: (attempts, ok) for n, attempts, ok in guarded(lambda: db.session.execute(query).all())}
    return {"seconds": length, "buckets": [(low, *counted.get(n, (0, 0))) for n, (low, _) in enumerate(pairs)]}


def answers(campaign, keys, answered):
    """How often each answer was given to each question `keys` (the flow's saves): {key: [(answer, contacts)]},
    most frequent first, at most MAX_VALUES each (the rest summed as "other"); a key nobody answered is left out.

    `answered` is the campaign's count of answered contacts now. A contact's answers never change once its call is
    settled, so a tally taken at the same count is still exact and is kept (per process): a finished or quiet
    campaign's page reads it once, a running one's when more contacts answered.
    """
    kept = current_app.extensions.setdefault("voice_campaign_answers", {})
    key = (campaign.id, tuple(keys))
    found = kept.get(key)
    if found is not None and found[0] == answered:
        return found[1]
    if len(kept) > 100:
        kept.clear()
    tally = guarded(lambda: {name: rows for name, rows in ((name, _tally(campaign.id, name)) for name in keys) if rows})
    kept[key] = (answered, tally)
    return tally


def _tally(campaign_id, name):
    value = Contact.answers[name].as_string()
    rows = db.session.execute(
        sa.select(value, sa.func.count(), sa.func.sum(sa.func.count()).over())
        .where(Contact.campaign_id == campaign_id, Contact.status.in_(ANSWERED), value.is_not(None))
        .group_by(value).order_by(sa.func.count().desc(), value).limit(MAX_VALUES)).all()
    shown = [(str(answer), count) for answer, count, _ in rows]
    rest = int(rows[0][2]) - sum(count for _, count in shown) if rows else 0
    return shown + ([("other", rest)] if rest else [])


def account_figures():
    """The figures /metrics shows of every campaign: campaigns by status, calls in progress by campaign status,
    ended attempts by outcome (labels from fixed lists only)."""
    def work():
        campaigns = dict(db.session.execute(sa.select(Campaign.status, sa.func.count()).where(
            Campaign.status != "importing").group_by(Campaign.status)).all())
        in_progress = dict(db.session.execute(sa.select(Campaign.status, sa.func.count()).select_from(Attempt).join(
            Campaign, Campaign.id == Attempt.campaign_id).where(Attempt.status.in_(rules.ATTEMPT_IN_PROGRESS))
            .group_by(Campaign.status)).all())
        attempts = dict(db.session.execute(sa.select(Attempt.outcome, sa.func.count()).where(
            Attempt.status == "ended").group_by(Attempt.outcome)).all())
        return campaigns, in_progress, attempts

    campaigns, in_progress, attempts = guarded(work)
    return {"campaigns": {status: campaigns.get(status, 0) for status in rules.CAMPAIGN_STATUSES},
            "in_progress": {status: in_progress.get(status, 0) for status in rules.CAMPAIGN_STATUSES},
            "attempts": {outcome: attempts.get(outcome, 0) for outcome in rules.OUTCOMES}}
