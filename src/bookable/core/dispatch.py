"""Carrying out an outbox: claim due rows, act on each, record every attempt, retry with backoff.

The outbox rule (DESIGN.md): a side effect is a row written in the transaction of the change it
announces; a dispatcher carries it out afterwards, at least once. `OutboxDispatcher` is that
machinery, shared by every outbox (webhook events, calendar events); a subclass says what one
attempt does and how it is recorded. One runs as a background task, inside `bookable serve` (the
app's lifespan) or alone in `bookable worker`. It never holds a database transaction across a
network call:

1. **Claim** (one short transaction): due PENDING rows whose lease is free get
   ``locked_until = now + lease``. On PostgreSQL the candidates are picked with
   ``FOR UPDATE SKIP LOCKED``, so dispatchers in several processes take disjoint rows; on
   SQLite the UPDATE itself is the claim (writers are serialised).
2. **Act** (no transaction): the subclass's `deliver`, bounded by its timeout.
3. **Record**: the subclass's `_write`, in the transaction of the next claim (one write per
   cycle, not two: on SQLite every write queues behind the API's own writers). A finished
   attempt does not start that transaction by itself unless the last claim was cut short by
   the free slots (rows may be waiting): it is recorded with the claim the next commit's wake
   brings, or at the next poll, at most ``poll_interval`` later (a lease is far longer). A
   booking's emails then cost one write transaction in the dispatcher, not two. On
   PostgreSQL an outbox may record its successes within the claim statement itself
   (`_recording`, a data-modifying CTE; the email outbox does): one statement outside any
   transaction, one round trip instead of BEGIN, record, claim and COMMIT.

A process that dies between 1 and 3 leaves the row claimed until the lease runs out; then any
dispatcher claims it again: every row is carried out at least once, across SIGKILL. A lease is
several times the timeout, so no row is worked on by two dispatchers at the same time.

Rows are found at once after the commit that wrote them: `mark_written` notes in the session
which outbox was written, and an ``after_commit`` hook wakes this process's dispatchers of
those outboxes only; on PostgreSQL a NOTIFY (sent by the server on commit only, on the
outbox's own channel) wakes the dispatchers of other processes, which LISTEN. Otherwise each polls
every ``poll_interval``. (Waking every dispatcher on every commit cost a booking that only
sends emails two needless claim transactions, in the webhook and calendar dispatchers.)

Under load, wake-ups are gathered: a dispatcher woken less than ``gather`` after its last
claim waits out the rest before claiming again, so one claim takes the rows of every commit
since. Claimed one commit at a time, a booking's two emails cost the dispatcher ~2x the CPU
of the same emails claimed in batches (a claim transaction, its jobs query and a record per
commit; on one machine that CPU is taken from the requests). A first row after a quiet spell
is claimed at once; under load a row waits at most ``gather`` (0.1 s by default) longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, ClassVar, Generic, Literal, TypeVar

from sqlalchemy import (
    ARRAY,
    CTE,
    ColumnElement,
    Insert,
    Integer,
    ScalarSelect,
    Select,
    Table,
    all_,
    bindparam,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from bookable.core.clock import Clock, clock
from bookable.core.db import (
    WRITE_OPTION,
    DriverStatement,
    create_engine,
    session_factory,
    sqlite_execute_many,
)
from bookable.settings import Settings

log = logging.getLogger("bookable.outbox")

PENDING = "PENDING"  # the status of a row that waits to be carried out, in every outbox table
STOP_GRACE = 2.0  # seconds in-flight attempts get to finish when a dispatcher stops
SQLITE_RETRY = 0.002  # seconds between tries for SQLite's write lock
# PostgreSQL LISTEN: seconds between tries to listen again after the connection is lost, and
# how often a quiet connection is checked.
LISTEN_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
LISTEN_CHECK_INTERVAL = 30.0
LISTEN_CHECK_TIMEOUT = 5.0

JobT = TypeVar("JobT")
OutcomeT = TypeVar("OutcomeT")

_WRITTEN = "bookable.outbox.written"  # session.info: the names of the outboxes written
# The outboxes, by their dispatchers' names.
OutboxName = Literal["webhook", "calendar", "email"]
# Per outbox, each listener and, for a dispatcher's, whether that dispatcher runs now.
_listeners: dict[str, dict[Callable[[], None], Callable[[], bool] | None]] = {}


# --- waking dispatchers after a commit -----------------------------------------------------------


def add_commit_listener(
    outbox: str,
    callback: Callable[[], None],
    *,
    dispatcher_running: Callable[[], bool] | None = None,
) -> Callable[[], None]:
    """Call ``callback`` after every commit that wrote rows of ``outbox``; returns its
    remover. The callback runs inside the committing code: it must be quick and never raise.
    ``dispatcher_running``, for the callback that wakes a dispatcher of ``outbox`` (in this
    process, or `serve`'s child through its pipe): whether that dispatcher runs now. While one
    does, commits leave out their NOTIFY (`dispatched_here`)."""
    _listeners.setdefault(outbox, {})[callback] = dispatcher_running

    def remove() -> None:
        _listeners.get(outbox, {}).pop(callback, None)

    return remove


def dispatched_here(outbox: OutboxName) -> bool:
    """Whether a dispatcher of ``outbox`` that this process wakes after its commits runs now.
    Then a commit's NOTIFY is left out: the wake-up reaches a dispatcher at once, and those of
    other processes find the rows at their next poll. PostgreSQL serialises notifying
    transactions (a lock on "database 0", cluster-wide, from the commit's start until its WAL
    is flushed), so each booking's commit waited for the one before; without the NOTIFY
    concurrent commits share their flushes (bench/README.md, issue 15 round 14). A process
    without a running dispatcher (`serve` beside a `worker`, the API processes of `serve
    --workers N`, `serve` while its child restarts) still NOTIFYs."""
    runners = _listeners.get(outbox, {}).values()
    return any(running is not None and running() for running in runners)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    for outbox in session.info.pop(_WRITTEN, ()):
        for callback in list(_listeners.get(outbox, {})):
            try:
                callback()
            except Exception:  # a listener's trouble must never fail the caller's commit
                log.exception("outbox dispatcher wake-up failed")


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    # The rows went with the transaction; the next one must mark (and NOTIFY) afresh.
    session.info.pop(_WRITTEN, None)


# A channel per outbox: a NOTIFY reaches only the connections of that outbox's dispatchers.
# (On one channel for all, with the outbox in the payload, each booking's email NOTIFY woke the
# webhook and calendar dispatchers' PostgreSQL backends and asyncpg protocols too, in every
# process, only for them to read the payload and go back to sleep.) The payload still names the
# outbox: a listener on the shared channel below can tell them apart.
NOTIFY_CHANNELS: dict[str, str] = {
    "webhook": "bookable_outbox_webhook",
    "calendar": "bookable_outbox_calendar",
    "email": "bookable_outbox_email",
}
# The one channel of older versions (the payload names the outbox, or is empty: wake all).
# Dispatchers listen on it too, so that the commits of a process not yet upgraded still wake
# them during a rolling upgrade; nothing of this version sends on it (docs/architecture.md).
SHARED_NOTIFY_CHANNEL = "bookable_webhooks"


def notify_channel(outbox: OutboxName) -> str:
    """The channel whose NOTIFY wakes ``outbox``'s dispatchers in other processes."""
    return NOTIFY_CHANNELS[outbox]


async def mark_written(session: AsyncSession, outbox: OutboxName) -> None:
    """Remember to wake this process's dispatcher of ``outbox`` after the commit; on
    PostgreSQL also NOTIFY, which the server sends on commit only, to the dispatchers of
    other processes, unless one runs here (`dispatched_here`). Once per outbox and
    transaction."""
    if (
        _newly_marked(session, outbox)
        and session.get_bind().dialect.name == "postgresql"
        and not dispatched_here(outbox)
    ):
        await session.execute(
            text("SELECT pg_notify(:channel, :outbox)"),
            {"channel": NOTIFY_CHANNELS[outbox], "outbox": outbox},
        )


def _newly_marked(session: AsyncSession, outbox: OutboxName) -> bool:
    written: set[str] = session.info.setdefault(_WRITTEN, set())
    if outbox in written:
        return False
    written.add(outbox)
    return True


async def insert_written(
    session: AsyncSession,
    outbox: OutboxName,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    wake: bool,
) -> None:
    """INSERT ``rows`` (same keys each) into ``outbox``'s ``table`` in one round trip and, with
    ``wake``, `mark_written`: on PostgreSQL the NOTIFY rides on the INSERT's statement (one
    round trip fewer; still sent on commit only, and PostgreSQL sends a transaction's
    identical notifications once)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if not postgres and _given_every_default(table, tuple(rows[0])):
        # SQLite: by the driver (`sqlite_execute_many`), two trips to aiosqlite's thread
        # where SQLAlchemy's cursor takes three, past its execution. Pending changes first,
        # as `session.execute` would.
        if session.autoflush:
            await session.flush()
        connection = await session.connection()
        await sqlite_execute_many(connection, _inserting(table, tuple(rows[0])), rows)
        if wake:
            _newly_marked(session, outbox)
        return
    if not (wake and _newly_marked(session, outbox)) or not postgres or dispatched_here(outbox):
        await session.execute(_insert(table), rows)
        return
    await session.flush()  # as `session.execute` would: pending changes first
    connection = await session.connection()
    statement = _notifying_insert(table, tuple(rows[0]))
    extra = {"notify_channel": NOTIFY_CHANNELS[outbox], "notify_payload": outbox}
    await connection.execute(statement, [{**row, **extra} for row in rows])


def marked_written(session: AsyncSession, outbox: OutboxName) -> bool:
    """`mark_written`'s mark for a statement that writes ``outbox``'s rows within a larger one
    (PostgreSQL): True when it must carry the NOTIFY (`notify_column`), the first time in the
    transaction and when no dispatcher of ``outbox`` runs here (`dispatched_here`)."""
    return _newly_marked(session, outbox) and not dispatched_here(outbox)


@functools.cache
def notify_column(outbox: OutboxName) -> ScalarSelect[Any]:
    """``(SELECT pg_notify(channel, outbox))``: a column that makes the statement carrying it
    send `mark_written`'s NOTIFY (once per statement, delivered on commit only)."""
    notify = func.pg_notify(literal(NOTIFY_CHANNELS[outbox]), literal(outbox))
    return select(notify).scalar_subquery()


@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)


