"""Working hours → UTC ranges: weekly rules, midnight ends, date overrides, neighbouring dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bookable.scheduling import AvailabilityRule, working_ranges
from bookable.scheduling.intervals import Interval
from bookable.scheduling.working_hours import cal_weekday, local_instant

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")

# 2026-01-11 is a Sunday, 2026-01-12 a Monday (Cal.com day 1) … 2026-01-17 a Saturday.
SUN, MON, TUE, WED, THU, FRI, SAT = range(7)


def weekly(start: str, end: str, *days: int) -> AvailabilityRule:
    return AvailabilityRule(frozenset(days), time.fromisoformat(start), time.fromisoformat(end))


def override(day: str, start: str, end: str) -> AvailabilityRule:
    return AvailabilityRule(
        frozenset(), time.fromisoformat(start), time.fromisoformat(end), date.fromisoformat(day)
    )


def local(text: str, zone: ZoneInfo = UTC) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)


def span(start: str, end: str, zone: ZoneInfo = UTC) -> Interval:
    return Interval(local(start, zone), local(end, zone))


def day_window(day: str, zone: ZoneInfo = UTC) -> tuple[datetime, datetime]:
    start = local(f"{day}T00:00", zone)
    following = date.fromisoformat(day) + timedelta(days=1)
    return start, local(f"{following.isoformat()}T00:00", zone)


def ranges_on(rules: list[AvailabilityRule], day: str, zone: ZoneInfo = UTC) -> list[Interval]:
    """The ranges that start on ``day`` (local), out of everything returned for that day."""
    start, end = day_window(day, zone)
    return [r for r in working_ranges(rules, zone, start, end) if start <= r.start < end]


def test_cal_weekday_numbers_sunday_zero() -> None:
    assert cal_weekday(date(2026, 1, 11)) == SUN
    assert cal_weekday(date(2026, 1, 12)) == MON
    assert cal_weekday(date(2026, 1, 17)) == SAT


def test_weekly_rule_applies_only_on_its_days() -> None:
    rules = [weekly("09:00", "17:00", MON, WED)]
    start, end = local("2026-01-12T00:00"), local("2026-01-15T00:00")
    result = [r for r in working_ranges(rules, UTC, start, end) if start <= r.start < end]
    assert result == [
        span("2026-01-12T09:00", "2026-01-12T17:00"),
        span("2026-01-14T09:00", "2026-01-14T17:00"),
    ]


def test_weekly_rule_is_wall_clock_in_the_schedule_zone() -> None:
    assert ranges_on([weekly("09:00", "17:00", MON)], "2026-01-12", KOLKATA) == [
        span("2026-01-12T03:30", "2026-01-12T11:30")
    ]


def test_several_rules_on_one_day_stay_separate() -> None:
    rules = [weekly("09:00", "12:00", MON), weekly("14:00", "17:00", MON)]
    assert ranges_on(rules, "2026-01-12") == [
        span("2026-01-12T09:00", "2026-01-12T12:00"),
        span("2026-01-12T14:00", "2026-01-12T17:00"),
    ]


def test_overlapping_rules_merge() -> None:
    rules = [weekly("09:00", "13:00", MON), weekly("12:00", "17:00", MON)]
    assert ranges_on(rules, "2026-01-12") == [span("2026-01-12T09:00", "2026-01-12T17:00")]


def test_end_2359_means_midnight() -> None:
    assert ranges_on([weekly("20:00", "23:59", MON)], "2026-01-12", BERLIN) == [
        span("2026-01-12T20:00", "2026-01-13T00:00", BERLIN)
    ]


def test_end_2359_with_seconds_means_midnight() -> None:
    rules = [AvailabilityRule(frozenset({MON}), time(20), time(23, 59, 59))]
    assert ranges_on(rules, "2026-01-12") == [span("2026-01-12T20:00", "2026-01-13T00:00")]


def test_end_0000_after_a_later_start_means_midnight() -> None:
    assert ranges_on([weekly("20:00", "00:00", MON)], "2026-01-12", BERLIN) == [
        span("2026-01-12T20:00", "2026-01-13T00:00", BERLIN)
    ]


def test_whole_day_rule() -> None:
    assert ranges_on([weekly("00:00", "23:59", MON)], "2026-01-12") == [
        span("2026-01-12T00:00", "2026-01-13T00:00")
    ]


def test_end_before_start_yields_nothing() -> None:
    assert ranges_on([weekly("17:00", "09:00", MON)], "2026-01-12") == []


def test_override_replaces_the_whole_day() -> None:
    rules = [
        weekly("09:00", "12:00", MON),
        weekly("14:00", "17:00", MON),
        override("2026-01-12", "10:00", "11:00"),
    ]
    assert ranges_on(rules, "2026-01-12") == [span("2026-01-12T10:00", "2026-01-12T11:00")]
    # Other Mondays keep their weekly hours.
    assert ranges_on(rules, "2026-01-19") == [
        span("2026-01-19T09:00", "2026-01-19T12:00"),
        span("2026-01-19T14:00", "2026-01-19T17:00"),
    ]


def test_override_0000_0000_is_a_day_off() -> None:
    rules = [weekly("09:00", "17:00", MON, TUE), override("2026-01-12", "00:00", "00:00")]
    start, end = local("2026-01-12T00:00"), local("2026-01-14T00:00")
    assert [r for r in working_ranges(rules, UTC, start, end) if start <= r.start < end] == [
        span("2026-01-13T09:00", "2026-01-13T17:00")
    ]


def test_override_on_a_day_without_weekly_hours_adds_hours() -> None:
    rules = [
        weekly("09:00", "17:00", MON, TUE, WED, THU, FRI),
        override("2026-01-17", "10:00", "12:00"),
    ]
    assert ranges_on(rules, "2026-01-17") == [span("2026-01-17T10:00", "2026-01-17T12:00")]


def test_several_overrides_on_one_date_are_all_kept() -> None:
    rules = [
        weekly("09:00", "17:00", MON),
        override("2026-01-12", "08:00", "09:00"),
        override("2026-01-12", "18:00", "20:00"),
        override("2026-01-12", "12:00", "13:00"),
    ]
    assert ranges_on(rules, "2026-01-12") == [
        span("2026-01-12T08:00", "2026-01-12T09:00"),
        span("2026-01-12T12:00", "2026-01-12T13:00"),
        span("2026-01-12T18:00", "2026-01-12T20:00"),
    ]


def test_override_day_off_among_other_overrides_on_the_date() -> None:
    """00:00-00:00 next to a real override on the same date: the real one still counts."""
    rules = [
        weekly("09:00", "17:00", MON),
        override("2026-01-12", "00:00", "00:00"),
        override("2026-01-12", "10:00", "11:00"),
    ]
    assert ranges_on(rules, "2026-01-12") == [span("2026-01-12T10:00", "2026-01-12T11:00")]


def test_override_ending_2359_means_midnight() -> None:
    rules = [override("2026-01-12", "22:00", "23:59")]
    assert ranges_on(rules, "2026-01-12", BERLIN) == [
        span("2026-01-12T22:00", "2026-01-13T00:00", BERLIN)
    ]


def test_override_is_a_local_date_of_the_schedule_zone() -> None:
    rules = [override("2026-01-12", "01:00", "03:00")]
    start, end = local("2026-01-11T00:00"), local("2026-01-14T00:00")
    # 01:00-03:00 in Kolkata on 2026-01-12 is 2026-01-11 19:30Z - 21:30Z.
    assert working_ranges(rules, KOLKATA, start, end) == [
        span("2026-01-11T19:30", "2026-01-11T21:30")
    ]


def test_overnight_touching_ranges_merge_across_midnight() -> None:
    rules = [weekly("22:00", "23:59", MON), weekly("00:00", "02:00", TUE)]
    start, end = day_window("2026-01-12", BERLIN)
    assert working_ranges(rules, BERLIN, start, end) == [
        span("2026-01-12T22:00", "2026-01-13T02:00", BERLIN)
    ]


def test_overnight_merge_with_end_0000() -> None:
    rules = [weekly("22:00", "00:00", MON), weekly("00:00", "02:00", TUE)]
    start, end = day_window("2026-01-12")
    assert working_ranges(rules, UTC, start, end) == [span("2026-01-12T22:00", "2026-01-13T02:00")]


def test_overnight_merge_with_an_override_on_the_second_day() -> None:
    rules = [weekly("22:00", "23:59", MON), override("2026-01-13", "00:00", "01:00")]
    start, end = day_window("2026-01-12")
    assert working_ranges(rules, UTC, start, end) == [span("2026-01-12T22:00", "2026-01-13T01:00")]


def test_override_day_off_cuts_continuous_availability() -> None:
    """Cal.com bug (PRs #23184, #24625): a day off inside 24h availability was ignored."""
    rules = [weekly("00:00", "23:59", *range(7)), override("2026-01-13", "00:00", "00:00")]
    start, end = local("2026-01-12T00:00"), local("2026-01-14T12:00")
    assert working_ranges(rules, UTC, start, end) == [
        span("2026-01-11T00:00", "2026-01-13T00:00"),
        span("2026-01-14T00:00", "2026-01-16T00:00"),
    ]


def test_neighbouring_dates_one_day_either_side_are_included() -> None:
    rules = [weekly("09:00", "10:00", *range(7))]
    start, end = local("2026-01-14T00:00"), local("2026-01-14T23:00")
    assert working_ranges(rules, UTC, start, end) == [
        span("2026-01-13T09:00", "2026-01-13T10:00"),
        span("2026-01-14T09:00", "2026-01-14T10:00"),
        span("2026-01-15T09:00", "2026-01-15T10:00"),
    ]


def test_neighbouring_overrides_are_included() -> None:
    rules = [override("2026-01-13", "09:00", "10:00"), override("2026-01-15", "09:00", "10:00")]
    start, end = local("2026-01-14T00:00"), local("2026-01-14T23:00")
    assert working_ranges(rules, UTC, start, end) == [
        span("2026-01-13T09:00", "2026-01-13T10:00"),
        span("2026-01-15T09:00", "2026-01-15T10:00"),
    ]
    # Two days away: not read.
    far = [override("2026-01-12", "09:00", "10:00"), override("2026-01-16", "09:00", "10:00")]
    assert working_ranges(far, UTC, start, end) == []


def test_window_ending_at_midnight_also_reads_the_date_after_next() -> None:
    """The end instant's own date counts as touched, so its neighbour is read too (harmless:
    those hours lie after the window and no slot can use them)."""
    rules = [weekly("09:00", "10:00", *range(7))]
    start, end = day_window("2026-01-14")
    assert working_ranges(rules, UTC, start, end)[-1] == span(
        "2026-01-16T09:00", "2026-01-16T10:00"
    )


def test_neighbour_date_of_a_far_zone_reaches_into_the_window() -> None:
    """A UTC window for 2026-01-14 touches two Kolkata dates; their hours are returned."""
    rules = [weekly("01:00", "02:00", *range(7))]
    start, end = day_window("2026-01-14")
    result = working_ranges(rules, KOLKATA, start, end)
    # 01:00 Kolkata on 2026-01-15 is 19:30Z on 2026-01-14: inside the UTC window.
    assert span("2026-01-15T01:00", "2026-01-15T02:00", KOLKATA) in result
    assert all(r.start.astimezone(KOLKATA).time() == time(1) for r in result)


def test_ranges_are_not_clipped_to_the_window() -> None:
    rules = [weekly("09:00", "17:00", MON)]
    result = working_ranges(rules, UTC, local("2026-01-12T12:00"), local("2026-01-12T13:00"))
    assert result == [span("2026-01-12T09:00", "2026-01-12T17:00")]


def test_no_rules_no_ranges() -> None:
    start, end = day_window("2026-01-12")
    assert working_ranges([], UTC, start, end) == []


def test_local_instant_gap_and_overlap() -> None:
    new_york = ZoneInfo("America/New_York")
    # 02:30 does not exist on 2026-03-08: read with the pre-change offset (-05:00) → 03:30 EDT.
    gap = local_instant(date(2026, 3, 8), time(2, 30), new_york)
    assert gap == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert gap.astimezone(new_york).time() == time(3, 30)
    # 01:30 happens twice on 2026-11-01: the first (EDT, -04:00) is taken.
    assert local_instant(date(2026, 11, 1), time(1, 30), new_york) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )
