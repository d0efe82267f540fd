"""The calls' figures over a window, in one grouped pass: for the stats API and the console's overview.

The overview keeps whole past days per process (`Overview`): a day's calls rarely change after it ends.
"""

import threading
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from voice.calls import FINAL_STATES
from voice.store.db import db, guarded, iso
from voice.store.records import Call, Event


def in_window(query, since, until):
    """`query` limited to the calls that started in [since, until); either end may be open (None)."""
    if since is not None:
        query = query.where(Call.started_at >= since)
    if until is not None:
        query = query.where(Call.started_at < until)
    return query


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
            rows = grouped(since, until, hourly, requested_by)
        else:
            rows = self._past_days(since, today, requested_by) + grouped(max(since, today), until, False, requested_by)
        return totals(rows, since, until)

    def _past_days(self, since, today, requested_by):
        """Grouped daily rows of [since, today): whole days as kept, a partial first day read fresh."""
        self._forget_changed_days()
        midnight = since.replace(hour=0, minute=0, second=0, microsecond=0)
        first_whole = midnight if midnight == since else midnight + timedelta(days=1)
        days = [first_whole + timedelta(days=n) for n in range(max(0, (today - first_whole).days))]
        with self._lock:
            missing = [day for day in days if (day, requested_by) not in self._days]
        if missing:
            fresh = grouped(missing[0], today, False, requested_by)
            with self._lock:
                if len(self._days) > 2000:
                    self._days.clear()
                for day in missing:
                    self._days[(day, requested_by)] = [row for row in fresh if row[0] == day]
        with self._lock:
            rows = [row for day in days for row in self._days.get((day, requested_by), [])]
        return grouped(since, min(first_whole, today), False, requested_by) + rows

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


def grouped(since, until, hourly, requested_by):
    """(bucket start, state, hangup cause, currency, calls, answered, seconds, with duration, amount) rows.

    Buckets are hours or days (`hourly` True or False), or one bucket, None, for the whole window.
    Either end of the window may be open (None).
    """
    if since is not None and until is not None and until <= since:
        return []
    bucket = sa.null() if hourly is None else _bucket(hourly)
    answered = sa.or_(Call.answered_at.is_not(None), Call.duration_seconds > 0)
    groups = [Call.state, Call.hangup_cause, Call.currency_code]
    query = in_window(sa.select(
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


def totals(rows, since, until):
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
        "since": iso(since), "until": iso(until), "calls": calls, "byState": by_state, "byHangupCause": by_cause,
        "finished": finished, "answered": answered_finished,
        "answerRate": round(answered_finished / finished, 4) if finished else None,
        "totalDurationSeconds": seconds,
        "averageDurationSeconds": round(seconds / with_duration, 1) if with_duration else None,
        "costByCurrency": {currency: round(amount, 4) for currency, amount in costs.items()},
        "buckets": [(start, count, ok) for start, (count, ok) in sorted(buckets.items())],
    }
