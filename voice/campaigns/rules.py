"""What a campaign's settings mean: calling windows in a contact's zone, retry delays, and what each call's end does.

Everything here is pure: times in, times out, so the rules are tested with any clock.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = set(DAYS) | {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DELAY = re.compile(r"^(\d{1,5})([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DELAYS = 10
MAX_DELAY = 30 * 86400
MAX_SKIP = 366
DEFAULT_RETRY = "30m 2h"

# A contact's statuses: still to be called, being called, and how each ended.
WAITING = ("pending", "retry")
OPEN = WAITING + ("calling",)  # still to be called, or being called
ATTEMPT_IN_PROGRESS = ("claimed", "dialling", "placed")  # an attempt's statuses while its contact is `calling`
FINISHED = ("completed", "breakoff", "unreached", "failed", "expired", "optedOut", "refused", "cancelled")
STATUSES = ("pending", "calling", "retry") + FINISHED
CAMPAIGN_STATUSES = ("scheduled", "running", "paused", "completed", "cancelled")
# What an ended attempt's outcome may be: how its contact ended, or that it was retried (planned or transient).
OUTCOMES = ("retry", "transient") + FINISHED

# What the final notification of an unanswered call does, by AT's hangupCause (AT's list, every cause).
# An answered call ends `completed` or `breakoff` whatever the cause; a cause AT adds later is transient.
RETRY, TRANSIENT, FAILED = "retry", "transient", "failed"
CAUSES = {
    "NO_ANSWER": RETRY,
    "NO_USER_RESPONSE": RETRY,
    "USER_BUSY": RETRY,
    "SUBSCRIBER_ABSENT": RETRY,
    "CALL_REJECTED": RETRY,
    "NORMAL_CLEARING": RETRY,          # ended before anyone answered: rang out
    "USER_NOT_REGISTERED": RETRY,      # the phone is off the network for now, like SUBSCRIBER_ABSENT
    "ORIGINATOR_CANCEL": TRANSIENT,
    "NORMAL_TEMPORARY_FAILURE": TRANSIENT,
    "RECOVERY_ON_TIMER_EXPIRE": TRANSIENT,
    "SERVICE_UNAVAILABLE": TRANSIENT,
    "LOSE_RACE": TRANSIENT,
    "UNSPECIFIED": TRANSIENT,
    "UNALLOCATED_NUMBER": FAILED,
}
# A short retry after a transient failure does not use up a planned one: 1, 2, then 4 minutes, at most 3 in a row.
TRANSIENT_DELAYS = (60, 120, 240)


class RuleError(ValueError):
    """A campaign setting that cannot be used; the message names the field."""


def outcome_of(cause):
    """What an unanswered call's `cause` does: RETRY, TRANSIENT or FAILED."""
    return CAUSES.get(cause or "", TRANSIENT)


def parse_retry(value):
    """Retry delays in seconds from `"15m 1h 1d"` (or a list of such words); `""` or `"none"`: no retry."""
    if value is None:
        value = DEFAULT_RETRY
    if isinstance(value, str):
        words = [] if value.strip().lower() in ("", "none") else value.replace(",", " ").split()
    elif isinstance(value, list) and all(isinstance(word, str) for word in value):
        words = [word.strip() for word in value]
    else:
        raise RuleError("retry must be delays such as \"15m 1h 1d\" (units s, m, h, d)")
    if len(words) > MAX_DELAYS:
        raise RuleError(f"retry takes at most {MAX_DELAYS} delays")
    delays = []
    for word in words:
        found = DELAY.match(word.lower())
        seconds = int(found.group(1)) * UNITS[found.group(2)] if found else 0
        if not found or not 1 <= seconds <= MAX_DELAY:
            raise RuleError(f"retry delay {word[:16]!r} must be a number and a unit (s, m, h, d), from 1s to 30d")
        delays.append(seconds)
    return delays


def retry_words(delays):
    """Delays in seconds written back as `"15m 1h"`."""
    words = []
    for seconds in delays:
        unit = next(unit for unit in "dhms" if seconds % UNITS[unit] == 0)
        words.append(f"{seconds // UNITS[unit]}{unit}")
    return " ".join(words)


def zone(name):
    """The ZoneInfo an IANA name gives, or RuleError."""
    if not isinstance(name, str) or not 0 < len(name) <= 64 or ".." in name or name.startswith("/"):
        raise RuleError(f"timezone {str(name)[:64]!r} is not an IANA time zone such as Africa/Nairobi")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"timezone {name[:64]!r} is not an IANA time zone such as Africa/Nairobi") from None


def zone_of_number(number):
    """The one time zone of an E.164 number's country or area, or None when it has several or none."""
    try:
        zones = number_zones.time_zones_for_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        return None
    return zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else None


