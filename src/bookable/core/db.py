"""Database engine and the one-session-per-request dependency."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolResetState
from sqlalchemy.sql import ClauseElement

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
        # pool_reset_on_return: `_sqlite_reset` below rolls back only an open transaction.
        engine = create_async_engine(
            async_url(url),
            connect_args={"timeout": 30},
            hide_parameters=True,
            pool_reset_on_return=None,
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
            begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
            # By aiosqlite itself: one trip to its thread, where SQLAlchemy's cursor takes
            # three (open, execute, close); an error is raised as SQLAlchemy's would be.
            with sqlite_errors_as_sqlalchemy(begin, connection.dialect):
                connection.connection.dbapi_connection.run_async(
                    lambda driver: driver.execute_fetchall(begin)
                )

        @event.listens_for(engine.sync_engine, "reset")
        def _sqlite_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
            # The pool's rollback as a connection goes back (`pool_reset_on_return`'s default),
            # only when a transaction is still open: after a commit (every request that went
            # well) SQLite has nothing to roll back, and the rollback cost a round trip to
            # aiosqlite's thread. Not awaited where the pool may not (`asyncio_safe`), as the
            # pool's own. `in_transaction` is sqlite3's flag, readable from any thread.
            if (
                state.asyncio_safe
                and not state.transaction_was_reset
                and dbapi_connection.driver_connection.in_transaction
            ):
                dbapi_connection.rollback()

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


def autocommit_driver_connection(session: AsyncSession) -> Any | None:
    """asyncpg's own connection under the AUTOCOMMIT connection `read_statement_by_statement`
    gave ``session``, while the session still holds it; else None (SQLite, a session that
    reads in a transaction, or one whose connection a commit released).

    A statement run on it directly (`DriverStatement`) is what SQLAlchemy would send there: in
    AUTOCOMMIT SQLAlchemy's asyncpg adapter begins no transaction either."""
    connection = session.info.get(_AUTOCOMMIT_CONNECTION)
    if connection is None or connection.closed or connection.invalidated:
        return None
    return connection.sync_connection.connection.driver_connection


_LITERAL = "\0literal "


