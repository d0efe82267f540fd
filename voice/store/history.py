"""The call history API's queries: filtered pages of calls, one call with its events, and figures."""

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from voice import shapes
from voice.calls import STORED
from voice.recordings.models import recordings_json, rows_by_call
from voice.store.db import db, guarded, iso
from voice.store.overview import grouped, in_window, totals
from voice.store.records import Call, Event, in_progress


def list_calls(wanted, requested_by=None):
    """A page of the calls `wanted` (a CallFilter), newest first, and the id the next page starts below (None on
    the last); only `requested_by`'s if given."""
    query = sa.select(Call)
    if requested_by is not None:
        query = query.where(Call.requested_by == requested_by)
    if wanted.phone is not None:
        query = query.where(sa.or_(Call.caller_number == wanted.phone, Call.destination_number == wanted.phone))
    for column, value in ((Call.direction, wanted.direction), (Call.state, wanted.state),
                          (Call.client_name, wanted.client), (Call.client_request_id, wanted.client_request_id)):
        if value is not None:
            query = query.where(column == value)
    query = in_window(query, wanted.since, wanted.until)
    if wanted.before_id is not None:
        query = query.where(Call.id < wanted.before_id)
    query = query.order_by(Call.id.desc()).limit(wanted.limit + 1)

    calls, kept = guarded(lambda: _with_recordings(db.session.execute(query).scalars().all(),
                                                   wanted.limit))
    following = calls[wanted.limit - 1].id if len(calls) > wanted.limit else None
    return [call_json(call, kept.get(call.id, ())) for call in calls[:wanted.limit]], following


def _with_recordings(calls, limit=None):
    """The calls, and {call id: its recordings' rows} of the first `limit` of them that have recording links."""
    return calls, rows_by_call([call.id for call in calls[:limit] if call.recording_urls])


def call_with_events(session_id, requested_by=None):
    """A call and its events in arrival order, as JSON-ready dicts; None if unknown (or not `requested_by`'s)."""

    if not shapes.SESSION_ID.fullmatch(session_id):
        return None  # no call has such an id, and PostgreSQL would refuse some (a NUL) as a query

    def work():
        call = visible_call(session_id, requested_by)
        if call is None:
            return None
        events = db.session.execute(
            sa.select(Event).where(Event.call_id == call.id).order_by(Event.id)
        ).scalars().all()
        return {"call": call_json(call), "events": [event_json(event) for event in events]}

    return guarded(work)


def visible_call(session_id, requested_by=None):
    """The call `session_id` names if its reader may see it (a dialer, `requested_by`, only the calls it placed),
    else None; in the caller's transaction."""
    if not shapes.SESSION_ID.fullmatch(session_id):
        return None
    call = db.session.execute(sa.select(Call).where(Call.session_id == session_id)).scalar_one_or_none()
    return call if call is not None and requested_by in (None, call.requested_by) else None


def stats(since, until, requested_by=None):
    """Counts by state and hangup cause, answer rate, durations and cost per currency of the calls that started in
    [since, until) (either may be None), only `requested_by`'s if given."""
    figures = totals(grouped(since, until, None, requested_by), since, until)
    del figures["buckets"]
    return figures


# How a kind of value is shown in JSON, where it is not as stored.
_SHOWN = {"time": iso, "amount": lambda amount: float(amount) if amount is not None else None}


def call_json(call, recordings=None):
    """A call as the history API shows it: what the service knows, then the fields AT sent (voice/calls.py), then
    each recording and whether it is archived (`recordings`: its rows, read here when not given)."""
    body = dict.fromkeys(_ORDER)  # the keys' order as the API has always given them; keys added since come after
    body.update({
        "sessionId": call.session_id,
        "direction": call.direction,
        "callerNumber": call.caller_number,
        "destinationNumber": call.destination_number,
        "state": call.state,
        "answeredAt": iso(call.answered_at),
        "endedAt": iso(call.ended_at),
        "lastDigits": call.last_digits,
        "recordingUrls": call.recording_urls or [],
        "requestedBy": call.requested_by,
        "queueStatus": call.queue_status,
        "clientName": call.client_name,
    })
    groups = {}
    for field in STORED:
        value = getattr(call, field.column)
        value = _SHOWN[field.kind](value) if field.kind in _SHOWN else value
        group, _, key = field.json.rpartition(".")
        if group:
            groups.setdefault(group, {})[key] = value
        else:
            body[key] = value
    # A group (transfer, queue, dial) is shown when AT said anything of it (a queue: its name, wait or taker).
    body.update({name: values if any(values.get(key) is not None for key in _SHOWS.get(name, values)) else None
                 for name, values in groups.items()})
    if recordings is None and call.recording_urls:
        recordings = rows_by_call([call.id]).get(call.id, ())
    body["recordings"] = recordings_json(call.session_id, call.recording_urls, recordings or ())
    return body


_ORDER = ("sessionId", "direction", "callerNumber", "destinationNumber", "state", "status", "startedAt", "answeredAt",
          "endedAt", "durationSeconds", "amount", "currencyCode", "hangupCause", "lastDigits", "recordingUrls",
          "requestedBy", "queueStatus", "clientRequestId", "clientName", "transfer", "queue")
_SHOWS = {"queue": ("name", "waitedSeconds", "dequeuedTo")}


def labelled_values(call):
    """(label, value) of each labelled field of voice/calls.py's table that a call's JSON holds a value for."""
    found = []
    for field in STORED:
        group, _, key = field.json.rpartition(".")
        value = (call.get(group) or {}).get(key) if group else call.get(key)
        if field.label and value is not None:
            found.append((field.label, value))
    return found


def event_json(event):
    """An event as the history API shows it."""
    return {
        "type": event.type,
        "source": event.source,
        "receivedAt": iso(event.received_at),
        "payload": event.payload,
        "params": event.params,
        "problems": event.problems or [],
    }


LIVE_HOURS = 6


def live_calls(requested_by=None, limit=50):
    """Calls not yet ended that started in the last LIVE_HOURS hours, newest first, as JSON-ready dicts."""
    since = datetime.now(timezone.utc) - timedelta(hours=LIVE_HOURS)
    # Ordered by start, so the started_at index serves the window and the order alike.
    query = (sa.select(Call).where(Call.started_at >= since, in_progress())
             .order_by(Call.started_at.desc(), Call.id.desc()).limit(limit))
    if requested_by is not None:
        query = query.where(Call.requested_by == requested_by)
    calls, kept = guarded(lambda: _with_recordings(db.session.execute(query).scalars().all()))
    return [call_json(call, kept.get(call.id, ())) for call in calls]
