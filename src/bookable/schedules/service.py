"""Use-cases on schedules. Every read starts from `readable(caller)`.

A user's default schedule (`users.default_schedule_id`) follows their schedules: the first one
they get becomes the default, and when the default is deleted or handed to another user the
lowest-id schedule they still own takes its place.
"""

from __future__ import annotations

from datetime import time

from sqlalchemy import Select, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.auth import Caller, acting_user_id, mark_identity_changed
from bookable.core.errors import NotFound, Unauthorized
from bookable.core.permissions import readable_row
from bookable.core.schemas import is_db_id
from bookable.models import Availability, Schedule, User
from bookable.schedules.schemas import ScheduleCreate, ScheduleUpdate

# Monday to Friday, 09:00-17:00 (Cal.com's DEFAULT_SCHEDULE), in the schedule's own zone.
DEFAULT_DAYS = [1, 2, 3, 4, 5]
DEFAULT_START = time(9, 0)
DEFAULT_END = time(17, 0)


def readable(caller: Caller) -> Select[tuple[Schedule]]:
    """The schedules a caller may see: their own, or every schedule for a system-wide admin."""
    query = select(Schedule)
    return query if caller.is_admin else query.where(Schedule.user_id == caller.user_id)


async def user_owns_schedule(session: AsyncSession, user_id: int, schedule_id: int) -> bool:
    if not is_db_id(schedule_id):
        return False
    found = await session.scalar(
        select(Schedule.id).where(Schedule.id == schedule_id, Schedule.user_id == user_id)
    )
    return found is not None


async def list_schedules(
    session: AsyncSession, caller: Caller, user_ids: list[int]
) -> list[Schedule]:
    query = readable(caller)
    if user_ids:
        if not caller.is_admin and set(user_ids) != {caller.user_id}:
            raise Unauthorized("Unauthorized: Only admins can query other users")
        query = query.where(Schedule.user_id.in_([i for i in user_ids if is_db_id(i)]))
        if len(user_ids) > 1:
            # Cal.com sorts by owner when several users are asked for.
            query = query.order_by(Schedule.user_id)
    return list(await session.scalars(query.order_by(Schedule.id)))


async def get_schedule(session: AsyncSession, caller: Caller, schedule_id: int) -> Schedule:
    return await readable_row(
        session,
        caller,
        readable(caller).where(Schedule.id == schedule_id),
        schedule_id,
        missing="Schedule not found",
    )


async def _ensure_user_exists(session: AsyncSession, user_id: int) -> None:
    if await session.scalar(select(User.id).where(User.id == user_id)) is None:
        raise NotFound(f"User with id: {user_id} not found")


async def _adopt_as_default_if_none(session: AsyncSession, user_id: int, schedule_id: int) -> None:
    """Make ``schedule_id`` the user's default if they have none (one conditional UPDATE)."""
    result = await session.execute(
        update(User)
        .where(User.id == user_id, User.default_schedule_id.is_(None))
        .values(default_schedule_id=schedule_id)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        mark_identity_changed(session)


async def _replace_lost_default(session: AsyncSession, schedule_id: int) -> None:
    """Users whose default is ``schedule_id`` but who no longer own it (deleted or handed over)
    get their lowest-id remaining schedule as default, or none."""
    still_owned = exists().where(Schedule.id == schedule_id, Schedule.user_id == User.id)
    lowest_owned = (
        select(func.min(Schedule.id)).where(Schedule.user_id == User.id).scalar_subquery()
    )
    result = await session.execute(
        update(User)
        .where(User.default_schedule_id == schedule_id, ~still_owned)
        .values(default_schedule_id=lowest_owned)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        mark_identity_changed(session)


async def create_schedule(session: AsyncSession, caller: Caller, body: ScheduleCreate) -> Schedule:
    owner_id = acting_user_id(caller, body.user_id, "ADMIN required for `userId`")
    if owner_id != caller.user_id:
        await _ensure_user_exists(session, owner_id)
    schedule = Schedule(
        user_id=owner_id,
        name=body.name,
        time_zone=body.time_zone,
        availability=[
            Availability(days=DEFAULT_DAYS, start_time=DEFAULT_START, end_time=DEFAULT_END)
        ],
    )
    session.add(schedule)
    await session.flush()
    await _adopt_as_default_if_none(session, owner_id, schedule.id)
    return schedule


async def update_schedule(
    session: AsyncSession, caller: Caller, schedule_id: int, body: ScheduleUpdate
) -> Schedule:
    schedule = await get_schedule(session, caller, schedule_id)
    values = body.model_dump(exclude_unset=True)
    new_owner_id = values.pop("user_id", None)
    changes_owner = new_owner_id is not None and new_owner_id != schedule.user_id
    if changes_owner:
        acting_user_id(caller, new_owner_id, "Non admin cannot change the owner of a schedule")
        await _ensure_user_exists(session, new_owner_id)
    for key, value in values.items():
        setattr(schedule, key, value)
    if changes_owner:
        schedule.user_id = new_owner_id
        await session.flush()
        await _replace_lost_default(session, schedule.id)
        await _adopt_as_default_if_none(session, new_owner_id, schedule.id)
    await session.flush()
    return schedule


async def delete_schedule(session: AsyncSession, caller: Caller, schedule_id: int) -> None:
    schedule = await get_schedule(session, caller, schedule_id)
    await session.delete(schedule)  # its availability rows go with it
    await session.flush()
    await _replace_lost_default(session, schedule_id)
