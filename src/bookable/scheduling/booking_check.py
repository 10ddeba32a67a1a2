"""Can this exact slot be booked? The same engine as /slots, plus the reason when it cannot."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bookable.scheduling.intervals import Interval
from bookable.scheduling.limits import blocked_periods
from bookable.scheduling.model import (
    BookingWindow,
    EventRules,
    HostCalendar,
    PeriodType,
    SlotRequest,
)
from bookable.scheduling.slots import alignment_unit, busy_intervals, compute_slots
from bookable.scheduling.window import window_bounds
from bookable.scheduling.working_hours import working_ranges


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a booking cannot be made: Cal.com's code, our plain words, the HTTP status."""

    status: int
    code: str
    reason: str


def check_booking(
    event: EventRules, host: HostCalendar, start: datetime, length: int, now: datetime
) -> Refusal | None:
    """None when ``start`` for ``length`` minutes is one of the slots /slots offers; otherwise
    the first rule it breaks, in Cal.com's order: time bounds, limits, seats, availability."""
    end = start + timedelta(minutes=length)
    if start < now:
        return Refusal(400, "Attempting to book a meeting in the past.", "the start is in the past")
    notice = event.minimum_booking_notice
    if start < now + timedelta(minutes=notice):
        return Refusal(
            400,
            "booking_time_out_of_bounds_error",
            f"this event type needs {notice} minutes' notice",
        )
    bounds = window_bounds(event.window, host.zone, now)
    if not (bounds.start <= start and end <= bounds.end):
        return Refusal(
            400,
            "booking_time_out_of_bounds_error",
            "the time is outside the event type's booking window",
        )
    seats = event.seats_per_time_slot
    # A free seat in an existing booking is no new booking: limits have counted it already.
    joins_open_seat = bool(seats) and any(
        s.start == start and s.attendees < (seats or 0) for s in host.seated
    )
    for period in (
        []
        if joins_open_seat
        else blocked_periods(
            booking_limits=event.booking_limits,
            duration_limits=event.duration_limits,
            counted=host.counted,
            length=length,
            zone=host.zone,
            week_start=host.week_start,
            window_start=start,
            window_end=end,
        )
    ):
        if period.overlaps(Interval(start, end)):
            return Refusal(
                409,
                "booking_limit_reached",
                "the event type's booking or duration limit for that period is reached",
            )
    if seats:
        for seated in host.seated:
            if seated.start == start and seated.attendees >= seats:
                return Refusal(409, "booking_seats_full_error", "every seat of this slot is taken")

    duration = None if length == event.length else length
    offered = compute_slots(event, host, SlotRequest(start, end, now, host.zone, duration))
    if any(slot.start == start for slot in offered):
        return None
    if event.window.type == PeriodType.ROLLING_WINDOW:
        unlimited = compute_slots(
            _without_window(event), host, SlotRequest(start, end, now, host.zone, duration)
        )
        if any(slot.start == start for slot in unlimited):
            return Refusal(
                400,
                "booking_time_out_of_bounds_error",
                "the time is outside the event type's rolling booking window",
            )

    slot = Interval(start, end)
    working = working_ranges(host.rules, host.zone, start, end)
    if not any(r.contains(slot) for r in working):
        return Refusal(
            409, "no_available_users_found_error", "the time is outside the host's working hours"
        )
    if any(b.overlaps(slot) for b in busy_intervals(event, host)) or any(
        Interval(s.start, s.end).overlaps(slot) for s in host.seated
    ):
        return Refusal(
            409,
            "no_available_users_found_error",
            "the host already has a booking at that time (buffers included)",
        )
    step = event.slot_interval or length
    return Refusal(
        409,
        "no_available_users_found_error",
        f"the time is not on the slot grid: slots start every {step} minutes, aligned to "
        f"{alignment_unit(step)} minutes from the start of the working hours; ask GET /slots",
    )


def _without_window(event: EventRules) -> EventRules:
    return replace(event, window=BookingWindow())