@functools.cache
def _given_every_default(table: Table, columns: tuple[str, ...]) -> bool:
    """Whether rows of ``columns`` give every column of ``table`` that has a Python-side
    default (which `_inserting`'s statement would not apply), and only its columns."""
    defaulted = {c.key for c in table.c if c.default is not None}
    return defaulted <= set(columns) <= set(table.c.keys())


@functools.cache
def _inserting(table: Table, columns: tuple[str, ...]) -> Insert:
    """One row of ``table``: ``columns``, each a parameter."""
    values = {name: bindparam(name, type_=table.c[name].type) for name in columns}
    return insert(table).values(values)


@functools.cache
def _notifying_insert(table: Table, columns: tuple[str, ...]) -> Select[Any]:
    """``WITH written AS (INSERT INTO table ...) SELECT pg_notify(...)``, built once per shape;
    run once per row (asyncpg pipelines them: one round trip)."""
    values = {name: bindparam(name, type_=table.c[name].type) for name in columns}
    written = insert(table).values(values).cte("written")
    notify = func.pg_notify(bindparam("notify_channel"), bindparam("notify_payload"))
    return select(notify).add_cte(written)


# --- the claim's statements, built once per outbox ---------------------------------------------
# Built per claim, these statements were ~40 % of a claim's CPU in the email worker (py-spy):
# SQLAlchemy's expression construction and cache key, for the same SQL each time. The instants
# and the limit are parameters.