@dataclass(frozen=True)
class Window:
    """When calls may start, in the contact's local time: from `opens` for `length`, on `days`, not on `skip` dates.

    A window that crosses midnight belongs to the day it opens on.
    """

    opens: time
    length: timedelta
    days: frozenset
    skip: frozenset

    def as_json(self):
        closes = (datetime.combine(date(2000, 1, 1), self.opens) + self.length).time()
        return {"from": self.opens.strftime("%H:%M"), "to": closes.strftime("%H:%M"),
                "days": [day for day in DAYS if DAYS.index(day) in self.days],
                "skip": sorted(day.isoformat() for day in self.skip)}

    def next_opening(self, moment, tz):
        """The first time at or after `moment` (aware) when a call may start in `tz`, or None within 400 days.

        Inside means the local clock reads from `opens` to before its close, on an allowed day: on the
        day the clocks change, a window in the skipped hour does not open, and one in the repeated hour
        opens when the clock reads its time again.
        """
        local = moment.astimezone(tz)
        for offset in range(-1, 400):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days or day in self.skip:
                continue
            start = datetime.combine(day, self.opens)  # the local clock, naive
            end = start + self.length
            first, last = _utc(start - CHANGE_MARGIN, tz), _utc(end + CHANGE_MARGIN, tz)
            if last <= moment:
                continue
            if first.astimezone(tz).utcoffset() == last.astimezone(tz).utcoffset():  # no clock change near
                start_utc, end_utc = _utc(start, tz), _utc(end, tz)
                if start_utc <= moment < end_utc:
                    return moment
                if start_utc > moment:
                    return start_utc
                continue
            found = _first_inside(max(moment, first), last, tz, start, end)  # the clocks change: walk it
            if found is not None:
                return found
        return None


CHANGE_MARGIN = timedelta(hours=3)  # more than any clock change


def _utc(naive, tz):
    """A local clock reading in `tz` as UTC (the first of two readings in a repeated hour)."""
    return naive.replace(tzinfo=tz).astimezone(timezone.utc)


def _first_inside(moment, until, tz, start, end):
    """The first time from `moment` to `until`, minute by minute, when the clock of `tz` reads from `start` to before
    `end` (naive); None if it never does."""
    def inside(at):
        return start <= at.astimezone(tz).replace(tzinfo=None) < end

    if inside(moment):
        return moment
    at = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while at < until:
        if inside(at):
            return at
        at += timedelta(minutes=1)
    return None


def parse_window(value):
    """A Window from `{"from": "08:00", "to": "20:00", "days": [...], "skip": [...]}` or `"08:00-20:00"`; None: any time."""
    if value is None or value == {} or value == "":
        return None
    if isinstance(value, str):
        opens, _, closes = value.partition("-")
        value = {"from": opens.strip(), "to": closes.strip()}
    if not isinstance(value, dict):
        raise RuleError("window must be an object with from, to, days and skip, or \"08:00-20:00\"")
    unknown = set(value) - {"from", "to", "days", "skip"}
    if unknown:
        raise RuleError(f"window: {sorted(unknown)[0]!r} is not known (from, to, days, skip)")
    clocks = []
    for name in ("from", "to"):
        raw = value.get(name)
        found = CLOCK.match(raw) if isinstance(raw, str) else None
        if not found:
            raise RuleError(f"window.{name} must be a time of day as HH:MM, e.g. 08:00")
        clocks.append(time(int(found.group(1)), int(found.group(2))))
    opens, closes = clocks
    minutes = (closes.hour * 60 + closes.minute) - (opens.hour * 60 + opens.minute)
    length = timedelta(minutes=minutes % 1440 or 1440)  # from == to: the whole day
    days = value.get("days", list(DAYS))
    if not isinstance(days, list) or not days or not all(isinstance(day, str) and day.lower() in DAY_NAMES
                                                         for day in days):
        raise RuleError("window.days must list days as mon, tue, wed, thu, fri, sat, sun")
    skip = value.get("skip", [])
    if not isinstance(skip, list) or len(skip) > MAX_SKIP or not all(isinstance(day, str) for day in skip):
        raise RuleError(f"window.skip must list up to {MAX_SKIP} dates as YYYY-MM-DD")
    try:
        skipped = frozenset(date.fromisoformat(day) for day in skip if isinstance(day, str) and len(day) == 10)
    except ValueError:
        skipped = None
    if skipped is None or len(skipped) != len(set(skip)):
        raise RuleError("window.skip must list dates as YYYY-MM-DD")
    return Window(opens, length, frozenset(DAYS.index(day.lower()[:3]) for day in days), skipped)


def window_from_json(value):
    """A campaign's stored window (as_json's shape) as a Window, or None."""
    return parse_window(value) if value else None


def due(window, tz, earliest, not_after):
    """When a call planned for `earliest` may start: the window's next opening in `tz`; None when past `not_after`."""
    moment = earliest if window is None else window.next_opening(earliest, tz)
    if moment is None or (not_after is not None and moment >= not_after):
        return None
    return moment
