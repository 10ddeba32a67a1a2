"""Who may see and manage a booking. Attendees, references and payments hang off bookings by
these rules too (`hosted_by`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from bookable.core.auth import Caller
from bookable.core.errors import NotFound
from bookable.core.schemas import is_db_id
from bookable.models import (
    Attendee,
    Booking,
    BookingHost,
    EventType,
    Membership,
    MembershipRole,
    User,
)


def listable(
    caller: Caller, user_ids: Sequence[int] = (), co_hosted: Sequence[int] = ()
) -> Select[tuple[Booking]]:
    """GET /bookings: a user lists the bookings they host (``co_hosted``: the team bookings
    organised by someone else that occupy them too, see `co_hosted_ids`); an admin all, or
    those of ``user_ids`` as host or as attendee (Cal.com v1's rules)."""
    query = select(Booking)
    if not caller.is_admin:
        if co_hosted:
            return query.where(or_(Booking.user_id == caller.user_id, Booking.id.in_(co_hosted)))
        # The common case keeps the plain predicate: an index-only scan of the host's bookings.
        return query.where(Booking.user_id == caller.user_id)
    if user_ids:
        ids = [i for i in user_ids if is_db_id(i)]
        as_attendee = select(Attendee.booking_id).where(
            func.lower(Attendee.email).in_(select(func.lower(User.email)).where(User.id.in_(ids)))
        )
        return query.where(or_(Booking.user_id.in_(ids), Booking.id.in_(as_attendee)))
    return query


async def co_hosted_ids(session: AsyncSession, caller: Caller) -> list[int]:
    """Team bookings that occupy the caller though another host organises them."""
    if caller.is_admin:
        return []
    return list(
        await session.scalars(
            select(BookingHost.booking_id).where(
                BookingHost.user_id == caller.user_id, ~BookingHost.organizer
            )
        )
    )


def hosted_by(caller: Caller, booking_id: InstrumentedAttribute[int]) -> ColumnElement[bool]:
    """``booking_id`` names a booking the caller hosts: organises (`Booking.user_id`) or
    co-hosts (a `booking_hosts` row with organizer = false, found through its partial index).
    Attendees, references and payments hang off bookings by this rule."""
    organised = select(Booking.id).where(Booking.user_id == caller.user_id)
    co_hosted = select(BookingHost.booking_id).where(
        BookingHost.user_id == caller.user_id, ~BookingHost.organizer
    )
    return or_(booking_id.in_(organised), booking_id.in_(co_hosted))


def managed_team_event_types(caller: Caller) -> Select[tuple[int]]:
    """Ids of the event types of teams the caller is an accepted OWNER or ADMIN of."""
    teams = select(Membership.team_id).where(
        Membership.user_id == caller.user_id,
        Membership.accepted.is_(True),
        Membership.role.in_([MembershipRole.OWNER, MembershipRole.ADMIN]),
    )
    return select(EventType.id).where(EventType.team_id.in_(teams))


def readable(caller: Caller) -> Select[tuple[Booking]]:
    """One booking by id: a host it occupies, an attendee (by the caller's email), the event
    type's owner (for a team event type: the team's OWNER/ADMIN), or a system-wide admin."""
    query = select(Booking)
    if caller.is_admin:
        return query
    as_attendee = select(Attendee.booking_id).where(
        func.lower(Attendee.email) == caller.user.email.lower()
    )
    owned_types = select(EventType.id).where(EventType.user_id == caller.user_id)
    co_hosted = select(BookingHost.booking_id).where(
        BookingHost.user_id == caller.user_id, ~BookingHost.organizer
    )
    return query.where(
        or_(
            Booking.user_id == caller.user_id,
            Booking.id.in_(co_hosted),
            Booking.id.in_(as_attendee),
            Booking.event_type_id.in_(owned_types),
            Booking.event_type_id.in_(managed_team_event_types(caller)),
        )
    )


async def manages(
    session: AsyncSession, caller: Caller, booking: Booking, event_type: EventType | None
) -> bool:
    """A host the booking occupies, the event-type owner (a team's OWNER/ADMIN) or an admin:
    may confirm, patch and cancel for everyone."""
    if (
        caller.is_admin
        or booking.user_id == caller.user_id
        or (event_type is not None and event_type.user_id == caller.user_id)
    ):
        return True
    if caller.user_id in await booking_host_ids(session, booking):
        return True
    if event_type is None or event_type.team_id is None:
        return False
    managed = await session.scalar(
        managed_team_event_types(caller).where(EventType.id == event_type.id)
    )
    return managed is not None


async def booking_host_ids(session: AsyncSession, booking: Booking) -> list[int]:
    """Every host the booking occupies, ascending (the organiser included)."""
    ids = set(
        await session.scalars(
            select(BookingHost.user_id).where(BookingHost.booking_id == booking.id)
        )
    )
    if booking.user_id is not None:
        ids.add(booking.user_id)
    return sorted(ids)


def _by_id_or_uid(
    query: Select[tuple[Booking]], key: str, *, uid_only: bool = False
) -> Select[tuple[Booking]]:
    # Cal.com's routes take the numeric id; the seed documents /bookings/{uid}: accept both.
    if key.isdigit() and not uid_only:
        number = int(key)
        return query.where(Booking.id == number) if is_db_id(number) else query.where(False)
    if "\x00" in key:
        # No uid holds a NUL, and PostgreSQL refuses to compare text with one.
        return query.where(False)
    return query.where(Booking.uid == key)


async def get_booking(
    session: AsyncSession,
    caller: Caller,
    key: str,
    *,
    for_update: bool = False,
    uid_only: bool = False,
) -> Booking:
    query = _by_id_or_uid(readable(caller), key, uid_only=uid_only).options(
        selectinload(Booking.attendees), selectinload(Booking.payments)
    )
    if for_update:
        query = query.with_for_update(of=Booking)
    booking = await session.scalar(query)
    if booking is None:
        # Someone else's booking answers as a missing one (Cal.com says 403): no existence oracle.
        raise NotFound(f"Booking {key} not found")
    return booking
