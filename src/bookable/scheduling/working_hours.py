"""Working hours → UTC ranges, built per local date from that date's own wall-clock times.

Never one UTC offset for a whole range of dates: each local date is converted on its own, so the
days around a DST change get their true instants (Cal.com's #30021 shifts afternoons by an hour).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bookable.scheduling.intervals import Interval, merge
from bookable.scheduling.model import AvailabilityRule

MIDNIGHT = time(0, 0)


def local_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time on a local date.

    In the spring-forward gap a wall time does not exist; it is read with the offset from before
    the change (02:30 becomes 03:30 daylight time). In the autumn overlap, the first occurrence.
    """
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    return local_instant(day, MIDNIGHT, zone)


def cal_weekday(day: date) -> int:
    """0 = Sunday … 6 = Saturday, as Cal.com numbers days."""
    return (day.weekday() + 1) % 7


def _ends_at_midnight(rule: AvailabilityRule) -> bool:
    end = rule.end.replace(microsecond=0)
    return (end.hour, end.minute) == (23, 59) or (end == MIDNIGHT and rule.start != MIDNIGHT)


def rule_interval(rule: AvailabilityRule, day: date, zone: ZoneInfo) -> Interval | None:
    start = local_instant(day, rule.start, zone)
    end = (
        start_of_day(day + timedelta(days=1), zone)
        if _ends_at_midnight(rule)
        else local_instant(day, rule.end, zone)
    )
    return Interval(start, end) if end > start else None


def local_dates(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def day_ranges(
    rules: Iterable[AvailabilityRule], zone: ZoneInfo, window_start: datetime, window_end: datetime
) -> list[Interval]:
    """Working time of every local date the window touches, one interval per rule and date,
    sorted, not merged: each keeps its own start, where the slot grid of that day is anchored.

    A date with any override uses only its overrides (00:00-00:00 leaves it empty). The window
    only chooses the dates (one either side, since a neighbouring date can reach into it); the
    intervals themselves are not clipped, so they do not depend on the window.
    """
    weekly: list[AvailabilityRule] = []
    overrides: dict[date, list[AvailabilityRule]] = defaultdict(list)
    for rule in rules:
        if rule.date is not None:
            overrides[rule.date].append(rule)
        else:
            weekly.append(rule)

    first = window_start.astimezone(zone).date() - timedelta(days=1)
    last = window_end.astimezone(zone).date() + timedelta(days=1)
    ranges: list[Interval] = []
    for day in local_dates(first, last):
        todays = overrides.get(day)
        if todays is None:
            weekday = cal_weekday(day)
            todays = [rule for rule in weekly if weekday in rule.days]
        for rule in todays:
            interval = rule_interval(rule, day, zone)
            if interval is not None:
                ranges.append(interval)
    return sorted(ranges)


def working_ranges(
    rules: Iterable[AvailabilityRule], zone: ZoneInfo, window_start: datetime, window_end: datetime
) -> list[Interval]:
    """`day_ranges` merged: touching or overlapping working time becomes one range."""
    return merge(day_ranges(rules, zone, window_start, window_end))
