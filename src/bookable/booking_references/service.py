"""Use-cases on booking references. Every list and lookup starts from `readable(caller)`.

A reference belongs to whoever hosts its booking: its organiser (Cal.com v1: `booking.userId`)
and, for a team booking, every co-host it occupies. The rule for "the bookings a caller hosts"
lives once, in `bookings.access.hosted_by`, and is reused here.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.booking_references.schemas import BookingReferenceCreate, BookingReferenceUpdate
from bookable.bookings.access import hosted_by
from bookable.core.auth import Caller
from bookable.core.errors import NotFound
from bookable.core.permissions import readable_row
from bookable.core.schemas import is_db_id
from bookable.models import Booking, BookingReference


def readable(caller: Caller) -> Select[tuple[BookingReference]]:
    """References of the bookings a caller organises or co-hosts (every reference for a
    system-wide admin)."""
    query = select(BookingReference)
    if caller.is_admin:
        return query
    return query.where(hosted_by(caller, BookingReference.booking_id))


async def list_booking_references(session: AsyncSession, caller: Caller) -> list[BookingReference]:
    query = readable(caller)
    if not caller.is_admin:
        # Cal.com lists a user's deleted references no more (admins still see them).
        query = query.where(BookingReference.deleted.is_not(True))
    return list(await session.scalars(query.order_by(BookingReference.id)))


async def get_booking_reference(
    session: AsyncSession, caller: Caller, reference_id: int
) -> BookingReference:
    """One readable reference; a non-admin gets 403 whether the id is someone else's or missing."""
    return await readable_row(
        session,
        caller,
        readable(caller).where(BookingReference.id == reference_id),
        reference_id,
        missing="Booking reference not found",
    )


async def _ensure_hosted_booking(session: AsyncSession, caller: Caller, booking_id: int) -> None:
    """Cal.com answers 404 for a booking that is missing or not the caller's (it looks it up
    among the caller's bookings only)."""
    hosted = select(Booking.id)
    if not caller.is_admin:
        hosted = hosted.where(hosted_by(caller, Booking.id))
    found = (
        await session.scalar(hosted.where(Booking.id == booking_id))
        if is_db_id(booking_id)
        else None
    )
    if found is None:
        raise NotFound("Booking not found")


async def create_booking_reference(
    session: AsyncSession, caller: Caller, body: BookingReferenceCreate
) -> BookingReference:
    await _ensure_hosted_booking(session, caller, body.booking_id)
    reference = BookingReference(**body.model_dump())
    session.add(reference)
    await session.flush()
    return reference


async def update_booking_reference(
    session: AsyncSession, caller: Caller, reference_id: int, body: BookingReferenceUpdate
) -> BookingReference:
    reference = await get_booking_reference(session, caller, reference_id)
    if reference.deleted:
        # Cal.com updates only references not marked deleted; the record is kept as it was.
        raise NotFound(f"Booking reference with id: {reference_id} is deleted and cannot be edited")
    values = body.model_dump(exclude_unset=True)
    if "booking_id" in values and values["booking_id"] != reference.booking_id:
        await _ensure_hosted_booking(session, caller, values["booking_id"])
    for column, value in values.items():
        setattr(reference, column, value)
    await session.flush()
    return reference


async def delete_booking_reference(
    session: AsyncSession, caller: Caller, reference_id: int
) -> None:
    reference = await get_booking_reference(session, caller, reference_id)
    await session.delete(reference)
    await session.flush()
