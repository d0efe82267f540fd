"""The views: read the request, hand it to the module that knows, render the answer."""

import functools
import logging
from pathlib import Path

from flask import current_app, g, request, send_from_directory

from voice import bp, callbacks, dialout, fields, metrics, shapes
from voice.flows import ivr
from voice.flows.clients import client_address
from voice.flows.document import CLIENT_NAME
from voice.security import client_name_allowed
from voice.access import note as log_note
from voice.at.client import ATError, get_client
from voice.auth import ADMIN, DIAL, READ, WATCH, require_role, require_webhook_auth, scoped_label
from voice.errors import APIError, apology, xml_response, xml_route
from voice.phone import InvalidPhone, mask, normalise
from voice.ratelimit import count_dialouts
from voice.store import history, records
from voice.store.db import StoreUnavailable

log = logging.getLogger(__name__)


@bp.get("/")
def status():
    """Say the service is up, and whether AT is simulated."""
    body = {"service": "voice", "status": "ready"}
    if current_app.config["VOICE_MODE"] == "simulated":
        body["mode"] = "simulated"
    return body


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 contract of these routes (voice/openapi.json)."""
    return send_from_directory(Path(__file__).parent, "openapi.json", mimetype="application/json")


def dial_targets(view):
    """Read and check the numbers to dial (up to 10) and the clientRequestId, before any limit is counted."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        g.dial_numbers = dialout.checked(fields.numbers("phone"))
        g.client_request_id = fields.client_request_id()
        return view(*args, **kwargs)

    return wrapped


@bp.route("/invoke-call", methods=["GET", "POST"])
@require_role(*DIAL)
@dial_targets
def invoke_call():
    """Dial the `phone` (or several) the client gives, from our AT number."""
    numbers, request_id = g.dial_numbers, g.client_request_id
    answer = dialout.place(numbers, g.api_key_label, request_id)
    if len(numbers) == 1:
        body = {"message": f"Call initiated to {numbers[0]}", "response": answer}
    else:
        entries = dialout.entries_of(answer)
        queued = sum(entry.get("status") == "Queued" for entry in entries)
        body = {"message": f"Calls initiated to {queued} of {len(numbers)} numbers",
                "calls": [{key: entry.get(key) for key in ("phoneNumber", "status", "sessionId")} for entry in entries],
                "response": answer}
    if request_id is not None:
        body["clientRequestId"] = request_id
    if current_app.config["VOICE_MODE"] == "simulated":
        body["simulated"] = True
    return body


def transfer_target(view):
    """Read and check a transfer's number, leg and hold music, and that its call is in progress, before limits."""

    @functools.wraps(view)
    def wrapped(session_id, *args, **kwargs):
        g.dial_numbers = dialout.checked([fields.text("phone")])
        leg = (fields.text("callLeg") or "callee").strip()
        if leg not in ("caller", "callee"):
            raise APIError(400, "bad_field", "callLeg must be caller or callee.")
        g.transfer = {"phoneNumber": g.dial_numbers[0], "callLeg": leg, "holdMusicUrl": fields.audio_url("holdMusicUrl")}
        call = records.call_in_progress(session_id) if callbacks.SESSION_ID.fullmatch(session_id) else None
        # A dialer's own calls only: another key's live call answers exactly as an unknown or ended one,
        # so a dialer cannot tell which ids are live.
        if call is None or scoped_label() not in (None, call.requested_by):
            raise APIError(409, "call_not_in_progress",
                           f"No call in progress has sessionId {session_id[:128]!r}: only a live call can be transferred.")
        return view(session_id, *args, **kwargs)

    return wrapped


