"""The call history API's queries: filtered pages of calls, one call with its events, and figures."""

import base64
import binascii
import threading
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from voice.callbacks import FINAL_STATES
from voice import shapes
from voice.store.db import db, guarded
from voice.phone import InvalidPhone, normalise
from voice.store.records import Call, Event

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_ID = 2 ** 63 - 1  # the largest id either database stores


class BadFilter(ValueError):
    """A query parameter of the history API that cannot be used; the message says which and why."""


def parse_time(name, value):
    """An ISO 8601 query parameter as an aware UTC datetime (naive values are taken as UTC)."""
    try:
        return shapes.when(name, value)
    except shapes.BadValue as exc:
        raise BadFilter(str(exc)) from None


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
        if version != "v1":
            raise ValueError
        return shapes.counted("cursor", number, 1, MAX_ID)
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
    try:
        return shapes.counted("limit", raw, 1, MAX_LIMIT)
    except shapes.BadValue as exc:
        raise BadFilter(str(exc)) from None


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
    figures = _fold(_grouped(since, until, None, requested_by), since, until)
    del figures["buckets"]
    return figures


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
    # Ordered by start, so the started_at index serves the window and the order alike.
    query = (sa.select(Call).where(Call.started_at >= since, Call.ended_at.is_(None),
                                   sa.or_(Call.state.is_(None), Call.state.not_in(sorted(FINAL_STATES))))
             .order_by(Call.started_at.desc(), Call.id.desc()).limit(limit))
    if requested_by is not None:
        query = query.where(Call.requested_by == requested_by)
    return [call_json(call) for call in guarded(lambda: db.session.execute(query).scalars().all())]


class Overview:
    """The console's figures over a window, grouped per hour or day in one pass over the calls.

    Whole days before today are kept per process once computed: a day's calls rarely change after
    it ends, and when one does (a late notification, a prune), the events that arrived since and the
    number of calls say so, and those days are computed again. Today and hourly windows are always
    read fresh.
    """

    def __init__(self):
        self._days = {}
        self._lock = threading.Lock()
        self._mark = None
        self._warming = set()

    def warm(self, app, requested_by=None, days=30):
        """Compute the whole days of the longest window in a background thread, once per scope and process.

        A process's first look at 30 days of calls reads every one of them (a quarter of a second
        with 100,000 calls on SQLite); done when the calls page is shown, the overview finds the
        days ready.
        """
        with self._lock:
            if requested_by in self._warming:
                return
            self._warming.add(requested_by)

        def run():
            with app.app_context():
                try:
                    until = datetime.now(timezone.utc)
                    self.figures(until - timedelta(days=days), until, False, requested_by)
                except Exception:  # a failed warm-up only means the first overview computes it itself
                    with self._lock:
                        self._warming.discard(requested_by)
                finally:
                    db.session.remove()

        threading.Thread(target=run, name="overview-warm-up", daemon=True).start()

    def figures(self, since, until, hourly, requested_by=None):
        """Totals and buckets of the calls that started in [since, until)."""
        today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        if hourly or until <= today:
            rows = _grouped(since, until, hourly, requested_by)
        else:
            rows = self._past_days(since, today, requested_by) + _grouped(max(since, today), until, False, requested_by)
        return _fold(rows, since, until)

    def _past_days(self, since, today, requested_by):
        """Grouped daily rows of [since, today): whole days as kept, a partial first day read fresh."""
        self._forget_changed_days()
        midnight = since.replace(hour=0, minute=0, second=0, microsecond=0)
        first_whole = midnight if midnight == since else midnight + timedelta(days=1)
        days = [first_whole + timedelta(days=n) for n in range(max(0, (today - first_whole).days))]
        with self._lock:
            missing = [day for day in days if (day, requested_by) not in self._days]
        if missing:
            fresh = _grouped(missing[0], today, False, requested_by)
            with self._lock:
                if len(self._days) > 2000:
                    self._days.clear()
                for day in missing:
                    self._days[(day, requested_by)] = [row for row in fresh if row[0] == day]
        with self._lock:
            rows = [row for day in days for row in self._days.get((day, requested_by), [])]
        return _grouped(since, min(first_whole, today), False, requested_by) + rows

    def _forget_changed_days(self):
        """Drop the kept days that calls changed since the last look (new events on them, or calls pruned)."""
        def look():
            last_event = db.session.execute(sa.select(sa.func.max(Event.id))).scalar() or 0
            calls = db.session.execute(sa.select(sa.func.count(Call.id))).scalar()
            changed = []
            if self._mark is not None and last_event > self._mark[0]:
                changed = db.session.execute(
                    sa.select(Call.started_at).join(Event, Event.call_id == Call.id)
                    .where(Event.id > self._mark[0]).distinct()).scalars().all()
            return last_event, calls, changed

        last_event, calls, changed = guarded(look)
        with self._lock:
            if self._mark is not None and calls < self._mark[1]:
                self._days.clear()
            if self._mark is not None and calls < self._mark[1]:
                self._warming.clear()
            for moment in changed:
                if moment is not None:
                    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
                    for key in [key for key in self._days if key[0] == day]:
                        del self._days[key]
            self._mark = (last_event, calls)


