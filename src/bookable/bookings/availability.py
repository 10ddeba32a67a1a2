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
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bookable.calendars.busy import ExternalBusy
from bookable.scheduling import (
    AvailabilityRule,
    Refusal,
    SchedulingKind,
    TeamCheck,
    check_booking,
    check_team_booking,
)
from bookable.slots.service import (
    AnyEventType,
    AnyHost,
    Team,
    event_rules,
    load_host_calendar,
    load_team,
)


async def host_refusal(
    session: AsyncSession,
    event_type: AnyEventType,
    host: AnyHost,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    ignore_uid: str | None,
    external: ExternalBusy | None = None,
    schedule: tuple[ZoneInfo, tuple[AvailabilityRule, ...]] | None = None,
) -> Refusal | None:
    """Why ``host`` cannot take a booking of ``event_type`` from ``start`` to ``end``, or None
    if they can. ``ignore_uid``: the booking being rescheduled or confirmed, which does not
    block itself. ``schedule``: the host's (`slots.service.choose_schedule`), when read
    already."""
    length = _minutes(start, end)
    calendar = await load_host_calendar(
        session, event_type, host, start, end,
        ignore_booking_uid=ignore_uid, external=external, schedule=schedule,
    )  # fmt: skip
    refusal = check_booking(event_rules(event_type), calendar, start, length, now)
    return explained(refusal, external, [host.id])


async def team_check(
    session: AsyncSession,
    event_type: AnyEventType,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    ignore_uid: str | None = None,
    external: ExternalBusy | None = None,
) -> tuple[Team, TeamCheck]:
    """The team event type's hosts at ``start`` and the engine's answer: who is free, or why
    the booking cannot be made."""
    length = _minutes(start, end)
    team = await load_team(
        session, event_type, start, end, ignore_booking_uid=ignore_uid, external=external
    )
    check = check_team_booking(event_rules(event_type), team.hosts, team.kind, start, length, now)
    refusal = explained(check.refusal, external, [h.user_id for h in team.hosts])
    return team, replace(check, refusal=refusal)


async def occupied_hosts_check(
    session: AsyncSession,
    event_type: AnyEventType,
    host_ids: Sequence[int],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    ignore_uid: str,
    external: ExternalBusy | None = None,
) -> TeamCheck:
    """An existing team booking: every host in ``host_ids`` must be free for it."""
    length = _minutes(start, end)
    team = await load_team(
        session, event_type, start, end, ignore_booking_uid=ignore_uid, external=external
    )
    occupied = [replace(h, fixed=True) for h in team.hosts if h.user_id in host_ids]
    check = check_team_booking(
        event_rules(event_type), occupied, SchedulingKind.COLLECTIVE, start, length, now
    )
    return replace(check, refusal=explained(check.refusal, external, host_ids))


def explained(
    refusal: Refusal | None, external: ExternalBusy | None, host_ids: Sequence[int]
) -> Refusal | None:
    """A refusal that says so when a host's selected calendar could not be read (fail closed):
    otherwise the caller would only hear that the time is taken."""
    if refusal is None or external is None or external.fail_open:
        return refusal
    problems = [p for host_id in host_ids for p in external.problems.get(host_id, ())]
    if not problems:
        return refusal
    return replace(
        refusal,
        reason=f"{refusal.reason}; a selected calendar of a host could not be read, so that "
        f"host is unavailable until it can: {problems[0].error}",
    )


def _minutes(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() // 60)
