"""Team events: slots several hosts share, and which round-robin host takes a booking.

Each host is reckoned on its own: its working hours in its own zone, its busy time (buffers
included), its booking and duration limits, the booking window in its zone. What differs is
how the hosts are combined (reference §2.6) and whose grid the starts come from:

* COLLECTIVE: every host must be free. The grid is the FIRST host's grid (``hosts`` order):
  its per-day anchors in its zone. The other hosts are checked by free-time containment, not
  by grid equality, since their zones (and so their anchors) differ; a booking need not lie on
  a host's grid (§2.10), only inside its free time.
* ROUND_ROBIN: every fixed host free and at least one non-fixed host free. The grid is the
  union of the non-fixed hosts' own grids: a start is offered when it is a slot of some
  non-fixed host alone (on that host's grid, inside its free time) and every fixed host is
  free for it. ``free_hosts`` lists the fixed hosts and every non-fixed host whose free time
  contains the slot. With only fixed hosts it behaves as COLLECTIVE over them.

After the grid, the event-level rules apply to the team's slots: a ROLLING_WINDOW counts the
days that have team slots, dated in the first host's zone (Cal.com's fallback event zone), and
``only_show_first_available_slot`` keeps the first slot of each booker-local day.

Seats (``seats_per_time_slot``): a seated booking occupies its hosts like any booking for every
other start, but while it has seats left its own start stays a slot (with ``attendees`` and
``booking_uid``), its hosts being the ones that hold it: later bookers join that booking
instead of making a new one. Its hosts must be free but for it (the seat is still working
time, inside the window and the notice), as for a personal event type (`compute_slots`).
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bookable.scheduling.booking_check import Refusal, check_booking
from bookable.scheduling.intervals import Span
from bookable.scheduling.model import (
    BusyTime,
    EventRules,
    HostCalendar,
    PeriodType,
    SeatedBooking,
    Slot,
    SlotRequest,
)
from bookable.scheduling.slots import (
    alignment_unit,
    free_spans,
    grid_anchor,
    seat_still_bookable,
)
from bookable.scheduling.window import rolling_window_dates
from bookable.scheduling.working_hours import day_spans


class SchedulingKind(enum.StrEnum):
    COLLECTIVE = "COLLECTIVE"
    ROUND_ROBIN = "ROUND_ROBIN"


@dataclass(frozen=True, slots=True)
class TeamHost:
    user_id: int
    calendar: HostCalendar
    fixed: bool = False

    def calendar_seat(self, uid: str) -> SeatedBooking:
        """This host's copy of the seated booking ``uid``."""
        return next(b for b in self.calendar.seated if b.uid == uid)


@dataclass(frozen=True, slots=True)
class TeamSlot:
    """A slot and the hosts free for it (ascending ids)."""

    slot: Slot
    free_hosts: tuple[int, ...]

    @property
    def start(self) -> datetime:
        return self.slot.start

    @property
    def end(self) -> datetime:
        return self.slot.end


class _Free:
    """One host's free spans (sorted, disjoint), with a fast "does [s, e) fit in one?"."""

    def __init__(self, spans: list[Span]) -> None:
        self._spans = spans
        self._starts = [start for start, _end in spans]

    def fits(self, start: datetime, end: datetime) -> bool:
        index = bisect_right(self._starts, start) - 1
        return index >= 0 and self._spans[index][1] >= end


def _blocking(event: EventRules, host: HostCalendar) -> HostCalendar:
    """Seated bookings (if the event has seats) as busy time with this event's buffers."""
    if not event.seats_per_time_slot or not host.seated:
        return host
    extra = tuple(
        BusyTime(b.start, b.end, event.before_event_buffer, event.after_event_buffer)
        for b in host.seated
    )
    return replace(host, busy=host.busy + extra)


def _host_free(event: EventRules, host: HostCalendar, request: SlotRequest, length: int) -> _Free:
    days = day_spans(host.rules, host.zone, request.start, request.end)
    _working, free = free_spans(event, _blocking(event, host), request, length, days)
    return _Free(free)


