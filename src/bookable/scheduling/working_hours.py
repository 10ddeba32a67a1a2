"""Working hours → UTC ranges, built per local date from that date's own wall-clock times.

Never one UTC offset for a whole range of dates: each local date is converted on its own, so the
days around a DST change get their true instants (Cal.com's #30021 shifts afternoons by an hour).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bookable.scheduling.intervals import Interval, Span, merge_spans
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
    span = _rule_span(rule, _ends_at_midnight(rule), day, zone)
    return Interval(*span) if span is not None else None


def _rule_span(rule: AvailabilityRule, to_midnight: bool, day: date, zone: ZoneInfo) -> Span | None:
    start = local_instant(day, rule.start, zone)
    end = (
        start_of_day(day + timedelta(days=1), zone)
        if to_midnight
        else local_instant(day, rule.end, zone)
    )
    return (start, end) if end > start else None


def local_dates(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def day_spans(
    rules: Iterable[AvailabilityRule], zone: ZoneInfo, window_start: datetime, window_end: datetime
) -> list[Span]:
    """Working time of every local date the window touches, one span per rule and date,
    sorted, not merged: each keeps its own start, where the slot grid of that day is anchored.

    A date with any override uses only its overrides (00:00-00:00 leaves it empty). The window
    only chooses the dates (one either side, since a neighbouring date can reach into it); the
    spans themselves are not clipped, so they do not depend on the window.
    """
    # Each rule with whether it runs to midnight, and the weekly ones by weekday: worked out
    # once, not per date.
    by_weekday: list[list[tuple[AvailabilityRule, bool]]] = [[] for _ in range(7)]
    overrides: dict[date, list[tuple[AvailabilityRule, bool]]] = defaultdict(list)
    for rule in rules:
        entry = (rule, _ends_at_midnight(rule))
        if rule.date is not None:
            overrides[rule.date].append(entry)
        else:
            for weekday in rule.days:
                if 0 <= weekday < 7:
                    by_weekday[weekday].append(entry)

    first = window_start.astimezone(zone).date() - timedelta(days=1)
    last = window_end.astimezone(zone).date() + timedelta(days=1)
    spans: list[Span] = []
    for day in local_dates(first, last):
        todays = overrides.get(day)
        if todays is None:
            todays = by_weekday[cal_weekday(day)]
        for rule, to_midnight in todays:
            span = _rule_span(rule, to_midnight, day, zone)
            if span is not None:
                spans.append(span)
    spans.sort()
    return spans


def day_ranges(
    rules: Iterable[AvailabilityRule], zone: ZoneInfo, window_start: datetime, window_end: datetime
) -> list[Interval]:
    """`day_spans` as Intervals."""
    return [Interval(*span) for span in day_spans(rules, zone, window_start, window_end)]


def working_ranges(
    rules: Iterable[AvailabilityRule], zone: ZoneInfo, window_start: datetime, window_end: datetime
) -> list[Interval]:
    """`day_ranges` merged: touching or overlapping working time becomes one range."""
    days = day_spans(rules, zone, window_start, window_end)
    return [Interval(*span) for span in merge_spans(days)]
