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


def rolling_window_dates(
    slot_dates: list[date], today: date, days: int, count_calendar_days: bool = True
) -> set[date]:
    """ROLLING_WINDOW: the dates from today on up to the ``days``-th date that has a slot.

    Only dates with at least one slot count, so a fully booked day extends the window. With
    ``count_calendar_days`` false only Monday-Friday dates count (as for ROLLING): a weekend
    with slots stays bookable when it lies before the last counted day, but never uses up the
    window. When fewer counted dates exist than ``days``, every date given is inside.
    """
    ahead = sorted({d for d in slot_dates if d >= today})
    counted = [d for d in ahead if count_calendar_days or d.weekday() < 5]
    if len(counted) < days:
        return set(ahead)
    last = counted[days - 1]
    return {d for d in ahead if d <= last}
