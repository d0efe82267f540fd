"""What the API and the CLI do with campaigns: create one from a list, show it, pause, resume, cancel, export.

A 100,000-contact list is checked in memory once and stored in chunks, each its own short
transaction, so callbacks never wait behind an import; the campaign stays `importing` (seen by
nobody, dialled by nobody) until its last chunk is in.
"""

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app

from voice import settings, shapes
from voice.campaigns import rules
from voice.campaigns.contacts import Importer, ListError, rows_of_csv, rows_of_json
from voice.campaigns.models import Attempt, Campaign, Contact
from voice.errors import APIError
from voice.store.db import StoreUnavailable, db, guarded, iso, utcnow

PAGE = 100
MAX_ID = 2 ** 31 - 1
MAX_NAME = 128
ABANDONED_IMPORT = timedelta(minutes=10)


def _bad(message):
    return APIError(400, "bad_field", message)


def _text(spec, name, limit, default=None):
    value = spec.get(name)
    if value is None:  # absent, or JSON's null
        return default
    if not isinstance(value, str) or not value.strip() or len(value) > limit or shapes.has_control(value):
        raise _bad(f"{name} must be text of 1 to {limit} characters")
    return value.strip()


def _count(spec, name, default, low, high):
    value = spec.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _bad(f"{name} must be a whole number from {low} to {high}")
    number = shapes.whole(str(value), low, high)
    if number is None or str(value).strip() != str(number):
        raise _bad(f"{name} must be a whole number from {low} to {high}")
    return number


def _json_field(spec, name):
    """A field that is an object in JSON, and may come as JSON text in a form."""
    value = spec.get(name)
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad(f"{name} is not valid JSON") from None
    return value


def _budget(spec):
    value = _json_field(spec, "budget")
    if value is None or value == "":
        return None, None
    if isinstance(value, str):  # "500 KES" in a form or on the command line
        amount, _, currency = value.strip().partition(" ")
        value = {"amount": amount, "currency": currency.strip()}
    if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
        raise _bad("budget must be {\"amount\": 500, \"currency\": \"KES\"}")
    raw = value["amount"]
    amount = None if isinstance(raw, bool) else shapes.decimal(str(raw), Decimal("0.0001"), Decimal("1e12"))
    currency = value["currency"]
    if amount is None or not isinstance(currency, str) or not currency.isascii() or not currency.isalpha() \
            or len(currency) != 3:
        raise _bad("budget must be a positive amount and a 3-letter currency code, e.g. {\"amount\": 500, "
                   "\"currency\": \"KES\"}")
    return amount, currency.upper()


def _moment(spec, name):
    value = spec.get(name)
    if value is None or value == "":
        return None
    try:
        return shapes.when(name, value)
    except shapes.BadValue as exc:
        raise _bad(str(exc)) from None


def read_rules(spec, flow):
    """The campaign's settings from a JSON object or form fields, checked; a dict of Campaign's columns."""
    try:
        window = rules.parse_window(_json_field(spec, "window"))
        retry = rules.parse_retry(spec.get("retry"))
        zone = spec.get("timezone") or None
        if zone is not None:
            rules.zone(zone)
    except rules.RuleError as exc:
        raise _bad(str(exc)) from None
    step = _text(spec, "step", 64)
    if step is not None and step not in flow.steps:
        raise _bad(f"step {step!r} is not a step of the deployed flow ({flow.source})")
    now = utcnow()
    start_at = _moment(spec, "startAt") or now
    not_after = _moment(spec, "notAfter")
    if not_after is not None and not_after <= max(start_at, now):
        raise _bad("notAfter must be later than startAt and than now")
    amount, currency = _budget(spec)
    return {"name": _text(spec, "name", MAX_NAME, default=f"Campaign of {now:%Y-%m-%d %H:%M}"), "step": step,
            "window": window.as_json() if window else None, "timezone": zone, "retry": retry,
            "start_at": start_at, "not_after": not_after,
            "max_concurrent": _count(spec, "maxConcurrent", 5, 1, 1000),
            "per_minute": _count(spec, "perMinute", 30, 1, 60000),
            "budget_amount": amount, "budget_currency": currency}


