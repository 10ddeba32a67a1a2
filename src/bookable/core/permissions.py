"""Reading one row through a tenant-scoped query."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.auth import Caller
from bookable.core.errors import Forbidden, NotFound
from bookable.core.schemas import is_db_id

T = TypeVar("T")


async def readable_row(
    session: AsyncSession, caller: Caller, query: Select[tuple[T]], row_id: int, *, missing: str
) -> T:
    """The row ``query`` (already scoped by the resource's `readable(caller)` and narrowed to
    ``row_id``) finds. When it finds none, a non-admin gets 403 `Forbidden` whether the row is
    someone else's or does not exist (Cal.com's answer, and it tells nothing about other users);
    an admin, who could read it, gets 404 ``missing``."""
    row = await session.scalar(query) if is_db_id(row_id) else None
    if row is None:
        if caller.is_admin:
            raise NotFound(missing)
        raise Forbidden()
    return row