def _one_or_none(keys: list[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """`itemgetter` of one key gives the value itself, of none fails: a tuple in both cases."""
    if keys:
        (key,) = keys
        return lambda params: (params[key],)
    return lambda _params: ()


class DriverStatement:
    """A Core statement compiled once for a dialect with positional parameters (asyncpg's,
    SQLite's), run by the driver itself: the same SQL, the same parameters processed as
    SQLAlchemy processes them, the same values out (its result processors applied, `rows`),
    without SQLAlchemy's execution around it (the compiled cache lookup, the execution
    context, the adapter's greenlet hops, the result object): ~0.4 ms of GET /slots at 1,000
    bookings (`bench/README.md`, round 8); `fetch_in_transaction` runs one in the session's
    transaction (POST /bookings' reads).

    For a statement run on every request of a hot path only; everything else goes through the
    session. Parameters are the statement's bind parameters without values, by name. Its
    `arguments` alone serve `exec_driver_sql` too (POST /bookings' INSERT, `bookings.writes`):
    SQLAlchemy's transaction, events and errors, without its per-parameter execution work."""

    __slots__ = ("_literals", "_processed", "_read", "_results", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError("DriverStatement needs a dialect with positional parameters")
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("DriverStatement takes no expanding (IN) or literal_execute parameter")
        self.sql = compiled.string
        literal_values = compiled.construct_params(_check=False)
        processors = compiled._bind_processors
        unescaped = {escaped: name for name, escaped in compiled.escaped_bind_names.items()}
        # Per position: the caller's parameter name, or (a literal) a key of `_literals`, whose
        # value is processed already; `arguments` reads them all in one call (`itemgetter`),
        # then runs the processors of the positions that have one.
        keys: list[str] = []
        literals: dict[str, Any] = {}
        processed: list[tuple[int, Callable[[Any], Any]]] = []
        for position, name in enumerate(compiled.positiontup):
            bind = compiled.binds[unescaped.get(name, name)]
            processor = processors.get(name)
            if bind.required:
                keys.append(bind.key)
                if processor is not None:
                    processed.append((position, processor))
            else:
                key = f"{_LITERAL}{position}"  # no bind parameter's name begins with NUL
                value = literal_values[name]
                literals[key] = processor(value) if processor else value
                keys.append(key)
        self._literals = literals
        self._processed = tuple(processed)
        self._read = itemgetter(*keys) if len(keys) > 1 else _one_or_none(keys)
        results = tuple(
            (position, processor)
            for position, column in enumerate(compiled._result_columns)
            if (processor := column.type._cached_result_processor(dialect, None)) is not None
        )
        self._results: tuple[tuple[int, Callable[[Any], Any]], ...] = results

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The driver's positional arguments for ``params`` (by name), processed."""
        out = list(self._read({**params, **self._literals} if self._literals else params))
        for position, process in self._processed:
            out[position] = process(out[position])
        return out

    async def fetch(self, driver: Any, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        return self.rows(await driver.fetch(self.sql, *self.arguments(params)))

    def rows(self, records: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """The driver's ``records`` of this statement (asyncpg's records, aiosqlite's rows, or
        the rows of `exec_driver_sql`) with its result processors applied: what SQLAlchemy's
        result would hold (as tuples)."""
        if not self._results:
            return records  # type: ignore[return-value]
        rows: list[Sequence[Any]] = []
        for record in records:
            row = list(record)
            for position, processor in self._results:
                row[position] = processor(row[position])
            rows.append(tuple(row))
        return rows


@contextlib.contextmanager
def sqlite_errors_as_sqlalchemy(sql: str, dialect: Dialect) -> Iterator[None]:
    """A SQLite error of a statement sent to aiosqlite directly, raised as SQLAlchemy raises it
    (`DBAPIError.instance`: `OperationalError` for a busy database, `IntegrityError`...), so
    callers catch what they would catch from the session."""
    try:
        yield
    except sqlite3.Error as error:
        raise DBAPIError.instance(
            sql, None, error, sqlite3.Error, hide_parameters=True, dialect=dialect
        ) from error


@lru_cache(maxsize=64)
def driver_statement(statement: ClauseElement, dialect: Dialect) -> DriverStatement:
    """``statement`` compiled once per engine (`fetch_in_transaction`)."""
    return DriverStatement(statement, dialect)


async def fetch_in_transaction(
    connection: AsyncConnection, statement: ClauseElement, params: Mapping[str, Any]
) -> list[Sequence[Any]]:
    """The rows of ``statement`` (a hot path's, built once: `DriverStatement`) as
    ``connection.execute(statement, params).all()`` gives them, on ``connection`` in its
    transaction, begun already (a session's: `AsyncSession.connection` begins it). As there,
    no autoflush: where pending ORM changes must be seen, flush first.

    The driver runs the SQL and parameters `DriverStatement` compiled and processed once,
    past SQLAlchemy's execution (the compiled cache's lookup, the parameters matched and
    processed, the execution context, the adapter's cursor and the result object). SQLite: by
    aiosqlite's `execute_fetchall`, one trip to its thread where SQLAlchemy's cursor takes
    four (open, execute, fetch, close). PostgreSQL: by asyncpg, once the connection's
    transaction has begun; SQLAlchemy's asyncpg adapter begins it with the transaction's first
    statement (BEGIN is a round trip of its own either way), so that one goes through
    SQLAlchemy. A SQLite error is raised as SQLAlchemy raises it (`DBAPIError.instance`); an
    asyncpg one as asyncpg raises it, as GET /slots' statement's."""
    dialect = connection.dialect
    compiled = driver_statement(statement, dialect)
    driver = connection.sync_connection.connection.driver_connection
    if dialect.name != "sqlite":
        if not driver.is_in_transaction():
            return list((await connection.execute(statement, params)).all())
        return compiled.rows(await driver.fetch(compiled.sql, *compiled.arguments(params)))
    with sqlite_errors_as_sqlalchemy(compiled.sql, dialect):
        records = await driver.execute_fetchall(compiled.sql, compiled.arguments(params))
    return compiled.rows(records)


async def sqlite_execute_many(
    connection: AsyncConnection, statement: ClauseElement, rows: Sequence[Mapping[str, Any]]
) -> None:
    """SQLite: ``statement`` (built once, returning nothing) run once per row of ``rows`` on
    ``connection`` in its transaction, by aiosqlite's `executemany` (`fetch_in_transaction`'s
    way: two trips to its thread, the statement and its cursor's close, where SQLAlchemy's
    cursor takes three)."""
    dialect = connection.dialect
    compiled = driver_statement(statement, dialect)
    driver = connection.sync_connection.connection.driver_connection
    with sqlite_errors_as_sqlalchemy(compiled.sql, dialect):
        async with driver.executemany(compiled.sql, [compiled.arguments(r) for r in rows]):
            pass


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
