"""compute_team_slots and pick_round_robin_host: hosts in different zones combined.

2026-01-12 is a Monday. In January Berlin is UTC+1, New York UTC-5, Kolkata UTC+5:30, so
9:00-17:00 local is 08:00-16:00 UTC (Berlin), 14:00-22:00 UTC (New York) and 03:30-11:30 UTC
(Kolkata).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookable.scheduling import (
    AvailabilityRule,
    BusyTime,
    EventRules,
    HostCalendar,
    SchedulingKind,
    SlotRequest,
    TeamHost,
    TeamSlot,
    check_booking,
    check_team_booking,
    compute_slots,
    compute_team_slots,
    pick_round_robin_host,
    working_ranges,
)
from bookable.scheduling.intervals import Interval

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVERY_DAY = frozenset(range(7))
HOUR = EventRules(length=60)
COLLECTIVE = SchedulingKind.COLLECTIVE
ROUND_ROBIN = SchedulingKind.ROUND_ROBIN


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def nine_to_five(zone: ZoneInfo, *extra: AvailabilityRule, **fields: object) -> HostCalendar:
    rules = (AvailabilityRule(EVERY_DAY, time(9), time(17)), *extra)
    return HostCalendar(zone=zone, rules=rules, **fields)  # type: ignore[arg-type]


def day_off(day: date) -> AvailabilityRule:
    return AvailabilityRule(frozenset(), time(0), time(0), date=day)


def busy(start: str, end: str) -> tuple[BusyTime, ...]:
    return (BusyTime(utc(start), utc(end)),)


MONDAY = SlotRequest(utc("2026-01-12T00:00"), utc("2026-01-13T00:00"), NOW, ZoneInfo("UTC"))


def starts(slots: list[TeamSlot]) -> list[str]:
    return [s.start.astimezone(UTC).strftime("%H:%M") for s in slots]


def hosts_of(slots: list[TeamSlot]) -> list[tuple[int, ...]]:
    return [s.free_hosts for s in slots]


# --- collective -----------------------------------------------------------------------------


def test_no_hosts_no_slots() -> None:
    assert compute_team_slots(HOUR, [], COLLECTIVE, MONDAY) == []
    assert compute_team_slots(HOUR, [], ROUND_ROBIN, MONDAY) == []


def test_collective_is_the_intersection_of_hours_in_different_zones() -> None:
    team = [TeamHost(1, nine_to_five(BERLIN), False), TeamHost(2, nine_to_five(NEW_YORK), False)]
    slots = compute_team_slots(HOUR, team, COLLECTIVE, MONDAY)
    assert starts(slots) == ["14:00", "15:00"]
    assert hosts_of(slots) == [(1, 2), (1, 2)]
    assert all(s.end - s.start == timedelta(hours=1) for s in slots)


def test_collective_busy_time_of_any_host_removes_the_slot() -> None:
    team = [
        TeamHost(1, nine_to_five(BERLIN), False),
        TeamHost(
            2, nine_to_five(NEW_YORK, busy=busy("2026-01-12T14:30", "2026-01-12T14:45")), False
        ),
    ]
    assert starts(compute_team_slots(HOUR, team, COLLECTIVE, MONDAY)) == ["15:00"]


def test_collective_buffers_of_a_host_count() -> None:
    team = [
        TeamHost(1, nine_to_five(BERLIN), False),
        TeamHost(
            2, nine_to_five(NEW_YORK, busy=busy("2026-01-12T16:00", "2026-01-12T17:00")), False
        ),
    ]
    buffered = EventRules(length=60, after_event_buffer=15)
    assert starts(compute_team_slots(buffered, team, COLLECTIVE, MONDAY)) == ["14:00"]


def test_collective_day_off_of_one_host_removes_the_day() -> None:
    team = [
        TeamHost(1, nine_to_five(BERLIN), False),
        TeamHost(2, nine_to_five(NEW_YORK, day_off(date(2026, 1, 12))), False),
    ]
    assert compute_team_slots(HOUR, team, COLLECTIVE, MONDAY) == []
    tuesday = SlotRequest(utc("2026-01-13T00:00"), utc("2026-01-14T00:00"), NOW, ZoneInfo("UTC"))
    assert starts(compute_team_slots(HOUR, team, COLLECTIVE, tuesday)) == ["14:00", "15:00"]


def test_collective_grid_is_the_first_hosts() -> None:
    berlin = TeamHost(1, nine_to_five(BERLIN), False)
    kolkata = TeamHost(3, nine_to_five(KOLKATA), False)
    # Common time 08:00-11:30 UTC. Berlin's grid is on the UTC hour, Kolkata's on the half hour.
    assert starts(compute_team_slots(HOUR, [berlin, kolkata], COLLECTIVE, MONDAY)) == [
        "08:00",
        "09:00",
        "10:00",
    ]
    assert starts(compute_team_slots(HOUR, [kolkata, berlin], COLLECTIVE, MONDAY)) == [
        "08:30",
        "09:30",
        "10:30",
    ]


def test_collective_with_no_common_time_is_empty() -> None:
    team = [
        TeamHost(1, nine_to_five(BERLIN), False),
        TeamHost(2, nine_to_five(NEW_YORK), False),
        TeamHost(3, nine_to_five(KOLKATA), False),
    ]
    assert compute_team_slots(HOUR, team, COLLECTIVE, MONDAY) == []


def test_collective_minimum_notice_applies_to_all() -> None:
    team = [TeamHost(1, nine_to_five(BERLIN), False), TeamHost(2, nine_to_five(NEW_YORK), False)]
    now = utc("2026-01-12T14:10")
    request = SlotRequest(MONDAY.start, MONDAY.end, now, ZoneInfo("UTC"))
    assert starts(compute_team_slots(HOUR, team, COLLECTIVE, request)) == ["15:00"]


# --- round robin ----------------------------------------------------------------------------


def test_round_robin_is_the_union_of_the_hosts_grids() -> None:
    team = [TeamHost(1, nine_to_five(BERLIN), False), TeamHost(2, nine_to_five(NEW_YORK), False)]
    slots = compute_team_slots(HOUR, team, ROUND_ROBIN, MONDAY)
    assert starts(slots) == [f"{h:02d}:00" for h in range(8, 22)]
    expected = [(1,)] * 6 + [(1, 2)] * 2 + [(2,)] * 6
    assert hosts_of(slots) == expected


def test_round_robin_slot_survives_while_one_host_is_free() -> None:
    team = [
        TeamHost(1, nine_to_five(BERLIN, busy=busy("2026-01-12T14:00", "2026-01-12T15:00")), False),
        TeamHost(2, nine_to_five(NEW_YORK), False),
        TeamHost(
            3, nine_to_five(NEW_YORK, busy=busy("2026-01-12T15:00", "2026-01-12T16:00")), False
        ),
    ]
    slots = {
        s.start.strftime("%H:%M"): s.free_hosts
        for s in compute_team_slots(HOUR, team, ROUND_ROBIN, MONDAY)
    }
    assert slots["14:00"] == (2, 3)
    assert slots["15:00"] == (1, 2)
    assert slots["13:00"] == (1,)
    assert slots["16:00"] == (2, 3)


def test_round_robin_slot_gone_when_every_floating_host_is_busy() -> None:
    team = [
        TeamHost(1, nine_to_five(BERLIN, busy=busy("2026-01-12T14:00", "2026-01-12T15:00")), False),
        TeamHost(
            2, nine_to_five(NEW_YORK, busy=busy("2026-01-12T14:00", "2026-01-12T15:00")), False
        ),
    ]
    assert "14:00" not in starts(compute_team_slots(HOUR, team, ROUND_ROBIN, MONDAY))


def test_round_robin_fixed_host_must_be_free() -> None:
    team = [
        TeamHost(3, nine_to_five(KOLKATA), True),
        TeamHost(1, nine_to_five(BERLIN), False),
        TeamHost(2, nine_to_five(NEW_YORK), False),
    ]
    slots = compute_team_slots(HOUR, team, ROUND_ROBIN, MONDAY)
    # Kolkata's 03:30-11:30 UTC meets only Berlin's hours; New York starts at 14:00 UTC.
    assert starts(slots) == ["08:00", "09:00", "10:00"]
    assert hosts_of(slots) == [(1, 3)] * 3


def test_round_robin_fixed_host_busy_removes_the_slot() -> None:
    team = [
        TeamHost(3, nine_to_five(KOLKATA, busy=busy("2026-01-12T09:15", "2026-01-12T09:30")), True),
        TeamHost(1, nine_to_five(BERLIN), False),
        TeamHost(2, nine_to_five(BERLIN), False),
    ]
    slots = compute_team_slots(HOUR, team, ROUND_ROBIN, MONDAY)
    assert starts(slots) == ["08:00", "10:00"]
    assert hosts_of(slots) == [(1, 2, 3)] * 2


def test_round_robin_with_only_fixed_hosts_is_collective() -> None:
    team = [TeamHost(1, nine_to_five(BERLIN), True), TeamHost(2, nine_to_five(NEW_YORK), True)]
    assert compute_team_slots(HOUR, team, ROUND_ROBIN, MONDAY) == compute_team_slots(
        HOUR, team, COLLECTIVE, MONDAY
    )


def test_round_robin_five_hosts_free_hosts_exact() -> None:
    team = [
        TeamHost(5, nine_to_five(BERLIN), True),
        TeamHost(4, nine_to_five(BERLIN, busy=busy("2026-01-12T08:00", "2026-01-12T12:00")), False),
        TeamHost(1, nine_to_five(KOLKATA), False),
        TeamHost(2, nine_to_five(NEW_YORK), False),
        TeamHost(3, nine_to_five(NEW_YORK, day_off(date(2026, 1, 12))), False),
    ]
    slots = {
        s.start.strftime("%H:%M"): s.free_hosts
        for s in compute_team_slots(HOUR, team, ROUND_ROBIN, MONDAY)
    }
    # Kolkata's own grid (half hours) and Berlin's (hours) both give starts, but a start must be
    # on the grid of a floating host that is free for it: 08:00 is only on busy host 4's grid.
    assert "08:00" not in slots
    assert slots["08:30"] == (1, 5)
    assert slots["09:30"] == (1, 5)
    assert slots["10:30"] == (1, 5)
    assert slots["12:00"] == (4, 5)
    assert slots["14:00"] == (2, 4, 5)
    assert "11:00" not in slots  # off Kolkata's grid; Berlin's host 4 is busy until 12:00
    assert "16:00" not in slots  # the fixed Berlin host has stopped


# --- pick_round_robin_host ------------------------------------------------------------------


def test_pick_fewest_bookings_then_least_recent_then_lowest_id() -> None:
    t = utc("2026-01-10T00:00")
    assert pick_round_robin_host([1, 2, 3], {1: 2, 2: 1, 3: 1}, {2: t, 3: t - timedelta(1)}) == 3
    assert pick_round_robin_host([1, 2, 3], {1: 1, 2: 1, 3: 1}, {1: t, 2: None, 3: None}) == 2
    assert pick_round_robin_host([3, 2], {}, {}) == 2
    assert pick_round_robin_host([7], {7: 99}, {7: t}) == 7
    with pytest.raises(ValueError):
        pick_round_robin_host([], {}, {})


def test_pick_spreads_picks_evenly_when_fed_its_own_results() -> None:
    counts: Counter[int] = Counter()
    last: dict[int, datetime | None] = {}
    clock = utc("2026-01-12T00:00")
    for n in range(30):
        chosen = pick_round_robin_host([1, 2, 3], counts, last)
        counts[chosen] += 1
        last[chosen] = clock + timedelta(minutes=n)
    assert counts == {1: 10, 2: 10, 3: 10}


# --- properties -----------------------------------------------------------------------------

ZONES = (BERLIN, NEW_YORK, KOLKATA)
PROPERTY_REQUEST = SlotRequest(
    utc("2026-01-12T00:00"), utc("2026-01-15T00:00"), NOW, ZoneInfo("UTC")
)


@st.composite
def calendars(draw: st.DrawFn) -> HostCalendar:
    zone = draw(st.sampled_from(ZONES))
    start = draw(st.integers(0, 20))
    end = draw(st.integers(start + 1, 24))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    rule = AvailabilityRule(days, time(start), time(23, 59) if end == 24 else time(end))
    busy_times = []
    for _ in range(draw(st.integers(0, 4))):
        offset = draw(st.integers(0, 3 * 24 * 4 - 1)) * 15
        length = draw(st.integers(1, 12)) * 15
        begin = PROPERTY_REQUEST.start + timedelta(minutes=offset)
        busy_times.append(BusyTime(begin, begin + timedelta(minutes=length)))
    return HostCalendar(zone=zone, rules=(rule,), busy=tuple(busy_times))


events = st.builds(
    EventRules,
    length=st.sampled_from([15, 30, 45, 60, 90]),
    slot_interval=st.sampled_from([None, 15, 30, 60]),
    before_event_buffer=st.sampled_from([0, 10]),
    after_event_buffer=st.sampled_from([0, 15]),
)


def host_free(event: EventRules, host: HostCalendar, start: datetime, end: datetime) -> bool:
    """Independent of the engine's free-time code: inside working time, clear of widened busy."""
    slot = Interval(start, end)
    working = working_ranges(
        host.rules, host.zone, start - timedelta(days=1), end + timedelta(days=1)
    )
    if not any(r.contains(slot) for r in working):
        return False
    return not any(
        Interval(
            b.start - timedelta(minutes=b.before_buffer + event.after_event_buffer),
            b.end + timedelta(minutes=b.after_buffer + event.before_event_buffer),
        ).overlaps(slot)
        for b in host.busy
    )


