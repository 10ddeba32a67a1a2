"""The booking window: how far ahead an event type may be booked (periodType)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from bookable.scheduling.intervals import Interval
from bookable.scheduling.model import BookingWindow, PeriodType
from bookable.scheduling.working_hours import start_of_day

# Far enough for "no limit" yet safe for datetime arithmetic.
_FOREVER = timedelta(days=366 * 100)


def add_business_days(start: date, days: int) -> date:
    """``days`` Monday-to-Friday days after ``start`` (weekends are not counted)."""
    day = start
    while days > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day


def window_bounds(window: BookingWindow, zone: ZoneInfo, now: datetime) -> Interval:
    """The instants a slot must start and end within, for UNLIMITED, ROLLING and RANGE.

    ROLLING counts ``days`` from today in the event's zone (calendar or business days) and ends
    at the end of the last day. ROLLING_WINDOW is applied after slots exist (it counts only days
    that have slots): see `rolling_window_dates`.
    """
    if window.type == PeriodType.ROLLING and window.days is not None:
        today = now.astimezone(zone).date()
        last = (
            today + timedelta(days=window.days)
            if window.count_calendar_days
            else add_business_days(today, window.days)
        )
        return Interval(now - _FOREVER, start_of_day(last + timedelta(days=1), zone))
    if window.type == PeriodType.RANGE and window.start_date and window.end_date:
        return Interval(
            start_of_day(window.start_date, zone),
            start_of_day(window.end_date + timedelta(days=1), zone),
        )
    return Interval(now - _FOREVER, now + _FOREVER)


def rolling_window_dates(slot_dates: list[date], today: date, days: int) -> set[date]:
    """ROLLING_WINDOW: the first ``days`` dates from today on that have at least one slot."""
    ahead = sorted({d for d in slot_dates if d >= today})
    return set(ahead[:days])