def _grid_starts(
    event: EventRules, host: HostCalendar, request: SlotRequest, step: int
) -> list[datetime]:
    """The host's own grid inside the request window: each working day anchors its own grid
    in the host's zone (as `compute_slots` does), before any free-time filtering."""
    advance = timedelta(minutes=step + event.offset_start)
    unit = alignment_unit(step)
    starts: list[datetime] = []
    for day_start, day_end in day_spans(host.rules, host.zone, request.start, request.end):
        if day_end <= request.start or day_start >= request.end:
            continue
        start = grid_anchor(day_start, host, unit) + timedelta(minutes=event.offset_start)
        if start < request.start:
            skipped = (request.start - start) // advance
            start += advance * max(skipped - 1, 0)
        # A start at or after the window's end cannot fit: the free time ends there.
        while start < day_end and start < request.end:
            if start >= request.start:
                starts.append(start)
            start += advance
    return starts


def compute_team_slots(
    event: EventRules, hosts: Sequence[TeamHost], kind: SchedulingKind, request: SlotRequest
) -> list[TeamSlot]:
    """Every slot the team can offer inside the request window, sorted by start."""
    if not hosts:
        return []
    slots = _generate(event, hosts, kind, request)
    if event.seats_per_time_slot:
        slots = _with_open_seats(event, hosts, request, slots)
    return _after_generation_rules(event, hosts, kind, request, slots)


def _with_open_seats(
    event: EventRules, hosts: Sequence[TeamHost], request: SlotRequest, slots: list[TeamSlot]
) -> list[TeamSlot]:
    """Each seated booking with seats left, starting inside the window, as the slot at its
    start (in place of a grid slot there): its hosts are those holding it, and each of them
    must be free for it but for the booking itself."""
    seats = event.seats_per_time_slot or 0
    length = request.duration or event.length
    duration = timedelta(minutes=length)
    holders: dict[str, list[TeamHost]] = {}
    bookings: dict[str, SeatedBooking] = {}
    for host in hosts:
        for booking in host.calendar.seated:
            holders.setdefault(booking.uid, []).append(host)
            bookings.setdefault(booking.uid, booking)
    # A booking at a seated booking's start joins it, so no other slot is offered there: a
    # full one (or one its hosts can no longer take) leaves that start without a slot.
    taken = {booking.start for booking in bookings.values()}
    by_start = {slot.start: slot for slot in slots if slot.start not in taken}
    for uid, booking in bookings.items():
        if booking.attendees >= seats or booking.start + duration > request.end:
            continue
        if not all(
            seat_still_bookable(event, h.calendar, request, h.calendar_seat(uid), length)
            for h in holders[uid]
        ):
            continue
        by_start[booking.start] = TeamSlot(
            Slot(booking.start, booking.start + duration, booking.attendees, uid),
            tuple(sorted(h.user_id for h in holders[uid])),
        )
    return [by_start[start] for start in sorted(by_start)]


def _generate(
    event: EventRules, hosts: Sequence[TeamHost], kind: SchedulingKind, request: SlotRequest
) -> list[TeamSlot]:
    length = request.duration or event.length
    step = event.slot_interval or request.duration or event.length
    if length <= 0 or step <= 0:
        raise ValueError("length and step must be positive")
    duration = timedelta(minutes=length)
    free = {h.user_id: _host_free(event, h.calendar, request, length) for h in hosts}

    fixed = [h for h in hosts if h.fixed]
    floating = [h for h in hosts if not h.fixed]
    if kind == SchedulingKind.COLLECTIVE or not floating:
        required = list(hosts) if kind == SchedulingKind.COLLECTIVE else fixed
        grid_host = required[0]
        ids = tuple(sorted(h.user_id for h in required))
        return [
            TeamSlot(Slot(start, start + duration), ids)
            for start in _grid_starts(event, grid_host.calendar, request, step)
            if all(free[h.user_id].fits(start, start + duration) for h in required)
        ]

    candidates: set[datetime] = set()
    for h in floating:
        host_free = free[h.user_id]
        candidates.update(
            s
            for s in _grid_starts(event, h.calendar, request, step)
            if host_free.fits(s, s + duration)
        )
    slots: list[TeamSlot] = []
    for start in sorted(candidates):
        end = start + duration
        if not all(free[h.user_id].fits(start, end) for h in fixed):
            continue
        free_floating = [h.user_id for h in floating if free[h.user_id].fits(start, end)]
        ids = tuple(sorted({h.user_id for h in fixed} | set(free_floating)))
        slots.append(TeamSlot(Slot(start, end), ids))
    return slots


