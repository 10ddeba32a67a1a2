"""Use-cases on API keys. Every read starts from `readable(caller)`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.auth import (
    Caller,
    acting_user_id,
    generate_secret,
    hash_secret,
    mark_identity_changed,
)
from bookable.core.clock import clock
from bookable.core.errors import BadRequest, Forbidden, NotFound
from bookable.core.schemas import is_db_id
from bookable.models import ApiKey, User


def readable(caller: Caller) -> Select[tuple[ApiKey]]:
    """The keys a caller may see: their own, or every key for a system-wide admin."""
    query = select(ApiKey)
    return query if caller.is_admin else query.where(ApiKey.user_id == caller.user_id)


async def issue_key(
    session: AsyncSession,
    *,
    user_id: int,
    prefix: str,
    note: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key for ``user_id``; returns the row and the clear key (shown once)."""
    secret = generate_secret()
    key = ApiKey(user_id=user_id, note=note, hashed_key=hash_secret(secret), expires_at=expires_at)
    session.add(key)
    await session.flush()
    return key, f"{prefix}{secret}"


async def list_keys(session: AsyncSession, caller: Caller, user_ids: list[int]) -> list[ApiKey]:
    query = readable(caller)
    if user_ids:
        if not caller.is_admin and set(user_ids) != {caller.user_id}:
            raise Forbidden("ADMIN required")
        query = query.where(ApiKey.user_id.in_([i for i in user_ids if is_db_id(i)]))
    return list(await session.scalars(query.order_by(ApiKey.created_at, ApiKey.id)))


async def get_key(session: AsyncSession, caller: Caller, key_id: str) -> ApiKey:
    key = await session.scalar(readable(caller).where(ApiKey.id == key_id))
    if key is None:
        raise NotFound("API key not found")
    return key


async def create_key(
    session: AsyncSession,
    caller: Caller,
    *,
    prefix: str,
    note: str | None,
    expires_at: datetime | None,
    never_expires: bool | None,
    user_id: int | None,
) -> tuple[ApiKey, str]:
    owner_id = acting_user_id(caller, user_id)
    if owner_id != caller.user_id and await session.get(User, owner_id) is None:
        raise NotFound(f"User with id: {owner_id} not found")
    if never_expires:
        expires_at = None
    elif expires_at is not None and expires_at <= clock.now():
        raise BadRequest("custom in 'expiresAt': must be in the future")
    return await issue_key(
        session, user_id=owner_id, prefix=prefix, note=note, expires_at=expires_at
    )


async def update_key(
    session: AsyncSession, caller: Caller, key_id: str, note: str | None
) -> ApiKey:
    key = await get_key(session, caller, key_id)
    key.note = note
    await session.flush()
    return key


async def delete_key(session: AsyncSession, caller: Caller, key_id: str) -> None:
    key = await get_key(session, caller, key_id)
    await session.delete(key)
    await session.flush()
    mark_identity_changed(session)