@bp.post("/calls/<session_id>/transfer")
@require_role(*DIAL)
@transfer_target
def transfer_call(session_id):
    """Move a live call to another number through AT's /callTransfer (a paid leg, limited like a dial-out)."""
    asked = g.transfer
    count_dialouts(g.api_key_label, g.dial_numbers)
    client = get_client()
    try:
        answer = client.transfer(session_id, asked["phoneNumber"], asked["callLeg"], asked["holdMusicUrl"])
    except ATError as exc:
        if exc.code == "at_transfer_failed":
            _record_transfer(session_id, asked, exc.response["callTransferResponse"])
        raise
    _record_transfer(session_id, asked, answer["callTransferResponse"])
    log_note(request.environ, session_id, "outcome=transferred")
    return {"message": f"Call {session_id} transferred to {asked['phoneNumber']}", "sessionId": session_id,
            "phoneNumber": asked["phoneNumber"], "callLeg": asked["callLeg"], "response": answer}


def _record_transfer(session_id, asked, outcome):
    """Note the transfer on its call; a store that is away loses the note, never the answer."""
    try:
        records.record_transfer(session_id, asked, outcome, g.api_key_label)
    except StoreUnavailable as exc:
        log.error("transfer of %s done but not recorded: %s", session_id, exc)


@bp.get("/queue")
@require_role(*WATCH)
def queue_status():
    """How many callers wait in the queues of our AT numbers (default AT_VOICE_NUMBER)."""
    client = get_client()
    numbers = [ours(raw) for raw in fields.numbers("phone", limit=MAX_QUEUE_NUMBERS)] or [client.voice_number]
    entries = client.queue_status(list(dict.fromkeys(numbers)))
    return {"queues": [{"phoneNumber": entry.get("phoneNumber"), "queueName": entry.get("queueName") or "",
                        "numCalls": _count(entry.get("numCalls"))} for entry in entries]}


@bp.post("/media")
@require_role(*ADMIN)
def upload_media():
    """Have AT fetch and cache an audio file, so its first <Play> or hold music starts at once."""
    url = fields.audio_url("url", required=True)
    raw = fields.text("phone")
    client = get_client()
    phone = ours(raw) if raw else client.voice_number
    client.upload_media(url, phone)
    return {"message": "Africa's Talking has the file; its first play starts at once.", "url": url,
            "phoneNumber": phone}


@bp.post("/clients/token")
@require_role(*ADMIN)
def client_token():
    """A capability token from AT that lets a browser or app client (AT's WebRTC SDK) make and take calls."""
    name = (fields.text("clientName") or "").strip()
    if not CLIENT_NAME.fullmatch(name):
        raise APIError(400, "bad_field", "clientName is required: letters, digits and _, up to 64.")
    incoming, outgoing = fields.flag("incoming", True), fields.flag("outgoing", True)
    expire = fields.integer("expire", 3600, MIN_TOKEN_SECONDS, MAX_TOKEN_SECONDS)
    if not client_name_allowed(current_app.config["CLIENT_NAME_RULES"], g.api_key_label, name):
        raise APIError(403, "client_not_allowed", f"This key may not mint tokens for the client {name!r} "
                       "(VOICE_CLIENT_NAMES).")
    log_note(request.environ, detail="client=" + name)
    answer = get_client().capability_token(name, incoming, outgoing, expire)
    body = {"token": answer["token"], "clientName": name, "lifetimeSeconds": _count(answer.get("lifeTimeSec")) or expire,
            "incoming": incoming, "outgoing": outgoing, "address": client_address(name)}
    if current_app.config["VOICE_MODE"] == "simulated":
        body["simulated"] = True
    return body


MIN_TOKEN_SECONDS, MAX_TOKEN_SECONDS = 60, 86400
MAX_QUEUE_NUMBERS = 10


def ours(raw):
    """`raw` as one of this service's AT numbers (AT_VOICE_NUMBER, AT_VOICE_NUMBERS), or a 400."""
    try:
        number = normalise(raw)
    except InvalidPhone as exc:
        raise APIError(400, "invalid_phone", str(exc)) from None
    if number not in current_app.config["AT_NUMBERS"]:
        raise APIError(400, "not_our_number",
                       "phone must be one of this service's AT numbers (AT_VOICE_NUMBER or AT_VOICE_NUMBERS).")
    return number


def _count(value):
    """A count in AT's answer (a string or a JSON number), 0 when it is not a plain one."""
    return shapes.whole(value if isinstance(value, str) else str(value), 0, 10 ** 9) or 0


