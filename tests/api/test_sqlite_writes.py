"""SQLite serialises writing requests: they begin with BEGIN IMMEDIATE (the write lock)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bookable.core.db import WRITE_OPTION, is_sqlite


async def test_a_writing_transaction_holds_the_write_lock_from_its_start(app, database_url):
    if not is_sqlite(database_url):
        pytest.skip("SQLite only: PostgreSQL relies on row locks and constraints")
    sessions = app.state.sessions
    async with sessions() as first:
        await first.connection(execution_options={WRITE_OPTION: True})
        # No statement has run yet, and still a second writer must wait for the first. The
        # second waits 0.1 s, not the app's 30 s: a connection of its own (the pool may hand a
        # session any of its connections, whatever PRAGMA was set on another).
        second = sqlite3.connect(make_url(database_url).database, timeout=0.1)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                second.execute("BEGIN IMMEDIATE")
        finally:
            second.close()
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
