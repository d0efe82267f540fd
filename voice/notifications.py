"""Taking AT's notifications, for both webhooks: read, checked against our own calls, stored, counted, noted."""

import logging

from flask import current_app

from voice import callbacks, metrics, settings
from voice.access import annotate
from voice.errors import APIError
from voice.phone import mask
from voice.store import records

log = logging.getLogger(__name__)


def read(req):
    """The Notification an AT callback carries (raises callbacks.Malformed); its id and details go on the log line."""
    note = callbacks.parse_request(req, current_app.config["AT_USERNAME"], settings.current().default_country_code)
    caller = mask(note.caller)
    detail = f"state={note.state or '-'} caller={caller}"
    if note.problems:
        detail += " dropped=" + ";".join(note.problems)
    annotate(req.environ, note.session_id, detail, caller=caller, state=note.state)
    return note


def take(app, req, note, source):
    """Store `note`, committed before this returns, and count it; a duplicate is noted on the log line.

    With VOICE_VERIFY_SESSIONS, a notification that does not say Inbound must be of a call we placed
    (403 `unknown_session`). A database failure raises StoreUnavailable.
    """
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
        annotate(req.environ, detail="duplicate")
    if note.is_final:
        log.info("call %s ended: state=%s duration=%ss cost=%s %s hangup=%s", note.session_id, note.state,
                 note.duration, note.amount, note.currency or "", note.hangup_cause)
