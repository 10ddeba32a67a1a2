"""GET /availability: a user's working hours, overrides, busy times and free ranges."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.calendars.busy import ExternalBusy
from bookable.core.auth import Caller
from bookable.core.errors import BadRequest, Forbidden, NotFound
from bookable.core.schemas import format_instant, is_db_id
from bookable.core.timeparse import parse_bound
from bookable.models import EventType, Host, Membership, Team, User
from bookable.scheduling import EventRules, SlotRequest, free_time, working_ranges
from bookable.slots.service import check_window, event_rules, host_schedule, load_host_calendar
from bookable.teams import service as teams


async def find_user(
    session: AsyncSession, caller: Caller, *, user_id: int | None, username: str | None
) -> User:
    if user_id is None and not username:
        raise BadRequest("Either username or userId or teamId should be filled in.")
    query = select(User)
    if user_id is not None:
        query = query.where(User.id == user_id) if is_db_id(user_id) else None
    else:
        query = query.where(func.lower(User.username) == (username or "").lower())
    user = await session.scalar(query) if query is not None else None
    # Someone else's calendar is theirs: only admins may look (Cal.com lets any key read it).
    if user is not None and not caller.is_admin and user.id != caller.user_id:
        raise Forbidden()
    if user is None:
        raise Forbidden() if not caller.is_admin else NotFound("User not found")
    return user


def _minutes(value: Any) -> int:
    return value.hour * 60 + value.minute


async def user_availability(
    session: AsyncSession,
    caller: Caller,
    *,
    user_id: int | None,
    username: str | None,
    date_from: str,
    date_to: str,
    event_type_id: int | None,
    now: datetime,
    external: ExternalBusy | None = None,
) -> dict[str, Any]:
    user, event_type = await user_and_event_type(
        session, caller, user_id=user_id, username=username, event_type_id=event_type_id
    )
    return await _availability_of(
        session, user, event_type, date_from, date_to, now, external=external
    )


async def user_and_event_type(
    session: AsyncSession,
    caller: Caller,
    *,
    user_id: int | None,
    username: str | None,
    event_type_id: int | None,
) -> tuple[User, EventType | None]:
    user = await find_user(session, caller, user_id=user_id, username=username)
    event_type = None
    if event_type_id is not None:
        event_type = (
            await session.scalar(
                select(EventType).where(EventType.id == event_type_id, EventType.user_id == user.id)
            )
            if is_db_id(event_type_id)
            else None
        )
        if event_type is None:
            raise NotFound(f"Event type with id: {event_type_id} not found for this user")
    return user, event_type


async def team_availability(
    session: AsyncSession,
    caller: Caller,
    *,
    team_id: int,
    date_from: str,
    date_to: str,
    event_type_id: int | None = None,
    now: datetime,
    external: ExternalBusy | None = None,
) -> list[dict[str, Any]]:
    """`[{userId, availability}]` for the team's accepted members, for its OWNER/ADMIN (and
    system admins). Anyone else gets 403 whether the team exists or not.

    Serves both GET /availability?teamId= and GET /teams/{teamId}/availability. With
    ``eventTypeId`` (one of this team's event types) each member's busy time is widened by its
    buffers, and each member's schedule for it (host schedule, else the event type's) is used."""
    members, event_type, host_schedules = await team_members(
        session, caller, team_id=team_id, event_type_id=event_type_id
    )
    return [
        {
            "userId": member.id,
            "availability": await _availability_of(
                session,
                member,
                event_type,
                date_from,
                date_to,
                now,
                host_schedule_id=host_schedules.get(member.id),
                external=external,
            ),
        }
        for member in members
    ]


async def team_members(
    session: AsyncSession, caller: Caller, *, team_id: int, event_type_id: int | None
) -> tuple[list[User], EventType | None, dict[int, int | None]]:
    """The team's accepted members, the team event type asked for and each member's host
    schedule for it; 403 unless the caller manages the team (or is an admin)."""
    team = await session.get(Team, team_id) if is_db_id(team_id) else None
    if caller.is_admin:
        if team is None:
            raise NotFound("teamId not found")
    elif team is None or await teams.accepted_role(session, caller.user_id, team_id) not in (
        teams.MANAGERS
    ):
        raise Forbidden()
    members = list(
        await session.scalars(
            select(User)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.team_id == team_id, Membership.accepted.is_(True))
            .order_by(User.id)
        )
    )
    event_type = None
    host_schedules: dict[int, int | None] = {}
    if event_type_id is not None:
        event_type = (
            await session.scalar(
                select(EventType).where(EventType.id == event_type_id, EventType.team_id == team_id)
            )
            if is_db_id(event_type_id)
            else None
        )
        if event_type is None:
            raise NotFound(f"Event type with id: {event_type_id} not found for this team")
        host_schedules = dict(
            (
                await session.execute(
                    select(Host.user_id, Host.schedule_id).where(
                        Host.event_type_id == event_type.id
                    )
                )
            ).all()
        )
    return members, event_type, host_schedules


async def _availability_of(
    session: AsyncSession,
    user: User,
    event_type: EventType | None,
    date_from: str,
    date_to: str,
    now: datetime,
    *,
    host_schedule_id: int | None = None,
    external: ExternalBusy | None = None,
) -> dict[str, Any]:
    if event_type is not None:
        rules = event_rules(event_type)
    else:
        # No event type: plain working hours, no buffers or limits.
        event_type = EventType(user_id=user.id, length=1, title="", slug="")
        rules = EventRules(length=1)

    # Date-only bounds are whole days in the schedule's zone.
    zone, _rules = await host_schedule(session, event_type, user, host_schedule_id)
    bounds = []
    for field, text, end_of_day in (("dateFrom", date_from, False), ("dateTo", date_to, True)):
        try:
            bounds.append(parse_bound(text, zone, end_of_day=end_of_day).instant)
        except ValueError:
            raise BadRequest(f"custom in '{field}': Invalid date range") from None
    start, end = bounds
    check_window(start, end, ("dateFrom", "dateTo"))

    calendar = await load_host_calendar(
        session, event_type, user, start, end, host_schedule_id=host_schedule_id, external=external
    )
    # Availability shows hours, not the booking window: notice and period apply to slots only.
    _, free = free_time(
        EventRules(
            length=1,
            before_event_buffer=rules.before_event_buffer,
            after_event_buffer=rules.after_event_buffer,
        ),
        calendar,
        SlotRequest(start, end, min(now, start), calendar.zone),
        1,
    )
    overrides = [rule for rule in calendar.rules if rule.date is not None]
    override_ranges = working_ranges(overrides, calendar.zone, start, end) if overrides else []
    busy = sorted(
        [(b.start, b.end, b.source) for b in calendar.busy]
        + [(start, end, None) for start, end in calendar.unbuffered]
        + [(s.start, s.end, None) for s in calendar.seated],
        key=lambda entry: (entry[0], entry[1]),
    )
    problems = [p.to_json() for p in (external.problems.get(user.id, ()) if external else ())]
    free_ranges = [{"start": format_instant(r.start), "end": format_instant(r.end)} for r in free]
    return {
        "busy": [
            # Calendar events say where they come from (Cal.com's `source`: the app id).
            {"start": format_instant(s), "end": format_instant(e)}
            | ({"source": source} if source else {})
            for s, e, source in busy
            if s < end and e > start
        ],
        "timeZone": str(calendar.zone),
        "dateRanges": free_ranges,
        "oooExcludedDateRanges": free_ranges,
        "workingHours": [
            {
                "days": sorted(rule.days),
                "startTime": _minutes(rule.start),
                "endTime": 1440 if _minutes(rule.end) in (0, 1439) else _minutes(rule.end),
                "userId": user.id,
            }
            for rule in calendar.rules
            if rule.date is None
        ],
        "dateOverrides": [
            {"start": format_instant(r.start), "end": format_instant(r.end)}
            for r in override_ranges
            if r.start < end and r.end > start
        ],
        "currentSeats": None,
        "datesOutOfOffice": {},
    } | ({"calendarErrors": problems} if problems else {})
