"""What the API and the CLI do with campaigns: create one from a list, show it, pause, resume, cancel (the settings
 are read in spec.py, the results written in exports.py).

A 100,000-contact list is checked in memory once and stored in chunks, each its own short
transaction, so callbacks never wait behind an import; the campaign stays `importing` (seen by
nobody, dialled by nobody) until its last chunk is in.
"""

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from voice import settings
from voice.campaigns import rules
from voice.campaigns.contacts import Importer, ListError, rows_of_csv, rows_of_json
from voice.campaigns.models import Attempt, Campaign, Contact, costs_of
from voice.campaigns.spec import budget_of, read_rules
from voice.errors import APIError
from voice.store.db import StoreUnavailable, db, guarded, iso, utcnow

PAGE = 100
MAX_ID = 2 ** 31 - 1
ABANDONED_IMPORT = timedelta(minutes=10)


def create(spec, rows, owner, flow):
    """Create a campaign from its settings `spec` and contact `rows`; (campaign JSON, accepted, refused).

    Raises APIError 400 for bad settings, a list that cannot be read, or one without a valid contact.
    """
    columns, importer = checked(spec, rows, flow)
    if not importer.count:
        raise APIError(400, "no_contacts", "The campaign has no contact that may be called.",
                       refused=importer.refused[:1000])
    window = rules.window_from_json(columns["window"])
    now = utcnow()
    campaign = Campaign(owner=owner, status="importing", contacts_total=importer.count, created_at=now,
                        updated_at=now, var_names=sorted(importer.var_names), **columns)

    def add():
        db.session.add(campaign)
        db.session.flush()
        return campaign.id

    campaign_id = guarded(add, write=True)
    zones = {}

    def first_due(zone):
        if zone not in zones:
            zones[zone] = rules.due(window, rules.zone(zone), columns["start_at"], columns["not_after"])
        return zones[zone]

    try:
        importer.store(campaign_id, first_due)
        status = "scheduled" if columns["start_at"] > utcnow() else "running"
        guarded(lambda: db.session.execute(sa.update(Campaign).where(Campaign.id == campaign_id)
                                           .values(status=status, updated_at=utcnow())), write=True)
    except StoreUnavailable:
        _drop(campaign_id)
        raise
    return show(campaign_id), importer.count, importer.refused


def checked(spec, rows, flow):
    """A campaign's settings and contact rows checked, nothing stored: (Campaign's columns, the Importer holding what
    was accepted and `refused`); what create() does first, and what the console's preview shows.

    Raises APIError 400 for bad settings or a list that cannot be read.
    """
    columns = read_rules(spec, flow)
    importer = Importer(settings.current().allowed_country_codes, columns["timezone"])
    try:
        for row, (raw_phone, raw_zone, raw_vars) in enumerate(rows, start=1):
            importer.check(row, raw_phone, raw_zone, raw_vars)
    except ListError as exc:
        raise APIError(400, "bad_contacts", str(exc)) from None
    guarded(importer.drop_do_not_call)
    return columns, importer


def _drop(campaign_id):
    """Delete a campaign that never finished importing, with its contacts."""
    def work():
        db.session.execute(sa.delete(Contact).where(Contact.campaign_id == campaign_id))
        db.session.execute(sa.delete(Campaign).where(Campaign.id == campaign_id, Campaign.status == "importing"))

    try:
        guarded(work, write=True)
    except StoreUnavailable:
        pass  # an abandoned import is deleted by the worker's housekeeping


def drop_abandoned(now=None):
    """Delete imports abandoned (their process killed) for ABANDONED_IMPORT; how many."""
    now = now or utcnow()
    ids = guarded(lambda: list(db.session.execute(sa.select(Campaign.id).where(
        Campaign.status == "importing", Campaign.created_at < now - ABANDONED_IMPORT)).scalars()))
    for campaign_id in ids:
        _drop(campaign_id)
    return len(ids)


def rows_from_request(request):
    """The contact rows of a create request: a `contacts` CSV file (multipart), or the JSON body's `contacts`."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("contacts")
        if upload is None:
            raise APIError(400, "bad_contacts", "Attach the contact list as a CSV file in the field 'contacts'.")
        return rows_of_csv(upload.stream)
    body = request.get_json(silent=True) if request.is_json else None
    if not isinstance(body, dict):
        raise APIError(400, "bad_json", "Send the campaign as a JSON object, or as a form with a 'contacts' CSV file.")
    try:
        return rows_of_json(body.get("contacts"))
    except ListError as exc:
        raise APIError(400, "bad_contacts", str(exc)) from None


# --- reading ---------------------------------------------------------------------------------------------------


def _visible(owner):
    """The campaigns a key may see: a dialer's own (`owner`), or all (None); never one still importing."""
    where = [Campaign.status != "importing"]
    if owner is not None:
        where.append(Campaign.owner == owner)
    return where


