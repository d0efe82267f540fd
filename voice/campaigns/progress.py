"""How far a campaign's call went: the steps it played and what the callee pressed, replayed from its callbacks.

The callbacks are stored as they come (voice.store.records); replaying them through the flow's own
routing (voice.flows.ivr.route) after the call tells whether it reached an end step of the flow
and which answers it saved, without adding any work to the callbacks themselves.
"""

from dataclasses import dataclass, field

import sqlalchemy as sa

from voice.flows import ivr
from voice.store.db import db
from voice.store.records import Call, Event


@dataclass
class Progress:
    """What one call played and gathered."""

    played: list = field(default_factory=list)
    answers: dict = field(default_factory=dict)
    reached_end: bool = False


def replay(flow, start, callbacks):
    """The Progress of a call that started at `start`, from its callbacks as (params, form) in the order they came."""
    progress = Progress()
    start = start or flow.outbound or flow.inbound
    for params, form in callbacks:
        params, form = params or {}, form or {}
        if str(form.get("isActive", "1")) == "0":
            continue
        step = flow.steps.get(params.get("step") or start)
        if step is None:
            continue
        digits = form.get("dtmfDigits")
        digits = digits if isinstance(digits, str) else None
        sent = "dtmfDigits" in form
        save = params.get("save")
        if save not in flow.save_keys:  # a callback URL names only the flow's own keys; anything else is not ours
            save = None
        kind, target, _, _ = ivr.route(flow, step, params, sent, digits)
        if save and sent and digits not in (None, "", "None"):
            if step.menu is not None and params.get("step") == step.name:
                if kind == ivr.PLAY and step.menu.save:  # a menu's answer is the option chosen, under its own key
                    progress.answers[step.menu.save] = ivr.chosen(step.menu, digits)
            else:
                progress.answers[save] = digits.removesuffix("#")
        if kind in (ivr.PLAY, ivr.FAIL) and target is not None:
            progress.played.append(target.name)
            # A menu's onFail step ends the call without an answer: it completes only when `ends` names it.
            if flow.is_end(target.name) if kind == ivr.PLAY else target.name in flow.ends:
                progress.reached_end = True
    return progress


def callbacks_of_many(session_ids):
    """The calls' callbacks to /voice/instruct as (params, form), in the order they were stored, by sessionId (read in
    the current transaction, one query)."""
    found = {}
    if session_ids:
        for session_id, params, payload in db.session.execute(
                sa.select(Call.session_id, Event.params, Event.payload).join(Call, Call.id == Event.call_id)
                .where(Call.session_id.in_(session_ids), Event.source == "instruct").order_by(Event.id)):
            found.setdefault(session_id, []).append((params, payload))
    return found


def callbacks_of(session_id):
    """One call's callbacks to /voice/instruct as (params, form), in order."""
    return callbacks_of_many([session_id]).get(session_id, [])
