"""The call history API's queries: filtered pages of calls, one call with its events, and figures."""

import base64
import binascii
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from voice.callbacks import FINAL_STATES
from voice.store.db import db, guarded
from voice.phone import InvalidPhone, normalise
from voice.store.records import Call, Event

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class BadFilter(ValueError):
    """A query parameter of the history API that cannot be used; the message says which and why."""


def parse_time(name, value):
    """An ISO 8601 query parameter as an aware UTC datetime (naive values are taken as UTC)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadFilter(f"{name} must be an ISO 8601 date or time, e.g. 2026-11-27T08:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _window(args):
    """The since/until bounds of a request, checked."""
    since = parse_time("since", args["since"]) if args.get("since") else None
    until = parse_time("until", args["until"]) if args.get("until") else None
    if since and until and since > until:
        raise BadFilter("since must not be after until")
    return since, until


def _in_window(query, since, until):
    if since is not None:
        query = query.where(Call.started_at >= since)
    if until is not None:
        query = query.where(Call.started_at < until)
    return query


def encode_cursor(call_id):
    """An opaque cursor that resumes the listing after the call with `call_id`."""
    return base64.urlsafe_b64encode(f"v1:{call_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor):
    """The call id a cursor resumes after; BadFilter if it was not made by encode_cursor."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, number = text.partition(":")
        if version != "v1" or not number.isdigit():
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadFilter("cursor is not one this API gave out; use the 'next' value of a previous page") from None


def list_calls(args, requested_by=None):
    """A page of calls, newest first, and the cursor of the next page (None on the last); only `requested_by`'s if given."""
    query = sa.select(Call)
    if requested_by is not None:
        query = query.where(Call.requested_by == requested_by)
    if args.get("phone"):
        try:
            phone = normalise(args["phone"])
        except InvalidPhone as exc:
            raise BadFilter(str(exc)) from None
        query = query.where(sa.or_(Call.caller_number == phone, Call.destination_number == phone))
    if args.get("direction"):
        direction = args["direction"].strip().capitalize()
        if direction not in ("Inbound", "Outbound"):
            raise BadFilter("direction must be Inbound or Outbound")
        query = query.where(Call.direction == direction)
    if args.get("state"):
        query = query.where(Call.state == args["state"].strip())
    if args.get("client"):
        query = query.where(Call.client_name == args["client"].strip())
    if args.get("clientRequestId"):
        query = query.where(Call.client_request_id == args["clientRequestId"].strip())
    query = _in_window(query, *_window(args))
    limit = _limit(args.get("limit"))
    if args.get("cursor"):
        query = query.where(Call.id < decode_cursor(args["cursor"]))
    query = query.order_by(Call.id.desc()).limit(limit + 1)

    calls = guarded(lambda: db.session.execute(query).scalars().all())
    following = encode_cursor(calls[limit - 1].id) if len(calls) > limit else None
    return [call_json(call) for call in calls[:limit]], following


