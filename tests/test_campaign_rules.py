"""The campaign rules as pure functions: calling windows in a contact's zone, retry delays, hangup causes, zones.

Every time is passed in (a frozen clock): no test reads the wall clock.
"""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice.campaigns import rules
from voice.campaigns.rules import RuleError, due, outcome_of, parse_retry, parse_window, zone_of_number

UTC = timezone.utc
NAIROBI, LAGOS, LONDON = ZoneInfo("Africa/Nairobi"), ZoneInfo("Africa/Lagos"), ZoneInfo("Europe/London")


def local(tz, *parts):
    """An aware time in `tz` from (year, month, day, hour, minute)."""
    return datetime(*parts, tzinfo=tz)


def inside(window, tz, moment):
    """True when `moment` falls in `window` by the contact's wall clock: the clock time is between from and to, and
    the window it belongs to (the one opened that day, or the day before for one crossing midnight) is on an
    allowed day that is not skipped."""
    clock = moment.astimezone(tz)
    opens = window.opens.hour * 60 + window.opens.minute
    minutes = clock.hour * 60 + clock.minute + clock.second / 60
    if (minutes - opens) % 1440 >= window.length.total_seconds() / 60:
        return False
    opened_on = clock.date() if minutes >= opens else clock.date() - timedelta(days=1)
    return opened_on.weekday() in window.days and opened_on not in window.skip


# --- windows --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hour, minute, is_open", [(23, 30, True), (1, 30, True), (3, 0, False), (19, 59, False),
                                                   (20, 0, True), (2, 0, False)])
def test_a_window_crossing_midnight_is_open_late_and_early(hour, minute, is_open):
    window = parse_window("20:00-02:00")
    moment = local(NAIROBI, 2026, 6, 10, hour, minute)
    opening = window.next_opening(moment, NAIROBI)
    if is_open:
        assert opening == moment
    else:
        assert opening > moment
        assert opening.astimezone(NAIROBI).replace(tzinfo=None) == datetime(2026, 6, 10, 20, 0)


def test_a_friday_night_window_belongs_to_friday():
    window = parse_window({"from": "20:00", "to": "02:00", "days": ["fri"]})
    saturday_early = local(NAIROBI, 2026, 6, 13, 1, 30)   # Friday's window, still open
    friday_early = local(NAIROBI, 2026, 6, 12, 1, 30)     # Thursday's window: Thursday is not a calling day
    saturday_late = local(NAIROBI, 2026, 6, 13, 23, 30)   # Saturday's window: not a calling day
    friday_evening = local(NAIROBI, 2026, 6, 12, 20, 0)
    assert window.next_opening(saturday_early, NAIROBI) == saturday_early
    assert window.next_opening(friday_early, NAIROBI) == friday_evening
    assert window.next_opening(saturday_late, NAIROBI) == friday_evening + timedelta(days=7)


def test_the_same_moment_is_open_in_nairobi_and_closed_in_lagos():
    window = parse_window("08:00-17:00")
    moment = datetime(2026, 6, 10, 5, 30, tzinfo=UTC)  # 08:30 in Nairobi, 06:30 in Lagos
    assert window.next_opening(moment, NAIROBI) == moment
    assert window.next_opening(moment, LAGOS) == datetime(2026, 6, 10, 7, 0, tzinfo=UTC)  # 08:00 in Lagos


def test_days_leave_out_the_other_days():
    window = parse_window({"from": "08:00", "to": "20:00", "days": ["mon", "wed"]})
    sunday_noon = local(NAIROBI, 2026, 6, 14, 12, 0)
    assert window.next_opening(sunday_noon, NAIROBI) == local(NAIROBI, 2026, 6, 15, 8, 0)
    tuesday_noon = local(NAIROBI, 2026, 6, 16, 12, 0)
    assert window.next_opening(tuesday_noon, NAIROBI) == local(NAIROBI, 2026, 6, 17, 8, 0)


