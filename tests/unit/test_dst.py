"""Daylight saving time: the slot grid stays on the schedule's wall clock on and around
transition days (Cal.com #30021, #10517, #6217), whatever the booker's zone.

Transitions used (2026):
* America/New_York: spring forward 03-08 02:00 → 03:00; fall back 11-01 02:00 → 01:00.
* Europe/Berlin: spring forward 03-29 02:00 → 03:00; fall back 10-25 03:00 → 02:00.
* Australia/Lord_Howe: half-hour change; back 04-05 02:00 → 01:30, forward 10-04 02:00 → 02:30.

What the engine does inside the spring-forward gap (documented by the tests below): a wall time
that does not exist is read with the offset from before the change, i.e. it moves forward by the
size of the gap (02:00 New York → 03:00 EDT, 02:30 → 03:30). Working hours 02:00-04:00 on that
day therefore give one real hour, 03:00-04:00 daylight time, with slots at 03:00 and 03:30. A
range that ends inside the gap keeps its wall-clock length (01:00-02:30 = 90 real minutes,
ending 03:30 EDT). In the autumn overlap the first occurrence is used for both ends, so
01:00-02:00 New York on 11-01 lasts two real hours and the repeated hour is offered twice.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bookable.scheduling import (
    AvailabilityRule,
    EventRules,
    HostCalendar,
    Slot,
    SlotRequest,
    compute_slots,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KOLKATA = ZoneInfo("Asia/Kolkata")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVERY_DAY = frozenset(range(7))
SPLIT_DAY = (
    AvailabilityRule(EVERY_DAY, time(9), time(12)),
    AvailabilityRule(EVERY_DAY, time(14), time(17)),
)


def hm(h: int, m: int = 0) -> timedelta:
    return timedelta(hours=h, minutes=m)


# (zone, transition date, UTC offset the day before, UTC offset on the day and after)
TRANSITIONS = [
    pytest.param(NEW_YORK, date(2026, 3, 8), -hm(5), -hm(4), id="new_york-spring"),
    pytest.param(NEW_YORK, date(2026, 11, 1), -hm(4), -hm(5), id="new_york-autumn"),
    pytest.param(BERLIN, date(2026, 3, 29), hm(1), hm(2), id="berlin-spring"),
    pytest.param(BERLIN, date(2026, 10, 25), hm(2), hm(1), id="berlin-autumn"),
    pytest.param(LORD_HOWE, date(2026, 4, 5), hm(11), hm(10, 30), id="lord_howe-autumn"),
    pytest.param(LORD_HOWE, date(2026, 10, 4), hm(10, 30), hm(11), id="lord_howe-spring"),
]


def local_day_request(
    zone: ZoneInfo, first: date, days: int, booker: ZoneInfo = UTC_ZONE
) -> SlotRequest:
    start = datetime.combine(first, time(0), tzinfo=zone)
    end = datetime.combine(first + timedelta(days=days), time(0), tzinfo=zone)
    return SlotRequest(start.astimezone(UTC), end.astimezone(UTC), NOW, booker)


def expected_times(length: int) -> list[time]:
    times: list[time] = []
    for first, last in ((9, 12), (14, 17)):
        minute = first * 60
        while minute + length <= last * 60:
            times.append(time(minute // 60, minute % 60))
            minute += length
    return times


def by_local_date(slots: list[Slot], zone: ZoneInfo) -> dict[date, list[datetime]]:
    days: dict[date, list[datetime]] = {}
    for slot in slots:
        local = slot.start.astimezone(zone)
        days.setdefault(local.date(), []).append(local)
    return days


@pytest.mark.parametrize(("zone", "day", "before", "after"), TRANSITIONS)
@pytest.mark.parametrize("length", [30, 60])
def test_grid_stays_on_wall_clock_around_transition(
    zone: ZoneInfo, day: date, before: timedelta, after: timedelta, length: int
) -> None:
    host = HostCalendar(zone=zone, rules=SPLIT_DAY)
    slots = compute_slots(
        EventRules(length=length), host, local_day_request(zone, day - timedelta(days=2), 5)
    )
    days = by_local_date(slots, zone)
    assert sorted(days) == [day + timedelta(days=n) for n in range(-2, 3)]
    for local_date, starts in days.items():
        assert [s.time() for s in starts] == expected_times(length), local_date
        offset = before if local_date < day else after
        assert {s.utcoffset() for s in starts} == {offset}, local_date
    for slot in slots:
        assert slot.end - slot.start == timedelta(minutes=length)


@pytest.mark.parametrize(("zone", "day", "before", "after"), TRANSITIONS)
def test_afternoon_hours_keep_their_instants_on_transition_day(
    zone: ZoneInfo, day: date, before: timedelta, after: timedelta
) -> None:
    """Cal.com #30021: hours from 13:00 on were shifted by an hour on transition dates."""
    host = HostCalendar(zone=zone, rules=SPLIT_DAY)
    slots = compute_slots(EventRules(length=60), host, local_day_request(zone, day, 1))
    afternoon = [s.start for s in slots if s.start.astimezone(zone).hour >= 13]
    assert afternoon == [
        (datetime.combine(day, time(h)) - after).replace(tzinfo=UTC) for h in (14, 15, 16)
    ]