def _limit(raw):
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadFilter(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def call_with_events(session_id, requested_by=None):
    """A call and its events in arrival order, as JSON-ready dicts; None if unknown (or not `requested_by`'s)."""

    def work():
        call = db.session.execute(sa.select(Call).where(Call.session_id == session_id)).scalar_one_or_none()
        if call is None or requested_by not in (None, call.requested_by):
            return None
        events = db.session.execute(
            sa.select(Event).where(Event.call_id == call.id).order_by(Event.id)
        ).scalars().all()
        return {"call": call_json(call), "events": [event_json(event) for event in events]}

    return guarded(work)


def stats(args, requested_by=None):
    """Counts by state and hangup cause, answer rate, durations and cost per currency (of `requested_by`'s calls)."""
    since, until = _window(args)
    answered = sa.or_(Call.answered_at.is_not(None), Call.duration_seconds > 0)
    finished = Call.state.in_(sorted(FINAL_STATES))

    def scoped(*columns):
        query = _in_window(sa.select(*columns), since, until)
        return query if requested_by is None else query.where(Call.requested_by == requested_by)

    def work():
        run = db.session.execute
        totals = run(scoped(
            sa.func.count(Call.id),
            sa.func.count(Call.id).filter(finished),
            sa.func.count(Call.id).filter(finished, answered),
            sa.func.coalesce(sa.func.sum(Call.duration_seconds), 0),
            sa.func.count(Call.id).filter(Call.duration_seconds > 0),
        )).one()
        by_state = run(scoped(Call.state, sa.func.count(Call.id)).group_by(Call.state)).all()
        by_cause = run(scoped(Call.hangup_cause, sa.func.count(Call.id))
                       .where(Call.hangup_cause.is_not(None)).group_by(Call.hangup_cause)).all()
        costs = run(scoped(Call.currency_code, sa.func.sum(Call.amount))
                    .where(Call.amount.is_not(None)).group_by(Call.currency_code)).all()
        return totals, by_state, by_cause, costs

    (total, ended, ended_answered, seconds, with_duration), by_state, by_cause, costs = guarded(work)
    return {
        "since": _iso(since),
        "until": _iso(until),
        "calls": total,
        "byState": {state or "Unknown": count for state, count in by_state},
        "byHangupCause": {cause: count for cause, count in by_cause},
        "finished": ended,
        "answered": ended_answered,
        "answerRate": round(ended_answered / ended, 4) if ended else None,
        "totalDurationSeconds": int(seconds),
        "averageDurationSeconds": round(int(seconds) / with_duration, 1) if with_duration else None,
        "costByCurrency": {currency or "Unknown": float(amount) for currency, amount in costs},
    }


def _iso(moment):
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _number(amount):
    return float(amount) if amount is not None else None


def call_json(call):
    """A call as the history API shows it."""
    return {
        "sessionId": call.session_id,
        "direction": call.direction,
        "callerNumber": call.caller_number,
        "destinationNumber": call.destination_number,
        "state": call.state,
        "status": call.status,
        "startedAt": _iso(call.started_at),
        "answeredAt": _iso(call.answered_at),
        "endedAt": _iso(call.ended_at),
        "durationSeconds": call.duration_seconds,
        "amount": _number(call.amount),
        "currencyCode": call.currency_code,
        "hangupCause": call.hangup_cause,
        "lastDigits": call.last_digits,
        "recordingUrls": call.recording_urls or [],
        "requestedBy": call.requested_by,
        "queueStatus": call.queue_status,
        "clientRequestId": call.client_request_id,
        "clientName": call.client_name,
        "transfer": {
            "to": call.transferred_to,
            "state": call.transfer_state,
            "hangupCause": call.transfer_hangup_cause,
        } if call.transferred_to or call.transfer_state or call.transfer_hangup_cause else None,
        "queue": {
            "name": call.queue_name,
            "waitedSeconds": call.queue_seconds,
            "dequeuedTo": call.dequeued_to,
            "dequeuedAt": _iso(call.dequeued_at),
        } if call.dequeued_to or call.queue_seconds is not None or call.queue_name else None,
    }


def event_json(event):
    """An event as the history API shows it."""
    return {
        "type": event.type,
        "source": event.source,
        "receivedAt": _iso(event.received_at),
        "payload": event.payload,
        "params": event.params,
        "problems": event.problems or [],
    }


LIVE_HOURS = 6


def live_calls(requested_by=None, limit=50):
    """Calls not yet ended that started in the last LIVE_HOURS hours, newest first, as JSON-ready dicts."""
    since = datetime.now(timezone.utc) - timedelta(hours=LIVE_HOURS)
    query = (sa.select(Call).where(Call.started_at >= since, Call.ended_at.is_(None),
                                   sa.or_(Call.state.is_(None), Call.state.not_in(sorted(FINAL_STATES))))
             .order_by(Call.id.desc()).limit(limit))
    if requested_by is not None:
        query = query.where(Call.requested_by == requested_by)
    return [call_json(call) for call in guarded(lambda: db.session.execute(query).scalars().all())]


def per_bucket(since, until, hourly, requested_by=None):
    """Calls and answered calls per hour (or day) in [since, until), as [(bucket start, calls, answered)]."""
    column = Call.started_at
    if db.engine.dialect.name == "postgresql":
        bucket = sa.func.date_trunc("hour" if hourly else "day", column)
    else:
        bucket = sa.func.strftime("%Y-%m-%d %H:00:00" if hourly else "%Y-%m-%d 00:00:00", column)
    answered = sa.or_(Call.answered_at.is_not(None), Call.duration_seconds > 0)
    query = _in_window(sa.select(bucket, sa.func.count(Call.id), sa.func.count(Call.id).filter(answered)),
                       since, until).group_by(bucket).order_by(bucket)
    if requested_by is not None:
        query = query.where(Call.requested_by == requested_by)
    rows = guarded(lambda: db.session.execute(query).all())
    return [(start if isinstance(start, datetime) else datetime.fromisoformat(start), calls, ok)
            for start, calls, ok in rows]