def test_a_skipped_date_moves_the_opening_to_the_next_allowed_day():
    window = parse_window({"from": "08:00", "to": "20:00", "days": ["mon", "tue", "wed", "thu", "fri"],
                           "skip": ["2026-12-25"]})
    christmas_eve_night = local(NAIROBI, 2026, 12, 24, 21, 0)  # Thursday, after the window
    monday = local(NAIROBI, 2026, 12, 28, 8, 0)                 # Friday skipped, the weekend not a calling day
    assert window.next_opening(christmas_eve_night, NAIROBI) == monday
    christmas_noon = local(NAIROBI, 2026, 12, 25, 12, 0)        # inside the hours, on the skipped date
    assert window.next_opening(christmas_noon, NAIROBI) == monday


def test_a_skipped_date_closes_the_night_window_it_opens():
    window = parse_window({"from": "20:00", "to": "02:00", "skip": ["2026-06-12"]})
    early_saturday = local(NAIROBI, 2026, 6, 13, 1, 0)  # in the window opened on the skipped Friday
    assert window.next_opening(early_saturday, NAIROBI) == local(NAIROBI, 2026, 6, 13, 20, 0)


@pytest.mark.parametrize("hour, minute", [(0, 0), (8, 59), (9, 0), (23, 59), (3, 17)])
def test_from_equal_to_is_the_whole_day(hour, minute):
    window = parse_window("09:00-09:00")
    assert window.length == timedelta(days=1)
    moment = local(NAIROBI, 2026, 6, 10, hour, minute)
    assert window.next_opening(moment, NAIROBI) == moment


def test_no_window_is_any_time():
    assert parse_window(None) is None and parse_window({}) is None and parse_window("") is None
    moment = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)
    assert due(None, NAIROBI, moment, None) == moment


def test_a_window_reads_back_as_it_was_given():
    given_ = {"from": "20:00", "to": "02:00", "days": ["mon", "fri"], "skip": ["2026-12-25"]}
    window = parse_window(given_)
    assert window.as_json() == given_
    assert rules.window_from_json(window.as_json()) == window


# Europe/London's change days in 2026: 29 March 01:00 GMT -> 02:00 BST (01:00-02:00 never happens),
# 25 October 02:00 BST -> 01:00 GMT (01:00-02:00 happens twice).
SPRING, AUTUMN = date(2026, 3, 29), date(2026, 10, 25)


def test_a_window_running_into_the_spring_gap_ends_where_its_clock_time_ends():
    window = parse_window("00:30-01:30")
    after_the_gap = datetime(2026, 3, 29, 1, 10, tzinfo=UTC)  # 02:10 BST by the wall clock, after 01:30
    opening = window.next_opening(after_the_gap, LONDON)
    assert inside(window, LONDON, opening), opening.astimezone(LONDON)


def test_a_window_on_the_autumn_overlap_opens_at_its_clock_time():
    window = parse_window("01:30-02:30")
    repeated_hour = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 01:10 GMT, the second 01:10 of the night
    opening = window.next_opening(repeated_hour, LONDON)
    assert inside(window, LONDON, opening), opening.astimezone(LONDON)


@pytest.mark.parametrize("text", ["08:00-20:00", "00:30-01:30", "01:00-02:00", "01:30-02:30", "23:00-03:00",
                                  "02:00-01:00", "12:00-12:00"])
@pytest.mark.parametrize("day", [SPRING, AUTUMN])
def test_a_dst_zone_never_gives_a_time_outside_the_window(text, day):
    window = parse_window(text)
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    for quarter in range(3 * 24 * 4):  # every 15 minutes over the day before, the change day and the day after
        moment = start + timedelta(minutes=15 * quarter)
        opening = window.next_opening(moment, LONDON)
        assert opening >= moment
        assert inside(window, LONDON, opening), (moment, opening.astimezone(LONDON))


# --- due and notAfter -----------------------------------------------------------------------------------------


def test_due_is_the_later_of_the_time_asked_and_the_next_opening():
    window = parse_window("08:00-20:00")
    in_hours = local(NAIROBI, 2026, 6, 10, 9, 0)
    assert due(window, NAIROBI, in_hours, None) == in_hours
    at_night = local(NAIROBI, 2026, 6, 10, 22, 0)
    assert due(window, NAIROBI, at_night, None) == local(NAIROBI, 2026, 6, 11, 8, 0)


