"""Seated event types: a booker joins the booking that already holds the slot."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bookable.bookings.availability import team_check
from bookable.bookings.common import BookingRefused
from bookable.bookings.schemas import Booker, BookingCreate
from bookable.calendars.busy import ExternalBusy
from bookable.models import Attendee, Booking, BookingStatus
from bookable.scheduling import Refusal
from bookable.slots.service import AnyEventType


async def refuse_unless_open_team_seat(
    session: AsyncSession,
    event_type: AnyEventType,
    start: datetime,
    end: datetime,
    now: datetime,
    external: ExternalBusy | None = None,
) -> None:
    """If a seated booking of this team event type with seats left starts at ``start``, refuse
    unless team slots offer it (Cal.com checks a seat's time bounds too). A full one is left to
    `join_seat`, which answers `booking_seats_full_error`."""
    seated = await session.execute(
        select(Booking.id, func.count(Attendee.id))
        .outerjoin(Attendee, Attendee.booking_id == Booking.id)
        .where(
            Booking.event_type_id == event_type.id,
            Booking.start_time == start,
            Booking.status.in_([BookingStatus.ACCEPTED, BookingStatus.PENDING]),
        )
        .group_by(Booking.id)
    )
    row = seated.first()
    if row is None or row[1] >= (event_type.seats_per_time_slot or 0):
        return
    _team, check = await team_check(session, event_type, start, end, now, external=external)
    if check.refusal is not None:
        raise BookingRefused(check.refusal)


async def join_seat(
    session: AsyncSession,
    event_type: AnyEventType,
    booker: Booker,
    body: BookingCreate,
    start: datetime,
    end: datetime,
) -> Booking | None:
    """Add the booker to the seated booking at ``start``, under a row lock; None if none yet."""
    existing = await session.scalar(
        select(Booking)
        .where(
            Booking.event_type_id == event_type.id,
            Booking.start_time == start,
            # A priced (or to-be-confirmed) seated slot waits PENDING: later bookers join it too.
            Booking.status.in_([BookingStatus.ACCEPTED, BookingStatus.PENDING]),
        )
        .options(selectinload(Booking.attendees), selectinload(Booking.payments))
        .with_for_update(of=Booking)
        .execution_options(populate_existing=True)
    )
    if existing is None:
        return None
    emails = {a.email.lower() for a in existing.attendees}
    if booker.email.lower() in emails:
        raise BookingRefused(
            Refusal(
                409,
                "already_signed_up_for_this_booking_error",
                f"{booker.email} already holds a seat at this time",
            )
        )
    if len(existing.attendees) >= (event_type.seats_per_time_slot or 0):
        raise BookingRefused(
            Refusal(409, "booking_seats_full_error", "every seat of this slot is taken")
        )
    existing.attendees.append(
        Attendee(
            email=booker.email,
            name=booker.name,
            time_zone=body.time_zone or "UTC",
            locale=body.language or "en",
            phone_number=booker.phone_number,
        )
    )
    await session.flush()
    return existing