def get(campaign_id, owner=None):
    """The Campaign row `campaign_id`, or a 404 (also for another dialer's campaign)."""
    if not 0 < campaign_id <= MAX_ID:  # beyond any id the database can hold
        raise APIError(404, "not_found", f"No campaign {campaign_id} here.")
    campaign = guarded(lambda: db.session.execute(
        sa.select(Campaign).where(Campaign.id == campaign_id, *_visible(owner))).scalar_one_or_none())
    if campaign is None:
        raise APIError(404, "not_found", f"No campaign {campaign_id} here.")
    return campaign


def figures(campaign_id):
    """A campaign's moving figures: counts per contact status, calls in progress, cost per currency, next attempt."""
    return guarded(lambda: figures_now(campaign_id))


def figures_now(campaign_id):
    """figures(), read in the caller's transaction (a webhook event's snapshot, voice/webhooks/events.py)."""
    counts = dict(db.session.execute(sa.select(Contact.status, sa.func.count()).where(
        Contact.campaign_id == campaign_id).group_by(Contact.status)).all())
    cost = costs_of(campaign_id)
    nexts = [db.session.execute(sa.select(sa.func.min(Contact.next_attempt_at)).where(
        Contact.campaign_id == campaign_id, Contact.status == status)).scalar() for status in rules.WAITING]
    next_at = min((moment for moment in nexts if moment is not None), default=None)
    return {"counts": {status: counts.get(status, 0) for status in rules.STATUSES},
            "inProgress": counts.get("calling", 0),
            "cost": {currency: _amount(amount) for currency, amount in sorted(cost.items())},
            "nextAttemptAt": iso(next_at)}


def _amount(value):
    return float(value) if value is not None else None


def as_json(campaign, moving=None):
    """A campaign as the API shows it."""
    body = {"id": campaign.id, "name": campaign.name, "status": campaign.status,
            "pausedReason": campaign.paused_reason if campaign.status == "paused" else None,
            "step": campaign.step, "window": campaign.window, "timezone": campaign.timezone,
            "retry": rules.retry_words(campaign.retry or []), "startAt": iso(campaign.start_at),
            "notAfter": iso(campaign.not_after), "maxConcurrent": campaign.max_concurrent,
            "perMinute": campaign.per_minute,
            "budget": {"amount": _amount(campaign.budget_amount), "currency": campaign.budget_currency}
            if campaign.budget_amount is not None else None,
            "contacts": campaign.contacts_total, "createdBy": campaign.owner, "createdAt": iso(campaign.created_at),
            "finishedAt": iso(campaign.finished_at)}
    body.update(moving or figures(campaign.id))
    return body


def show(campaign_id, owner=None):
    """A campaign with its figures as JSON, or a 404."""
    return as_json(get(campaign_id, owner))


def listing(owner=None, page=1):
    """The campaigns a key may see, newest first, PAGE a page, each with its figures."""
    query = (sa.select(Campaign).where(*_visible(owner)).order_by(Campaign.id.desc())
             .limit(PAGE).offset((page - 1) * PAGE))
    campaigns = guarded(lambda: list(db.session.execute(query).scalars()))
    return [as_json(campaign) for campaign in campaigns]


# --- changing --------------------------------------------------------------------------------------------------


def pause(campaign_id, owner=None):
    """Stop starting calls (those in progress finish); 409 unless scheduled or running."""
    return _move(campaign_id, owner, ("scheduled", "running"), status="paused", paused_reason="operator")