@settings(derandomize=True, max_examples=100, deadline=None)
@given(events, st.lists(st.tuples(calendars(), st.booleans()), min_size=1, max_size=4))
def test_team_slot_properties(event: EventRules, drawn: list[tuple[HostCalendar, bool]]) -> None:
    team = [TeamHost(i + 1, cal, fixed) for i, (cal, fixed) in enumerate(drawn)]
    request = PROPERTY_REQUEST

    collective = compute_team_slots(event, team, COLLECTIVE, request)
    for slot in collective:
        assert slot.free_hosts == tuple(h.user_id for h in team)
        assert all(host_free(event, h.calendar, slot.start, slot.end) for h in team)
    # It is exactly the first host's own slots that every other host is free for.
    first_alone = compute_slots(event, team[0].calendar, request)
    assert [s.start for s in collective] == [
        s.start
        for s in first_alone
        if all(host_free(event, h.calendar, s.start, s.end) for h in team[1:])
    ]
    for slot in collective[:5]:
        assert check_booking(event, team[0].calendar, slot.start, event.length, NOW) is None

    fixed = [h for h in team if h.fixed]
    floating = [h for h in team if not h.fixed]
    round_robin = compute_team_slots(event, team, ROUND_ROBIN, request)
    for slot in round_robin:
        assert all(host_free(event, h.calendar, slot.start, slot.end) for h in fixed)
        free_floating = [
            h.user_id for h in floating if host_free(event, h.calendar, slot.start, slot.end)
        ]
        if floating:
            assert free_floating
        assert slot.free_hosts == tuple(sorted([h.user_id for h in fixed] + free_floating))
    if floating:
        union = sorted(
            {
                s.start
                for h in floating
                for s in compute_slots(event, h.calendar, request)
                if all(host_free(event, f.calendar, s.start, s.end) for f in fixed)
            }
        )
        assert [s.start for s in round_robin] == union


