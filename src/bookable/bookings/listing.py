"""GET /bookings: the caller's bookings, filtered, sorted and paged."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bookable.bookings.access import co_hosted_ids, listable
from bookable.core.auth import Caller
from bookable.models import Attendee, Booking


async def list_bookings(
    session: AsyncSession,
    caller: Caller,
    *,
    user_ids: Sequence[int],
    attendee_emails: Sequence[str],
    date_from: datetime | None,
    date_to: datetime | None,
    sort_by: str | None,
    descending: bool,
    page: tuple[int, int] | None,
) -> list[Booking]:
    """GET /bookings. ``page`` is (page number, page size)."""
    query = listable(caller, user_ids, await co_hosted_ids(session, caller))
    if attendee_emails:
        query = query.where(
            Booking.id.in_(
                select(Attendee.booking_id).where(
                    func.lower(Attendee.email).in_([e.lower() for e in attendee_emails])
                )
            )
        )
    if date_from is not None:
        query = query.where(Booking.start_time >= date_from)
    if date_to is not None:
        query = query.where(Booking.end_time <= date_to)
    column = {"createdAt": Booking.created_at, "updatedAt": Booking.updated_at}.get(
        sort_by or "", Booking.start_time
    )
    # NULLs (a never-updated booking's updatedAt) sort as PostgreSQL, and so Cal.com, sorts them:
    # last ascending, first descending; SQLite would put them the other way round.
    ordering = (
        (column.desc().nulls_first(), Booking.id.desc())
        if descending
        else (column.asc().nulls_last(), Booking.id.asc())
    )
    if page is not None:
        number, size = page
        # Deferred join: page through ids alone (an index-only scan of (user_id, start_time,
        # id)), then read the full rows of just that page. OFFSET still walks the skipped
        # entries, but index entries, not rows.
        page_ids = (
            query.with_only_columns(Booking.id)
            .order_by(*ordering)
            .offset((number - 1) * size)
            .limit(size)
            .subquery()
        )
        query = select(Booking).where(Booking.id.in_(select(page_ids.c.id)))
    query = query.order_by(*ordering).options(
        selectinload(Booking.attendees), selectinload(Booking.payments)
    )
    return list(await session.scalars(query))
