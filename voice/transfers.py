"""Transferring a live call to another number: checked and limited like a dial-out, asked of AT, noted on the call."""

import logging

from flask import request

from voice import dialout, fields
from voice.access import annotate
from voice.at.client import ATError, get_client
from voice.errors import APIError
from voice.ratelimit import count_dialouts
from voice.shapes import SESSION_ID
from voice.store import records
from voice.store.db import StoreUnavailable

log = logging.getLogger(__name__)


def asked(session_id, scope):
    """The transfer a request asks for (`phoneNumber`, `callLeg`, `holdMusicUrl`), checked, before any limit.

    Raises 409 `call_not_in_progress` unless `session_id` is a live call that the key may move:
    any call for `scope` None, else only the calls placed by the key labelled `scope` (a dialer).
    """
    number = dialout.checked([fields.text("phone")])[0]
    leg = (fields.text("callLeg") or "callee").strip()
    if leg not in ("caller", "callee"):
        raise APIError(400, "bad_field", "callLeg must be caller or callee.")
    transfer = {"phoneNumber": number, "callLeg": leg, "holdMusicUrl": fields.audio_url("holdMusicUrl")}
    call = records.call_in_progress(session_id) if SESSION_ID.fullmatch(session_id) else None
    # A dialer's own calls only: another key's live call answers exactly as an unknown or ended one,
    # so a dialer cannot tell which ids are live.
    if call is None or scope not in (None, call.requested_by):
        raise APIError(409, "call_not_in_progress",
                       f"No call in progress has sessionId {session_id[:128]!r}: only a live call can be transferred.")
    return transfer


def transfer(session_id, transfer, label):
    """Count the transfer against the key `label`'s and the number's limits, ask AT, note it on the call; AT's answer."""
    count_dialouts(label, [transfer["phoneNumber"]])
    client = get_client()
    try:
        answer = client.transfer(session_id, transfer["phoneNumber"], transfer["callLeg"], transfer["holdMusicUrl"])
    except ATError as exc:
        if exc.code == "at_transfer_failed":
            _note(session_id, transfer, exc.response["callTransferResponse"], label)
        raise
    _note(session_id, transfer, answer["callTransferResponse"], label)
    annotate(request.environ, session_id, "outcome=transferred")
    return answer


def _note(session_id, transfer, outcome, label):
    """Note the transfer on its call; a store that is away loses the note, never the answer."""
    try:
        records.record_transfer(session_id, transfer, outcome, label)
    except StoreUnavailable as exc:
        log.error("transfer of %s done but not recorded: %s", session_id, exc)