@pytest.mark.parametrize(("zone", "day", "before", "after"), TRANSITIONS)
@pytest.mark.parametrize("booker", [KOLKATA, KATHMANDU, NEW_YORK])
def test_bookers_in_odd_offsets_get_the_same_instants(
    zone: ZoneInfo, day: date, before: timedelta, after: timedelta, booker: ZoneInfo
) -> None:
    host = HostCalendar(zone=zone, rules=SPLIT_DAY)
    for event in (EventRules(length=60), EventRules(length=45), EventRules(length=30)):
        first = day - timedelta(days=1)
        as_utc = compute_slots(event, host, local_day_request(zone, first, 3))
        as_booker = compute_slots(event, host, local_day_request(zone, first, 3, booker))
        assert as_booker == as_utc
        assert as_utc


def test_hour_long_event_on_half_hour_start_is_aligned_in_host_zone_not_booker_zone() -> None:
    """Cal.com aligns to the booker's hour (IST bookers saw xx:30 host time); we align to the
    schedule's hour, so every booker gets 10:00 and 11:00 New York time."""
    host = HostCalendar(
        zone=NEW_YORK, rules=(AvailabilityRule(EVERY_DAY, time(9, 30), time(12, 0)),)
    )
    for booker in (UTC_ZONE, KOLKATA, KATHMANDU):
        slots = compute_slots(
            EventRules(length=60), host, local_day_request(NEW_YORK, date(2026, 3, 8), 1, booker)
        )
        assert [s.start.astimezone(NEW_YORK).time() for s in slots] == [time(10), time(11)]


# --- the spring-forward gap ---------------------------------------------------------------------


def gap_slots(zone: ZoneInfo, day: date, start: time, end: time, length: int = 30) -> list[str]:
    host = HostCalendar(zone=zone, rules=(AvailabilityRule(frozenset(), start, end, day),))
    slots = compute_slots(EventRules(length=length), host, local_day_request(zone, day, 1))
    return [s.start.astimezone(zone).isoformat(timespec="minutes") for s in slots]


def test_new_york_hours_across_the_gap() -> None:
    """02:00-04:00 on 03-08: 02:00 does not exist and is read as 03:00 EDT; one real hour."""
    assert gap_slots(NEW_YORK, date(2026, 3, 8), time(2), time(4)) == [
        "2026-03-08T03:00-04:00",
        "2026-03-08T03:30-04:00",
    ]


def test_new_york_hours_starting_inside_the_gap() -> None:
    """02:30 is read as 03:30 EDT."""
    assert gap_slots(NEW_YORK, date(2026, 3, 8), time(2, 30), time(5)) == [
        "2026-03-08T03:30-04:00",
        "2026-03-08T04:00-04:00",
        "2026-03-08T04:30-04:00",
    ]


def test_new_york_hours_ending_inside_the_gap() -> None:
    """01:00-02:30: the end reads as 03:30 EDT, so the range keeps 90 real minutes."""
    assert gap_slots(NEW_YORK, date(2026, 3, 8), time(1), time(2, 30)) == [
        "2026-03-08T01:00-05:00",
        "2026-03-08T01:30-05:00",
        "2026-03-08T03:00-04:00",
    ]


