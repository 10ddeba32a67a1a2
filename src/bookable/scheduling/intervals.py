"""Half-open UTC intervals [start, end) and the set operations the engine needs.

The operations work on plain ``(start, end)`` tuples (`Span`): the slots path handles thousands
of busy times per request, and a frozen dataclass costs about ten times a tuple to build (with a
Python-level ``__post_init__`` each). `Interval` is the public value; `merge`, `subtract` and
`clip` take and give Intervals on top of the span functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# [start, end) as a plain tuple: compares and sorts by start, then end.
Span = tuple[datetime, datetime]


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


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping; touching spans (end == next start) become one; empty ones go."""
    merged: list[Span] = []
    last_end: datetime | None = None
    for start, end in sorted([span for span in spans if span[0] < span[1]]):
        if last_end is not None and start <= last_end:
            if end > last_end:
                merged[-1] = (merged[-1][0], end)
                last_end = end
        else:
            merged.append((start, end))
            last_end = end
    return merged


def subtract_spans(ranges: Iterable[Span], holes: Iterable[Span]) -> list[Span]:
    """``ranges`` minus every hole; a range split by a hole yields two pieces."""
    holes_sorted = merge_spans(holes)
    hole_count = len(holes_sorted)
    result: list[Span] = []
    # Ranges and holes are both sorted and disjoint: one pass over each, not ranges x holes
    # (a 31-day window against 5,000 bookings made that 100,000 steps).
    first_hole = 0
    for range_start, range_end in merge_spans(ranges):
        while first_hole < hole_count and holes_sorted[first_hole][1] <= range_start:
            first_hole += 1
        start = range_start
        for index in range(first_hole, hole_count):
            hole_start, hole_end = holes_sorted[index]
            if hole_start >= range_end:
                break
            if hole_start > start:
                result.append((start, hole_start))
            if hole_end > start:
                start = hole_end
            if start >= range_end:
                break
        if start < range_end:
            result.append((start, range_end))
    return result


def clip_spans(ranges: Iterable[Span], window_start: datetime, window_end: datetime) -> list[Span]:
    """Each range cut to [window_start, window_end); those left empty go."""
    clipped: list[Span] = []
    for start, end in ranges:
        start = max(start, window_start)
        end = min(end, window_end)
        if start < end:
            clipped.append((start, end))
    return clipped


def _spans(intervals: Iterable[Interval]) -> list[Span]:
    return [(i.start, i.end) for i in intervals]


def _intervals(spans: Iterable[Span]) -> list[Interval]:
    return [Interval(start, end) for start, end in spans]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping; touching intervals (end == next start) become one."""
    return _intervals(merge_spans(_spans(intervals)))


def subtract(ranges: Iterable[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """``ranges`` minus every hole; a range split by a hole yields two pieces."""
    return _intervals(subtract_spans(_spans(ranges), _spans(holes)))


def clip(ranges: Iterable[Interval], window: Interval) -> list[Interval]:
    return _intervals(clip_spans(_spans(ranges), window.start, window.end))
