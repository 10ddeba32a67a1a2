"""The scheduling engine's verdict on a booking's time. One availability path: every create,
reschedule, seat and confirm asks here, with the same data GET /slots uses, inside the
transaction that writes and after the hosts' locks are taken. Double bookings are refused by the
database itself (see `writes`): PostgreSQL's exclusion constraint on a host's accepted bookings,
and SQLite's serialised writers (BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bookable.models import EventType, User
from bookable.scheduling import (
    Refusal,
    SchedulingKind,
    TeamCheck,
    check_booking,
    check_team_booking,
)
from bookable.slots.service import Team, event_rules, load_host_calendar, load_team


async def host_refusal(
    session: AsyncSession,
    event_type: EventType,
    host: User,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    ignore_uid: str | None,
) -> Refusal | None:
    """Why ``host`` cannot take a booking of ``event_type`` from ``start`` to ``end``, or None
    if they can. ``ignore_uid``: the booking being rescheduled or confirmed, which does not
    block itself."""
    length = _minutes(start, end)
    calendar = await load_host_calendar(
        session, event_type, host, start, end, ignore_booking_uid=ignore_uid
    )
    return check_booking(event_rules(event_type), calendar, start, length, now)


async def team_check(
    session: AsyncSession,
    event_type: EventType,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    ignore_uid: str | None = None,
) -> tuple[Team, TeamCheck]:
    """The team event type's hosts at ``start`` and the engine's answer: who is free, or why
    the booking cannot be made."""
    length = _minutes(start, end)
    team = await load_team(session, event_type, start, end, ignore_booking_uid=ignore_uid)
    check = check_team_booking(event_rules(event_type), team.hosts, team.kind, start, length, now)
    return team, check


async def occupied_hosts_check(
    session: AsyncSession,
    event_type: EventType,
    host_ids: Sequence[int],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    ignore_uid: str,
) -> TeamCheck:
    """An existing team booking: every host in ``host_ids`` must be free for it."""
    length = _minutes(start, end)
    team = await load_team(session, event_type, start, end, ignore_booking_uid=ignore_uid)
    occupied = [replace(h, fixed=True) for h in team.hosts if h.user_id in host_ids]
    return check_team_booking(
        event_rules(event_type), occupied, SchedulingKind.COLLECTIVE, start, length, now
    )


def _minutes(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() // 60)
