"""Small things every booking module shares: the refusal error, uids, zones."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.clock import utcnow
from bookable.core.errors import ApiError
from bookable.models import Attendee, Booking, BookingStatus, EventType, User
from bookable.scheduling import Refusal
from bookable.slots.service import EventTypeSettings, HostSettings

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class BookingRefused(ApiError):
    """A refusal with Cal.com's code as `message` and our plain words as `reason`."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.status, refusal.code, extra={"reason": refusal.reason})


UID_LENGTH = 22
# Each byte's character (its value modulo 58), and the bytes dropped so that every character is
# equally likely: 232 = 4 * 58: of the bytes kept, four stand for each character.
_BASE58_OF_BYTE = bytes(ord(_BASE58[b % 58]) for b in range(256))
_UNEVEN_BYTES = bytes(range(4 * 58, 256))


def new_uid() -> str:
    """22 base58 characters, the shape of Cal.com's booking uids, each uniform and independent
    of the others, as `secrets.choice` per character made them; from one read of the system's
    random source (`secrets.choice`'s 22 reads were ~0.1 ms of a booking)."""
    uid = b""
    while len(uid) < UID_LENGTH:  # 32 bytes keep 29 on average: one read almost always
        uid += secrets.token_bytes(32).translate(_BASE58_OF_BYTE, _UNEVEN_BYTES)
    return uid[:UID_LENGTH].decode("ascii")


def zone_or_utc(name: str | None) -> ZoneInfo:
    return ZoneInfo(name) if name else ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class BookedEventType(EventTypeSettings):
    """What POST /bookings reads of an event type: GET /slots' settings and what a booking
    takes beyond them (its title, price, places, recurrence, calendar notes), as plain columns
    (`create._event_type_and_owner_statement`): no ORM entity, whose loading was ~0.3 ms of a
    booking (`bench/README.md`, issue 15 round 8, hp)."""

    title: str
    price: int
    currency: str
    locations: list[dict[str, Any]]
    recurring_event: dict[str, Any] | None
    hide_calendar_notes: bool


@dataclass(frozen=True, slots=True)
class Organizer(HostSettings):
    """What POST /bookings reads of a personal event type's owner: GET /slots' host settings
    and the names the booking's title, answer, emails and calendar event show."""

    name: str | None
    username: str | None


# The columns of `BookedEventType` and `Organizer`, in their fields' order.
BOOKED_EVENT_TYPE = tuple(getattr(EventType, f.name) for f in fields(BookedEventType))
ORGANIZER = tuple(getattr(User, f.name) for f in fields(Organizer))
# A booking's event type and organiser: POST /bookings' plain columns (the organiser only for a
# personal event type: a team's come from `load_team` as `User` rows), ORM rows elsewhere.
AnyBookedEventType = EventType | BookedEventType
AnyOrganizer = User | Organizer


@dataclass(slots=True, kw_only=True)
class NewAttendee:
    """An attendee of a `NewBooking`: the row's columns, by `Attendee`'s attribute names, each
    column's default as its field's (`tests/unit/test_new_booking.py` holds them equal)."""

    id: int | None = None  # set by `writes.insert_new_booking`
    booking_id: int | None = None  # set by `writes.insert_new_booking`
    email: str
    name: str
    time_zone: str
    locale: str | None = "en"
    phone_number: str | None = None
    no_show: bool | None = False


@dataclass(slots=True, kw_only=True)
class NewBooking:
    """A new booking of POST /bookings' common path (no reschedule, seat or payment) as plain
    values: every column of its row, by `Booking`'s attribute names, each column's default as
    its field's (`tests/unit/test_new_booking.py` holds them equal), and its attendees in
    insertion (id) order. The answer and the outboxes read it where they read a `Booking` on
    the other paths; building and attaching ORM objects for it was ~0.2 ms of a booking
    (`bench/README.md`, issue 15 round 9, hr). Not frozen: `writes.insert_new_booking` sets
    the ids on it and its attendees, as `_insert_rows` does on ORM rows (copying its 37 fields
    with `dataclasses.replace` was ~4 % of a booking's Python work, issue 15 round 10, hu)."""

    id: int | None = None  # set by `writes.insert_new_booking`
    uid: str
    user_id: int | None = None
    user_primary_email: str | None = None
    event_type_id: int | None = None
    title: str
    description: str | None = None
    custom_inputs: dict[str, Any] | None = None
    responses: dict[str, Any] | None = None
    start_time: datetime
    end_time: datetime
    blocked_start: datetime
    blocked_end: datetime
    location: str | None = None
    status: BookingStatus = BookingStatus.ACCEPTED
    paid: bool = False
    destination_calendar_id: int | None = None
    cancellation_reason: str | None = None
    rejection_reason: str | None = None
    dynamic_event_slug_ref: str | None = None
    dynamic_group_slug_ref: str | None = None
    rescheduled: bool | None = None
    from_reschedule: str | None = None
    recurring_event_id: str | None = None
    sms_reminder_number: str | None = None
    meta: dict[str, Any] | None = None
    is_recorded: bool = False
    ical_uid: str | None = None
    ical_sequence: int = 0
    rating: int | None = None
    rating_feedback: str | None = None
    no_show_host: bool | None = False
    cancelled_by: str | None = None
    rescheduled_by: str | None = None
    creation_source: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime | None = None
    attendees: tuple[NewAttendee, ...]


# A booking as the answer and the outboxes read it: a row, or a new booking's plain values.
AnyBooking = Booking | NewBooking
AnyAttendee = Attendee | NewAttendee


@dataclass(frozen=True, slots=True)
class Written:
    """What the transaction that has just inserted a booking holds already, so that its outbox
    rows (webhook events, calendar writes, emails) are planned without reading it back."""

    event_type: AnyBookedEventType
    host_ids: list[int]  # every host the booking occupies, ascending (`booking_host_ids`)
    users: dict[int, AnyOrganizer]  # those of the hosts at hand (the organiser at least), by id
    attendees: Sequence[AnyAttendee]  # the booking's, in insertion (id) order
    new_ical_uid: bool  # no calendar or webhook event can refer to the booking's iCal UID yet
    # What the transaction's event type query found already (`create.parse`), so that a
    # booking nobody is told about costs no query: False only when no active webhook of the
    # event type or its owner exists (a superset of `webhooks.outbox.subscribers`' rows), and
    # when no destination calendar of the event type or the organiser exists (the hosts' are
    # asked for otherwise, `calendars.writes.destinations_for`).
    may_have_webhooks: bool = True
    may_have_destinations: bool = True
    # Emails sent in the last hour, by organiser id, counted by that same query (else read).
    emails_this_hour: dict[int, int] = field(default_factory=dict)


async def booking_attendees(
    session: AsyncSession, booking: AnyBooking, written: Written | None
) -> list[AnyAttendee]:
    """The booking's attendees in insertion order: from ``written`` when the transaction has
    just inserted them, read otherwise."""
    if written is not None:
        return list(written.attendees)
    query = select(Attendee).where(Attendee.booking_id == booking.id).order_by(Attendee.id)
    return list(await session.scalars(query))
