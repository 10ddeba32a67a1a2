"""Use-cases on availability rules. Every read starts from `readable(caller)`.

A rule is a weekly one (``days``, 0 = Sunday … 6 = Saturday) or a date override (``date``). Rules
of one schedule may not overlap: two weekly rules sharing a weekday, or two overrides of the same
date, must not share any time. An end of 00:00 or 23:59 means the end of the day; an override from
00:00 to 00:00 marks the whole date unavailable (as the engine in `scheduling/` reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import contains_eager

from bookable.availabilities.schemas import AvailabilityCreate, AvailabilityUpdate
from bookable.core.auth import Caller
from bookable.core.errors import BadRequest, NotFound, Unauthorized
from bookable.core.schemas import is_db_id
from bookable.models import Availability, Schedule
from bookable.schedules import service as schedules

WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_END_OF_DAY = 24 * 3600


def readable(caller: Caller) -> Select[tuple[Availability]]:
    """The rules a caller may see: those of their own schedules, or every rule for an admin.

    The schedule comes along (the wire shape names its owner)."""
    query = (
        select(Availability)
        .join(Availability.schedule)
        .options(contains_eager(Availability.schedule))
    )
    return query if caller.is_admin else query.where(Schedule.user_id == caller.user_id)


@dataclass(frozen=True, slots=True)
class Rule:
    start_time: time
    end_time: time
    days: list[int]
    date: date | None

    @property
    def start_second(self) -> int:
        return _seconds(self.start_time)

    @property
    def end_second(self) -> int:
        end = self.end_time
        if end == time(0) or (end.hour, end.minute) == (23, 59):
            return _END_OF_DAY
        return _seconds(end)

    @property
    def blocks_whole_date(self) -> bool:
        """Cal.com's "unavailable on this date": an override from 00:00 to 00:00."""
        return self.date is not None and self.start_time == self.end_time == time(0)

    def overlaps_in_time(self, other: Rule) -> bool:
        if self.blocks_whole_date or other.blocks_whole_date:
            return True  # a blocked date can't also have working hours
        return self.start_second < other.end_second and other.start_second < self.end_second


def _seconds(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


def _check_rule(rule: Rule) -> None:
    if rule.blocks_whole_date:
        return
    if rule.end_time == rule.start_time or rule.end_second <= rule.start_second:
        raise BadRequest(
            "custom in 'endTime': must be after startTime (00:00 or 23:59 mean the end of the day)"
        )
    if not rule.days and rule.date is None:
        raise BadRequest(
            "custom in 'days': must hold at least one weekday (0 = Sunday … 6 = Saturday) "
            "unless 'date' is set"
        )


async def _lock_schedule(session: AsyncSession, schedule_id: int) -> None:
    """Serialise writers of one schedule's rules, so the overlap check can't race an insert.

    A no-op UPDATE takes the row lock on PostgreSQL and the write lock on SQLite alike."""
    await session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id)
        .values(name=Schedule.name)
        .execution_options(synchronize_session=False)
    )


async def _check_no_overlap(
    session: AsyncSession, schedule_id: int, rule: Rule, exclude_id: int | None
) -> None:
    query = select(Availability).where(Availability.schedule_id == schedule_id)
    if exclude_id is not None:
        query = query.where(Availability.id != exclude_id)
    for other in await session.scalars(query.order_by(Availability.id)):
        existing = Rule(other.start_time, other.end_time, list(other.days or []), other.date)
        if not rule.overlaps_in_time(existing):
            continue
        if rule.date is not None:
            if existing.date == rule.date:
                raise BadRequest(
                    f"custom in 'startTime': overlaps availability {other.id} on "
                    f"{rule.date.isoformat()}"
                )
        elif existing.date is None:
            shared = sorted(set(rule.days) & set(existing.days))
            if shared:
                raise BadRequest(
                    f"custom in 'startTime': overlaps availability {other.id} on "
                    f"{WEEKDAY_NAMES[shared[0]]}"
                )


async def get_availability(
    session: AsyncSession, caller: Caller, availability_id: int
) -> Availability:
    availability = (
        await session.scalar(readable(caller).where(Availability.id == availability_id))
        if is_db_id(availability_id)
        else None
    )
    if availability is None:
        # Someone else's rule is as invisible as a missing one (Cal.com: 404 as well).
        raise NotFound("Availability not found")
    return availability


async def create_availability(
    session: AsyncSession, caller: Caller, body: AvailabilityCreate
) -> Availability:
    schedule = await session.scalar(
        schedules.readable(caller).where(Schedule.id == body.schedule_id)
    )
    if schedule is None:
        if not caller.is_admin:
            raise Unauthorized("You can't add availabilities to this schedule")
        raise BadRequest(f"custom in 'scheduleId': schedule {body.schedule_id} does not exist")
    rule = Rule(body.start_time, body.end_time, body.days, body.date)
    _check_rule(rule)
    await _lock_schedule(session, schedule.id)
    await _check_no_overlap(session, schedule.id, rule, exclude_id=None)
    availability = Availability(
        schedule=schedule,
        days=rule.days,
        start_time=rule.start_time,
        end_time=rule.end_time,
        date=rule.date,
    )
    session.add(availability)
    await session.flush()
    return availability


async def update_availability(
    session: AsyncSession, caller: Caller, availability_id: int, body: AvailabilityUpdate
) -> Availability:
    availability = await get_availability(session, caller, availability_id)
    values = body.model_dump(exclude_unset=True)
    rule = Rule(
        values.get("start_time", availability.start_time),
        values.get("end_time", availability.end_time),
        values.get("days", list(availability.days or [])),
        values.get("date", availability.date),
    )
    _check_rule(rule)
    await _lock_schedule(session, availability.schedule_id)
    await _check_no_overlap(session, availability.schedule_id, rule, exclude_id=availability.id)
    availability.start_time = rule.start_time
    availability.end_time = rule.end_time
    availability.days = rule.days
    availability.date = rule.date
    await session.flush()
    return availability


async def delete_availability(session: AsyncSession, caller: Caller, availability_id: int) -> None:
    availability = await get_availability(session, caller, availability_id)
    await session.delete(availability)
    await session.flush()
