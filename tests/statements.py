"""What SQL an app sends: a recorder the tests that count round trips share."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event


@contextmanager
def recorded_statements(application: Any) -> Iterator[list[str]]:
    """The SQL the app's engine runs inside the block, in order, each on one line
    (whitespace runs folded to one space)."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    engine = application.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def recorded_driver_statements(application: Any) -> Iterator[list[str]]:
    """On PostgreSQL, the SQL asyncpg itself runs on the connections the app's pool hands out
    inside the block, whoever sent it (SQLAlchemy or `DriverStatement`, which SQLAlchemy's
    events do not see), each on one line. SQLAlchemy's adapter begins and commits transactions
    through asyncpg too, so BEGIN and COMMIT show here. Nothing on SQLite."""
    statements: list[str] = []
    watched: list[Any] = []

    def record(query: Any) -> None:
        statements.append(" ".join(query.query.split()))

    def checkout(dbapi_connection: Any, *_args: Any) -> None:
        driver = dbapi_connection.driver_connection
        if hasattr(driver, "add_query_logger") and driver not in watched:
            driver.add_query_logger(record)
            watched.append(driver)

    pool = application.state.engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    try:
        yield statements
    finally:
        event.remove(pool, "checkout", checkout)
        for driver in watched:
            driver.remove_query_logger(record)


@contextmanager
def recorded_round_trips(application: Any) -> Iterator[list[str]]:
    """The statements run inside the block, in order, each on one line, whoever sent them
    (SQLAlchemy or the driver itself, `core.db.fetch_in_transaction`, which SQLAlchemy's
    events do not see), without the transactions' COMMIT and ROLLBACK nor PostgreSQL's BEGIN.
    PostgreSQL: SQLAlchemy's events (its statements are prepared ones, which asyncpg's query
    logger does not see) and asyncpg's query logger (what asyncpg runs itself), both recorded
    by the event loop's next turn (asyncpg's way). SQLite:
    sqlite3's trace callback (set in aiosqlite's thread), which reports a statement again for
    each trigger it fires and an executemany's statement once per row: repeats of one
    statement (its text before ``VALUES`` or ``WHERE``) are one entry. BEGIN IMMEDIATE, the
    write lock, stays."""
    statements: list[str] = []
    watched: list[Any] = []
    recording = True

    def shape(line: str) -> str:
        return line.split(" VALUES", 1)[0].split(" WHERE", 1)[0]

    def record(text: str) -> None:
        line = " ".join(text.split())
        if not recording or line.rstrip(";").upper() in ("BEGIN", "COMMIT", "ROLLBACK"):
            return
        if line.upper().startswith("BEGIN ISOLATION"):
            return
        if statements and shape(statements[-1]) == shape(line):
            return
        statements.append(line)

    def record_executed(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Recorded as asyncpg's logger records what it ran (`loop.call_soon`, once done): in
        # the order they were run.
        asyncio.get_running_loop().call_soon(record, statement)

    def record_query(query: Any) -> None:
        record(query.query)

    def checkout(dbapi_connection: Any, *_args: Any) -> None:
        driver = dbapi_connection.driver_connection
        if driver in watched:
            return
        watched.append(driver)
        if hasattr(driver, "add_query_logger"):
            driver.add_query_logger(record_query)
        else:  # aiosqlite: set in its thread (checkouts run where SQLAlchemy may await)
            dbapi_connection.run_async(lambda connection: connection.set_trace_callback(record))

    engine = application.state.engine.sync_engine
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        event.listen(engine, "before_cursor_execute", record_executed)
    event.listen(engine.pool, "checkout", checkout)
    try:
        yield statements
    finally:
        recording = False  # a trace callback stays set until its connection closes
        event.remove(engine.pool, "checkout", checkout)
        if postgres:
            event.remove(engine, "before_cursor_execute", record_executed)
        for driver in watched:
            if hasattr(driver, "remove_query_logger"):
                driver.remove_query_logger(record_query)
