"""AT's webhooks: the voice callback answered with call-flow XML, and the events URL."""

import logging

from flask import Blueprint, current_app, request

from voice import callbacks, notifications
from voice.campaigns import calling
from voice.access import annotate
from voice.auth import require_webhook_auth
from voice.errors import APIError, apology, xml_response, xml_route
from voice.flows import ivr
from voice.store.db import StoreUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/voice", template_folder="../templates")


@bp.post("/instruct")
@require_webhook_auth
@xml_route
def instruct():
    """Answer AT's voice callback with the next call-flow XML, or note the call's end."""
    req = request._get_current_object()  # read once: every lookup through the proxy costs
    try:
        note = notifications.read(req)
    except callbacks.Malformed as exc:
        log.warning("instruct request malformed: %s; answered with the apology", exc)
        return apology(exc.status)
    app = current_app._get_current_object()
    try:
        notifications.take(app, req, note, "instruct")
    except StoreUnavailable as exc:
        log.error("instruct for %s not recorded: %s", note.session_id, exc)
        if not note.is_active:
            raise  # no caller is listening: the 503 makes AT send the final figures again
        # The caller still hears the flow; only the record of this step is missing.
    if not note.is_active:
        return xml_response("")
    annotate(req.environ, detail="step=" + req.args.get("step", "start")[:64])
    try:
        return xml_response(ivr.answer(app.extensions["voice_flow"], note, req.args, req.form,
                                       calling.context_for(note)))
    except ivr.FlowProblem as exc:
        log.error("call %s: %s; answered with the apology", note.session_id, exc)
        return apology()


@bp.post("/events")
@require_webhook_auth
def events():
    """Take one of AT's call event notifications."""
    req = request._get_current_object()
    try:
        note = notifications.read(req)
    except callbacks.Malformed as exc:
        raise APIError(exc.status, "bad_event", str(exc)) from None
    app = current_app._get_current_object()
    notifications.take(app, req, note, "events")
    return app.response_class("OK", mimetype="text/plain")
