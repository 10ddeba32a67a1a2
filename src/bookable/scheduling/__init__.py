"""The scheduling engine: pure functions from hours, commitments and rules to slots.

No database, no HTTP, no clock: "now" is an input. Services turn rows into these values.
"""

from bookable.scheduling.booking_check import Refusal, check_booking
from bookable.scheduling.intervals import Interval
from bookable.scheduling.model import (
    AvailabilityRule,
    BookingWindow,
    BusyTime,
    EventRules,
    HostCalendar,
    PeriodLimits,
    PeriodType,
    SeatedBooking,
    Slot,
    SlotRequest,
)
from bookable.scheduling.slots import compute_slots, free_time
from bookable.scheduling.teams import (
    SchedulingKind,
    TeamCheck,
    TeamHost,
    TeamSlot,
    check_team_booking,
    compute_team_slots,
    pick_round_robin_host,
)
from bookable.scheduling.working_hours import working_ranges

__all__ = [
    "AvailabilityRule",
    "BookingWindow",
    "BusyTime",
    "EventRules",
    "HostCalendar",
    "Interval",
    "PeriodLimits",
    "PeriodType",
    "Refusal",
    "SchedulingKind",
    "SeatedBooking",
    "Slot",
    "SlotRequest",
    "TeamCheck",
    "TeamHost",
    "TeamSlot",
    "check_booking",
    "check_team_booking",
    "compute_slots",
    "compute_team_slots",
    "free_time",
    "pick_round_robin_host",
    "working_ranges",
]