@bp.post("/instruct")
@require_webhook_auth
@xml_route
def instruct():
    """Answer AT's voice callback with the next call-flow XML, or note the call's end."""
    req = request._get_current_object()  # read once: every lookup through the proxy costs
    try:
        note = callbacks.parse_request(req, current_app.config["AT_USERNAME"])
    except callbacks.Malformed as exc:
        log.warning("instruct request malformed: %s; answered with the apology", exc)
        return apology(exc.status)
    _note_for_log(req, note)
    app = current_app._get_current_object()
    try:
        _record(app, req, note, "instruct")
    except StoreUnavailable as exc:
        log.error("instruct for %s not recorded: %s", note.session_id, exc)
        if not note.is_active:
            raise  # no caller is listening: the 503 makes AT send the final figures again
        # The caller still hears the flow; only the record of this step is missing.
    if not note.is_active:
        _log_final(note)
        return xml_response("")
    log_note(req.environ, detail="step=" + req.args.get("step", "start")[:64])
    try:
        return xml_response(ivr.answer(app.extensions["voice_flow"], note, req.args, req.form))
    except ivr.FlowProblem as exc:
        log.error("call %s: %s; answered with the apology", note.session_id, exc)
        return apology()


@bp.post("/events")
@require_webhook_auth
def events():
    """Take one of AT's call event notifications."""
    req = request._get_current_object()
    try:
        note = callbacks.parse_request(req, current_app.config["AT_USERNAME"])
    except callbacks.Malformed as exc:
        raise APIError(exc.status, "bad_event", str(exc)) from None
    _note_for_log(req, note)
    app = current_app._get_current_object()
    _record(app, req, note, "events")
    if note.is_final:
        _log_final(note)
    return app.response_class("OK", mimetype="text/plain")


@bp.get("/calls")
@require_role(*READ)
def list_calls():
    """Calls, newest first, filtered by phone, direction, state and time; a page at a time."""
    calls, following = history.list_calls(request.args, scoped_label())
    return {"calls": calls, "next": following}


@bp.get("/calls/stats")
@require_role(*READ)
def call_stats():
    """Counts, answer rate, durations and cost of the calls in a time window."""
    return history.stats(request.args, scoped_label())


@bp.get("/calls/<session_id>")
@require_role(*READ)
def call_detail(session_id):
    """One call and its events in arrival order."""
    found = history.call_with_events(session_id, scoped_label())
    if found is None:
        raise APIError(404, "not_found", f"No call with sessionId {session_id!r} is recorded.")
    return found


def _record(app, req, note, source):
    """Store the notification; a duplicate is noted on the log line."""
    # Only AT's inbound calls can be new to us: a callback that does not say Inbound must be one we placed.
    if app.config["VOICE_VERIFY_SESSIONS"] and note.direction != "Inbound":
        if not records.placed_by_us(note.session_id):
            metrics.refused("unknown_session")
            log.warning("%s refused: outbound session %s was not placed by this service (from %s)",
                        source, note.session_id, req.remote_addr)
            raise APIError(403, "unknown_session", "This outbound sessionId was not created by this service.")
    params = {key: value for key, value in req.args.items() if key != "token"}
    new = records.record_notification(note, source, records.payload_of(req.form), params)
    if app.config["VOICE_METRICS"]:
        metrics.observe_notification(note, source, records.event_type(note), new)
    if not new:
        log_note(req.environ, detail="duplicate")


def _note_for_log(req, note):
    """Put the call's id and masked numbers on this request's log line."""
    caller = mask(note.caller)
    detail = f"state={note.state or '-'} caller={caller}"
    if note.problems:
        detail += " dropped=" + ";".join(note.problems)
    log_note(req.environ, note.session_id, detail, caller=caller, state=note.state)


def _log_final(note):
    """Log the final figures of a call."""
    log.info(
        "call %s ended: state=%s duration=%ss cost=%s %s hangup=%s",
        note.session_id, note.state, note.duration, note.amount, note.currency or "", note.hangup_cause,
    )
