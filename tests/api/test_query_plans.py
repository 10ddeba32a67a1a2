"""The indexes the hot queries rely on are there, and usable, on both databases.

- Attendees are matched by email case-insensitively (``lower(email) = ...``) by slots, booking
  checks, booking access and listing; without an index on that expression every one of them read
  the whole attendees table.
- Every booking counts its host's emails of the last hour; with ``user_id`` alone indexed that
  read every email the host's bookings ever made, and with ``(user_id, created_at)`` SQLite
  still read each row of the hour for its ``status``, walking the rendered message's overflow
  pages to reach it (~8 ms per booking at 1,500 emails): the index must cover the count."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bookable.core.db import create_engine, is_sqlite

pytestmark = pytest.mark.without_dispatchers

LOOKUPS = {
    "ix_attendees_lower_email": (
        "SELECT booking_id FROM attendees WHERE lower(attendees.email) = 'a@example.com'"
    ),
    "ix_outbound_emails_user_id_created_at_status": (
        "SELECT count(id) FROM outbound_emails WHERE user_id = 1 "
        "AND created_at > '2026-01-01 00:00:00' AND status != 'DROPPED'"
    ),
}


async def _plan(conn: AsyncConnection, sqlite: bool, query: str) -> str:
    if sqlite:
        rows = await conn.execute(text(f"EXPLAIN QUERY PLAN {query}"))
        return "\n".join(str(row[-1]) for row in rows)
    # An empty table is cheapest to scan: ask whether an index can answer at all.
    await conn.execute(text("SET LOCAL enable_seqscan = off"))
    rows = await conn.execute(text(f"EXPLAIN {query}"))
    return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize("index", sorted(LOOKUPS))
async def test_the_lookup_is_answered_through_its_index(database_url: str, index: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            plan = await _plan(conn, is_sqlite(database_url), LOOKUPS[index])
    finally:
        await engine.dispose()
    assert index in plan, plan


async def test_the_hourly_email_count_never_reads_the_table_on_sqlite(database_url: str) -> None:
    """SQLite says so in its plan ("COVERING INDEX"); PostgreSQL's index-only scans depend on
    its visibility map (vacuum), so its plan is not pinned beyond the index above."""
    if not is_sqlite(database_url):
        pytest.skip("SQLite's plan names a covering index; PostgreSQL's depends on vacuum")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            query = LOOKUPS["ix_outbound_emails_user_id_created_at_status"]
            plan = await _plan(conn, True, query)
    finally:
        await engine.dispose()
    assert "USING COVERING INDEX ix_outbound_emails_user_id_created_at_status" in plan, plan


async def _explained(database_url: str, statement: Any, params: dict[str, Any]) -> str:
    """The plan of ``statement`` as the driver gets it (parameters processed), on empty tables
    with PostgreSQL's sequential scans off (an empty table is cheapest to scan)."""
    sqlite = is_sqlite(database_url)
    plans: list[str] = []

    def explain(_conn: Any, cursor: Any, sql: str, parameters: Any, *_rest: Any) -> None:
        cursor.execute(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + sql, parameters)
        plans.append("\n".join(str(row[-1] if sqlite else row[0]) for row in cursor.fetchall()))

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            if not sqlite:
                await conn.execute(text("SET LOCAL enable_seqscan = off"))
            event.listen(conn.sync_connection, "before_cursor_execute", explain)
            await conn.execute(statement, params)
    finally:
        await engine.dispose()
    assert len(plans) == 1
    return plans[0]


def _busy_span() -> dict[str, Any]:
    from bookable.slots.service import busy_span_params

    return busy_span_params(datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC))


def _assert_busy_reads_are_bounded(plan: str, sqlite: bool) -> None:
    """The host's own bookings are a range of (user_id, start_time) bounded on both sides (from
    the longest booking before the span: not their whole history), and the longer ones come
    from their partial index."""
    if sqlite:
        bounded = "ix_bookings_user_id_start_time (user_id=? AND start_time>? AND start_time<?)"
        assert bounded in plan, plan
    else:
        assert any(
            "Index Cond: ((user_id = " in line and "start_time >=" in line
            for line in plan.splitlines()
        ), plan
    assert "ix_bookings_user_id_longer_than_allowed" in plan, plan


async def test_slots_first_query_reads_the_busy_bookings_through_the_host_index(
    database_url: str,
) -> None:
    """GET /slots' one statement finds the host by a subquery (`_slots_statement`): the
    bookings it reads are still a range of the (user_id, start_time) index, not a scan."""
    from bookable.slots.service import _slots_statement

    sqlite = is_sqlite(database_url)
    dialect = "sqlite" if sqlite else "postgresql"
    statement = _slots_statement(admin=False, by_slug=False, ignoring=False, dialect=dialect)
    params = {"event_type_id": 1, "caller_id": 1, **_busy_span()}
    _assert_busy_reads_are_bounded(await _explained(database_url, statement, params), sqlite)


async def test_the_busy_read_of_a_booking_is_bounded_below(database_url: str) -> None:
    """POST /bookings' busy read (`_busy_statement`, its widest shape)."""
    from bookable.slots.service import _busy_statement

    statement = _busy_statement(pending_blocks=True, ignoring=True, identified=True)
    params = {
        "host_id": 1, "host_email": "a@example.com", "event_type_id": 1, "ignore_uid": "x",
        **_busy_span(),
    }  # fmt: skip
    plan = await _explained(database_url, statement, params)
    _assert_busy_reads_are_bounded(plan, is_sqlite(database_url))


async def test_postgresql_knows_how_few_bookings_last_longer_than_allowed(
    database_url: str,
) -> None:
    """The busy read's second branch asks for a host's bookings longer than 31 days. A
    prepared statement is planned for its parameters in its first five runs; then PostgreSQL
    keeps a generic plan unless that one looks dearer. Without statistics of a booking's
    duration (migration 0015) it took a third of the bookings to last that long, the generic
    busy read looked several times dearer than a custom one, and every booking planned it
    again (~1 ms of the database's CPU at 5,000 bookings of another host, more than running
    it). With them, ANALYZE tells it that none does."""
    if is_sqlite(database_url):
        pytest.skip("PostgreSQL's statistics (SQLite plans every statement anyway)")
    from bookable.models.users import User

    bookings = 3000
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            async with AsyncSession(bind=conn) as session:
                host = User(email="host@example.com", username="host", name="Host")
                session.add(host)
                await session.flush()
                host_id = host.id
            first = datetime(2027, 3, 1, tzinfo=UTC)
            await conn.execute(_BOOKINGS, {"host": host_id, "first": first, "n": bookings})
            await conn.execute(text("ANALYZE bookings"))
            plan = await conn.scalar(
                text(
                    "EXPLAIN (FORMAT JSON) SELECT id FROM bookings"
                    " WHERE end_time - start_time > interval '31 days'"
                )
            )
            await transaction.rollback()
    finally:
        await engine.dispose()
    estimated = plan[0]["Plan"]["Plan Rows"]
    assert estimated < bookings / 100, plan


# ``n`` half-hour bookings of ``host``, a day apart from ``first`` on.
_BOOKINGS = text(
    "INSERT INTO bookings (uid, user_id, title, start_time, end_time, blocked_start,"
    " blocked_end, status, created_at)"
    " SELECT gen_random_uuid()::text, :host, 'Booked', t, t + interval '30 minutes', t,"
    " t + interval '30 minutes', 'ACCEPTED', t"
    " FROM generate_series(1, :n) AS n,"
    " LATERAL (SELECT CAST(:first AS timestamptz) + n * interval '1 day') AS s(t)"
)
