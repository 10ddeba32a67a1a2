"""Which calendars a booking's event belongs in, written to the calendar outbox.

`plan_booking_event` runs in the transaction of every booking change (create, confirm,
reschedule, PATCH, cancel, reject, a seat taken or given up) and sets, for each destination
calendar, the state the calendar should show: the booking's event as it is now, or no event.
It never talks to a calendar server: `calendars.dispatcher` does that after the commit, with
retries. Since each (event, calendar) has one row holding the *wanted* state, changes made
while a server is down collapse into the last one, and writes never happen out of order.

Which calendars (issue 12; Cal.com's rule without its fan-out):
- the event type's destination calendar, else the organiser's; with neither, nothing is
  written (not "the first calendar connected", as Cal.com does);
- plus, for a booking that occupies several hosts (collective: every host; round robin: the
  chosen host and the fixed hosts), each other host's own destination calendar.
Only ACCEPTED bookings have an event; PENDING ones get theirs when confirmed.

The event's UID is the booking's iCal UID, which a reschedule keeps: the new booking takes
over the same rows, so the event moves (SEQUENCE up) instead of being deleted and created, and
moves to another calendar only when the organiser (and so the destination) changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.bookings.access import booking_host_ids
from bookable.bookings.common import AnyBooking, Written, booking_attendees
from bookable.calendars.ical import EventDraft, Person, build_ics
from bookable.core.clock import utcnow
from bookable.core.dispatch import mark_written
from bookable.models import (
    Booking,
    BookingStatus,
    CalendarEvent,
    CalendarEventStatus,
    Credential,
    DestinationCalendar,
    EventType,
    User,
)


@dataclass(frozen=True, slots=True)
class Destination:
    """One calendar a booking's event goes into, and whose it is."""

    user_id: int
    credential_id: int
    integration: str
    calendar_url: str


def event_uid(booking: AnyBooking) -> str:
    return booking.ical_uid or f"{booking.uid}@bookable"


# Built once (docs/architecture.md, "Hot paths"): every new booking asks.
_DESTINATIONS = (
    select(DestinationCalendar, Credential.user_id)
    .join(Credential, Credential.id == DestinationCalendar.credential_id)
    .where(
        (DestinationCalendar.user_id.in_(bindparam("host_ids", expanding=True)))
        | (
            (DestinationCalendar.event_type_id == bindparam("event_type_id"))
            & (DestinationCalendar.event_type_id.is_not(None))
        )
    )
)


async def destinations_for(
    session: AsyncSession, booking: AnyBooking, host_ids: list[int]
) -> list[Destination]:
    """Where the booking's event belongs now (none unless it is ACCEPTED); see the module
    docstring."""
    if booking.status != BookingStatus.ACCEPTED or booking.user_id is None:
        return []
    rows = (
        await session.execute(
            _DESTINATIONS, {"host_ids": host_ids, "event_type_id": booking.event_type_id}
        )
    ).all()
    by_event_type = next((row for row in rows if row[0].event_type_id is not None), None)
    by_user = {row[0].user_id: row for row in rows if row[0].user_id is not None}
    chosen = [by_event_type or by_user.get(booking.user_id)]
    chosen += [by_user.get(host_id) for host_id in host_ids if host_id != booking.user_id]
    found: dict[tuple[int, str], Destination] = {}
    for row in chosen:
        if row is None:
            continue
        calendar, owner_id = row
        key = (calendar.credential_id, calendar.external_id)
        found.setdefault(
            key,
            Destination(
                owner_id, calendar.credential_id, calendar.integration, calendar.external_id
            ),
        )
    return list(found.values())


async def event_ics(
    session: AsyncSession, booking: AnyBooking, host_ids: list[int], written: Written | None = None
) -> str:
    """The booking's event as an iCalendar object: the organiser's zone, the attendees and
    the other hosts, the event type's "hide notes in calendar" honoured. ``written``: what the
    transaction that has just inserted the booking holds (fewer queries)."""
    if written is not None and all(h in written.users for h in host_ids):
        people = {h: written.users[h] for h in host_ids}
    else:
        people = {
            user.id: user
            for user in await session.scalars(select(User).where(User.id.in_(host_ids)))
        }
    organizer = people[booking.user_id] if booking.user_id in people else None
    attendees = await booking_attendees(session, booking, written)
    hide_notes = False
    if written is not None and written.event_type.id == booking.event_type_id:
        hide_notes = bool(written.event_type.hide_calendar_notes)
    elif booking.event_type_id is not None:
        hide_notes = bool(
            await session.scalar(
                select(EventType.hide_calendar_notes).where(EventType.id == booking.event_type_id)
            )
        )
    guests = [Person(a.name, a.email) for a in attendees]
    guests += [
        Person(people[h].name or people[h].username or "", people[h].email)
        for h in host_ids
        if h != booking.user_id and h in people
    ]
    draft = EventDraft(
        uid=event_uid(booking),
        sequence=booking.ical_sequence or 0,
        start=booking.start_time,
        end=booking.end_time,
        organizer_zone=organizer.time_zone if organizer else "UTC",
        summary=booking.title,
        organizer=Person(
            (organizer.name or organizer.username or "") if organizer else "",
            organizer.email if organizer else (booking.user_primary_email or ""),
        ),
        attendees=tuple(guests),
        description=None if hide_notes else booking.description,
        location=booking.location,
    )
    return build_ics(draft).decode("utf-8")


