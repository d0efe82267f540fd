"""The views: read the request, hand it to the module that knows, render the answer."""

import functools
import logging
from pathlib import Path

from flask import current_app, g, request, send_from_directory

from voice import bp, callbacks, ivr, metrics
from voice.access import note as log_note
from voice.auth import require_api_key, require_webhook_auth
from voice.at.client import get_client
from voice.errors import APIError, apology, xml_response, xml_route
from voice.phone import check_dialable, mask, normalise
from voice.ratelimit import destination, limiter, per_destination_limit, per_key_limit
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


def dial_target(view):
    """Read the number to dial and check it may be dialled, before any limit is counted."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        phone = normalise(_client_field("phone"))
        masked = mask(phone)
        log_note(request.environ, detail="to=" + masked, to=masked)
        check_dialable(phone, current_app.config["ALLOWED_COUNTRY_CODES"])
        g.dial_to = phone
        return view(*args, **kwargs)

    return wrapped


@bp.route("/invoke-call", methods=["GET", "POST"])
@require_api_key
@dial_target
@limiter.limit(per_key_limit, scope="dialout-per-key")
@limiter.limit(per_destination_limit, key_func=destination, scope="dialout-per-destination")
def invoke_call():
    """Dial the `phone` the client gives, from our AT number."""
    phone = g.dial_to
    client = get_client()
    answer = client.call(phone)
    for entry in answer.get("entries") or []:
        metrics.child(metrics.DIALOUTS, "queued", metrics.known(entry.get("status"), metrics.ENTRY_STATUSES)).inc()
    log_note(request.environ, detail="outcome=queued")
    try:
        log_note(request.environ, ",".join(records.record_dialout(answer, client.voice_number, g.api_key_label)) or "-")
    except StoreUnavailable as exc:
        # The call is placed: answering an error would invite a retry that dials twice. AT's
        # callbacks still create the record when the store is back.
        log.error("dial-out to %s placed but not recorded: %s", mask(phone), exc)
    body = {"message": f"Call initiated to {phone}", "response": answer}
    if current_app.config["VOICE_MODE"] == "simulated":
        body["simulated"] = True
    return body


@bp.post("/instruct")
@require_webhook_auth
@xml_route
def instruct():
    """Answer AT's voice callback with the next call-flow XML, or note the call's end."""
    req = request._get_current_object()  # read once: every lookup through the proxy costs
    try:
        note = callbacks.parse_request(req)
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
        note = callbacks.parse_request(req)
    except callbacks.Malformed as exc:
        raise APIError(exc.status, "bad_event", str(exc)) from None
    _note_for_log(req, note)
    app = current_app._get_current_object()
    _record(app, req, note, "events")
    if note.is_final:
        _log_final(note)
    return app.response_class("OK", mimetype="text/plain")


@bp.get("/calls")
@require_api_key
def list_calls():
    """Calls, newest first, filtered by phone, direction, state and time; a page at a time."""
    calls, following = history.list_calls(request.args)
    return {"calls": calls, "next": following}


@bp.get("/calls/stats")
@require_api_key
def call_stats():
    """Counts, answer rate, durations and cost of the calls in a time window."""
    return history.stats(request.args)


@bp.get("/calls/<session_id>")
@require_api_key
def call_detail(session_id):
    """One call and its events in arrival order."""
    found = history.call_with_events(session_id)
    if found is None:
        raise APIError(404, "not_found", f"No call with sessionId {session_id!r} is recorded.")
    return found


def _record(app, req, note, source):
    """Store the notification; a duplicate is noted on the log line."""
    if app.config["VOICE_VERIFY_SESSIONS"] and note.direction == "Outbound":
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


MAX_CLIENT_FIELD = 64


def _client_field(name):
    """A field of a dial-out request, from the query string, a form or a JSON object; given once."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise APIError(400, "bad_json", "The body must be a JSON object, e.g. {\"phone\": \"254712345678\"}.")
        values = [body[name]] if name in body else request.args.getlist(name)
    elif request.content_length and request.mimetype not in callbacks.FORM_TYPES:
        raise APIError(415, "unsupported_media_type", "Send the body as a form or as a JSON object.")
    else:
        values = request.args.getlist(name) + request.form.getlist(name)
    if len(values) > 1:
        raise APIError(400, "duplicate_field", f"{name} is given more than once.")
    if not values or values[0] is None:
        return None
    if not isinstance(values[0], (str, int)) or isinstance(values[0], bool):
        raise APIError(400, "invalid_phone" if name == "phone" else "bad_field", f"{name} must be a string.")
    value = str(values[0])
    if len(value) > MAX_CLIENT_FIELD:
        raise APIError(400, "invalid_phone" if name == "phone" else "bad_field", f"{name} is too long.")
    return value


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
