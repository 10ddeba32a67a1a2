"""PostgreSQL: a request after the server dropped the app's pooled connections still succeeds
(core/db.py replaces a connection asyncpg knows closed at checkout, with no ping)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from .scheduling_seed import add_event_type, add_schedule

pytestmark = pytest.mark.without_dispatchers


async def pooled_connections(app: FastAPI) -> dict[int, Any]:
    """Every connection idle in the app's pool (all checked out at once): asyncpg's connection
    by its server pid."""
    engine = app.state.sessions.kw["bind"]
    async with AsyncExitStack() as stack:
        found = {}
        for _ in range(engine.sync_engine.pool.checkedin()):
            connection = await stack.enter_async_context(engine.connect())
            pid = await connection.scalar(text("SELECT pg_backend_pid()"))
            found[pid] = (await connection.get_raw_connection()).driver_connection
        return found


async def test_requests_go_on_after_the_server_drops_the_pool(
    app: FastAPI, client: httpx.AsyncClient, alice, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop connections")
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id)
    ask = {**alice.params, "eventTypeId": event_type, "startTime": "2030-01-07"}
    ask["endTime"] = "2030-01-07"
    first = await client.get("/v1/slots", params=ask)
    assert first.status_code == 200, first.text
    pooled = await pooled_connections(app)
    pids = list(pooled)
    assert pids
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    killer = await asyncpg.connect(dsn)
    try:
        await killer.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids)
        # Until the backends are gone, then until the app's side has seen the sockets close
        # (the event loop reads the end of each; a wait for the server, not a timing).
        for _ in range(500):
            if not await killer.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
            ):
                break
            await asyncio.sleep(0.01)
    finally:
        await killer.close()
    for _ in range(500):
        if all(connection.is_closed() for connection in pooled.values()):
            break
        await asyncio.sleep(0.01)
    assert all(connection.is_closed() for connection in pooled.values())
    for _ in range(3):
        again = await client.get("/v1/slots", params=ask)
        assert (again.status_code, again.content) == (200, first.content)
