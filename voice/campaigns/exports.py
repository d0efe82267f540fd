"""A campaign's results as CSV: a row per contact, a row per attempt; read in chunks and streamed, so 100,000 rows
never sit in memory, and every text a caller, AT or the list supplied made inert for spreadsheets.
"""

import csv
import io
import json

import sqlalchemy as sa
from flask import current_app

from voice.campaigns.models import Attempt, Contact
from voice.campaigns.service import get
from voice.store.db import db, guarded, iso


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
