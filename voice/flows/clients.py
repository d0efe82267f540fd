"""Browser and app clients (AT's WebRTC SDK) in a flow: their Dials made concrete when a call is answered.

`dial: {clients: [jonah]}` rings a client at the address AT gives it, `<AT username>.<client name>`.
`dial: {clientDialedNumber: true}` connects a client's agent to the number they dialled, once it
passes every dial-out protection; one of our own AT numbers is a request for the next caller waiting
in its queue, answered with `<Dequeue>`.
"""

import logging

from flask import current_app

from voice import metrics
from voice.callbacks import CLIENT_CALLER
from voice.flows.document import Action
from voice.phone import CostlyNumber, InvalidPhone, NotAllowed, check_dialable, from_dialled, mask
from voice.ratelimit import TooManyDials, count_dialouts

log = logging.getLogger(__name__)

# What the agent hears when the number they dialled is refused: why, never the rules themselves.
REFUSALS = {
    "no_number": "Sorry, there is no number to dial. Goodbye.",
    "invalid_number": "Sorry, the number you dialled is not a valid phone number. Goodbye.",
    "premium_number": "Sorry, premium-rate and shared-cost numbers cannot be dialled. Goodbye.",
    "country": "Sorry, calls to that country are not allowed from this line. Goodbye.",
    "rate_limit": "Sorry, that number has been called too often. Please try again later. Goodbye.",
}


def has_dynamic_dial(actions):
    """True when `actions` dial what a client dialled: their XML differs from call to call."""
    return any(action.client_dialed for action in actions or ())


def client_address(name):
    """The address AT rings a browser or app client at: `<AT username>.<client name>`."""
    return f"{current_app.config['AT_USERNAME']}.{name}"


def resolve(actions, fields):
    """`actions` with their client Dials made concrete for this call; a refused number ends them with why."""
    resolved = []
    for action in actions:
        if action.element != "Dial" or not (action.clients or action.client_dialed):
            resolved.append(action)
        elif action.clients:
            attrs = dict(action.attrs)
            attrs["phoneNumbers"] = ",".join(filter(None, [attrs.get("phoneNumbers"),
                                                           *map(client_address, action.clients)]))
            resolved.append(Action("Dial", attrs=attrs))
        elif not fields:  # a preview (`voice flow show`), not a call: nothing was dialled, nothing is refused
            resolved.append(Action("Dial", attrs=dict(action.attrs, phoneNumbers="(the number the client dialled)")))
        else:
            dialled = _dialled(action, fields)
            resolved.append(dialled)
            if dialled.element == "Say":
                break  # refused: the agent hears why, and the call ends
    return resolved


def _dialled(action, fields):
    """The Dial (or Dequeue) for the number a client's agent dialled, or the Say that refuses it."""
    config = current_app.config
    caller = CLIENT_CALLER.fullmatch(fields.get("callerNumber") or "")
    client = caller.group(2) if caller else "-"
    raw = (fields.get("clientDialedNumber") or "").strip()
    if not raw or raw == "None":
        return _refused("no_number", client, "-")
    try:
        number = from_dialled(raw, config["DEFAULT_COUNTRY_CODE"])
    except InvalidPhone:
        return _refused("invalid_number", client, mask(raw))
    if number in config["AT_NUMBERS"]:
        log.info("client %s asks for the next caller in the queue of %s", client, mask(number))
        return Action("Dequeue", attrs={"phoneNumber": number})
    try:
        check_dialable(number, config["ALLOWED_COUNTRY_CODES"])
        count_dialouts(None, [number])  # no key: the destination's limit alone
    except CostlyNumber:
        return _refused("premium_number", client, mask(number))
    except InvalidPhone:
        return _refused("invalid_number", client, mask(number))
    except NotAllowed:
        return _refused("country", client, mask(number))
    except TooManyDials:
        return _refused("rate_limit", client, mask(number))
    log.info("client %s dials %s", client, mask(number))
    return Action("Dial", attrs=dict(action.attrs, phoneNumbers=number))


def _refused(reason, client, masked):
    """The Say that tells the agent why; the refusal is logged and counted."""
    log.warning("client %s dialled %s: refused (%s)", client, masked, reason)
    if reason in metrics.REFUSAL_REASONS:
        metrics.refused(reason)
    return Action("Say", text=REFUSALS[reason])
