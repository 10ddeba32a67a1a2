"""compute_slots: one test (or a small group) per rule of the slot engine.

Dates: 2026-01-01 is a Thursday; 2026-01-11 a Sunday, 2026-01-12 a Monday.
Unless a test says otherwise the host works 09:00-12:00 every day in UTC and "now" is 2026-01-01.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bookable.scheduling import (
    AvailabilityRule,
    BookingWindow,
    BusyTime,
    EventRules,
    HostCalendar,
    PeriodLimits,
    PeriodType,
    SeatedBooking,
    Slot,
    SlotRequest,
    compute_slots,
    free_time,
)
from bookable.scheduling.intervals import Interval

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
AUCKLAND = ZoneInfo("Pacific/Auckland")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVERY_DAY = frozenset(range(7))
SUN, MON, TUE, WED, THU, FRI, SAT = range(7)


def at(text: str, zone: ZoneInfo = UTC_ZONE) -> datetime:
    """A wall-clock time in ``zone`` as a UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)


def rule(start: str, end: str, days: frozenset[int] = EVERY_DAY) -> AvailabilityRule:
    return AvailabilityRule(days, time.fromisoformat(start), time.fromisoformat(end))


def host(*rules: AvailabilityRule, zone: ZoneInfo = UTC_ZONE, **fields: Any) -> HostCalendar:
    return HostCalendar(zone=zone, rules=rules or (rule("09:00", "12:00"),), **fields)


def request(
    start: str,
    end: str,
    *,
    zone: ZoneInfo = UTC_ZONE,
    now: datetime = NOW,
    booker: ZoneInfo = UTC_ZONE,
    duration: int | None = None,
) -> SlotRequest:
    return SlotRequest(at(start, zone), at(end, zone), now, booker, duration)


def day(text: str, zone: ZoneInfo = UTC_ZONE, **fields: Any) -> SlotRequest:
    """The whole local date ``text`` in ``zone``."""
    following = (date.fromisoformat(text) + timedelta(days=1)).isoformat()
    return request(f"{text}T00:00", f"{following}T00:00", zone=zone, **fields)


def times(slots: list[Slot], zone: ZoneInfo = UTC_ZONE) -> list[str]:
    return [s.start.astimezone(zone).strftime("%H:%M") for s in slots]


def dates(slots: list[Slot], zone: ZoneInfo = UTC_ZONE) -> list[str]:
    return sorted({s.start.astimezone(zone).date().isoformat() for s in slots})


