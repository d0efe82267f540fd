"""Browser and app clients (AT's WebRTC SDK) in a flow: their Dials made concrete when a call is answered.

`dial: {clients: [jonah]}` rings a client at the address AT gives it, `<AT username>.<client name>`.
`dial: {clientDialedNumber: true}` connects a client's agent to the number they dialled, once it
passes every dial-out protection; one of our own AT numbers is a request for the next caller waiting
in its queue, answered with `<Dequeue>`.
"""

import logging

from flask import current_app

from voice import refusals, settings
from voice.flows.document import Action
from voice.phone import InvalidPhone, check_dialable, mask
from voice.ratelimit import count_dialouts

log = logging.getLogger(__name__)

def has_dynamic_dial(actions):
    """True when `actions` dial what a client dialled: their XML differs from call to call."""
    return any(action.client_dialed for action in actions or ())


def client_address(name):
    """The address AT rings a browser or app client at: `<AT username>.<client name>`."""
    return f"{current_app.config['AT_USERNAME']}.{name}"


def resolve(actions, note):
    """`actions` with their client Dials made concrete for the call `note` (a Notification; None in a preview);
    a refused number ends them with why."""
    resolved = []
    for action in actions:
        if action.element != "Dial" or not (action.clients or action.client_dialed):
            resolved.append(action)
        elif action.clients:
            attrs = dict(action.attrs)
            attrs["phoneNumbers"] = ",".join(filter(None, [attrs.get("phoneNumbers"),
                                                           *map(client_address, action.clients)]))
            resolved.append(Action("Dial", attrs=attrs))
        elif note is None:  # a preview (`voice flow show`), not a call: nothing was dialled, nothing is refused
            resolved.append(Action("Dial", attrs=dict(action.attrs, phoneNumbers="(the number the client dialled)")))
        else:
            dialled = _dialled(action, note)
            resolved.append(dialled)
            if dialled.element == "Say":
                break  # refused: the agent hears why, and the call ends
    return resolved


def _dialled(action, note):
    """The Dial (or Dequeue) for the number a client's agent dialled, or the Say that refuses it."""
    configured = settings.current()
    client, number = note.client_name or "-", note.dialled
    if not note.client_dialed:
        log.warning("client %s dialled nothing: refused", client)
        return Action("Say", text=refusals.NO_NUMBER)
    if number is None:
        return _refused(InvalidPhone("not a phone number"), client, mask(note.client_dialed))
    if number in configured.at_numbers:
        log.info("client %s asks for the next caller in the queue of %s", client, mask(number))
        return Action("Dequeue", attrs={"phoneNumber": number})
    try:
        check_dialable(number, configured.allowed_country_codes)
        count_dialouts(None, [number])  # no key: the destination's limit alone
    except refusals.REFUSED as exc:
        return _refused(exc, client, mask(number))
    log.info("client %s dials %s", client, mask(number))
    return Action("Dial", attrs=dict(action.attrs, phoneNumbers=number))


def _refused(exc, client, masked):
    """The Say that tells the agent why (voice/refusals.py); the refusal is logged and counted."""
    refusal = refusals.counted(exc)
    log.warning("client %s dialled %s: refused (%s)", client, masked, refusal.reason or refusal.code)
    return Action("Say", text=refusal.spoken)
