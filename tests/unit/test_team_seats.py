"""Seated team event types: a seated booking with seats left keeps its start as a team slot
(with its attendees and uid, its hosts the ones holding it), though those hosts are otherwise
taken by it. 2026-01-12 is a Monday; hosts work 09:00-17:00 UTC every day."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from bookable.scheduling import (
    AvailabilityRule,
    BusyTime,
    EventRules,
    HostCalendar,
    SchedulingKind,
    SeatedBooking,
    SlotRequest,
    TeamHost,
    TeamSlot,
    check_team_booking,
    compute_team_slots,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
SEATED = EventRules(length=30, seats_per_time_slot=3)
MONDAY = SlotRequest(
    datetime(2026, 1, 12, tzinfo=UTC), datetime(2026, 1, 13, tzinfo=UTC), NOW, UTC_ZONE
)
TEN = datetime(2026, 1, 12, 10, tzinfo=UTC)


def utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 12, hour, minute, tzinfo=UTC)


def seat(attendees: int, start: datetime = TEN, uid: str = "seated-1") -> SeatedBooking:
    return SeatedBooking(start, start.replace(minute=start.minute + 30), uid, attendees)


def calendar(
    *seated: SeatedBooking, busy: tuple[BusyTime, ...] = (), zone: ZoneInfo = UTC_ZONE
) -> HostCalendar:
    rules = (AvailabilityRule(frozenset(range(7)), time(9), time(17)),)
    return HostCalendar(zone=zone, rules=rules, seated=seated, busy=busy)


def at(slots: list[TeamSlot], start: datetime) -> TeamSlot | None:
    return next((s for s in slots if s.start == start), None)


def test_collective_open_seat_is_offered_with_its_booking() -> None:
    booking = seat(1)
    hosts = [TeamHost(1, calendar(booking), True), TeamHost(2, calendar(booking), True)]
    slots = compute_team_slots(SEATED, hosts, SchedulingKind.COLLECTIVE, MONDAY)
    offered = at(slots, TEN)
    assert offered is not None
    assert (offered.slot.attendees, offered.slot.booking_uid) == (1, "seated-1")
    assert offered.free_hosts == (1, 2)
    # The hosts are taken by it for any other start that overlaps; the next slot is free.
    assert at(slots, utc(10, 30)) is not None
    assert at(slots, utc(9, 30)) is not None and at(slots, utc(9, 30)).slot.attendees is None


def test_full_seated_booking_is_not_offered() -> None:
    booking = seat(3)
    hosts = [TeamHost(1, calendar(booking), True), TeamHost(2, calendar(booking), True)]
    slots = compute_team_slots(SEATED, hosts, SchedulingKind.COLLECTIVE, MONDAY)
    assert at(slots, TEN) is None


def test_round_robin_full_seat_offers_no_other_host_at_its_start() -> None:
    """A booking at that start would join the full booking: no slot, though host 2 is free."""
    hosts = [TeamHost(1, calendar(seat(3))), TeamHost(2, calendar())]
    slots = compute_team_slots(SEATED, hosts, SchedulingKind.ROUND_ROBIN, MONDAY)
    assert at(slots, TEN) is None
    assert at(slots, utc(10, 30)) is not None
    refused = check_team_booking(SEATED, hosts, SchedulingKind.ROUND_ROBIN, TEN, 30, NOW)
    assert refused.refusal is not None


def test_round_robin_seat_goes_to_the_host_holding_it() -> None:
    """Host 2 is free at 10:00 too, but the seat is in host 1's booking: bookers join it."""
    booking = seat(2)
    hosts = [TeamHost(1, calendar(booking)), TeamHost(2, calendar())]
    slots = compute_team_slots(SEATED, hosts, SchedulingKind.ROUND_ROBIN, MONDAY)
    offered = at(slots, TEN)
    assert offered is not None
    assert offered.free_hosts == (1,)
    assert (offered.slot.attendees, offered.slot.booking_uid) == (2, "seated-1")
    # Without seats the booking blocks host 1 only: host 2 alone is offered at 10:00.
    unseated = [
        TeamHost(1, calendar(busy=(BusyTime(TEN, utc(10, 30)),))),
        TeamHost(2, calendar()),
    ]
    plain = at(
        compute_team_slots(EventRules(length=30), unseated, SchedulingKind.ROUND_ROBIN, MONDAY), TEN
    )
    assert plain is not None and plain.free_hosts == (2,)


def test_seat_whose_host_is_otherwise_taken_or_out_of_bounds_is_not_offered() -> None:
    booking = seat(1)
    clash = (BusyTime(utc(10, 15), utc(11)),)
    hosts = [
        TeamHost(1, calendar(booking), True),
        TeamHost(2, calendar(booking, busy=clash), True),
    ]
    assert at(compute_team_slots(SEATED, hosts, SchedulingKind.COLLECTIVE, MONDAY), TEN) is None
    free_hosts = [TeamHost(1, calendar(booking), True), TeamHost(2, calendar(booking), True)]
    after_it = SlotRequest(MONDAY.start, MONDAY.end, utc(10, 5), UTC_ZONE)
    assert (
        at(compute_team_slots(SEATED, free_hosts, SchedulingKind.COLLECTIVE, after_it), TEN) is None
    )


def test_booking_check_accepts_the_open_seat_for_its_hosts() -> None:
    booking = seat(1)
    hosts = [TeamHost(1, calendar(booking)), TeamHost(2, calendar())]
    check = check_team_booking(SEATED, hosts, SchedulingKind.ROUND_ROBIN, TEN, 30, NOW)
    assert check.refusal is None
    assert check.free_hosts == (1,)