def test_due_is_none_at_or_past_not_after():
    window = parse_window("08:00-20:00")
    at_night = local(NAIROBI, 2026, 6, 10, 22, 0)
    next_morning = local(NAIROBI, 2026, 6, 11, 8, 0)
    assert due(window, NAIROBI, at_night, next_morning) is None                       # the opening is notAfter
    assert due(window, NAIROBI, at_night, next_morning - timedelta(hours=1)) is None  # it is past notAfter
    assert due(window, NAIROBI, at_night, next_morning + timedelta(minutes=1)) == next_morning
    assert due(None, NAIROBI, at_night, at_night) is None
    assert due(None, NAIROBI, at_night, at_night + timedelta(seconds=1)) == at_night


CLOCKS = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))
WINDOWS = st.builds(
    lambda opens, closes, days, skip: {"from": opens, "to": closes, "days": days, "skip": skip},
    CLOCKS, CLOCKS, st.lists(st.sampled_from(rules.DAYS), min_size=1, max_size=7, unique=True),
    st.lists(st.dates(date(2026, 1, 1), date(2026, 3, 1)).map(date.isoformat), max_size=5, unique=True))
# Zones without daylight saving (the DST days have their own test above), east and west of UTC.
ZONES = st.sampled_from([NAIROBI, LAGOS, ZoneInfo("Africa/Kinshasa"), ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata"),
                         ZoneInfo("America/Bogota")])
MOMENTS = st.datetimes(datetime(2026, 1, 1), datetime(2026, 3, 1)).map(lambda moment: moment.replace(tzinfo=UTC))


@settings(max_examples=300, deadline=None)
@given(WINDOWS, ZONES, MOMENTS)
def test_the_next_opening_is_never_before_the_moment_and_always_inside_the_window(spec, tz, moment):
    window = parse_window(spec)
    opening = window.next_opening(moment, tz)
    assert opening is not None  # at least one allowed day a week, and few skipped dates
    assert opening >= moment
    assert inside(window, tz, opening)
    if inside(window, tz, moment):
        assert opening == moment


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), WINDOWS), ZONES, MOMENTS, st.integers(0, 30 * 86400))
def test_due_never_returns_a_time_at_or_past_not_after(spec, tz, earliest, seconds):
    window = parse_window(spec)
    not_after = earliest + timedelta(seconds=seconds)
    moment = due(window, tz, earliest, not_after)
    if moment is not None:
        assert earliest <= moment < not_after
    else:
        opening = earliest if window is None else window.next_opening(earliest, tz)
        assert opening >= not_after


# --- refusing bad settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, field", [
    ({"from": "8:00", "to": "20:00"}, "window.from"),
    ({"from": "08:60", "to": "20:00"}, "window.from"),
    ({"to": "20:00"}, "window.from"),
    ({"from": 800, "to": "20:00"}, "window.from"),
    ({"from": "08:00", "to": "24:00"}, "window.to"),
    ("08:00", "window.to"),
    ("08:00-8pm", "window.to"),
    ({"from": "08:00", "to": "20:00", "days": ["funday"]}, "window.days"),
    ({"from": "08:00", "to": "20:00", "days": []}, "window.days"),
    ({"from": "08:00", "to": "20:00", "days": "mon"}, "window.days"),
    ({"from": "08:00", "to": "20:00", "days": [1]}, "window.days"),
    ({"from": "08:00", "to": "20:00", "skip": ["2026-13-01"]}, "window.skip"),
    ({"from": "08:00", "to": "20:00", "skip": ["25/12/2026"]}, "window.skip"),
    ({"from": "08:00", "to": "20:00", "skip": "2026-12-25"}, "window.skip"),
    ({"from": "08:00", "to": "20:00", "skip": [20261225]}, "window.skip"),
    ({"from": "08:00", "to": "20:00", "skip": ["2026-01-01"] * 400}, "window.skip"),
    ({"from": "08:00", "to": "20:00", "hours": 4}, "'hours'"),
    (["08:00", "20:00"], "window"),
    (8, "window"),
])
def test_parse_window_refuses_bad_input_naming_the_field(value, field):
    with pytest.raises(RuleError) as refused:
        parse_window(value)
    assert field in str(refused.value)