def resume(campaign_id, owner=None, budget=None):
    """Start calling again; a campaign paused for its budget needs a larger `budget` ({"amount", "currency"})."""
    campaign = get(campaign_id, owner)
    values = {}
    if budget is not None:
        amount, currency = budget_of({"budget": budget})
        values.update(budget_amount=amount, budget_currency=currency)
    amount = values.get("budget_amount", campaign.budget_amount)
    if amount is not None and (campaign.paused_reason == "budget" or values):
        currency = values.get("budget_currency", campaign.budget_currency)
        spent = figures(campaign_id)["cost"].get(currency, 0)
        if Decimal(str(spent)) >= amount:
            raise APIError(409, "budget_reached", f"The campaign's calls cost {spent} {currency}, which its budget "
                           "does not exceed; resume it with a larger budget, e.g. {\"budget\": {\"amount\": "
                           f"{int(Decimal(str(spent))) * 2 + 100}, \"currency\": \"{currency}\"}}}}.")
    status = "scheduled" if campaign.start_at > utcnow() else "running"
    return _move(campaign_id, owner, ("paused",), status=status, paused_reason=None, **values)


def cancel(campaign_id, owner=None):
    """End the campaign: every contact still to be called is `cancelled`; calls in progress finish. Their webhook
    events, and the campaign's, are queued by the worker (voice.campaigns.settling.announce_cancelled)."""
    campaign = get(campaign_id, owner)
    if campaign.status in ("completed", "cancelled"):
        raise APIError(409, "campaign_finished", f"Campaign {campaign_id} is already {campaign.status}.")
    now = utcnow()

    def work():
        moved = db.session.execute(sa.update(Campaign).where(
            Campaign.id == campaign_id, Campaign.status.in_(("scheduled", "running", "paused")))
            .values(status="cancelled", paused_reason=None, finished_at=now, updated_at=now)).rowcount
        if moved:
            db.session.execute(sa.update(Contact).where(Contact.campaign_id == campaign_id,
                                                        Contact.status.in_(rules.WAITING))
                               .values(status="cancelled", next_attempt_at=None, updated_at=now))
        return moved

    if not guarded(work, write=True):
        raise APIError(409, "campaign_finished", f"Campaign {campaign_id} has already finished.")
    return show(campaign_id, owner)


def _move(campaign_id, owner, allowed, **values):
    campaign = get(campaign_id, owner)
    if campaign.status not in allowed:
        raise APIError(409, "wrong_status", f"Campaign {campaign_id} is {campaign.status}: this needs it "
                       + " or ".join(allowed) + ".")
    values["updated_at"] = utcnow()
    moved = guarded(lambda: db.session.execute(sa.update(Campaign).where(
        Campaign.id == campaign_id, Campaign.status.in_(allowed)).values(**values)).rowcount, write=True)
    if not moved:
        raise APIError(409, "wrong_status", f"Campaign {campaign_id} changed meanwhile; look again.")
    return show(campaign_id, owner)


# --- contacts and results --------------------------------------------------------------------------------------


def contacts(campaign_id, owner=None, status=None, page=1, after=None, size=PAGE):
    """One page of a campaign's contacts (`size` each), in list order, with their attempts' sessionIds: the
    `page`th, or the one after the contact id `after` (keyset: as quick on the last page as on the first)."""
    get(campaign_id, owner)
    if status is not None and status not in rules.STATUSES:
        raise APIError(400, "bad_field", "status must be one of " + ", ".join(rules.STATUSES))
    query = sa.select(Contact).where(Contact.campaign_id == campaign_id)
    if status is not None:
        query = query.where(Contact.status == status)
    if after is not None:
        query = query.where(Contact.id > after).order_by(Contact.id).limit(size)
    else:
        query = query.order_by(Contact.id).limit(size).offset((page - 1) * size)

    # Built before the commit, which would expire the rows (and reload each one).
    return guarded(lambda: contacts_json(list(db.session.execute(query).scalars())))


def contacts_json(rows):
    """Contacts as the API shows them, with their attempts' sessionIds (read in the caller's transaction)."""
    sessions = {}
    for contact_id, session_id in db.session.execute(
            sa.select(Attempt.contact_id, Attempt.session_id).where(
                Attempt.contact_id.in_([row.id for row in rows]), Attempt.session_id.is_not(None))
            .order_by(Attempt.id)):
        sessions.setdefault(contact_id, []).append(session_id)
    return [{"id": row.id, "row": row.row, "phone": row.phone, "timezone": row.zone, "vars": row.vars or {},
             "status": row.status, "attempts": row.attempts, "nextAttemptAt": iso(row.next_attempt_at),
             "lastState": row.last_state, "lastHangupCause": row.last_hangup_cause, "duration": row.duration,
             "answers": row.answers or {}, "sessionIds": sessions.get(row.id, [])} for row in rows]
