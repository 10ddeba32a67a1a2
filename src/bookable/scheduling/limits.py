"""Booking and duration limits: a period that is full becomes one busy block.

Periods are calendar days, weeks (starting on the owner's week start), months and years in the
schedule's zone. A booking belongs to the period its start falls in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from bookable.scheduling.intervals import Interval
from bookable.scheduling.model import BusyTime, PeriodLimits
from bookable.scheduling.working_hours import cal_weekday, start_of_day

PeriodOf = Callable[[date], tuple[date, date]]


def _day(day: date) -> tuple[date, date]:
    return day, day + timedelta(days=1)


def _week(week_start: int) -> PeriodOf:
    def period(day: date) -> tuple[date, date]:
        first = day - timedelta(days=(cal_weekday(day) - week_start) % 7)
        return first, first + timedelta(days=7)

    return period


def _month(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following


def _year(day: date) -> tuple[date, date]:
    return date(day.year, 1, 1), date(day.year + 1, 1, 1)


def blocked_periods(
    *,
    booking_limits: PeriodLimits | None,
    duration_limits: PeriodLimits | None,
    counted: Iterable[BusyTime],
    length: int,
    zone: ZoneInfo,
    week_start: int,
    window_start: datetime,
    window_end: datetime,
) -> list[Interval]:
    """Whole periods in which one more booking of ``length`` minutes would break a limit."""
    if booking_limits is None and duration_limits is None:
        return []
    starts = [(b.start.astimezone(zone).date(), b) for b in counted]
    blocked: list[Interval] = []
    units: list[tuple[PeriodOf, str]] = [
        (_year, "per_year"),
        (_month, "per_month"),
        (_week(week_start), "per_week"),
        (_day, "per_day"),
    ]
    first_day = window_start.astimezone(zone).date()
    last_day = window_end.astimezone(zone).date()
    for period_of, attribute in units:
        max_count = getattr(booking_limits, attribute) if booking_limits else None
        max_minutes = getattr(duration_limits, attribute) if duration_limits else None
        if max_count is None and max_minutes is None:
            continue
        counts: dict[date, int] = defaultdict(int)
        minutes: dict[date, float] = defaultdict(float)
        for day, booking in starts:
            first = period_of(day)[0]
            counts[first] += 1
            minutes[first] += (booking.end - booking.start).total_seconds() / 60
        day = first_day
        while day <= last_day:
            first, following = period_of(day)
            if (max_count is not None and counts[first] >= max_count) or (
                max_minutes is not None and minutes[first] + length > max_minutes
            ):
                blocked.append(Interval(start_of_day(first, zone), start_of_day(following, zone)))
            day = following
    return blocked
