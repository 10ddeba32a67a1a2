"""What SQL an app sends: a recorder the tests that count round trips share."""

from __future__ import annotations

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