def test_new_york_hours_entirely_inside_the_gap() -> None:
    """02:00-03:00 is 03:00 EDT-03:00 EDT: empty, no slots."""
    assert gap_slots(NEW_YORK, date(2026, 3, 8), time(2), time(3)) == []


def test_berlin_hours_across_the_gap() -> None:
    assert gap_slots(BERLIN, date(2026, 3, 29), time(1), time(4), length=60) == [
        "2026-03-29T01:00+01:00",
        "2026-03-29T03:00+02:00",
    ]


def test_lord_howe_half_hour_gap() -> None:
    """02:00-02:30 does not exist on 10-04; 02:00 reads as 02:30 +11:00."""
    assert gap_slots(LORD_HOWE, date(2026, 10, 4), time(2), time(4)) == [
        "2026-10-04T02:30+11:00",
        "2026-10-04T03:00+11:00",
        "2026-10-04T03:30+11:00",
    ]


def test_new_york_autumn_overlap_offers_the_repeated_hour_twice() -> None:
    assert gap_slots(NEW_YORK, date(2026, 11, 1), time(1), time(2)) == [
        "2026-11-01T01:00-04:00",
        "2026-11-01T01:30-04:00",
        "2026-11-01T01:00-05:00",
        "2026-11-01T01:30-05:00",
    ]


def test_berlin_autumn_overlap_hours_around_it() -> None:
    """02:00-04:00 on 10-25: 02:00 first occurrence (+02:00) to 04:00 (+01:00): three hours."""
    assert gap_slots(BERLIN, date(2026, 10, 25), time(2), time(4), length=60) == [
        "2026-10-25T02:00+02:00",
        "2026-10-25T02:00+01:00",
        "2026-10-25T03:00+01:00",
    ]


def test_minimum_notice_across_transition_does_not_shift_later_days() -> None:
    """Cal.com #12137: a notice boundary on a DST day offset the following weeks. 24 hours
    after 12:00 EDT on 10-31 is 11:00 EST on 11-01."""
    host = HostCalendar(zone=NEW_YORK, rules=SPLIT_DAY)
    now = datetime(2026, 10, 31, 12, tzinfo=NEW_YORK).astimezone(UTC)
    event = EventRules(length=30, minimum_booking_notice=24 * 60)
    request = SlotRequest(now, now + timedelta(days=21), now, UTC_ZONE)
    slots = compute_slots(event, host, request)
    days = by_local_date(slots, NEW_YORK)
    assert min(days) == date(2026, 11, 1)
    assert [s.time() for s in days[date(2026, 11, 1)]] == [
        t for t in expected_times(30) if t >= time(11)
    ]
    for local_date, starts in days.items():
        if date(2026, 11, 1) < local_date < max(days):  # the last day is cut by the request
            assert [s.time() for s in starts] == expected_times(30), local_date
            assert {s.utcoffset() for s in starts} == {-hm(5)}


# --- a transition inside one working range ------------------------------------------------------


def test_steps_inside_one_range_are_real_minutes_across_a_whole_hour_change() -> None:
    """00:00-04:00 New York on 11-01 lasts five real hours; hourly slots stay on whole hours."""
    assert gap_slots(NEW_YORK, date(2026, 11, 1), time(0), time(4), length=60) == [
        "2026-11-01T00:00-04:00",
        "2026-11-01T01:00-04:00",
        "2026-11-01T01:00-05:00",
        "2026-11-01T02:00-05:00",
        "2026-11-01T03:00-05:00",
    ]


def test_steps_inside_one_range_across_lord_howe_half_hour_change() -> None:
    """The grid is anchored once per working range and steps in real time, so after Lord Howe's
    half-hour change inside the same range the hourly slots fall on :30 wall-clock times."""
    assert gap_slots(LORD_HOWE, date(2026, 4, 5), time(0), time(4), length=60) == [
        "2026-04-05T00:00+11:00",
        "2026-04-05T01:00+11:00",
        "2026-04-05T01:30+10:30",
        "2026-04-05T02:30+10:30",
    ]