_NOW = "dispatch_now"
_LEASE_UNTIL = "dispatch_lease_until"
_LIMIT = "dispatch_limit"


def _due(table: Table) -> tuple[ColumnElement[bool], ...]:
    """A row waiting for an attempt: PENDING, due at ``dispatch_now``, its lease free."""
    now = bindparam(_NOW, type_=table.c.next_attempt_at.type)
    return (
        table.c.status == PENDING,
        table.c.next_attempt_at <= now,
        or_(table.c.locked_until.is_(None), table.c.locked_until < now),
    )


@functools.cache
def _due_check(table: Table) -> Select[Any]:
    """Whether any row is due (the idle dispatcher's read before it writes)."""
    return select(table.c.id).where(*_due(table)).limit(1)


# The ids of the rows a recording claim records (`OutboxDispatcher._recorded_in_claim`).
RECORDED_IDS = "dispatch_recorded"


def _claim(
    table: Table, columns: Sequence[Any], postgres: bool, recording: CTE | None = None
) -> Update:
    """UPDATE the first ``dispatch_limit`` due rows to ``locked_until = dispatch_lease_until``,
    RETURNING ``columns``. With ``recording`` (PostgreSQL), that data-modifying CTE records
    finished attempts in the same statement, and the rows it records (``dispatch_recorded``)
    are not claimed: the CTE and the claim see the same snapshot, so without this a row whose
    lease ran out could be both recorded and claimed again, and only one of the two would
    stick."""
    due = _due(table)
    if recording is not None:
        recorded = bindparam(RECORDED_IDS, type_=ARRAY(table.c.id.type))
        due = (*due, table.c.id != all_(recorded))
    candidates = (
        select(table.c.id)
        .where(*due)
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(bindparam(_LIMIT, type_=Integer))
    )
    picked: Any = candidates.scalar_subquery()
    if postgres:
        # Rows another dispatcher is claiming right now are skipped, not waited for.
        # A MATERIALIZED CTE runs once: as a subquery PostgreSQL may run it again for
        # every candidate row (a nested loop), each run claiming more than ``limit``.
        once = candidates.with_for_update(skip_locked=True).cte("picked")
        once = once.prefix_with("MATERIALIZED")
        picked = select(once.c.id)
    lease_until = bindparam(_LEASE_UNTIL, type_=table.c.locked_until.type)
    claim = (
        update(table)
        .where(table.c.id.in_(picked), *_due(table))
        .values(locked_until=lease_until)
        .returning(*columns)
    )
    return claim if recording is None else claim.add_cte(recording)


