"""The indexes the hot queries rely on are there, and usable, on both databases.

Attendees are matched by email case-insensitively (``lower(email) = ...``) by slots, booking
checks, booking access and listing; without an index on that expression every one of them read
the whole attendees table."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bookable.core.db import create_engine, is_sqlite

pytestmark = pytest.mark.without_dispatchers

ATTENDEE_BY_EMAIL = (
    "SELECT booking_id FROM attendees WHERE lower(attendees.email) = 'a@example.com'"
)


async def _plan(conn: AsyncConnection, sqlite: bool) -> str:
    if sqlite:
        rows = await conn.execute(text(f"EXPLAIN QUERY PLAN {ATTENDEE_BY_EMAIL}"))
        return "\n".join(str(row[-1]) for row in rows)
    # An empty table is cheapest to scan: ask whether an index can answer at all.
    await conn.execute(text("SET LOCAL enable_seqscan = off"))
    rows = await conn.execute(text(f"EXPLAIN {ATTENDEE_BY_EMAIL}"))
    return "\n".join(str(row[0]) for row in rows)


async def test_attendees_are_found_by_lower_email_through_an_index(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            plan = await _plan(conn, is_sqlite(database_url))
    finally:
        await engine.dispose()
    assert "ix_attendees_lower_email" in plan, plan