def _want(row: CalendarEvent, booking: AnyBooking, ics: str | None, now: datetime) -> None:
    """A new wanted state for ``row``: a fresh revision with fresh attempts. A dispatcher
    holding the row keeps its lease; what it finishes is recorded for the old revision only."""
    row.booking_id = booking.id
    row.wanted = ics is not None
    row.ics = ics
    row.sequence = booking.ical_sequence or 0
    row.revision = CalendarEvent.revision + 1  # in SQL: never lost to a concurrent change
    row.status = CalendarEventStatus.PENDING
    row.attempts = 0
    row.next_attempt_at = now
    row.last_error = None


async def plan_booking_event(
    session: AsyncSession, booking: AnyBooking, *, written: Written | None = None
) -> int:
    """Record in the caller's transaction what the destination calendars should show for
    ``booking`` now (call after the change is flushed). Returns how many rows changed.
    ``written``: what the transaction that has just inserted ``booking`` holds (fewer queries;
    with a new iCal UID, no row of the event exists yet)."""
    uid = event_uid(booking)
    existing: dict[tuple[int, str], CalendarEvent] = {}
    if written is None or not written.new_ical_uid:
        existing = {
            (row.credential_id, row.calendar_url): row
            for row in await session.scalars(select(CalendarEvent).where(CalendarEvent.uid == uid))
        }
    host_ids = written.host_ids if written is not None else await booking_host_ids(session, booking)
    targets = (
        await destinations_for(session, booking, host_ids)
        if written is None or written.may_have_destinations
        else []
    )
    if not targets and not any(row.wanted for row in existing.values()):
        return 0
    now = utcnow()
    ics = await event_ics(session, booking, host_ids, written) if targets else None
    changed = 0
    for target in targets:
        row = existing.pop((target.credential_id, target.calendar_url), None)
        if row is None:
            session.add(
                CalendarEvent(
                    uid=uid,
                    booking_id=booking.id,
                    user_id=target.user_id,
                    credential_id=target.credential_id,
                    integration=target.integration,
                    calendar_url=target.calendar_url,
                    wanted=True,
                    ics=ics,
                    sequence=booking.ical_sequence or 0,
                    revision=1,
                    status=CalendarEventStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        else:
            _want(row, booking, ics, now)
        changed += 1
    for row in existing.values():
        # A calendar the event no longer belongs in (cancelled, rejected, moved to another
        # organiser, destination changed): remove it there.
        if row.wanted:
            _want(row, booking, None, now)
            changed += 1
    if changed:
        await mark_written(session, "calendar")
    return changed


async def booking_calendar_events(session: AsyncSession, booking: Booking) -> list[CalendarEvent]:
    """The rows of the booking's event (by its UID: after a reschedule, the new booking's)."""
    return list(
        await session.scalars(
            select(CalendarEvent)
            .where(CalendarEvent.uid == event_uid(booking))
            .order_by(CalendarEvent.id)
        )
    )


async def retry_failed_writes(session: AsyncSession, credential_id: int) -> int:
    """The credential's FAILED calendar writes go again with fresh attempts (after its key
    changed: a refused login is FAILED at once, and a new password is the fix)."""
    result: Any = await session.execute(
        update(CalendarEvent)
        .where(
            CalendarEvent.credential_id == credential_id,
            CalendarEvent.status == CalendarEventStatus.FAILED,
        )
        .values(
            status=CalendarEventStatus.PENDING,
            attempts=0,
            next_attempt_at=utcnow(),
            revision=CalendarEvent.revision + 1,
        )
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount or 0)
    if count:
        await mark_written(session, "calendar")
    return count