@pytest.mark.parametrize("value", ["5x", "0s", "31d", "15", "m", "1.5h", "-1h", "1h 2q", " ".join(["1m"] * 11),
                                   5, ["1h", 2], {"1h": 1}, "99999999999s"])
def test_parse_retry_refuses_bad_input_naming_the_field(value):
    with pytest.raises(RuleError) as refused:
        parse_retry(value)
    assert "retry" in str(refused.value)


@pytest.mark.parametrize("value, seconds", [
    ("15m 1h 1d", [900, 3600, 86400]), (None, [1800, 7200]), ("", []), ("none", []), ("NONE", []), ("1s", [1]),
    ("30d", [30 * 86400]), (["1m", "2H"], [60, 7200]), ("1m,2m", [60, 120]),
])
def test_parse_retry_reads_delays(value, seconds):
    assert parse_retry(value) == seconds


def test_retry_words_read_back_as_given():
    assert rules.retry_words(parse_retry("15m 1h 1d 90s")) == "15m 1h 1d 90s"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", 3, "x" * 65])
def test_a_bad_time_zone_is_refused_naming_the_field(name):
    with pytest.raises(RuleError) as refused:
        rules.zone(name)
    assert "timezone" in str(refused.value)


# --- hangup causes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cause, outcome", [
    ("NO_ANSWER", rules.RETRY), ("NO_USER_RESPONSE", rules.RETRY), ("USER_BUSY", rules.RETRY),
    ("SUBSCRIBER_ABSENT", rules.RETRY), ("CALL_REJECTED", rules.RETRY),
    ("NORMAL_TEMPORARY_FAILURE", rules.TRANSIENT), ("RECOVERY_ON_TIMER_EXPIRE", rules.TRANSIENT),
    ("SERVICE_UNAVAILABLE", rules.TRANSIENT),
    ("UNALLOCATED_NUMBER", rules.FAILED),
    ("SOMETHING_AT_ADDS_LATER", rules.TRANSIENT), ("", rules.TRANSIENT), (None, rules.TRANSIENT),
])
def test_each_hangup_cause_maps_as_the_issue_says(cause, outcome):
    assert outcome_of(cause) == outcome


# AT's list of hangup causes (its help pages): each has a row of its own in the map, none is left to the default.
AT_CAUSES = ("NORMAL_CLEARING", "CALL_REJECTED", "NORMAL_TEMPORARY_FAILURE", "RECOVERY_ON_TIMER_EXPIRE",
             "ORIGINATOR_CANCEL", "LOSE_RACE", "USER_BUSY", "NO_ANSWER", "NO_USER_RESPONSE", "SUBSCRIBER_ABSENT",
             "SERVICE_UNAVAILABLE", "USER_NOT_REGISTERED", "UNALLOCATED_NUMBER", "UNSPECIFIED")


def test_every_cause_in_ats_list_is_mapped():
    assert set(AT_CAUSES) <= set(rules.CAUSES)
    assert set(rules.CAUSES.values()) <= {rules.RETRY, rules.TRANSIENT, rules.FAILED}


def test_short_retries_are_capped_at_three():
    assert len(rules.TRANSIENT_DELAYS) == 3
    assert list(rules.TRANSIENT_DELAYS) == sorted(rules.TRANSIENT_DELAYS)


# --- zones of numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("number, zone", [
    ("+254712345678", "Africa/Nairobi"), ("+2348031234567", "Africa/Lagos"),
    ("+243810000000", None),   # the DRC spans two zones
    ("+12025550123", "America/New_York"),
    ("not a number", None), ("+999", None),
])
def test_zone_of_number(number, zone):
    assert zone_of_number(number) == zone
