"""Small things every booking module shares: the refusal error, uids, zones."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, fields
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.errors import ApiError
from bookable.models import Attendee, Booking, EventType, User
from bookable.scheduling import Refusal
from bookable.slots.service import EventTypeSettings, HostSettings

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class BookingRefused(ApiError):
    """A refusal with Cal.com's code as `message` and our plain words as `reason`."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.status, refusal.code, extra={"reason": refusal.reason})


_UID_LENGTH = 22
_UIDS = len(_BASE58) ** _UID_LENGTH


def new_uid() -> str:
    """22 base58 characters, the shape of Cal.com's booking uids: one uniform draw over every
    such string, written in base 58 (22 draws of a character cost a tenth of a millisecond)."""
    number = secrets.randbelow(_UIDS)
    characters = []
    for _ in range(_UID_LENGTH):
        number, digit = divmod(number, len(_BASE58))
        characters.append(_BASE58[digit])
    return "".join(characters)


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


@dataclass(frozen=True, slots=True)
class Written:
    """What the transaction that has just inserted a booking holds already, so that its outbox
    rows (webhook events, calendar writes, emails) are planned without reading it back."""

    event_type: AnyBookedEventType
    host_ids: list[int]  # every host the booking occupies, ascending (`booking_host_ids`)
    users: dict[int, AnyOrganizer]  # those of the hosts at hand (the organiser at least), by id
    attendees: list[Attendee]  # the booking's, in insertion (id) order
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
    session: AsyncSession, booking: Booking, written: Written | None
) -> list[Attendee]:
    """The booking's attendees in insertion order: from ``written`` when the transaction has
    just inserted them, read otherwise."""
    if written is not None:
        return list(written.attendees)
    query = select(Attendee).where(Attendee.booking_id == booking.id).order_by(Attendee.id)
    return list(await session.scalars(query))