def create(spec, rows, owner, flow):
    """Create a campaign from its settings `spec` and contact `rows`; (campaign JSON, accepted, refused).

    Raises APIError 400 for bad settings, a list that cannot be read, or one without a valid contact.
    """
    columns = read_rules(spec, flow)
    importer = Importer(settings.current().allowed_country_codes, columns["timezone"])
    try:
        for row, (raw_phone, raw_zone, raw_vars) in enumerate(rows, start=1):
            importer.check(row, raw_phone, raw_zone, raw_vars)
    except ListError as exc:
        raise APIError(400, "bad_contacts", str(exc)) from None
    guarded(importer.drop_do_not_call)
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
    def work():
        counts = dict(db.session.execute(sa.select(Contact.status, sa.func.count()).where(
            Contact.campaign_id == campaign_id).group_by(Contact.status)).all())
        cost = {currency: amount for currency, amount in db.session.execute(
            sa.select(Attempt.currency, sa.func.sum(Attempt.amount)).where(
                Attempt.campaign_id == campaign_id, Attempt.amount.is_not(None)).group_by(Attempt.currency))
            if currency}
        nexts = [db.session.execute(sa.select(sa.func.min(Contact.next_attempt_at)).where(
            Contact.campaign_id == campaign_id, Contact.status == status)).scalar() for status in rules.WAITING]
        return counts, cost, min((moment for moment in nexts if moment is not None), default=None)

    counts, cost, next_at = guarded(work)
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


# --- changing --------------------------------------------------------------------------------------------------


def pause(campaign_id, owner=None):
    """Stop starting calls (those in progress finish); 409 unless scheduled or running."""
    return _move(campaign_id, owner, ("scheduled", "running"), status="paused", paused_reason="operator")


def resume(campaign_id, owner=None, budget=None):
    """Start calling again; a campaign paused for its budget needs a larger `budget` ({"amount", "currency"})."""
    campaign = get(campaign_id, owner)
    values = {}
    if budget is not None:
        amount, currency = _budget({"budget": budget})
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
    """End the campaign: every contact still to be called is `cancelled`; calls in progress finish."""
    campaign = get(campaign_id, owner)
    if campaign.status in ("completed", "cancelled"):
        raise APIError(409, "campaign_finished", f"Campaign {campaign_id} is already {campaign.status}.")
    now = utcnow()

    def work():
        moved = db.session.execute(sa.update(Campaign).where(
            Campaign.id == campaign_id, Campaign.status.in_(("scheduled", "running", "paused")))
            .values(status="cancelled", paused_reason=None, finished_at=now, updated_at=now)).rowcount
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


def contacts(campaign_id, owner=None, status=None, page=1):
    """One page of a campaign's contacts (PAGE each), in list order, with their attempts' sessionIds."""
    get(campaign_id, owner)
    if status is not None and status not in rules.STATUSES:
        raise _bad("status must be one of " + ", ".join(rules.STATUSES))
    query = sa.select(Contact).where(Contact.campaign_id == campaign_id)
    if status is not None:
        query = query.where(Contact.status == status)
    query = query.order_by(Contact.id).limit(PAGE).offset((page - 1) * PAGE)

    def work():
        rows = list(db.session.execute(query).scalars())
        sessions = {}
        for contact_id, session_id in db.session.execute(
                sa.select(Attempt.contact_id, Attempt.session_id).where(
                    Attempt.contact_id.in_([row.id for row in rows]), Attempt.session_id.is_not(None))
                .order_by(Attempt.id)):
            sessions.setdefault(contact_id, []).append(session_id)
        # Built before the commit, which would expire the rows (and reload each one).
        return [{"id": row.id, "row": row.row, "phone": row.phone, "timezone": row.zone, "vars": row.vars or {},
                 "status": row.status, "attempts": row.attempts, "nextAttemptAt": iso(row.next_attempt_at),
                 "lastState": row.last_state, "lastHangupCause": row.last_hangup_cause, "duration": row.duration,
                 "answers": row.answers or {}, "sessionIds": sessions.get(row.id, [])} for row in rows]

    return guarded(work)