def _bucket(hourly):
    if db.engine.dialect.name == "postgresql":
        return sa.func.date_trunc("hour" if hourly else "day", Call.started_at)
    # The stored text starts `YYYY-MM-DD HH`: cutting it is far cheaper than strftime on every row.
    return sa.func.substr(sa.cast(Call.started_at, sa.String), 1, 13 if hourly else 10)


def _grouped(since, until, hourly, requested_by):
    """(bucket start, state, hangup cause, currency, calls, answered, seconds, with duration, amount) rows.

    Buckets are hours or days (`hourly` True or False), or one bucket, None, for the whole window.
    Either end of the window may be open (None).
    """
    if since is not None and until is not None and until <= since:
        return []
    bucket = sa.null() if hourly is None else _bucket(hourly)
    answered = sa.or_(Call.answered_at.is_not(None), Call.duration_seconds > 0)
    groups = [Call.state, Call.hangup_cause, Call.currency_code]
    query = _in_window(sa.select(
        bucket, *groups, sa.func.count(Call.id),
        sa.func.count(Call.id).filter(answered), sa.func.coalesce(sa.func.sum(Call.duration_seconds), 0),
        sa.func.count(Call.id).filter(Call.duration_seconds > 0), sa.func.sum(Call.amount),
    ), since, until).group_by(*groups if hourly is None else [bucket, *groups])
    if requested_by is not None:
        query = query.where(Call.requested_by == requested_by)
    rows = guarded(lambda: db.session.execute(query).all())
    return [(_start(row[0], hourly),) + tuple(row[1:]) for row in rows]


def _start(value, hourly):
    """A bucket's start as an aware UTC datetime, from PostgreSQL's timestamp or SQLite's text prefix."""
    if value is None:
        return None  # the window as one bucket
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
    text = value + (":00:00" if hourly else " 00:00:00")
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _fold(rows, since, until):
    """Totals and per-bucket counts from grouped rows."""
    buckets, by_state, by_cause, costs = {}, {}, {}, {}
    calls = finished = answered_finished = seconds = with_duration = 0
    for start, state, cause, currency, count, answered, secs, timed, amount in rows:
        calls += count
        seconds += int(secs or 0)
        with_duration += timed
        bucket = buckets.setdefault(start, [0, 0])
        bucket[0] += count
        bucket[1] += answered
        by_state[state or "Unknown"] = by_state.get(state or "Unknown", 0) + count
        if state in FINAL_STATES:
            finished += count
            answered_finished += answered
        if cause is not None:
            by_cause[cause] = by_cause.get(cause, 0) + count
        if amount is not None:
            costs[currency or "Unknown"] = costs.get(currency or "Unknown", 0.0) + float(amount)
    return {
        "since": _iso(since), "until": _iso(until), "calls": calls, "byState": by_state, "byHangupCause": by_cause,
        "finished": finished, "answered": answered_finished,
        "answerRate": round(answered_finished / finished, 4) if finished else None,
        "totalDurationSeconds": seconds,
        "averageDurationSeconds": round(seconds / with_duration, 1) if with_duration else None,
        "costByCurrency": {currency: round(amount, 4) for currency, amount in costs.items()},
        "buckets": [(start, count, ok) for start, (count, ok) in sorted(buckets.items())],
    }
