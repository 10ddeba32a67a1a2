"""ROLLING_WINDOW with periodCountCalendarDays false: only Monday-Friday dates that have slots
count toward the window; weekends inside it stay bookable; fully booked days do not count.

Dates: 2026-01-09 is a Friday, 2026-01-10/11 the weekend, 2026-01-12 a Monday.
Europe/Berlin springs forward on Sunday 2026-03-29 (02:00 → 03:00).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bookable.scheduling import (
    AvailabilityRule,
    BookingWindow,
    BusyTime,
    EventRules,
    HostCalendar,
    PeriodType,
    SlotRequest,
    check_booking,
    compute_slots,
)
from bookable.scheduling.window import rolling_window_dates

EVERY_DAY = frozenset(range(7))
BERLIN = ZoneInfo("Europe/Berlin")
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14, as far ahead of UTC as zones go
UTC_ZONE = ZoneInfo("UTC")


def at(text: str, zone: ZoneInfo = UTC_ZONE) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)


def calendar(zone: ZoneInfo = UTC_ZONE, busy: tuple[BusyTime, ...] = ()) -> HostCalendar:
    rules = (AvailabilityRule(EVERY_DAY, time(9), time(12)),)
    return HostCalendar(zone=zone, rules=rules, busy=busy)


def event(days: int, calendar_days: bool) -> EventRules:
    window = BookingWindow(PeriodType.ROLLING_WINDOW, days=days, count_calendar_days=calendar_days)
    return EventRules(length=60, window=window)


def slot_dates(
    rules: EventRules, host: HostCalendar, now: datetime, start: str, end: str
) -> list[str]:
    request = SlotRequest(at(start, host.zone), at(end, host.zone), now, host.zone)
    slots = compute_slots(rules, host, request)
    return sorted({s.start.astimezone(host.zone).date().isoformat() for s in slots})


FRIDAY_EARLY = at("2026-01-09T07:00")


def test_business_days_skip_the_weekend_but_keep_it_bookable() -> None:
    dates = slot_dates(event(2, False), calendar(), FRIDAY_EARLY, "2026-01-09T00:00", "2026-01-20")
    # Friday and Monday count; Saturday and Sunday lie between them and stay bookable.
    assert dates == ["2026-01-09", "2026-01-10", "2026-01-11", "2026-01-12"]


def test_calendar_days_count_the_weekend() -> None:
    dates = slot_dates(event(2, True), calendar(), FRIDAY_EARLY, "2026-01-09T00:00", "2026-01-20")
    assert dates == ["2026-01-09", "2026-01-10"]


def test_a_weekend_after_the_last_counted_day_is_outside() -> None:
    dates = slot_dates(event(1, False), calendar(), FRIDAY_EARLY, "2026-01-09T00:00", "2026-01-20")
    assert dates == ["2026-01-09"]


def test_a_weekend_today_does_not_count() -> None:
    saturday = at("2026-01-10T07:00")
    dates = slot_dates(event(1, False), calendar(), saturday, "2026-01-10T00:00", "2026-01-20")
    assert dates == ["2026-01-10", "2026-01-11", "2026-01-12"]


def test_a_fully_booked_business_day_does_not_count() -> None:
    monday_taken = (BusyTime(at("2026-01-12T09:00"), at("2026-01-12T12:00")),)
    dates = slot_dates(
        event(2, False), calendar(busy=monday_taken), FRIDAY_EARLY, "2026-01-09T00:00", "2026-01-20"
    )
    assert dates == ["2026-01-09", "2026-01-10", "2026-01-11", "2026-01-13"]


def test_days_before_the_requested_start_use_up_the_window() -> None:
    dates = slot_dates(event(2, False), calendar(), FRIDAY_EARLY, "2026-01-12T00:00", "2026-01-20")
    assert dates == ["2026-01-12"]


def test_dst_weekend_in_berlin() -> None:
    """Friday 03-27 counts, the DST Sunday 03-29 does not, Monday 03-30 is the second day; the
    Sunday's slots stay on the wall clock (09:00-11:00 local, 07:00-09:00 UTC after the change)."""
    host = calendar(BERLIN)
    now = at("2026-03-27T07:00", BERLIN)
    request = SlotRequest(
        at("2026-03-27T00:00", BERLIN), at("2026-04-03T00:00", BERLIN), now, BERLIN
    )
    slots = compute_slots(event(2, False), host, request)
    by_date: dict[str, list[str]] = {}
    for s in slots:
        local = s.start.astimezone(BERLIN)
        by_date.setdefault(local.date().isoformat(), []).append(local.strftime("%H:%M"))
    assert list(by_date) == ["2026-03-27", "2026-03-28", "2026-03-29", "2026-03-30"]
    assert by_date["2026-03-29"] == ["09:00", "10:00", "11:00"]
    sunday_first = min(s.start for s in slots if s.start.astimezone(BERLIN).day == 29)
    assert sunday_first == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_days_are_dated_in_a_zone_far_from_utc() -> None:
    """20:00Z on Friday 01-09 is already Saturday 10:00 in Kiritimati (UTC+14): today is a
    weekend day there, so the one business day is Monday 01-12 local."""
    host = calendar(KIRITIMATI)
    now = at("2026-01-09T20:00")
    dates = slot_dates(event(1, False), host, now, "2026-01-10T00:00", "2026-01-20")
    assert dates == ["2026-01-10", "2026-01-11", "2026-01-12"]
    assert slot_dates(event(1, True), host, now, "2026-01-10T00:00", "2026-01-20") == ["2026-01-10"]


@pytest.mark.parametrize(
    ("start", "refused"),
    [("2026-01-12T09:00", False), ("2026-01-10T11:00", False), ("2026-01-13T09:00", True)],
    ids=["last-counted-day", "weekend-inside", "day-after"],
)
def test_booking_at_the_edge_of_the_window(start: str, refused: bool) -> None:
    refusal = check_booking(event(2, False), calendar(), at(start), 60, FRIDAY_EARLY)
    if refused:
        assert refusal is not None
        assert refusal.code == "booking_time_out_of_bounds_error"
    else:
        assert refusal is None


def test_rolling_window_dates_counts_only_weekdays_when_asked() -> None:
    fri, sat, sun, mon, tue = (date(2026, 1, d) for d in range(9, 14))
    dates = [fri, sat, sun, mon, tue]
    assert rolling_window_dates(dates, fri, 2, count_calendar_days=False) == {fri, sat, sun, mon}
    assert rolling_window_dates(dates, fri, 2, count_calendar_days=True) == {fri, sat}
    assert rolling_window_dates([sat, sun], sat, 1, count_calendar_days=False) == {sat, sun}