EXPORT_CHUNK = 2000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _chunks(query, key):
    """Rows of `query` (its first column `key`) in chunks ordered by `key`, each its own short read (keyset paging)."""
    last = 0
    while True:
        rows = guarded(lambda: db.session.execute(query.where(key > last).order_by(key).limit(EXPORT_CHUNK)).all())
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _cell(value):
    """A cell of text a caller or a list supplied, made inert for spreadsheets: one starting like a formula gets a '."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _lines(rows):
    """CSV text of `rows` (lists of cells)."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def results_csv(campaign_id, owner=None):
    """A row per contact: phone, status, attempts, last hangup cause, duration, cost, answers, variables (CSV text
    to stream, a chunk of rows at a time; a 404 is raised before the first)."""
    return _results(campaign_id, *_keys(get(campaign_id, owner)))


def _results(campaign_id, answer_keys, var_keys):
    query = sa.select(Contact.id, Contact.phone, Contact.status, Contact.attempts, Contact.last_state,
                      Contact.last_hangup_cause, Contact.duration, Contact.answers, Contact.vars).where(
        Contact.campaign_id == campaign_id)
    yield _lines([["phone", "status", "attempts", "lastState", "lastHangupCause", "duration", "cost", "currency"]
                  + [f"answer_{key}" for key in answer_keys] + var_keys])
    for rows in _chunks(query, Contact.id):
        costs = {contact_id: (cost, currency) for contact_id, cost, currency in guarded(lambda: db.session.execute(
            sa.select(Attempt.contact_id, sa.func.sum(Attempt.amount), sa.func.max(Attempt.currency)).where(
                Attempt.campaign_id == campaign_id, Attempt.contact_id.between(rows[0][0], rows[-1][0]),
                Attempt.amount.is_not(None)).group_by(Attempt.contact_id)).all())}
        lines = []
        for contact_id, number, status, attempts, state, cause, duration, answers, variables in rows:
            cost, currency = costs.get(contact_id, (None, None))
            answers, variables = answers or {}, variables or {}
            # The number is ours (checked E.164); every text AT, a caller or the list supplied is made inert.
            lines.append([number, status, attempts, _cell(state), _cell(cause), duration, cost, _cell(currency)]
                         + [_cell(answers.get(key)) for key in answer_keys]
                         + [_cell(variables.get(key)) for key in var_keys])
        yield _lines(lines)


def attempts_csv(campaign_id, owner=None):
    """A row per attempt: phone, attempt number, dialled at, sessionId, state, cause, duration, cost, answers (CSV
    text to stream; a 404 is raised before the first)."""
    get(campaign_id, owner)
    return _attempts(campaign_id)


def _attempts(campaign_id):
    query = (sa.select(Attempt.id, Contact.phone, Attempt.number, Attempt.dialled_at, Attempt.ended_at,
                       Attempt.session_id, Attempt.state, Attempt.hangup_cause, Attempt.duration, Attempt.amount,
                       Attempt.currency, Attempt.outcome, Attempt.error, Attempt.answers)
             .join(Contact, Contact.id == Attempt.contact_id)
             .where(Attempt.campaign_id == campaign_id, Attempt.status != "withdrawn"))
    yield _lines([["phone", "attempt", "dialledAt", "endedAt", "sessionId", "state", "hangupCause", "duration",
                   "cost", "currency", "outcome", "error", "answers"]])
    for rows in _chunks(query, Attempt.id):
        yield _lines([[number, attempt, iso(dialled), iso(ended), _cell(session_id), _cell(state), _cell(cause),
                       duration, amount, _cell(currency), outcome, _cell(error),
                       _cell(json.dumps(answers, sort_keys=True)) if answers else ""]
                      for _, number, attempt, dialled, ended, session_id, state, cause, duration, amount, currency,
                      outcome, error, answers in rows])


def _keys(campaign):
    """The answer keys (the deployed flow's saves, then any other its calls saved) and the variable names of a
    campaign, in order."""
    keys = [*current_app.extensions["voice_flow"].save_keys, *(campaign.answer_keys or ())]
    return list(dict.fromkeys(keys)), list(campaign.var_names or [])