# --- the dispatcher -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DispatcherConfig:
    """How a dispatcher works: timeout per attempt, retry schedule, lease, batch, concurrency."""

    timeout: float = 10.0
    max_attempts: int = 11
    retry_delays: tuple[float, ...] = (10, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400)
    jitter: float = 0.2
    poll_interval: float = 1.0
    gather: float = 0.0  # see the module docstring; the settings' default is 0.1 s
    lease: float = 60.0
    batch_size: int = 100
    concurrency: int = 20
    allow_private_targets: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatcherConfig:
        return cls(
            timeout=settings.webhook_timeout,
            max_attempts=settings.webhook_max_attempts,
            retry_delays=settings.webhook_retry_delay_seconds,
            jitter=settings.webhook_retry_jitter,
            poll_interval=settings.webhook_poll_interval,
            gather=settings.webhook_gather_seconds,
            lease=settings.webhook_lease_seconds,
            batch_size=settings.webhook_batch_size,
            concurrency=settings.webhook_concurrency,
            allow_private_targets=settings.webhook_allow_private_targets,
        )

    @classmethod
    def for_outbox(
        cls,
        settings: Settings,
        *,
        timeout: float,
        max_attempts: int,
        retry_delays: tuple[float, ...],
        allow_private_targets: bool = True,
    ) -> DispatcherConfig:
        """Another outbox's config: its own timeout and retry schedule; the webhook settings'
        jitter, poll interval, gathering, batch and concurrency; a lease of at least 3 x its
        timeout, so no row is worked on by two dispatchers at once."""
        return cls(
            timeout=timeout,
            max_attempts=max_attempts,
            retry_delays=retry_delays,
            jitter=settings.webhook_retry_jitter,
            poll_interval=settings.webhook_poll_interval,
            gather=settings.webhook_gather_seconds,
            lease=max(settings.webhook_lease_seconds, 3 * timeout),
            batch_size=settings.webhook_batch_size,
            concurrency=settings.webhook_concurrency,
            allow_private_targets=allow_private_targets,
        )

    def retry_delay(self, attempts_made: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts_made``-th failed attempt."""
        base = self.retry_delays[min(attempts_made, len(self.retry_delays)) - 1]
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return base * spread


class RunningClock:
    """The server's clock, but always running. When it is frozen (tests, sandboxes), time
    still passes from the frozen instant, or retries and leases would never come due."""

    def __init__(self, base: Clock = clock) -> None:
        self._base = base
        self._anchor: tuple[datetime, int, float] | None = None

    def now(self) -> datetime:
        current = self._base.now()
        if not self._base.frozen:
            return current
        # Anchored on the freeze, not only its instant: frozen again at the same instant (a
        # new app in the same process), time starts over from it.
        freeze = (current, self._base.freezes)
        if self._anchor is None or self._anchor[:2] != freeze:
            self._anchor = (*freeze, time.monotonic())
        return current + timedelta(seconds=time.monotonic() - self._anchor[2])


class OutboxDispatcher(Generic[JobT, OutcomeT]):
    """Carries out due rows of one outbox table until stopped. See the module docstring.

    A subclass names its ``table`` and ``name`` and says how to turn claimed rows into jobs
    (`_jobs`), how to carry out one job (`deliver`, which never raises for the far side's
    trouble) and how to record finished ones (`_write`). Jobs have ``event_id`` (the row's
    id) and ``lease_until``; outcomes have ``job``."""

    table: ClassVar[Table]
    name: ClassVar[str] = "outbox"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: DispatcherConfig,
        *,
        running_clock: RunningClock | None = None,
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.clock = running_clock or RunningClock()
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._results: list[OutcomeT] = []  # finished attempts not written yet
        self._in_flight: set[asyncio.Task[None]] = set()
        self._claims_cut = False  # the last claim took all the free slots allowed: rows may wait
        self._last_claim = -float("inf")  # time.monotonic() of the last claim that took rows
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._remove_listener: Any = None
        self._postgres: bool | None = None
        self._claim_statement: Update | None = None  # `_claim`'s, built at the first claim
        # PostgreSQL, an outbox whose successes can be recorded within the claim
        # (`_recording`): that statement, built at its first use.
        self._recording_claim: DriverStatement | None = None
        self._listener: AsyncConnection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._listener_driver: Any = None  # asyncpg's connection under `_listener`
        self._listen_lost = asyncio.Event()  # set when the LISTEN connection is gone
        self._stop_requested = asyncio.Event()
        self._sqlite_writer: AsyncEngine | None = None
        self.delivered = 0  # attempts recorded, for logs and benchmarks

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._open()
        self._remove_listener = add_commit_listener(
            self.name, self.wake, dispatcher_running=lambda: self.running
        )
        if self._engine_dialect() == "postgresql":
            await self._listen()
            self._listen_task = asyncio.create_task(
                self._keep_listening(), name=f"{self.name}-listen"
            )
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-dispatcher")

    @property
    def running(self) -> bool:
        """Whether the background loop is alive and not stopping (for /readyz)."""
        return self._task is not None and not self._task.done() and not self._stopping

    def _engine_dialect(self) -> str | None:
        engine = self.sessions.kw.get("bind")
        return engine.dialect.name if isinstance(engine, AsyncEngine) else None

    async def _listen(self) -> bool:
        """PostgreSQL: LISTEN for the NOTIFY that commits with new events in any process, so
        a dispatcher elsewhere starts at once instead of at its next poll. Best effort: the
        poll still finds everything while this connection is down. True when listening."""
        engine = self.sessions.kw.get("bind")
        assert isinstance(engine, AsyncEngine)
        lost = self._listen_lost = asyncio.Event()
        try:
            self._listener = await engine.connect()
            raw = await self._listener.get_raw_connection()
            driver = self._listener_driver = raw.driver_connection
            driver.add_termination_listener(lambda *_args: lost.set())
            await driver.add_listener(NOTIFY_CHANNELS[self.name], self._notified_own)
            await driver.add_listener(SHARED_NOTIFY_CHANNEL, self._notified)
            return True
        except (DBAPIError, OSError, AttributeError) as error:
            log.warning("%s dispatcher: LISTEN failed, polling meanwhile: %s", self.name, error)
            await self._unlisten()
            return False

    async def _listener_alive(self) -> bool:
        """Whether the LISTEN connection still answers (a dead peer that sent nothing, such as
        a dropped network path, is only found by talking to it)."""
        if self._listener is None or self._listen_lost.is_set():
            return False
        try:
            async with asyncio.timeout(LISTEN_CHECK_TIMEOUT):
                # On the driver's connection: no transaction is left open on ours.
                await self._listener_driver.execute("SELECT 1")
            return True
        except Exception:  # asyncpg's own errors, OSError, TimeoutError: all mean "gone"
            return False

    async def _keep_listening(self) -> None:
        """Watch the LISTEN connection and establish it again when it is lost (a server
        restart, pg_terminate_backend, a network failure), with a growing wait between tries
        (LISTEN_RETRY_DELAYS). After each new LISTEN the dispatcher looks for due events at
        once: NOTIFYs sent while nobody listened are gone."""
        failures = 0
        while not self._stopping:
            if self._listener is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LISTEN_CHECK_INTERVAL):
                        await self._listen_lost.wait()
                if self._stopping or await self._listener_alive():
                    continue
                log.warning("%s dispatcher: LISTEN connection lost; listening again", self.name)
                await self._unlisten()
            delay = LISTEN_RETRY_DELAYS[min(failures, len(LISTEN_RETRY_DELAYS) - 1)]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop_requested.wait()
            if self._stopping:
                break
            if await self._listen():
                failures = 0
                self._wakeup.set()
            else:
                failures += 1

    async def _unlisten(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(DBAPIError, OSError):
                # Not back to the pool: the connection has our listener on it.
                await listener.invalidate()
            with contextlib.suppress(DBAPIError, OSError):
                await listener.close()

    async def stop(self) -> None:
        """Stop claiming; give in-flight deliveries a moment, then cancel them (their events
        are released for the next dispatcher); write what finished."""
        self._stopping = True
        self._stop_requested.set()
        self._listen_lost.set()
        if self._remove_listener is not None:
            self._remove_listener()
        self.wake()
        if self._task is not None:
            await self._task
        if self._listen_task is not None:
            await self._listen_task
        await self._unlisten()
        await self.aclose()

    async def aclose(self) -> None:
        """Close the subclass's clients and our own engine (`stop` does; call it after using
        `run_once` alone)."""
        await self._close()
        if self._sqlite_writer is not None:
            await self._sqlite_writer.dispose()
            self._sqlite_writer = None

    def _notified_own(self, _connection: Any, _pid: int, _channel: str, _payload: str) -> None:
        """A NOTIFY on this outbox's channel, from a commit in any process."""
        self._wakeup.set()

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        """A NOTIFY on the shared channel of older versions: wake for rows of this outbox (or
        unnamed)."""
        if payload in ("", self.name):
            self._wakeup.set()

    def wake(self) -> None:
        """Look for due rows now (called after commits that wrote some; thread-safe)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if asyncio._get_running_loop() is loop:
            # The commit hook runs in the loop's own thread (the usual case): set the event
            # directly, not through the loop's self-pipe (a write, a wake-up and a read).
            self._wakeup.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(self._wakeup.set)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            free = self.config.concurrency - len(self._in_flight)
            wanted = min(free, self.config.batch_size)
            claimed: list[JobT] = []
            try:
                claimed = await self.exchange(self._take_results(), wanted)
            except (DBAPIError, OSError) as error:
                log.warning("%s dispatcher: database trouble: %s", self.name, error)
            except Exception:
                # Never let the loop die: delivery would stop until a restart.
                log.exception("%s dispatcher: unexpected error; going on", self.name)
            if claimed:
                self._last_claim = time.monotonic()
            for job in claimed:
                task = asyncio.create_task(self._deliver_and_keep(job))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)
            self._claims_cut = len(claimed) == wanted < self.config.batch_size
            if claimed and len(claimed) == wanted:
                continue  # probably more due: claim again while there are free slots
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_interval):
                    await self._wakeup.wait()
            await self._gather()
        if self._in_flight:
            _done, pending = await asyncio.wait(self._in_flight, timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            await self.exchange(self._take_results(), 0)
        except (DBAPIError, OSError) as error:  # the leases run out; the events go out again
            log.warning("%s dispatcher: recording the last attempts failed: %s", self.name, error)

    async def _gather(self) -> None:
        """Woken soon after the last claim (under load): let the commits of the rest of
        ``gather`` come too, for one claim (the module docstring). Not when the last claim
        took all it was allowed (rows may be waiting for slots: waiting would cap the rate
        at ``concurrency`` rows per ``gather``). A stop cuts it short."""
        wait = self.config.gather - (time.monotonic() - self._last_claim)
        if wait > 0 and self._wakeup.is_set() and not self._claims_cut and not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stop_requested.wait()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        # Rows may be waiting for slots: write and claim again once half the slots are free
        # (one transaction for many rows, not one per delivery). Otherwise the outcome waits
        # for the next wake or poll: a transaction of its own for it would be a second write
        # per booking (on SQLite every write queues behind the API's writers).
        if self._claims_cut and len(self._in_flight) <= self.config.concurrency // 2:
            self._wakeup.set()

    async def _deliver_and_keep(self, job: JobT) -> None:
        try:
            outcome = await self.deliver(job)
        except asyncio.CancelledError:
            await self._release([job.event_id], job.lease_until)
            raise
        self._results.append(outcome)

    def _take_results(self) -> list[OutcomeT]:
        taken, self._results = self._results, []
        return taken

    async def run_once(self) -> int:
        """Claim one batch, deliver it and record the attempts; for the CLI and tests when
        the background loop is not running. Returns how many events were handled."""
        jobs = await self.exchange([], self.config.batch_size)
        outcomes = await asyncio.gather(*(self.deliver(job) for job in jobs))
        await self.exchange(list(outcomes), 0)
        return len(jobs)

    async def exchange(self, outcomes: list[OutcomeT], limit: int) -> list[JobT]:
        """Write finished attempts and claim up to ``limit`` due events, in one short
        transaction. If writing fails, the attempts are kept for the next call."""
        try:
            jobs = await self._exchange(outcomes, limit)
        except IntegrityError:
            # A row vanished meanwhile (its parent was deleted): write one by one.
            for outcome in outcomes:
                with contextlib.suppress(IntegrityError):
                    await self._exchange([outcome], 0)
                    self._recorded([outcome])
            return await self._exchange([], limit)
        except BaseException:
            self._results.extend(outcomes)
            raise
        self._recorded(outcomes)
        return jobs

    # --- writing ----------------------------------------------------------------------------

    def _writer_sessions(self) -> async_sessionmaker[AsyncSession]:
        """SQLite: sessions of an engine of our own whose connections do not wait in SQLite's
        busy handler. Its backoff grows to one try per 100 ms, so a waiter that has waited a
        while loses the lock to every request that comes after it: with API writers keeping
        the lock busy, the dispatcher would wait seconds. It retries every few ms instead."""
        if self._sqlite_writer is None:
            engine = self.sessions.kw.get("bind")
            if not isinstance(engine, AsyncEngine) or engine.dialect.name != "sqlite":
                return self.sessions
            own = create_engine(engine.url.render_as_string(hide_password=False))

            @event.listens_for(own.sync_engine, "connect")
            def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA busy_timeout=0")
                cursor.close()

            self._sqlite_writer = own
        return session_factory(self._sqlite_writer)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        """A write transaction (SQLite: BEGIN IMMEDIATE, retried until the lock is ours)."""
        sessions = self._writer_sessions()
        while True:
            session = sessions()
            try:
                await session.connection(execution_options={WRITE_OPTION: True})
                break
            except OperationalError as error:
                await session.close()
                if self._sqlite_writer is None or "locked" not in str(error):
                    raise
                await asyncio.sleep(SQLITE_RETRY)
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        finally:
            await session.close()

    # --- 1. claim ---------------------------------------------------------------------------

    async def _is_postgres(self, session: AsyncSession) -> bool:
        if self._postgres is None:
            self._postgres = (await session.connection()).dialect.name == "postgresql"
        return self._postgres

    async def _exchange(self, outcomes: list[OutcomeT], limit: int) -> list[JobT]:
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.config.lease)
        if self._postgres is None and (dialect := self._engine_dialect()) is not None:
            self._postgres = dialect == "postgresql"
        if self._postgres and (recorded := self._recorded_in_claim(outcomes, now)) is not None:
            return await self._exchange_in_one_statement(recorded, limit, now, lease_until)
        if not outcomes:
            if limit <= 0:
                return []
            async with self.sessions() as session:
                # A read first: an idle dispatcher must not take SQLite's write lock every poll.
                if await session.scalar(_due_check(self.table), {_NOW: now}) is None:
                    return []
        async with self._writing() as session:
            await self._write(session, outcomes, now)
            if limit <= 0:
                return []
            if self._claim_statement is None:
                postgres = await self._is_postgres(session)
                self._claim_statement = _claim(self.table, self._claimed_columns(), postgres)
            claim = self._claim_statement
            parameters = {_NOW: now, _LEASE_UNTIL: lease_until, _LIMIT: limit}
            rows = (await session.execute(claim, parameters)).all()
            if not rows:
                return []
            return await self._jobs(session, sorted(rows, key=lambda r: r.id), lease_until)

    async def _exchange_in_one_statement(
        self, recorded: dict[str, Any], limit: int, now: datetime, lease_until: datetime
    ) -> list[JobT]:
        """PostgreSQL, when every finished attempt can be recorded by the subclass's
        `_recording` CTE: record them and claim in one statement, outside any transaction
        (AUTOCOMMIT: one statement is atomic by itself). One round trip instead of BEGIN, the
        record, the claim and COMMIT (four), and no due check before it: a claim that finds
        nothing is one round trip too, and writes nothing."""
        if limit <= 0 and not recorded[RECORDED_IDS]:
            return []
        engine = self.sessions.kw["bind"]
        if self._recording_claim is None:
            recording = self._recording()
            assert recording is not None, "_recorded_in_claim without _recording"
            columns = self._claimed_columns()
            claim = _claim(self.table, columns, True, recording)
            self._recording_claim = DriverStatement(claim, engine.dialect)
        statement = self._recording_claim
        parameters = {**recorded, _NOW: now, _LEASE_UNTIL: lease_until, _LIMIT: max(limit, 0)}
        # The statement compiled once and its parameters processed by `DriverStatement`, run
        # with `exec_driver_sql` on a connection of its own (no ORM session): SQLAlchemy's
        # events, errors and pool, without its per-execution work on the statement (its cache
        # key, the compiled parameters, the ORM's execution): ~2 thousand bytecodes a claim
        # fewer, ~0.3 M instructions a booking in the worker (bench/README.md, round 11, hy).
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            arguments = tuple(statement.arguments(parameters))  # a list: many rows' parameters
            records = (await autocommit.exec_driver_sql(statement.sql, arguments)).all()
        if not records:
            return []
        rows = statement.rows(records)
        return self._claimed_jobs(sorted(rows, key=itemgetter(0)), lease_until)

    async def _release(self, event_ids: Sequence[int], lease_until: datetime) -> None:
        """Give claimed rows back without counting an attempt (a stop mid-delivery)."""
        try:
            async with self._writing() as session:
                await session.execute(
                    update(self.table)
                    .where(self.table.c.id.in_(event_ids), self.table.c.locked_until == lease_until)
                    .values(locked_until=None)
                )
        except (DBAPIError, OSError) as error:  # the lease runs out by itself anyway
            log.warning("%s dispatcher: releasing rows failed: %s", self.name, error)

    # --- what a subclass provides ----------------------------------------------------------

    async def _open(self) -> None:
        """Make what attempts need (an HTTP client...) when the dispatcher starts."""

    async def _close(self) -> None:
        """Release what `_open` (or a first attempt) made; safe to call twice."""

    def _claimed_columns(self) -> list[Any]:
        """The columns of a claimed row that `_jobs` needs (``id`` first)."""
        raise NotImplementedError

    async def _jobs(
        self, session: AsyncSession, rows: Sequence[Any], lease_until: datetime
    ) -> list[JobT]:
        """The jobs for the rows just claimed (in the claiming transaction)."""
        raise NotImplementedError

    async def deliver(self, job: JobT) -> OutcomeT:
        """One attempt. Never raises for the far side's or the network's trouble."""
        raise NotImplementedError

    async def _write(self, session: AsyncSession, outcomes: list[OutcomeT], now: datetime) -> None:
        """Record finished attempts (in the transaction of the next claim)."""
        raise NotImplementedError

    def _recording(self) -> CTE | None:
        """PostgreSQL: a data-modifying CTE that records finished attempts inside the claim
        statement (`_exchange_in_one_statement`), its parameters arrays (`_recorded_in_claim`);
        None when this outbox records its attempts with `_write` only."""
        return None

    def _claimed_jobs(self, rows: Sequence[Sequence[Any]], lease_until: datetime) -> list[JobT]:
        """The jobs for the rows `_exchange_in_one_statement` claimed: tuples of
        `_claimed_columns`' values in order (an outbox with `_recording` provides it)."""
        raise NotImplementedError

    def _recorded_in_claim(self, outcomes: list[OutcomeT], now: datetime) -> dict[str, Any] | None:
        """`_recording`'s parameters for ``outcomes``, ``dispatch_recorded`` the ids of their
        rows; None when they cannot be recorded that way (then `_write` does, in a
        transaction with the claim)."""
        return None

    def _recorded(self, outcomes: list[OutcomeT]) -> None:
        """Called once the attempts' transaction has committed (so a write that fails and is
        tried again counts once): metrics."""
