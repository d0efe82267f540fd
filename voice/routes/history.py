"""The call history API's views: calls a page at a time, one call with its events, its recordings, and figures."""

from flask import Blueprint, request

from voice import filters
from voice.auth import READ, require_role, scoped_label
from voice.errors import APIError
from voice.recordings import playback
from voice.store import history

bp = Blueprint("history", __name__, url_prefix="/voice")


@bp.get("/calls")
@require_role(*READ)
def list_calls():
    """Calls, newest first, filtered by phone, direction, state and time; a page at a time."""
    calls, following = history.list_calls(filters.call_filter(request.args), scoped_label())
    return {"calls": calls, "next": filters.encode_cursor(following) if following else None}


@bp.get("/calls/stats")
@require_role(*READ)
def call_stats():
    """Counts, answer rate, durations and cost of the calls in a time window."""
    return history.stats(*filters.window(request.args), scoped_label())


@bp.get("/calls/<session_id>")
@require_role(*READ)
def call_detail(session_id):
    """One call and its events in arrival order."""
    found = history.call_with_events(session_id, scoped_label())
    if found is None:
        raise APIError(404, "not_found", f"No call with sessionId {session_id!r} is recorded.")
    return found


@bp.get("/calls/<session_id>/recordings/<int:n>")
@require_role(*READ)
def call_recording(session_id, n):
    """The kept copy of a call's recording `n` (from 1), with Range requests for seeking."""
    return playback.response(session_id, n, scoped_label())
