"""Playing a flow to a caller: which step comes next, menus with retries, Python steps.

Nothing is kept in memory between callbacks: the callback URLs in the XML carry the next
step and the attempt count, so any worker on any host can answer any callback.
"""

import logging
from urllib.parse import urlencode

from flask import current_app, url_for

from voice import shapes
from voice.flows import clients, voicexml
from voice.flows.checks import check_python_result
from voice.flows.document import Action, FlowError

log = logging.getLogger(__name__)

MAX_ATTEMPT = 20


class FlowProblem(Exception):
    """A callback the flow cannot answer (unknown step, failed Python step); the caller hears the apology."""


XML_CACHE_SIZE = 1024


def step_url(step, **params):
    """The absolute /voice/instruct URL that continues the call at `step`, with the webhook token."""
    query = {"step": step, **{k: v for k, v in params.items() if v is not None}}
    token = current_app.config.get("VOICE_WEBHOOK_TOKEN")
    if token:
        query["token"] = token
    return _instruct_url() + "?" + urlencode(query)


def _instruct_url():
    public = current_app.config.get("VOICE_PUBLIC_URL")
    if public:
        return public.rstrip("/") + url_for("webhooks.instruct")
    return url_for("webhooks.instruct", _external=True)


PLAY, MENU, FAIL = "play", "menu", "fail"


def answer(flow, note, args, fields, context=None):
    """The XML answering an active-call notification `note` with callback parameters `args`.

    `context` is the campaign call's (voice.campaigns.calling.CallContext): where its call starts and
    the contact's variables, looked up only when a step needs them; None for other calls.
    """
    name = args.get("step") or (context and context.start) or flow.start_for(
        note.direction, note.destination, note.client_name is not None)
    step = flow.steps.get(name)
    if step is None:
        raise FlowProblem(f"callback names unknown step {name[:64]!r}")
    kind, target, attempt, notice = route(flow, step, args, "dtmfDigits" in fields, note.digits)
    if kind == PLAY:
        return _play(flow, target, note, fields, context)
    if kind == MENU:
        if step.personal:
            return voicexml.render(_personal(_menu(step, attempt, notice), context), step_url)
        return _fixed(("menu", step.name, attempt, notice), lambda: _menu(step, attempt, notice))
    said = [Action("Say", text=notice)]
    if step.personal:
        said = _personal(said, context)
    if target is None:
        if step.personal:
            return voicexml.render(said + [Action("Say", text="Goodbye.")], step_url)
        return _fixed(("fail", step.name, notice), lambda: said + [Action("Say", text="Goodbye.")])
    if _changes(target) or step.personal:
        if target.opts_out:
            _opt_out(note)
        return voicexml.render(said + _personal(step_actions(flow, target, fields, note), context), step_url)
    return _fixed(("fail", step.name, notice), lambda: said + step_actions(flow, target, fields, note))


def route(flow, step, args, digits_sent, digits):
    """Where a callback at `step` leads, as (kind, step, attempt, notice): PLAY a step from its start, the MENU
    again (round `attempt`, after `notice`), or FAIL to the menu's onFail step (None: goodbye) after `notice`.

    The campaign's progress (voice.campaigns.progress) replays a call's callbacks through this too.
    """
    if step.menu is None:
        return PLAY, step, None, None
    attempt = _attempt(args.get("attempt"))
    if args.get("input") == "none":
        return _retry_or_fail(flow, step, attempt, step.menu.no_input)
    if digits_sent and args.get("step"):
        target = step.menu.options.get(chosen(step.menu, digits))
        if target is not None:
            return PLAY, flow.steps[target], None, None
        return _retry_or_fail(flow, step, attempt, step.menu.invalid)
    return MENU, step, attempt, None


def chosen(menu, digits):
    """What the caller pressed at `menu`, without its finishOnKey."""
    keys = digits or ""
    return keys.removesuffix(menu.finish_key) if menu.finish_key else keys


def _retry_or_fail(flow, step, attempt, notice):
    """The menu again with `notice`, or its onFail step once its retries are used up."""
    if attempt <= step.menu.retries:
        return MENU, step, attempt + 1, notice
    return FAIL, flow.steps[step.menu.on_fail] if step.menu.on_fail else None, attempt, notice


def _fixed(key, actions):
    """The XML of `actions()`, which depend on `key` alone: rendered once per key and callback address.

    Most callbacks play a menu or fixed step, so this spares building the same document for
    each of them. The address is part of the key (without VOICE_PUBLIC_URL it follows the Host
    header), and the cache is bounded.
    """
    cache = current_app.extensions.setdefault("voice_xml_cache", {})
    key = (key, _instruct_url())
    xml = cache.get(key)
    if xml is None:
        if len(cache) >= XML_CACHE_SIZE:
            cache.clear()
        xml = cache[key] = voicexml.render(actions(), step_url)
    return xml


def _changes(step):
    """True when a step's XML differs from call to call (a Python step, a Dial of what a client dialled, a contact's
    variable), or playing it does something (puts the caller on the do-not-call list)."""
    return (step.python is not None or clients.has_dynamic_dial(step.actions) or step.personal
            or step.opts_out)


def _play(flow, step, note, fields, context=None):
    """The XML of a step played from its start; a step whose XML changes is rendered anew each time."""
    if _changes(step):
        if step.opts_out:
            _opt_out(note)
        return voicexml.render(_personal(step_actions(flow, step, fields, note), context), step_url)
    return _fixed(("step", step.name), lambda: step_actions(flow, step, fields, note))


def _personal(actions, context):
    """`actions` with a campaign contact's variables said (none outside a campaign: each `{name}` says nothing)."""
    variables = context.variables if context is not None else {}
    return [action.with_variables(variables) if action.personal() else action for action in actions]


def _opt_out(note):
    """Put the caller on the do-not-call list: no campaign calls them again."""
    from voice.campaigns import dnc  # the flows are loaded before the store; imported when a call plays it

    if note.caller and not note.client_name:  # AT names the person callerNumber in both directions
        dnc.add_from_call(note.caller)


def _attempt(raw):
    return shapes.whole(raw, 1, MAX_ATTEMPT) or 1


def _menu(step, attempt, notice=None):
    """A menu's actions: the notice, GetDigits coming back here, then the no-input path."""
    menu = step.menu
    get_digits = Action("GetDigits", attrs=dict(menu.attrs), prompt=menu.prompt)
    get_digits.attrs["callbackUrl"] = step_url(step.name, attempt=attempt, save=menu.save)
    # AT moves past GetDigits silently when nothing is pressed: this Redirect is that path.
    no_input = Action("Redirect", text=step_url(step.name, attempt=attempt, input="none"))
    return ([Action("Say", text=notice)] if notice else []) + [get_digits, no_input]


def step_actions(flow, step, fields, note=None):
    """The actions a step plays (its menu's first round, or what its Python callable returns from the raw `fields`)
    for the call `note` (None: a preview, outside any call)."""
    if step.menu is not None:
        return _menu(step, 1)
    if step.actions is not None:
        return clients.resolve(step.actions, note)
    try:
        result = step.python(dict(fields))
        return clients.resolve(check_python_result(flow, step.name, result), note)
    except FlowError as exc:
        raise FlowProblem(f"python step {step.name!r} returned an invalid result: {'; '.join(exc.problems)}") from None
    except Exception as exc:  # a hook's own bug must not reach the caller as dead air
        raise FlowProblem(f"python step {step.name!r} ({step.python_name}) failed: {exc!r}") from exc
