"""Team bookings: which hosts a new booking occupies (COLLECTIVE: all; ROUND_ROBIN: the fixed
hosts and one round-robin pick).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.bookings.access import booking_host_ids
from bookable.bookings.common import AnyOrganizer
from bookable.models import Booking, BookingHost, BookingStatus
from bookable.scheduling import SchedulingKind, pick_round_robin_host
from bookable.slots.service import AnyEventType, Team


@dataclass(frozen=True, slots=True)
class Placement:
    """Who a new booking occupies: its organiser, the other hosts, the round-robin pick."""

    organizer: AnyOrganizer
    other_hosts: tuple[int, ...]
    lucky: tuple[int, ...]


async def place_team_booking(
    session: AsyncSession,
    event_type: AnyEventType,
    team: Team,
    free_hosts: Sequence[int],
    previous: Booking | None,
    now: datetime,
) -> Placement:
    """Choose the hosts of a team booking the engine found bookable. COLLECTIVE: every host.
    ROUND_ROBIN: the fixed hosts and one free round-robin host (a rescheduled booking keeps its
    own if free), the one with the fewest bookings of this event type this month, then the
    least recently booked."""
    occupied, lucky = await _choose_hosts(session, event_type, team, free_hosts, previous, now)
    organizer = team.users[occupied[0]]
    return Placement(organizer, tuple(occupied[1:]), lucky)


async def _choose_hosts(
    session: AsyncSession,
    event_type: AnyEventType,
    team: Team,
    free_hosts: Sequence[int],
    previous: Booking | None,
    now: datetime,
) -> tuple[list[int], tuple[int, ...]]:
    fixed = [h.user_id for h in team.hosts if h.fixed]
    floating = [h.user_id for h in team.hosts if not h.fixed and h.user_id in free_hosts]
    if team.kind == SchedulingKind.COLLECTIVE or not floating:
        return fixed, ()
    kept = (
        [i for i in await booking_host_ids(session, previous) if i in floating]
        if previous is not None
        else []
    )
    if kept:
        lucky = kept[0]
    else:
        counts, last = await round_robin_history(session, event_type.id, floating, now)
        lucky = pick_round_robin_host(floating, counts, last)
    return [*fixed, lucky], (lucky,)


async def round_robin_history(
    session: AsyncSession, event_type_id: int, host_ids: Sequence[int], now: datetime
) -> tuple[dict[int, int], dict[int, datetime | None]]:
    """Per host: bookings of this event type made this calendar month (UTC), and when they
    were last booked for it at all. Cancelled and rejected bookings do not count."""
    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rows = (
        await session.execute(
            select(
                BookingHost.user_id,
                func.count().filter(Booking.created_at >= month_start),
                func.max(Booking.created_at),
            )
            .join(Booking, Booking.id == BookingHost.booking_id)
            .where(
                Booking.event_type_id == event_type_id,
                BookingHost.user_id.in_(host_ids),
                Booking.status.in_([BookingStatus.ACCEPTED, BookingStatus.PENDING]),
            )
            .group_by(BookingHost.user_id)
        )
    ).all()
    counts = {user_id: int(count) for user_id, count, _last in rows}
    last = {user_id: latest for user_id, _count, latest in rows}
    return counts, last