# --- check_team_booking ---------------------------------------------------------------------


def test_team_check_agrees_with_team_slots_and_names_the_missing_hosts() -> None:
    berlin = TeamHost(1, nine_to_five(BERLIN), fixed=True)
    new_york = TeamHost(
        2, nine_to_five(NEW_YORK, busy=busy("2026-01-12T15:00", "2026-01-12T16:00"))
    )
    team = [berlin, new_york]
    offered = compute_team_slots(HOUR, team, COLLECTIVE, MONDAY)
    for slot in offered:
        check = check_team_booking(HOUR, team, COLLECTIVE, slot.start, 60, NOW)
        assert check.refusal is None and check.free_hosts == (1, 2)
    busy_time = check_team_booking(HOUR, team, COLLECTIVE, utc("2026-01-12T15:00"), 60, NOW)
    assert busy_time.refusal is not None
    assert busy_time.refusal.code == "fixed_hosts_unavailable_for_booking"
    assert "user 2" in busy_time.refusal.reason and "user 1" not in busy_time.refusal.reason
    # Round robin: Berlin (fixed) is free at 15:00, New York (the only RR host) is not.
    rr = check_team_booking(HOUR, team, ROUND_ROBIN, utc("2026-01-12T15:00"), 60, NOW)
    assert rr.refusal is not None
    assert rr.refusal.code == "round_robin_host_unavailable_for_booking"
    ok = check_team_booking(HOUR, team, ROUND_ROBIN, utc("2026-01-12T14:00"), 60, NOW)
    assert ok.refusal is None and ok.free_hosts == (1, 2)


def test_team_check_gives_event_rules_and_the_grid_their_own_codes() -> None:
    team = [TeamHost(1, nine_to_five(BERLIN)), TeamHost(2, nine_to_five(BERLIN))]
    past = check_team_booking(HOUR, team, COLLECTIVE, utc("2025-12-31T10:00"), 60, NOW)
    assert past.refusal is not None and past.refusal.status == 400
    off_grid = check_team_booking(HOUR, team, COLLECTIVE, utc("2026-01-12T09:10"), 60, NOW)
    assert off_grid.refusal is not None
    assert off_grid.refusal.code == "no_available_users_found_error"
    assert "grid" in off_grid.refusal.reason
    nobody = check_team_booking(HOUR, [], COLLECTIVE, utc("2026-01-12T09:00"), 60, NOW)
    assert nobody.refusal is not None and nobody.free_hosts == ()
