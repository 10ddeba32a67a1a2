"""Use-cases on users. Every read starts from `readable(caller)`."""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.auth import Caller, mark_identity_changed
from bookable.core.errors import ApiError, Conflict, Forbidden, NotFound
from bookable.core.schemas import is_db_id
from bookable.models import User
from bookable.schedules.service import user_owns_schedule
from bookable.users.schemas import UserCreate, UserUpdate

# Body fields that are not plain columns of the same name.
_RENAMED = {"avatar": "avatar_url"}
INVALID_DEFAULT_SCHEDULE = "Bad request: Invalid default schedule id"


def readable(caller: Caller) -> Select[tuple[User]]:
    """The users a caller may see: themself, or everyone for a system-wide admin."""
    query = select(User)
    return query if caller.is_admin else query.where(User.id == caller.user_id)


async def list_users(
    session: AsyncSession, caller: Caller, *, emails: list[str], take: int, page: int
) -> tuple[list[User], int]:
    query = readable(caller)
    if emails:
        query = query.where(func.lower(User.email).in_([e.lower() for e in emails]))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(query.order_by(User.id).offset((page - 1) * take).limit(take))
    return list(rows), int(total or 0)


async def get_user(session: AsyncSession, caller: Caller, user_id: int) -> User:
    if not caller.is_admin and user_id != caller.user_id:
        raise Forbidden()
    user = (
        await session.scalar(readable(caller).where(User.id == user_id))
        if is_db_id(user_id)
        else None
    )
    if user is None:
        raise NotFound("User not found")
    return user


async def _ensure_unique(
    session: AsyncSession, *, email: str | None, username: str | None, exclude_id: int | None
) -> None:
    for column, value, message in (
        (User.email, email, "Email already in use"),
        (User.username, username, "already_in_use_error"),
    ):
        if value is None:
            continue
        query = select(User.id).where(func.lower(column) == value.lower())
        if exclude_id is not None:
            query = query.where(User.id != exclude_id)
        if await session.scalar(query) is not None:
            raise Conflict(message)


def _columns(body: UserCreate | UserUpdate) -> dict[str, object]:
    values = body.model_dump(exclude_unset=True)
    return {_RENAMED.get(key, key): value for key, value in values.items()}


async def create_user(session: AsyncSession, caller: Caller, body: UserCreate) -> User:
    if not caller.is_admin:
        raise ApiError(401, "You are not authorized")
    await _ensure_unique(session, email=body.email, username=body.username, exclude_id=None)
    values = {k: v for k, v in _columns(body).items() if v is not None}
    if body.default_schedule_id is not None:
        # A user who doesn't exist yet owns no schedule, so no id can be theirs.
        raise ApiError(400, INVALID_DEFAULT_SCHEDULE)
    user = User(**values)
    session.add(user)
    await session.flush()
    return user


async def update_user(
    session: AsyncSession, caller: Caller, user_id: int, body: UserUpdate
) -> User:
    user = await get_user(session, caller, user_id)
    values = _columns(body)
    if "role" in values and values["role"] != user.role and not caller.is_admin:
        raise Forbidden("Only admins can change a user's role")
    default_schedule_id = values.get("default_schedule_id")
    if default_schedule_id is not None and not await user_owns_schedule(
        session, user.id, default_schedule_id
    ):
        raise ApiError(400, INVALID_DEFAULT_SCHEDULE)
    await _ensure_unique(
        session, email=values.get("email"), username=values.get("username"), exclude_id=user.id
    )
    for key, value in values.items():
        setattr(user, key, value)
    await session.flush()
    # The auth cache holds a snapshot of the user (and their role): have it refreshed.
    mark_identity_changed(session)
    return user


async def delete_user(session: AsyncSession, caller: Caller, user_id: int) -> None:
    user = await get_user(session, caller, user_id)
    await session.delete(user)
    await session.flush()
    mark_identity_changed(session)
