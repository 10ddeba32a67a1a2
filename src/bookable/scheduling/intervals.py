"""Half-open UTC intervals [start, end) and the set operations the engine needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("intervals hold aware instants")

    @property
    def empty(self) -> bool:
        return self.end <= self.start

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


def _span(interval: Interval) -> tuple[datetime, datetime]:
    return interval.start, interval.end


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping; touching intervals (end == next start) become one."""
    merged: list[Interval] = []
    # Sorted by a plain tuple: the dataclass's own ordering builds two tuples per comparison.
    for current in sorted((i for i in intervals if not i.empty), key=_span):
        if merged and current.start <= merged[-1].end:
            if current.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, current.end)
        else:
            merged.append(current)
    return merged


def subtract(ranges: Iterable[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """``ranges`` minus every hole; a range split by a hole yields two pieces."""
    holes_sorted = merge(holes)
    result: list[Interval] = []
    for interval in merge(ranges):
        start = interval.start
        for hole in holes_sorted:
            if hole.end <= start:
                continue
            if hole.start >= interval.end:
                break
            if hole.start > start:
                result.append(Interval(start, hole.start))
            start = max(start, hole.end)
            if start >= interval.end:
                break
        if start < interval.end:
            result.append(Interval(start, interval.end))
    return result


def clip(ranges: Iterable[Interval], window: Interval) -> list[Interval]:
    clipped = (
        Interval(max(r.start, window.start), min(r.end, window.end))
        for r in ranges
        if r.overlaps(window)
    )
    return [c for c in clipped if not c.empty]
