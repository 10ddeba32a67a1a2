"""SQLite serialises writing requests: they begin with BEGIN IMMEDIATE (the write lock)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from bookable.core.db import WRITE_OPTION, is_sqlite


async def test_a_writing_transaction_holds_the_write_lock_from_its_start(app, database_url):
    if not is_sqlite(database_url):
        pytest.skip("SQLite only: PostgreSQL relies on row locks and constraints")
    sessions = app.state.sessions
    async with sessions() as first:
        await first.connection(execution_options={WRITE_OPTION: True})
        # No statement has run yet, and still a second writer must wait for the first.
        async with sessions() as second:
            await second.execute(text("PRAGMA busy_timeout = 100"))
            await second.rollback()
            with pytest.raises(Exception, match="locked"):
                await second.connection(execution_options={WRITE_OPTION: True})
        await first.rollback()
    # Released: a writer gets in now.
    async with sessions() as third:
        await third.connection(execution_options={WRITE_OPTION: True})
        await third.rollback()


async def test_readers_do_not_wait_for_a_writer(app, database_url, alice):
    if not is_sqlite(database_url):
        pytest.skip("SQLite only")
    async with app.state.sessions() as writer:
        await writer.connection(execution_options={WRITE_OPTION: True})
        async with app.state.sessions() as reader:
            count = await asyncio.wait_for(
                reader.scalar(text("SELECT count(*) FROM users")), timeout=5
            )
        assert count == 1
        await writer.rollback()
