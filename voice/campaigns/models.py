"""A campaign's tables: the campaign and its rules, a row per contact, a row per attempt, and the do-not-call list.

The contacts table is the queue: a contact waiting for a call has `next_attempt_at`, and the
worker claims the due ones (voice.campaigns.dispatch). An attempt is a row before its call is
placed, so a worker killed at any moment leaves a trace of what it was doing.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from voice.fields import RESERVED_REQUEST_ID as REQUEST_ID_PREFIX
from voice.store.db import UTCDateTime, db, insert, utcnow


class Campaign(db.Model):
    """A contact list and the rules its calls follow."""

    __tablename__ = "campaigns"
    __table_args__ = (sa.Index("ix_campaigns_announced", "status", "finish_announced_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    owner: Mapped[str] = mapped_column(sa.String(64), index=True)  # the label of the key that created it
    step: Mapped[str | None] = mapped_column(sa.String(64))
    window: Mapped[dict | None] = mapped_column(sa.JSON)
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    retry: Mapped[list] = mapped_column(sa.JSON)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_concurrent: Mapped[int] = mapped_column(sa.Integer)
    per_minute: Mapped[int] = mapped_column(sa.Integer)
    budget_amount: Mapped[float | None] = mapped_column(sa.Numeric(14, 4))
    budget_currency: Mapped[str | None] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    paused_reason: Mapped[str | None] = mapped_column(sa.String(16))
    next_dial_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the pacing's next free slot
    contacts_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    var_names: Mapped[list | None] = mapped_column(sa.JSON)  # the contacts' variables, for the results' columns
    answer_keys: Mapped[list | None] = mapped_column(sa.JSON)  # the answers' keys its calls saved, likewise
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its webhook events were queued (its contacts' and campaign.finished; also when nobody wanted them):
    # a cancelled campaign's are queued by the worker (voice.campaigns.settling.announce_cancelled).
    finish_announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Contact(db.Model):
    """One person of a campaign: the number, its zone and variables, and where its calls stand."""

    __tablename__ = "campaign_contacts"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "phone", name="uq_campaign_contacts_phone"),
        sa.Index("ix_campaign_contacts_due", "campaign_id", "status", "next_attempt_at"),
        # A campaign's contacts in list order, all or of one status, a page at a time.
        sa.Index("ix_campaign_contacts_list", "campaign_id", "id"),
        sa.Index("ix_campaign_contacts_status", "campaign_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id"))
    row: Mapped[int] = mapped_column(sa.Integer)
    phone: Mapped[str] = mapped_column(sa.String(32))
    zone: Mapped[str] = mapped_column(sa.String(64))
    vars: Mapped[dict | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)   # calls placed
    planned: Mapped[int] = mapped_column(sa.Integer, default=0)    # planned retries used
    transients: Mapped[int] = mapped_column(sa.Integer, default=0)  # short retries in a row
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_hangup_cause: Mapped[str | None] = mapped_column(sa.String(64))
    last_state: Mapped[str | None] = mapped_column(sa.String(64))
    duration: Mapped[int | None] = mapped_column(sa.Integer)
    answers: Mapped[dict | None] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Attempt(db.Model):
    """One call to a contact: claimed, dialling, placed (AT took it), then ended; or withdrawn before any dial."""

    __tablename__ = "campaign_attempts"
    # A campaign's attempts over time (the console's chart), counted from this index alone.
    __table_args__ = (sa.Index("ix_campaign_attempts_time", "campaign_id", "claimed_at", "status", "outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id"))
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign_contacts.id"), index=True)
    number: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    dialled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    session_id: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    state: Mapped[str | None] = mapped_column(sa.String(64))
    hangup_cause: Mapped[str | None] = mapped_column(sa.String(64))
    duration: Mapped[int | None] = mapped_column(sa.Integer)
    amount: Mapped[float | None] = mapped_column(sa.Numeric(14, 4))
    currency: Mapped[str | None] = mapped_column(sa.String(8))
    answers: Mapped[dict | None] = mapped_column(sa.JSON)
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.String(255))


class Cost(db.Model):
    """What a campaign's calls have cost so far in one currency: added to as each call is settled, so the budget's
    check and the campaign's figures read a row, not every attempt."""

    __tablename__ = "campaign_costs"

    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    amount: Mapped[float] = mapped_column(sa.Numeric(14, 4))


def add_costs(costs):
    """Add {(campaign id, currency): amount} to the campaigns' running costs, in the caller's transaction."""
    if not costs:
        return
    statement = insert(Cost.__table__)
    statement = statement.on_conflict_do_update(index_elements=["campaign_id", "currency"],
                                                set_={"amount": Cost.__table__.c.amount + statement.excluded.amount})
    db.session.execute(statement, [{"campaign_id": campaign_id, "currency": currency, "amount": amount}
                                   for (campaign_id, currency), amount in sorted(costs.items())])


def costs_of(campaign_id):
    """A campaign's cost so far, {currency: amount}."""
    return dict(db.session.execute(sa.select(Cost.currency, Cost.amount).where(Cost.campaign_id == campaign_id)).all())


class DoNotCall(db.Model):
    """A number no campaign may call: checked when a list is imported and again before each attempt."""

    __tablename__ = "do_not_call"

    phone: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    added_by: Mapped[str | None] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(16))  # api, cli or flow (the callee asked)


def request_id(attempt_id):
    """The clientRequestId an attempt is dialled with: AT sends it back with each of the call's notifications.

    The API refuses a client's dial-out with this prefix (voice.fields.client_request_id).
    """
    return f"{REQUEST_ID_PREFIX}{attempt_id}"


def attempt_of(client_request_id):
    """The attempt id a clientRequestId names, or None."""
    rest = (client_request_id or "").removeprefix(REQUEST_ID_PREFIX)
    if rest != client_request_id and rest.isdigit() and len(rest) <= 12:
        return int(rest)
    return None
