"""Database engine and the one-session-per-request dependency."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bookable.core.auth import identity_changed

WRITE_OPTION = "bookable_write"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def async_url(url: str) -> str:
    """Map the URL an operator writes (sqlite:///x.db, postgresql://...) to its async driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(f"unsupported database URL scheme: {parsed.drivername!r}")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(
            async_url(url), connect_args={"timeout": 30}, hide_parameters=True
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # SQLAlchemy, not the driver, opens transactions: so a write can say IMMEDIATE.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # WAL lets readers go on while one writer writes; foreign keys are off by default.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # A writing request takes SQLite's write lock when it starts: writers queue one
            # behind the other, and a read-check-then-write can never interleave with another.
            immediate = connection.get_execution_options().get(WRITE_OPTION, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    # hide_parameters: SQL parameters (key hashes, webhook secrets, whatever a client sent) stay
    # out of exception text, so no traceback in a log can carry them.
    # pool_recycle: a connection older than half an hour is opened afresh at checkout (no round
    # trip), so one a firewall or proxy dropped silently while idle (no socket close for the
    # listener below to see) is not handed out for long.
    # pool_use_lifo: the connection returned last is handed out next, so a lightly loaded server
    # keeps reusing its warmest connections. Each connection has its own prepared statements,
    # and PostgreSQL plans a prepared statement afresh on its first five executions (GET /slots'
    # one statement: ~1 ms of planning each) before it settles on a generic plan; handed out in
    # turn (FIFO), every pooled connection pays that, and a new one its type introspection too.
    engine = create_async_engine(
        async_url(url),
        pool_size=10,
        max_overflow=20,
        pool_recycle=1800,
        pool_use_lifo=True,
        hide_parameters=True,
        # Instants cast to text come out as ISO (GET /slots reads busy times so: `_slots_statement`)
        # whatever the server's default; set in the startup packet, no round trip.
        connect_args={"server_settings": {"DateStyle": "ISO, MDY"}},
    )

    @event.listens_for(engine.sync_engine, "checkout")
    def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # Instead of pool_pre_ping, whose ping is three round trips on asyncpg (BEGIN, a
        # query, ROLLBACK; 0.25-0.4 ms of a 3.5 ms GET /slots): a connection the server closed
        # (a restart, pg_terminate_backend, an idle timeout) is known closed to asyncpg as
        # soon as the event loop has seen its socket close. The pool replaces it.
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed this pooled connection")

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


class WriteGate:
    """SQLite: writing requests of this process take turns, first come first served.

    SQLite's busy handler retries with a growing sleep, so a writer that has waited a while
    loses the lock to every newer one (8 concurrent bookings: median 19 ms, p95 646 ms). An
    asyncio lock queues them in arrival order instead; other processes still meet SQLite's
    lock and its busy handler. PostgreSQL needs no gate."""

    def __init__(self, enabled: bool) -> None:
        self._lock = asyncio.Lock() if enabled else None
        self._holder: object | None = None  # the turn that holds the lock

    @contextlib.asynccontextmanager
    async def turn(self, writing: bool) -> AsyncIterator[None]:
        if self._lock is None or not writing:
            yield
            return
        holder = object()
        await self._lock.acquire()
        self._holder = holder
        try:
            yield
        finally:
            # Not held if cancelled while queueing again in `stepped_out`.
            if self._holder is holder:
                self._holder = None
                self._lock.release()

    @contextlib.asynccontextmanager
    async def stepped_out(self) -> AsyncIterator[None]:
        """Inside the current turn, outside any transaction: let the next writers go while
        this one waits on something else (a calendar server), then queue again."""
        holder = self._holder
        if self._lock is None or holder is None:
            yield
            return
        self._holder = None
        self._lock.release()
        try:
            yield
        finally:
            await self._lock.acquire()
            self._holder = holder


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit when the handler returns, roll back on any error."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    gate: WriteGate = request.app.state.write_gate
    async with gate.turn(request.method in WRITE_METHODS), sessions() as session:
        try:
            if request.method in WRITE_METHODS:
                # Serialises writers on SQLite (BEGIN IMMEDIATE); PostgreSQL ignores the option.
                await session.connection(execution_options={WRITE_OPTION: True})
            yield session
            if not _committed_statement_by_statement(session):
                await session.commit()
        except BaseException:
            await session.rollback()
            session.info.clear()
            raise
        if identity_changed(session):
            # After the commit: a cache refilled in between would otherwise keep the old grant.
            await request.app.state.authenticator.revoke_cached()


async def read_statement_by_statement(session: AsyncSession) -> None:
    """For a request that only reads and has not used ``session`` yet: on PostgreSQL, run its
    statements without BEGIN and COMMIT (asyncpg's autocommit), two round trips fewer.

    The same answers: under READ COMMITTED (PostgreSQL's default; Bookable sets no other) each
    statement of a transaction takes its own snapshot anyway, so statements outside one see
    what they would have seen inside it; the bookings preflight reads the same way
    (`bookings/calendars.py`). The pool resets the connection's level when it takes it back
    (no round trip). SQLite keeps its transaction (`create_engine`'s listener issues BEGIN)."""
    if session.bind.dialect.name == "postgresql":
        connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        session.info[_AUTOCOMMIT_CONNECTION] = connection


# The connection `read_statement_by_statement` put in AUTOCOMMIT, in the session's info.
_AUTOCOMMIT_CONNECTION = "bookable.autocommit_connection"


def _committed_statement_by_statement(session: AsyncSession) -> bool:
    """Whether the session's work so far is all committed: its statements ran in AUTOCOMMIT on
    the connection `read_statement_by_statement` set up, which it still holds (a commit in
    between releases it, and the next statement begins a transaction), and no ORM change waits
    for a flush. Then the request's COMMIT would add nothing but its cost (~0.1 ms of
    SQLAlchemy's transaction bookkeeping; no round trip): closing the session releases the
    connection instead."""
    connection = session.info.pop(_AUTOCOMMIT_CONNECTION, None)
    return (
        connection is not None
        and not connection.closed
        and not (session.new or session.dirty or session.deleted)
    )


# scope="function": the commit happens before the response is sent, so a failed commit
# becomes an error response instead of a 200 for data that was never written.
DbSession = Annotated[AsyncSession, Depends(request_session, scope="function")]