def _after_generation_rules(
    event: EventRules,
    hosts: Sequence[TeamHost],
    kind: SchedulingKind,
    request: SlotRequest,
    slots: list[TeamSlot],
) -> list[TeamSlot]:
    window = event.window
    zone = hosts[0].calendar.zone
    if window.type == PeriodType.ROLLING_WINDOW and window.days:
        today = request.now.astimezone(zone).date()
        counted = slots
        if request.now < request.start:
            counted = slots + _generate(event, hosts, kind, replace(request, start=request.now))
        keep = rolling_window_dates(
            [s.start.astimezone(zone).date() for s in counted],
            today,
            window.days,
            window.count_calendar_days,
        )
        slots = [s for s in slots if s.start.astimezone(zone).date() in keep]
    if event.only_show_first_available_slot:
        seen: set[object] = set()
        first_per_day: list[TeamSlot] = []
        for slot in slots:
            day = slot.start.astimezone(request.booker_zone).date()
            if day not in seen:
                seen.add(day)
                first_per_day.append(slot)
        slots = first_per_day
    return slots


def pick_round_robin_host(
    free_hosts: Sequence[int],
    bookings_in_period: Mapping[int, int],
    last_booked_at: Mapping[int, datetime | None],
) -> int:
    """The free host with the fewest bookings of this event type in the period; ties go to the
    least recently booked (never booked first), then to the lowest id."""
    if not free_hosts:
        raise ValueError("no free host to pick")

    def key(user_id: int) -> tuple[int, tuple[int] | tuple[int, datetime], int]:
        last = last_booked_at.get(user_id)
        recency: tuple[int] | tuple[int, datetime] = (0,) if last is None else (1, last)
        return (bookings_in_period.get(user_id, 0), recency, user_id)

    return min(free_hosts, key=key)


@dataclass(frozen=True, slots=True)
class TeamCheck:
    """The answer for one team booking: the hosts free for it, or why it cannot be made."""

    free_hosts: tuple[int, ...] = ()
    refusal: Refusal | None = None


def check_team_booking(
    event: EventRules,
    hosts: Sequence[TeamHost],
    kind: SchedulingKind,
    start: datetime,
    length: int,
    now: datetime,
) -> TeamCheck:
    """Is ``start`` one of the team slots `compute_team_slots` offers? If not, the first rule
    it breaks: the event's own rules (time bounds, limits, seats) as for one host, then
    Cal.com's team codes, fixed hosts before round-robin ones."""
    if not hosts:
        return TeamCheck(
            refusal=Refusal(409, "no_available_users_found_error", "the event type has no hosts")
        )
    end = start + timedelta(minutes=length)
    duration = None if length == event.length else length
    zone = hosts[0].calendar.zone
    request = SlotRequest(start, end, now, zone, duration)
    for team_slot in compute_team_slots(event, hosts, kind, request):
        if team_slot.start == start:
            return TeamCheck(free_hosts=team_slot.free_hosts)

    # Event-level rules first, judged on the first host as /slots dates the window.
    first = check_booking(event, hosts[0].calendar, start, length, now)
    if first is not None and (first.status == 400 or first.code in _EVENT_LEVEL_CODES):
        return TeamCheck(refusal=first)
    busy = {
        h.user_id
        for h in hosts
        if not _host_free(event, h.calendar, request, length).fits(start, end)
    }
    required = hosts if kind == SchedulingKind.COLLECTIVE else [h for h in hosts if h.fixed]
    floating = [] if kind == SchedulingKind.COLLECTIVE else [h for h in hosts if not h.fixed]
    busy_required = [h.user_id for h in required if h.user_id in busy]
    if busy_required:
        return TeamCheck(
            refusal=Refusal(
                409,
                "fixed_hosts_unavailable_for_booking",
                "these hosts, who must all attend, are not free at that time: "
                + ", ".join(f"user {i}" for i in busy_required),
            )
        )
    if floating and all(h.user_id in busy for h in floating):
        return TeamCheck(
            refusal=Refusal(
                409,
                "round_robin_host_unavailable_for_booking",
                "no round-robin host is free at that time",
            )
        )
    step = event.slot_interval or length
    return TeamCheck(
        refusal=Refusal(
            409,
            "no_available_users_found_error",
            f"the time is not on the team's slot grid: slots start every {step} minutes from "
            "the start of the hosts' working hours; ask GET /slots",
        )
    )


# Refusals about the event type itself, whichever host is asked.
_EVENT_LEVEL_CODES = frozenset({"booking_limit_reached", "booking_seats_full_error"})
