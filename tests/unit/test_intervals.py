"""Half-open intervals: merge, subtract and clip on the edge cases the engine relies on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bookable.scheduling.intervals import Interval, clip, merge, subtract


def iv(start: int, end: int) -> Interval:
    """An interval between two hours of 2026-01-12 UTC (24 = next midnight)."""
    base = datetime(2026, 1, 12, tzinfo=UTC).timestamp()
    return Interval(
        datetime.fromtimestamp(base + start * 3600, UTC),
        datetime.fromtimestamp(base + end * 3600, UTC),
    )


# --- Interval ----------------------------------------------------------------------------------


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError):
        Interval(datetime(2026, 1, 12, 9), datetime(2026, 1, 12, 10, tzinfo=UTC))
    with pytest.raises(ValueError):
        Interval(datetime(2026, 1, 12, 9, tzinfo=UTC), datetime(2026, 1, 12, 10))


def test_empty_when_end_not_after_start() -> None:
    assert iv(9, 9).empty
    assert iv(10, 9).empty
    assert not iv(9, 10).empty


def test_touching_intervals_do_not_overlap() -> None:
    assert not iv(9, 10).overlaps(iv(10, 11))
    assert not iv(10, 11).overlaps(iv(9, 10))
    assert iv(9, 11).overlaps(iv(10, 12))
    assert iv(9, 12).overlaps(iv(10, 11))


def test_contains_includes_equal_edges() -> None:
    assert iv(9, 12).contains(iv(9, 12))
    assert iv(9, 12).contains(iv(10, 11))
    assert not iv(9, 12).contains(iv(8, 10))
    assert not iv(9, 12).contains(iv(11, 13))


# --- merge -------------------------------------------------------------------------------------


def test_merge_empty_input() -> None:
    assert merge([]) == []


def test_merge_drops_empty_intervals() -> None:
    assert merge([iv(9, 9), iv(11, 10)]) == []
    assert merge([iv(9, 9), iv(10, 11)]) == [iv(10, 11)]


def test_merge_touching_become_one() -> None:
    assert merge([iv(9, 10), iv(10, 11)]) == [iv(9, 11)]


def test_merge_overlapping_become_one() -> None:
    assert merge([iv(9, 11), iv(10, 12)]) == [iv(9, 12)]


def test_merge_contained_is_absorbed() -> None:
    assert merge([iv(9, 17), iv(10, 11)]) == [iv(9, 17)]
    assert merge([iv(10, 11), iv(9, 17)]) == [iv(9, 17)]


def test_merge_same_start_keeps_longest() -> None:
    assert merge([iv(9, 10), iv(9, 12)]) == [iv(9, 12)]


def test_merge_sorts_and_keeps_gaps() -> None:
    assert merge([iv(14, 15), iv(9, 10), iv(12, 13)]) == [iv(9, 10), iv(12, 13), iv(14, 15)]


def test_merge_chain_across_midnight() -> None:
    assert merge([iv(22, 24), iv(24, 26), iv(25, 27)]) == [iv(22, 27)]


# --- subtract ----------------------------------------------------------------------------------


def test_subtract_no_holes() -> None:
    assert subtract([iv(9, 17)], []) == [iv(9, 17)]


def test_subtract_from_nothing() -> None:
    assert subtract([], [iv(9, 17)]) == []


def test_subtract_hole_in_the_middle_splits_in_two() -> None:
    assert subtract([iv(9, 17)], [iv(12, 13)]) == [iv(9, 12), iv(13, 17)]


def test_subtract_hole_touching_edges_changes_nothing() -> None:
    assert subtract([iv(9, 17)], [iv(8, 9), iv(17, 18)]) == [iv(9, 17)]


def test_subtract_hole_at_the_start_or_end() -> None:
    assert subtract([iv(9, 17)], [iv(8, 10)]) == [iv(10, 17)]
    assert subtract([iv(9, 17)], [iv(16, 18)]) == [iv(9, 16)]
    assert subtract([iv(9, 17)], [iv(9, 10)]) == [iv(10, 17)]
    assert subtract([iv(9, 17)], [iv(16, 17)]) == [iv(9, 16)]


def test_subtract_hole_equal_to_or_containing_the_range() -> None:
    assert subtract([iv(9, 17)], [iv(9, 17)]) == []
    assert subtract([iv(9, 17)], [iv(8, 18)]) == []


def test_subtract_several_holes_and_ranges() -> None:
    ranges = [iv(9, 12), iv(14, 18)]
    holes = [iv(10, 11), iv(11, 15), iv(16, 17)]
    assert subtract(ranges, holes) == [iv(9, 10), iv(15, 16), iv(17, 18)]


def test_subtract_overlapping_holes_are_merged_first() -> None:
    assert subtract([iv(9, 17)], [iv(12, 14), iv(10, 13)]) == [iv(9, 10), iv(14, 17)]


def test_subtract_one_hole_spanning_two_ranges() -> None:
    assert subtract([iv(9, 12), iv(13, 17)], [iv(11, 14)]) == [iv(9, 11), iv(14, 17)]


def test_subtract_empty_hole_is_ignored() -> None:
    assert subtract([iv(9, 17)], [iv(12, 12)]) == [iv(9, 17)]


def test_subtract_merges_ranges_first() -> None:
    assert subtract([iv(9, 12), iv(12, 17)], [iv(20, 21)]) == [iv(9, 17)]


# --- clip --------------------------------------------------------------------------------------


def test_clip_partial_overlap() -> None:
    assert clip([iv(8, 12), iv(14, 20)], iv(10, 16)) == [iv(10, 12), iv(14, 16)]


def test_clip_range_containing_the_window() -> None:
    assert clip([iv(0, 24)], iv(10, 16)) == [iv(10, 16)]


def test_clip_drops_ranges_outside_or_touching() -> None:
    assert clip([iv(6, 10), iv(16, 18)], iv(10, 16)) == []
    assert clip([iv(1, 2)], iv(10, 16)) == []


def test_clip_empty_inputs() -> None:
    assert clip([], iv(10, 16)) == []
    assert clip([iv(9, 17)], iv(12, 12)) == []
