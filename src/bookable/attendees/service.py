"""Use-cases on attendees. Every list and lookup starts from `readable(caller)`.

An attendee belongs to whoever hosts its booking: its organiser (Cal.com v1: `booking.userId`)
and, for a team booking, every co-host it occupies. The rule for "the bookings a caller hosts"
lives once, in `bookings.access.hosted_by`, and is reused here.
"""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.attendees.schemas import AttendeeCreate, AttendeeUpdate
from bookable.bookings.access import hosted_by
from bookable.bookings.common import BookingRefused
from bookable.core.auth import Caller
from bookable.core.errors import Forbidden, NotFound
from bookable.core.permissions import readable_row
from bookable.core.schemas import is_db_id
from bookable.models import Attendee, Booking, EventType
from bookable.scheduling import Refusal


def readable(caller: Caller) -> Select[tuple[Attendee]]:
    """Attendees of the bookings a caller organises or co-hosts (every attendee for a
    system-wide admin)."""
    query = select(Attendee)
    if caller.is_admin:
        return query
    return query.where(hosted_by(caller, Attendee.booking_id))


async def list_attendees(session: AsyncSession, caller: Caller) -> list[Attendee]:
    return list(await session.scalars(readable(caller).order_by(Attendee.id)))


async def get_attendee(session: AsyncSession, caller: Caller, attendee_id: int) -> Attendee:
    """One readable attendee; a non-admin gets 403 whether the id is someone else's or missing."""
    return await readable_row(
        session,
        caller,
        readable(caller).where(Attendee.id == attendee_id),
        attendee_id,
        missing="Attendee not found",
    )


async def _lock_hosted_booking(
    session: AsyncSession, caller: Caller, booking_id: int, forbidden_message: str
) -> Booking:
    """The booking an attendee is added to, locked until the transaction ends, so that two
    requests filling the last seat of a seated booking are counted one after the other."""
    hosted = select(Booking)
    if not caller.is_admin:
        hosted = hosted.where(hosted_by(caller, Booking.id))
    booking = (
        await session.scalar(hosted.where(Booking.id == booking_id).with_for_update(of=Booking))
        if is_db_id(booking_id)
        else None
    )
    if booking is None:
        # Cal.com: a non-admin can't tell a missing booking from someone else's.
        if caller.is_admin:
            raise NotFound("Booking not found")
        raise Forbidden(forbidden_message)
    return booking


async def _refuse_if_seats_full(session: AsyncSession, booking: Booking) -> None:
    """A seated booking holds at most `seatsPerTimeSlot` attendees. Call with the booking locked."""
    if booking.event_type_id is None:
        return
    seats = await session.scalar(
        select(EventType.seats_per_time_slot).where(EventType.id == booking.event_type_id)
    )
    if not seats:
        return
    taken = await session.scalar(
        select(func.count()).select_from(Attendee).where(Attendee.booking_id == booking.id)
    )
    if (taken or 0) >= seats:
        raise BookingRefused(
            Refusal(
                409,
                "booking_seats_full_error",
                f"every seat of this booking is taken ({seats} of {seats})",
            )
        )


async def create_attendee(session: AsyncSession, caller: Caller, body: AttendeeCreate) -> Attendee:
    booking = await _lock_hosted_booking(session, caller, body.booking_id, "Forbidden")
    await _refuse_if_seats_full(session, booking)
    attendee = Attendee(
        booking_id=booking.id, email=body.email, name=body.name, time_zone=body.time_zone
    )
    session.add(attendee)
    await session.flush()
    return attendee


async def update_attendee(
    session: AsyncSession, caller: Caller, attendee_id: int, body: AttendeeUpdate
) -> Attendee:
    attendee = await get_attendee(session, caller, attendee_id)
    values = body.model_dump(exclude_unset=True)
    target_id = values.get("booking_id")
    if target_id is not None and target_id != attendee.booking_id:
        # Moving an attendee adds them to another booking: the same rights and seat limit.
        target = await _lock_hosted_booking(
            session, caller, target_id, "You don't have access to the booking"
        )
        await _refuse_if_seats_full(session, target)
    for column, value in values.items():
        setattr(attendee, column, value)
    await session.flush()
    return attendee


async def delete_attendee(session: AsyncSession, caller: Caller, attendee_id: int) -> None:
    attendee = await get_attendee(session, caller, attendee_id)
    await session.delete(attendee)
    await session.flush()