def lengths(slots: list[Slot]) -> set[int]:
    return {int((s.end - s.start).total_seconds() // 60) for s in slots}


# --- length, slotInterval, duration ------------------------------------------------------------


def test_step_defaults_to_length() -> None:
    slots = compute_slots(EventRules(length=45), host(), day("2026-01-12"))
    assert times(slots) == ["09:00", "09:45", "10:30", "11:15"]
    assert lengths(slots) == {45}


def test_slot_interval_is_the_step_and_length_the_slot() -> None:
    slots = compute_slots(EventRules(length=60, slot_interval=30), host(), day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "10:00", "10:30", "11:00"]
    assert lengths(slots) == {60}


def test_slot_interval_longer_than_length() -> None:
    slots = compute_slots(EventRules(length=30, slot_interval=90), host(), day("2026-01-12"))
    assert times(slots) == ["09:00", "10:30"]
    assert lengths(slots) == {30}


def test_requested_duration_is_the_length_and_the_step() -> None:
    slots = compute_slots(EventRules(length=30), host(), day("2026-01-12", duration=60))
    assert times(slots) == ["09:00", "10:00", "11:00"]
    assert lengths(slots) == {60}


def test_slot_interval_wins_over_requested_duration_as_step() -> None:
    event = EventRules(length=30, slot_interval=20)
    slots = compute_slots(event, host(), day("2026-01-12", duration=60))
    assert times(slots) == ["09:00", "09:20", "09:40", "10:00", "10:20", "10:40", "11:00"]
    assert lengths(slots) == {60}


def test_non_positive_length_is_refused() -> None:
    with pytest.raises(ValueError):
        compute_slots(EventRules(length=0), host(), day("2026-01-12"))


# --- alignment ---------------------------------------------------------------------------------


def test_hour_long_event_on_half_hour_start_aligns_up_to_the_local_hour() -> None:
    """09:30 IST is 04:00Z: the grid rounds to 10:00 local (04:30Z), not to 04:00Z."""
    calendar = host(rule("09:30", "12:30"), zone=KOLKATA)
    slots = compute_slots(EventRules(length=60), calendar, day("2026-01-12", KOLKATA))
    assert times(slots, KOLKATA) == ["10:00", "11:00"]
    assert [s.start for s in slots] == [at("2026-01-12T04:30"), at("2026-01-12T05:30")]


def test_alignment_unit_is_the_largest_that_divides_the_step() -> None:
    # 45 → 15-minute unit: 09:10 rounds to 09:15.
    slots = compute_slots(EventRules(length=45), host(rule("09:10", "12:00")), day("2026-01-12"))
    assert times(slots) == ["09:15", "10:00", "10:45"]
    # 25 → 5-minute unit: 09:03 rounds to 09:05.
    slots = compute_slots(EventRules(length=25), host(rule("09:03", "10:00")), day("2026-01-12"))
    assert times(slots) == ["09:05", "09:30"]
    # 7 → no unit divides it: the range start itself.
    slots = compute_slots(EventRules(length=7), host(rule("09:03", "09:30")), day("2026-01-12"))
    assert times(slots) == ["09:03", "09:10", "09:17"]


def test_grid_is_anchored_at_each_working_range() -> None:
    calendar = host(rule("09:00", "10:00"), rule("13:20", "15:00"))
    slots = compute_slots(EventRules(length=40), calendar, day("2026-01-12"))
    # 40 → 20-minute unit; the afternoon range starts on it.
    assert times(slots) == ["09:00", "13:20", "14:00"]


# --- offsetStart -------------------------------------------------------------------------------


def test_offset_start_shifts_the_first_slot_and_every_step() -> None:
    slots = compute_slots(EventRules(length=30, offset_start=5), host(), day("2026-01-12"))
    assert times(slots) == ["09:05", "09:40", "10:15", "10:50", "11:25"]
    assert lengths(slots) == {30}


# --- minimum notice ----------------------------------------------------------------------------


def test_minimum_notice_hides_early_slots_without_moving_the_grid() -> None:
    now = at("2026-01-12T09:10")
    event = EventRules(length=30, minimum_booking_notice=60)
    slots = compute_slots(event, host(), day("2026-01-12", now=now))
    assert times(slots) == ["10:30", "11:00", "11:30"]


def test_zero_notice_means_now_not_one_minute() -> None:
    slots = compute_slots(
        EventRules(length=30), host(), day("2026-01-12", now=at("2026-01-12T10:00"))
    )
    assert times(slots) == ["10:00", "10:30", "11:00", "11:30"]
    slots = compute_slots(
        EventRules(length=30), host(), day("2026-01-12", now=at("2026-01-12T10:00:01"))
    )
    assert times(slots) == ["10:30", "11:00", "11:30"]


def test_notice_reaching_into_the_next_days() -> None:
    event = EventRules(length=60, minimum_booking_notice=2 * 24 * 60)
    now = at("2026-01-12T10:30")
    slots = compute_slots(event, host(), request("2026-01-12T00:00", "2026-01-16T00:00", now=now))
    assert [s.start for s in slots] == [
        at("2026-01-14T11:00"),
        at("2026-01-15T09:00"),
        at("2026-01-15T10:00"),
        at("2026-01-15T11:00"),
    ]


# --- buffers -----------------------------------------------------------------------------------


def test_busy_before_buffer_blocks_slots_ending_in_it() -> None:
    calendar = host(busy=(BusyTime(at("2026-01-12T10:30"), at("2026-01-12T11:00"), 15, 0),))
    slots = compute_slots(EventRules(length=30), calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "11:00", "11:30"]


def test_busy_after_buffer_blocks_slots_starting_in_it() -> None:
    calendar = host(busy=(BusyTime(at("2026-01-12T10:00"), at("2026-01-12T10:30"), 0, 15),))
    slots = compute_slots(EventRules(length=30), calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "11:00", "11:30"]


def test_event_after_buffer_keeps_slots_away_from_a_later_booking() -> None:
    calendar = host(busy=(BusyTime(at("2026-01-12T10:30"), at("2026-01-12T11:00")),))
    slots = compute_slots(EventRules(length=30, after_event_buffer=15), calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "11:00", "11:30"]


def test_event_before_buffer_keeps_slots_away_from_an_earlier_booking() -> None:
    calendar = host(busy=(BusyTime(at("2026-01-12T10:00"), at("2026-01-12T10:30")),))
    slots = compute_slots(
        EventRules(length=30, before_event_buffer=15), calendar, day("2026-01-12")
    )
    assert times(slots) == ["09:00", "09:30", "11:00", "11:30"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (EventRules(length=30), ["09:00", "09:30", "10:30", "11:00", "11:30"]),
        (EventRules(length=30, after_event_buffer=15), ["09:00", "10:30", "11:00", "11:30"]),
        (EventRules(length=30, before_event_buffer=15), ["09:00", "09:30", "11:00", "11:30"]),
    ],
)
def test_unbuffered_busy_pairs_block_like_busy_times(event: EventRules, expected: list) -> None:
    """`HostCalendar.unbuffered` (GET /slots' bookings without buffers, plain pairs) blocks as
    the same `BusyTime` does, widened by the queried event's buffers."""
    pair = (at("2026-01-12T10:00"), at("2026-01-12T10:30"))
    as_pair = compute_slots(event, host(unbuffered=(pair,)), day("2026-01-12"))
    assert times(as_pair) == expected
    assert as_pair == compute_slots(event, host(busy=(BusyTime(*pair),)), day("2026-01-12"))


def test_event_buffers_do_not_widen_in_the_wrong_direction() -> None:
    """The queried event's before buffer does not matter for a booking after the slot, nor its
    after buffer for a booking before it."""
    busy = (BusyTime(at("2026-01-12T10:00"), at("2026-01-12T10:30")),)
    before = EventRules(length=30, before_event_buffer=30)
    assert "09:30" in times(compute_slots(before, host(busy=busy), day("2026-01-12")))
    after = EventRules(length=30, after_event_buffer=30)
    assert "10:30" in times(compute_slots(after, host(busy=busy), day("2026-01-12")))


def test_all_buffers_add_up_and_touching_edges_are_free() -> None:
    busy = (BusyTime(at("2026-01-12T10:00"), at("2026-01-12T10:30"), 10, 10),)
    event = EventRules(length=15, before_event_buffer=5, after_event_buffer=5)
    slots = compute_slots(event, host(busy=busy), day("2026-01-12"))
    # Blocked 09:45-10:45.
    assert times(slots) == [
        "09:00",
        "09:15",
        "09:30",
        "10:45",
        "11:00",
        "11:15",
        "11:30",
        "11:45",
    ]


def test_buffers_do_not_apply_to_working_hour_edges() -> None:
    event = EventRules(length=30, before_event_buffer=30, after_event_buffer=30)
    slots = compute_slots(event, host(), day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]


# --- busy time and the grid --------------------------------------------------------------------


def test_busy_time_does_not_shift_the_grid() -> None:
    """Cal.com restarts the grid at 10:20 (10:20, 10:50, 11:20); we keep 10:30, 11:00, 11:30."""
    calendar = host(busy=(BusyTime(at("2026-01-12T10:10"), at("2026-01-12T10:20")),))
    slots = compute_slots(EventRules(length=30), calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "10:30", "11:00", "11:30"]


def test_busy_touching_a_slot_does_not_block_it() -> None:
    calendar = host(busy=(BusyTime(at("2026-01-12T10:00"), at("2026-01-12T10:30")),))
    slots = compute_slots(EventRules(length=30), calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "10:30", "11:00", "11:30"]


def test_busy_time_over_several_days() -> None:
    busy = (BusyTime(at("2026-01-12T11:00"), at("2026-01-14T10:00")),)
    slots = compute_slots(
        EventRules(length=60), host(busy=busy), request("2026-01-12T00:00", "2026-01-15T00:00")
    )
    assert [s.start for s in slots] == [
        at("2026-01-12T09:00"),
        at("2026-01-12T10:00"),
        at("2026-01-14T10:00"),
        at("2026-01-14T11:00"),
    ]


# --- booking and duration limits ---------------------------------------------------------------


def counted(*starts: str, minutes: int = 30, zone: ZoneInfo = UTC_ZONE) -> tuple[BusyTime, ...]:
    return tuple(BusyTime(at(s, zone), at(s, zone) + timedelta(minutes=minutes)) for s in starts)


def test_booking_limit_per_day_blocks_the_full_day_only() -> None:
    event = EventRules(length=60, booking_limits=PeriodLimits(per_day=1))
    calendar = host(counted=counted("2026-01-12T10:00"))
    slots = compute_slots(event, calendar, request("2026-01-12T00:00", "2026-01-14T00:00"))
    assert dates(slots) == ["2026-01-13"]


def test_booking_limit_not_reached_leaves_the_day_open() -> None:
    event = EventRules(length=60, booking_limits=PeriodLimits(per_day=2))
    calendar = host(counted=counted("2026-01-12T15:00"))
    slots = compute_slots(event, calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "10:00", "11:00"]


@pytest.mark.parametrize(
    ("week_start", "expected"),
    [
        # Sunday weeks: 2026-01-11 … 01-17 is full.
        (SUN, ["2026-01-09", "2026-01-10", "2026-01-18", "2026-01-19"]),
        # Monday weeks: 2026-01-05 … 01-11 is full.
        (MON, [f"2026-01-{d}" for d in range(12, 20)]),
    ],
)
def test_booking_limit_per_week_follows_the_week_start(
    week_start: int, expected: list[str]
) -> None:
    event = EventRules(length=60, booking_limits=PeriodLimits(per_week=1))
    calendar = host(counted=counted("2026-01-11T10:00"), week_start=week_start)
    slots = compute_slots(event, calendar, request("2026-01-09T00:00", "2026-01-20T00:00", now=NOW))
    assert dates(slots) == expected


def test_booking_limit_per_month() -> None:
    event = EventRules(length=60, booking_limits=PeriodLimits(per_month=2))
    calendar = host(counted=counted("2026-01-05T10:00", "2026-01-20T10:00"))
    slots = compute_slots(event, calendar, request("2026-01-30T00:00", "2026-02-03T00:00"))
    assert dates(slots) == ["2026-02-01", "2026-02-02"]


def test_booking_limit_per_year() -> None:
    event = EventRules(length=60, booking_limits=PeriodLimits(per_year=1))
    calendar = host(counted=counted("2026-03-01T10:00"))
    slots = compute_slots(event, calendar, request("2026-12-30T00:00", "2027-01-03T00:00"))
    assert dates(slots) == ["2027-01-01", "2027-01-02"]


def test_limit_periods_are_days_of_the_schedule_zone() -> None:
    """23:30Z on 01-12 is 00:30 on 01-13 in Berlin: that Berlin day is full, not 01-12."""
    event = EventRules(length=60, booking_limits=PeriodLimits(per_day=1))
    calendar = host(zone=BERLIN, counted=counted("2026-01-12T23:30"))
    slots = compute_slots(
        event, calendar, request("2026-01-12T00:00", "2026-01-15T00:00", zone=BERLIN)
    )
    assert dates(slots, BERLIN) == ["2026-01-12", "2026-01-14"]


def test_duration_limit_per_day_counts_minutes_plus_the_new_event() -> None:
    calendar = host(counted=counted("2026-01-12T15:00", minutes=60))
    fits = EventRules(length=30, duration_limits=PeriodLimits(per_day=90))
    assert dates(compute_slots(fits, calendar, day("2026-01-12"))) == ["2026-01-12"]
    too_long = EventRules(length=45, duration_limits=PeriodLimits(per_day=90))
    assert compute_slots(too_long, calendar, day("2026-01-12")) == []


def test_duration_limit_shorter_than_the_event_blocks_everything() -> None:
    event = EventRules(length=120, duration_limits=PeriodLimits(per_day=60))
    calendar = host(rule("09:00", "17:00"))
    assert compute_slots(event, calendar, request("2026-01-12T00:00", "2026-01-19T00:00")) == []


@pytest.mark.parametrize(
    ("week_start", "expected"),
    [
        (SUN, ["2026-01-10", "2026-01-18"]),
        (MON, [f"2026-01-{d}" for d in range(12, 19)]),
    ],
)
def test_duration_limit_per_week_follows_the_week_start(
    week_start: int, expected: list[str]
) -> None:
    event = EventRules(length=60, duration_limits=PeriodLimits(per_week=120))
    calendar = host(counted=counted("2026-01-11T10:00", minutes=90), week_start=week_start)
    slots = compute_slots(event, calendar, request("2026-01-10T00:00", "2026-01-19T00:00"))
    assert dates(slots) == expected


def test_duration_limit_per_month_and_year() -> None:
    calendar = host(counted=counted("2026-01-05T10:00", minutes=100))
    monthly = EventRules(length=30, duration_limits=PeriodLimits(per_month=120))
    slots = compute_slots(monthly, calendar, request("2026-01-31T00:00", "2026-02-02T00:00"))
    assert dates(slots) == ["2026-02-01"]
    yearly = EventRules(length=30, duration_limits=PeriodLimits(per_year=120))
    slots = compute_slots(yearly, calendar, request("2026-12-31T00:00", "2027-01-02T00:00"))
    assert dates(slots) == ["2027-01-01"]


# --- booking window ----------------------------------------------------------------------------


FRIDAY_MORNING = at("2026-01-09T08:00")


def window_dates(window: BookingWindow, now: datetime = FRIDAY_MORNING, **fields: Any) -> list[str]:
    event = EventRules(length=60, window=window)
    calendar = host(**fields)
    slots = compute_slots(event, calendar, request("2026-01-09T00:00", "2026-01-24T00:00", now=now))
    return dates(slots)


def test_unlimited_window_reaches_far_ahead() -> None:
    event = EventRules(length=60, window=BookingWindow(PeriodType.UNLIMITED))
    slots = compute_slots(event, host(), day("2028-06-01"))
    assert times(slots) == ["09:00", "10:00", "11:00"]


def test_rolling_calendar_days() -> None:
    window = BookingWindow(PeriodType.ROLLING, days=3, count_calendar_days=True)
    assert window_dates(window) == ["2026-01-09", "2026-01-10", "2026-01-11", "2026-01-12"]


def test_rolling_business_days_skip_weekends_but_keep_them_bookable() -> None:
    window = BookingWindow(PeriodType.ROLLING, days=3, count_calendar_days=False)
    # Friday + Mon, Tue, Wed; Saturday and Sunday stay inside the window.
    assert window_dates(window) == [f"2026-01-{d:02d}" for d in range(9, 15)]


def test_rolling_zero_days_is_today_only() -> None:
    window = BookingWindow(PeriodType.ROLLING, days=0)
    assert window_dates(window) == ["2026-01-09"]


def test_rolling_counts_days_in_the_schedule_zone() -> None:
    """20:00Z on 01-09 is already 09:00 on 01-10 in Auckland: "today" is the 10th there."""
    event = EventRules(length=60, window=BookingWindow(PeriodType.ROLLING, days=1))
    now = at("2026-01-09T20:00")
    calendar = host(zone=AUCKLAND)
    slots = compute_slots(event, calendar, request("2026-01-09T00:00", "2026-01-20T00:00", now=now))
    assert dates(slots, AUCKLAND) == ["2026-01-10", "2026-01-11"]


MON_WED_FRI = frozenset({MON, WED, FRI})


def rolling_window_dates_for(start: str, now: datetime, days: int = 2, **fields: Any) -> list[str]:
    event = EventRules(length=30, window=BookingWindow(PeriodType.ROLLING_WINDOW, days=days))
    calendar = host(rule("09:00", "12:00", MON_WED_FRI), **fields)
    slots = compute_slots(event, calendar, request(start, "2026-01-31T00:00", now=now))
    return dates(slots)


def test_rolling_window_counts_only_days_with_slots() -> None:
    now = at("2026-01-12T07:00")  # Monday
    assert rolling_window_dates_for("2026-01-12T00:00", now) == ["2026-01-12", "2026-01-14"]


def test_rolling_window_skips_days_left_without_slots() -> None:
    now = at("2026-01-12T07:00")
    busy = (BusyTime(at("2026-01-14T00:00"), at("2026-01-15T00:00")),)
    assert rolling_window_dates_for("2026-01-12T00:00", now, busy=busy) == [
        "2026-01-12",
        "2026-01-16",
    ]


def test_rolling_window_today_counts_only_with_slots_left() -> None:
    assert rolling_window_dates_for("2026-01-12T00:00", at("2026-01-12T11:30")) == [
        "2026-01-12",
        "2026-01-14",
    ]
    assert rolling_window_dates_for("2026-01-12T00:00", at("2026-01-12T12:00")) == [
        "2026-01-14",
        "2026-01-16",
    ]


def test_rolling_window_counts_days_before_the_requested_start() -> None:
    """The window is counted from today, not from the request's start: asking for a later
    range must not reveal days beyond the first ``days`` days with slots."""
    now = at("2026-01-12T07:00")
    assert rolling_window_dates_for("2026-01-14T00:00", now) == ["2026-01-14"]
    assert rolling_window_dates_for("2026-01-19T00:00", now) == []


def test_range_window_is_whole_days_in_the_schedule_zone() -> None:
    window = BookingWindow(
        PeriodType.RANGE, start_date=date(2026, 1, 13), end_date=date(2026, 1, 14)
    )
    event = EventRules(length=60, window=window)
    calendar = host(rule("00:00", "02:00"), rule("22:00", "23:59"), zone=BERLIN)
    slots = compute_slots(
        event, calendar, request("2026-01-12T00:00", "2026-01-17T00:00", zone=BERLIN)
    )
    starts = [s.start.astimezone(BERLIN).strftime("%m-%d %H:%M") for s in slots]
    assert starts == [
        "01-13 00:00",
        "01-13 01:00",
        "01-13 22:00",
        "01-13 23:00",
        "01-14 00:00",
        "01-14 01:00",
        "01-14 22:00",
        "01-14 23:00",
    ]


def test_range_window_in_the_past_gives_nothing() -> None:
    window = BookingWindow(
        PeriodType.RANGE, start_date=date(2025, 12, 1), end_date=date(2025, 12, 31)
    )
    assert window_dates(window) == []


# --- seats -------------------------------------------------------------------------------------


def seated(start: str, end: str, attendees: int, uid: str = "abc") -> SeatedBooking:
    return SeatedBooking(at(start), at(end), uid, attendees)


def test_open_seat_slot_is_offered_with_attendees_and_uid() -> None:
    event = EventRules(length=30, seats_per_time_slot=3)
    calendar = host(seated=(seated("2026-01-12T10:00", "2026-01-12T10:30", 2),))
    slots = compute_slots(event, calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]
    seat = next(s for s in slots if s.start == at("2026-01-12T10:00"))
    assert (seat.attendees, seat.booking_uid) == (2, "abc")
    assert all(s.attendees is None and s.booking_uid is None for s in slots if s is not seat)


def test_full_seat_slot_is_removed() -> None:
    event = EventRules(length=30, seats_per_time_slot=3)
    calendar = host(seated=(seated("2026-01-12T10:00", "2026-01-12T10:30", 3),))
    slots = compute_slots(event, calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "10:30", "11:00", "11:30"]


def test_seated_booking_blocks_other_overlapping_starts() -> None:
    event = EventRules(length=60, slot_interval=30, seats_per_time_slot=5)
    calendar = host(seated=(seated("2026-01-12T10:00", "2026-01-12T11:00", 1),))
    slots = compute_slots(event, calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "10:00", "11:00"]
    assert [s.booking_uid for s in slots] == [None, "abc", None]


def test_open_seat_off_the_grid_is_offered_and_blocks_the_grid() -> None:
    event = EventRules(length=30, seats_per_time_slot=2)
    calendar = host(seated=(seated("2026-01-12T10:10", "2026-01-12T10:40", 1),))
    slots = compute_slots(event, calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "09:30", "10:10", "11:00", "11:30"]


def test_seated_booking_keeps_the_event_buffers() -> None:
    """A seated booking is a booking of this event type: its after buffer (15 min) blocks
    10:30 just as an ordinary booking of the same event type would."""
    event = EventRules(length=30, after_event_buffer=15, seats_per_time_slot=3)
    calendar = host(seated=(seated("2026-01-12T10:00", "2026-01-12T10:30", 1),))
    slots = compute_slots(event, calendar, day("2026-01-12"))
    assert times(slots) == ["09:00", "10:00", "11:00", "11:30"]
    plain = EventRules(length=30, after_event_buffer=15)
    as_busy = host(busy=(BusyTime(at("2026-01-12T10:00"), at("2026-01-12T10:30"), 0, 15),))
    assert times(compute_slots(plain, as_busy, day("2026-01-12"))) == ["09:00", "11:00", "11:30"]


def test_open_seat_is_not_offered_outside_working_hours_or_when_busy() -> None:
    event = EventRules(length=30, seats_per_time_slot=3)
    outside = host(seated=(seated("2026-01-12T13:00", "2026-01-12T13:30", 1),))
    assert "13:00" not in times(compute_slots(event, outside, day("2026-01-12")))
    busy = (BusyTime(at("2026-01-12T10:15"), at("2026-01-12T10:45")),)
    taken = host(seated=(seated("2026-01-12T10:00", "2026-01-12T10:30", 1),), busy=busy)
    assert times(compute_slots(event, taken, day("2026-01-12"))) == [
        "09:00",
        "09:30",
        "11:00",
        "11:30",
    ]


def test_open_seat_respects_notice_and_the_request_window() -> None:
    event = EventRules(length=30, seats_per_time_slot=3, minimum_booking_notice=60)
    calendar = host(seated=(seated("2026-01-12T10:00", "2026-01-12T10:30", 1),))
    late = compute_slots(event, calendar, day("2026-01-12", now=at("2026-01-12T09:30")))
    assert times(late) == ["10:30", "11:00", "11:30"]
    narrow = compute_slots(
        EventRules(length=30, seats_per_time_slot=3),
        calendar,
        request("2026-01-12T10:10", "2026-01-12T12:00"),
    )
    assert times(narrow) == ["10:30", "11:00", "11:30"]


def test_open_seat_of_a_day_long_event_is_checked_over_its_full_length() -> None:
    """The seat check must use the full length: a 25-hour event is not 1 hour long, so busy
    time in its thirteenth hour closes the seat."""
    event = EventRules(length=25 * 60, seats_per_time_slot=3)
    noon = at("2026-01-12T12:00")
    calendar = host(
        rule("00:00", "23:59"),
        seated=(seated("2026-01-12T00:00", "2026-01-13T01:00", 1),),
        busy=(BusyTime(noon, noon + timedelta(minutes=30)),),
    )
    assert compute_slots(event, calendar, request("2026-01-12T00:00", "2026-01-15T00:00")) == []


def test_seats_without_seated_bookings_behave_like_a_normal_event() -> None:
    seats = compute_slots(EventRules(length=30, seats_per_time_slot=4), host(), day("2026-01-12"))
    plain = compute_slots(EventRules(length=30), host(), day("2026-01-12"))
    assert seats == plain


# --- onlyShowFirstAvailableSlot ----------------------------------------------------------------


def test_only_first_available_slot_per_booker_local_date() -> None:
    event = EventRules(length=60, only_show_first_available_slot=True)
    calendar = host(rule("09:00", "12:00"), rule("20:00", "23:00"))
    for_utc = compute_slots(event, calendar, request("2026-01-12T00:00", "2026-01-14T00:00"))
    assert [s.start for s in for_utc] == [at("2026-01-12T09:00"), at("2026-01-13T09:00")]
    for_kolkata = compute_slots(
        event, calendar, request("2026-01-12T00:00", "2026-01-14T00:00", booker=KOLKATA)
    )
    # 20:00Z is 01:30 the next day in Kolkata: the first slot of that Kolkata date.
    assert [s.start for s in for_kolkata] == [
        at("2026-01-12T09:00"),
        at("2026-01-12T20:00"),
        at("2026-01-13T20:00"),
    ]


# --- request window and empty results ----------------------------------------------------------


def test_slots_lie_wholly_inside_the_request_window() -> None:
    slots = compute_slots(
        EventRules(length=30), host(), request("2026-01-12T09:15", "2026-01-12T11:15")
    )
    assert times(slots) == ["09:30", "10:00", "10:30"]


def test_request_window_in_another_zone_sees_the_same_instants() -> None:
    utc = compute_slots(EventRules(length=30), host(), day("2026-01-12"))
    wider = compute_slots(
        EventRules(length=30),
        host(),
        request("2026-01-12T00:00", "2026-01-13T00:00", zone=KOLKATA, booker=KOLKATA),
    )
    assert [s.start for s in wider] == [s.start for s in utc]


@pytest.mark.parametrize(
    ("event", "calendar", "slot_request"),
    [
        pytest.param(
            EventRules(length=30),
            HostCalendar(zone=UTC_ZONE, rules=()),
            day("2026-01-12"),
            id="no-working-hours",
        ),
        pytest.param(
            EventRules(length=30),
            host(busy=(BusyTime(at("2026-01-12T08:00"), at("2026-01-12T13:00")),)),
            day("2026-01-12"),
            id="all-busy",
        ),
        pytest.param(EventRules(length=240), host(), day("2026-01-12"), id="longer-than-the-hours"),
        pytest.param(
            EventRules(length=30),
            host(),
            day("2026-01-12", now=at("2026-01-13T00:00")),
            id="in-the-past",
        ),
        pytest.param(
            EventRules(length=30),
            host(),
            request("2026-01-12T13:00", "2026-01-12T20:00"),
            id="outside-the-hours",
        ),
        pytest.param(
            EventRules(length=30),
            host(),
            request("2026-01-12T12:00", "2026-01-12T09:00"),
            id="end-before-start",
        ),
        pytest.param(
            EventRules(length=30),
            host(rule("09:00", "17:00", frozenset({MON}))),
            day("2026-01-13"),
            id="not-a-working-day",
        ),
    ],
)
def test_empty_when_nothing_fits(
    event: EventRules, calendar: HostCalendar, slot_request: SlotRequest
) -> None:
    assert compute_slots(event, calendar, slot_request) == []


def test_free_time_returns_working_and_free_ranges() -> None:
    calendar = host(busy=(BusyTime(at("2026-01-12T10:00"), at("2026-01-12T10:30")),))
    working, free = free_time(EventRules(length=30), calendar, day("2026-01-12"), 30)
    assert Interval(at("2026-01-12T09:00"), at("2026-01-12T12:00")) in working
    assert free == [
        Interval(at("2026-01-12T09:00"), at("2026-01-12T10:00")),
        Interval(at("2026-01-12T10:30"), at("2026-01-12T12:00")),
    ]


def test_round_the_clock_hours_give_the_same_grid_whatever_the_window() -> None:
    # Every day 00:00-24:00 merges into one multi-day range; each day still anchors its own grid,
    # so asking for one day or for three gives that day the same instants.
    hours = host(rule("00:00", "23:59"))
    event = EventRules(length=50)
    one_day = compute_slots(event, hours, day("2026-01-13"))
    three_days = compute_slots(event, hours, request("2026-01-12T00:00", "2026-01-15T00:00"))
    end_of_13th = at("2026-01-14T00:00")
    thirteenth = [
        s for s in three_days if s.start.date() == date(2026, 1, 13) and s.end <= end_of_13th
    ]
    assert one_day == thirteenth
    assert times(one_day)[:3] == ["00:00", "00:50", "01:40"]
    for slot in three_days[:10]:
        alone = SlotRequest(slot.start, slot.end, NOW, UTC_ZONE)
        assert compute_slots(event, hours, alone) == [slot]


def test_limits_do_not_close_the_free_seats_of_an_existing_booking() -> None:
    # Cal.com #26883: with a limit of one booking a day, the first seat closed the other seats.
    from bookable.scheduling import PeriodLimits, SeatedBooking, check_booking

    ten = at("2026-01-13T10:00")
    seated = SeatedBooking(ten, ten + timedelta(minutes=30), "uid-1", attendees=1)
    counted = (BusyTime(seated.start, seated.end),)
    event = EventRules(length=30, seats_per_time_slot=3, booking_limits=PeriodLimits(per_day=1))
    calendar = host(rule("09:00", "12:00"), seated=(seated,), counted=counted)
    offered = compute_slots(event, calendar, day("2026-01-13"))
    assert [(s.start, s.booking_uid) for s in offered] == [(ten, "uid-1")]
    assert check_booking(event, calendar, ten, 30, NOW) is None
    refusal = check_booking(event, calendar, at("2026-01-13T11:00"), 30, NOW)
    assert refusal is not None and refusal.code == "booking_limit_reached"
