"""Delivering the outbox: claim due events, POST them, record every attempt, retry with backoff.

One `Dispatcher` runs as a background task, inside `bookable serve` (the app's lifespan) or alone
in `bookable worker`. It never holds a database transaction across an HTTP request:

1. **Claim** (one short transaction): due PENDING events whose lease is free get
   ``locked_until = now + lease``. On PostgreSQL the candidates are picked with
   ``FOR UPDATE SKIP LOCKED``, so dispatchers in several processes take disjoint rows; on
   SQLite the UPDATE itself is the claim (writers are serialised).
2. **Deliver** (no transaction): one POST with the stored body, signed with the webhook's current
   secret, through a client that checks the subscriber URL again and connects only to addresses
   its name resolves to *and* the rules allow (`bookable.core.outbound`: pinned, so no DNS
   rebinding); redirects are not followed (a 3xx is a failure); the attempt is bounded by the
   timeout.
3. **Record**: a `WebhookDelivery` row per attempt; a 2xx makes the event DELIVERED; otherwise
   it is retried after the next wait of the schedule (with jitter), FAILED after the last
   attempt. Finished attempts are written in the transaction of the next claim (one write
   per cycle, not two: on SQLite every write queues behind the API's own writers).

A process that dies between 1 and 3 leaves the event claimed until the lease runs out; then any
dispatcher claims it again: every event is delivered at least once, across SIGKILL. A lease is
several times the timeout, so no event is sent by two dispatchers at the same time.

An event whose webhook is inactive, or no longer subscribed to the trigger, when its turn comes
is DROPPED unsent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Table, event, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bookable.core.clock import Clock, clock
from bookable.core.db import WRITE_OPTION, create_engine, session_factory
from bookable.core.outbound import guarded_client, refusal, url_problem
from bookable.models import Webhook, WebhookDelivery, WebhookEvent, WebhookEventStatus
from bookable.settings import Settings
from bookable.webhooks.outbox import NOTIFY_CHANNEL, add_commit_listener
from bookable.webhooks.signing import delivery_headers

log = logging.getLogger("bookable.webhooks")

EXCERPT_BYTES = 1024  # how much of a reply is kept with the attempt
STOP_GRACE = 2.0  # seconds in-flight deliveries get to finish when the dispatcher stops
SQLITE_RETRY = 0.002  # seconds between tries for SQLite's write lock
# PostgreSQL LISTEN: seconds between tries to listen again after the connection is lost, and
# how often a quiet connection is checked.
LISTEN_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
LISTEN_CHECK_INTERVAL = 30.0
LISTEN_CHECK_TIMEOUT = 5.0

EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]
DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class DispatcherConfig:
    timeout: float = 10.0
    max_attempts: int = 11
    retry_delays: tuple[float, ...] = (10, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400)
    jitter: float = 0.2
    poll_interval: float = 1.0
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
            lease=settings.webhook_lease_seconds,
            batch_size=settings.webhook_batch_size,
            concurrency=settings.webhook_concurrency,
            allow_private_targets=settings.webhook_allow_private_targets,
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
        self._anchor: tuple[datetime, float] | None = None

    def now(self) -> datetime:
        current = self._base.now()
        if not self._base.frozen:
            return current
        if self._anchor is None or self._anchor[0] != current:
            self._anchor = (current, time.monotonic())
        return current + timedelta(seconds=time.monotonic() - self._anchor[1])


@dataclass
class Job:
    """A claimed event and what its delivery needs."""

    event_id: int
    webhook_id: str
    trigger: str
    body: str
    content_type: str
    attempts: int
    lease_until: datetime
    url: str | None
    secret: str | None
    version: str | None
    wanted: bool  # the webhook exists, is active, and still subscribes to the trigger


@dataclass
class Outcome:
    job: Job
    dropped: bool = False
    started_at: datetime | None = None
    duration_ms: int = 0
    status_code: int | None = None
    ok: bool = False
    excerpt: str | None = None
    error: str | None = None


def _describe(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return f"timed out after {timeout:g} s"
    if isinstance(error, httpx.ConnectError):
        return f"connection failed: {error or type(error).__name__}"
    if isinstance(error, httpx.HTTPError):
        return f"{type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error}"


def _text(data: bytes) -> str:
    # PostgreSQL text cannot hold NUL; the excerpt is for people to read anyway.
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


class Dispatcher:
    """Delivers due outbox events until stopped. See the module docstring."""

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
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._results: list[Outcome] = []  # finished attempts not written yet
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._remove_listener: Any = None
        self._postgres: bool | None = None
        self._listener: AsyncConnection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._listener_driver: Any = None  # asyncpg's connection under `_listener`
        self._listen_lost = asyncio.Event()  # set when the LISTEN connection is gone
        self._stop_requested = asyncio.Event()
        self._sqlite_writer: AsyncEngine | None = None
        self.delivered = 0  # attempts recorded, for logs and benchmarks

    # --- life cycle -------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Each connection goes to an address checked against the URL safety rules at that
            # moment (resolved once: no DNS rebinding between check and connect); no proxies
            # from the environment, no redirects.
            self._client = guarded_client(
                allow_private=self.config.allow_private_targets,
                timeout=self.config.timeout,
                max_keepalive_connections=self.config.concurrency,
            )
        return self._client

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._http()
        self._remove_listener = add_commit_listener(self.wake)
        if self._engine_dialect() == "postgresql":
            await self._listen()
            self._listen_task = asyncio.create_task(self._keep_listening(), name="webhook-listen")
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

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
            await driver.add_listener(NOTIFY_CHANNEL, lambda *_args: self._wakeup.set())
            return True
        except (DBAPIError, OSError, AttributeError) as error:
            log.warning("webhook dispatcher: LISTEN failed, polling meanwhile: %s", error)
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
                log.warning("webhook dispatcher: LISTEN connection lost; listening again")
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
        """Close the HTTP client and our own engine (`stop` does; call it after using
        `run_once` alone)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._sqlite_writer is not None:
            await self._sqlite_writer.dispose()
            self._sqlite_writer = None

    def wake(self) -> None:
        """Look for due events now (called after commits that wrote some; thread-safe)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(self._wakeup.set)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            free = self.config.concurrency - len(self._in_flight)
            wanted = min(free, self.config.batch_size)
            claimed: list[Job] = []
            try:
                claimed = await self.exchange(self._take_results(), wanted)
            except (DBAPIError, OSError) as error:
                log.warning("webhook dispatcher: database trouble: %s", error)
            except Exception:
                # Never let the loop die: delivery would stop until a restart.
                log.exception("webhook dispatcher: unexpected error; going on")
            for job in claimed:
                task = asyncio.create_task(self._deliver_and_keep(job))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)
            if claimed and len(claimed) == wanted:
                continue  # probably more due: claim again while there are free slots
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_interval):
                    await self._wakeup.wait()
        if self._in_flight:
            _done, pending = await asyncio.wait(self._in_flight, timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            await self.exchange(self._take_results(), 0)
        except (DBAPIError, OSError) as error:  # the leases run out; the events go out again
            log.warning("webhook dispatcher: recording the last attempts failed: %s", error)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        # Write and claim again once half the slots are free: one transaction for many rows,
        # not one per delivery (on SQLite every write queues behind the API's writers).
        if len(self._in_flight) <= self.config.concurrency // 2:
            self._wakeup.set()

    async def _deliver_and_keep(self, job: Job) -> None:
        try:
            outcome = await self.deliver(job)
        except asyncio.CancelledError:
            await self._release([job.event_id], job.lease_until)
            raise
        self._results.append(outcome)

    def _take_results(self) -> list[Outcome]:
        taken, self._results = self._results, []
        return taken

    async def run_once(self) -> int:
        """Claim one batch, deliver it and record the attempts; for the CLI and tests when
        the background loop is not running. Returns how many events were handled."""
        jobs = await self.exchange([], self.config.batch_size)
        outcomes = await asyncio.gather(*(self.deliver(job) for job in jobs))
        await self.exchange(list(outcomes), 0)
        return len(jobs)

    async def exchange(self, outcomes: list[Outcome], limit: int) -> list[Job]:
        """Write finished attempts and claim up to ``limit`` due events, in one short
        transaction. If writing fails, the attempts are kept for the next call."""
        try:
            return await self._exchange(outcomes, limit)
        except IntegrityError:
            # An event vanished meanwhile (its webhook was deleted): write one by one.
            for outcome in outcomes:
                with contextlib.suppress(IntegrityError):
                    await self._exchange([outcome], 0)
            return await self._exchange([], limit)
        except BaseException:
            self._results.extend(outcomes)
            raise

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

    def _due(self, now: datetime) -> list[Any]:
        return [
            EVENTS.c.status == WebhookEventStatus.PENDING.value,
            EVENTS.c.next_attempt_at <= now,
            or_(EVENTS.c.locked_until.is_(None), EVENTS.c.locked_until < now),
        ]

    async def _exchange(self, outcomes: list[Outcome], limit: int) -> list[Job]:
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.config.lease)
        if not outcomes:
            if limit <= 0:
                return []
            async with self.sessions() as session:
                # A read first: an idle dispatcher must not take SQLite's write lock every poll.
                due = select(EVENTS.c.id).where(*self._due(now)).limit(1)
                if await session.scalar(due) is None:
                    return []
        async with self._writing() as session:
            await self._write(session, outcomes, now)
            if limit <= 0:
                return []
            candidates = (
                select(EVENTS.c.id)
                .where(*self._due(now))
                .order_by(EVENTS.c.next_attempt_at, EVENTS.c.id)
                .limit(limit)
            )
            if await self._is_postgres(session):
                # Rows another dispatcher is claiming right now are skipped, not waited for.
                candidates = candidates.with_for_update(skip_locked=True)
            rows = (
                await session.execute(
                    update(EVENTS)
                    .where(EVENTS.c.id.in_(candidates.scalar_subquery()), *self._due(now))
                    .values(locked_until=lease_until)
                    .returning(
                        EVENTS.c.id,
                        EVENTS.c.webhook_id,
                        EVENTS.c.trigger,
                        EVENTS.c.body,
                        EVENTS.c.content_type,
                        EVENTS.c.attempts,
                    )
                )
            ).all()
            if not rows:
                return []
            hooks = {
                hook.id: hook
                for hook in await session.scalars(
                    select(Webhook).where(Webhook.id.in_({row.webhook_id for row in rows}))
                )
            }
        jobs = []
        for row in sorted(rows, key=lambda r: r.id):
            hook = hooks.get(row.webhook_id)
            jobs.append(
                Job(
                    event_id=row.id,
                    webhook_id=row.webhook_id,
                    trigger=row.trigger,
                    body=row.body,
                    content_type=row.content_type,
                    attempts=row.attempts,
                    lease_until=lease_until,
                    url=hook.subscriber_url if hook else None,
                    secret=hook.secret if hook else None,
                    version=hook.version if hook else None,
                    wanted=bool(
                        hook and hook.active and row.trigger in (hook.event_triggers or [])
                    ),
                )
            )
        return jobs

    async def _release(self, event_ids: Sequence[int], lease_until: datetime) -> None:
        """Give claimed events back without counting an attempt (a stop mid-delivery)."""
        try:
            async with self._writing() as session:
                await session.execute(
                    update(EVENTS)
                    .where(EVENTS.c.id.in_(event_ids), EVENTS.c.locked_until == lease_until)
                    .values(locked_until=None)
                )
        except (DBAPIError, OSError) as error:  # the lease runs out by itself anyway
            log.warning("webhook dispatcher: releasing events failed: %s", error)

    # --- 2. deliver -------------------------------------------------------------------------

    async def deliver(self, job: Job) -> Outcome:
        """One attempt. Never raises for the receiver's or the network's trouble."""
        if not job.wanted or job.url is None:
            return Outcome(job, dropped=True)
        started_at = datetime.now(UTC)
        began = time.perf_counter()
        outcome = Outcome(job, started_at=started_at)
        try:
            problem = url_problem(job.url, allow_private=self.config.allow_private_targets)
            if problem is not None:  # saved before the rules (or the setting) changed
                outcome.error = f"delivery refused: {problem}"
            else:
                await self._post(job, outcome)
        except (TimeoutError, httpx.HTTPError, OSError) as error:
            refused = refusal(error)
            if refused is not None:  # refused before any connection was tried
                outcome.error = f"delivery refused: {refused}"
            else:
                outcome.error = _describe(error, self.config.timeout)
        except Exception as error:
            # Anything else still counts as a failed attempt, or the event would come back
            # after every lease without ever using up its attempts.
            log.exception("webhook dispatcher: delivery of event %s failed", job.event_id)
            outcome.error = f"{type(error).__name__}: {error}"
        outcome.duration_ms = int((time.perf_counter() - began) * 1000)
        return outcome

    async def _post(self, job: Job, outcome: Outcome) -> None:
        assert job.url is not None
        body = job.body.encode("utf-8")
        headers = delivery_headers(
            body, content_type=job.content_type, secret=job.secret, version=job.version
        )
        async with asyncio.timeout(self.config.timeout):
            async with self._http().stream("POST", job.url, content=body, headers=headers) as reply:
                excerpt = b""
                async for chunk in reply.aiter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
        outcome.status_code = reply.status_code
        outcome.excerpt = _text(excerpt[:EXCERPT_BYTES])
        outcome.ok = 200 <= reply.status_code < 300
        if 300 <= reply.status_code < 400:
            location = reply.headers.get("location", "")
            outcome.error = f"redirects are not followed (Location: {location[:200]})"

    # --- 3. record --------------------------------------------------------------------------

    async def _write(self, session: AsyncSession, outcomes: list[Outcome], now: datetime) -> None:
        """A `WebhookDelivery` per attempt, and each event's new state."""
        if not outcomes:
            return
        attempts = [
            {
                "event_id": o.job.event_id,
                "webhook_id": o.job.webhook_id,
                "attempt": o.job.attempts + 1,
                "started_at": o.started_at or now,
                "duration_ms": o.duration_ms,
                "status_code": o.status_code,
                "ok": o.ok,
                "response_excerpt": o.excerpt,
                "error": o.error,
            }
            for o in outcomes
            if not o.dropped
        ]
        if attempts:
            await session.execute(insert(DELIVERIES), attempts)
        pending = EVENTS.c.status == WebhookEventStatus.PENDING.value
        arrived = [o.job.event_id for o in outcomes if o.ok]
        if arrived:
            # Even if the lease ran out meanwhile: it did arrive.
            await session.execute(
                update(EVENTS)
                .where(EVENTS.c.id.in_(arrived), pending)
                .values(
                    status=WebhookEventStatus.DELIVERED.value,
                    attempts=EVENTS.c.attempts + 1,
                    delivered_at=now,
                    locked_until=None,
                )
            )
        dropped = [o.job.event_id for o in outcomes if o.dropped]
        if dropped:
            await session.execute(
                update(EVENTS)
                .where(EVENTS.c.id.in_(dropped), pending)
                .values(status=WebhookEventStatus.DROPPED.value, locked_until=None)
            )
        for outcome in outcomes:
            if not outcome.ok and not outcome.dropped:
                await session.execute(self._event_update(outcome, now))
        self.delivered += len(attempts)

    def _event_update(self, outcome: Outcome, now: datetime) -> Any:
        """A failed attempt: retry after the next wait, or FAILED after the last attempt."""
        job = outcome.job
        made = job.attempts + 1
        mine = [
            EVENTS.c.id == job.event_id,
            EVENTS.c.status == WebhookEventStatus.PENDING.value,
            EVENTS.c.locked_until == job.lease_until,  # not if another dispatcher took over
        ]
        if made >= self.config.max_attempts:
            return (
                update(EVENTS)
                .where(*mine)
                .values(status=WebhookEventStatus.FAILED.value, attempts=made, locked_until=None)
            )
        return (
            update(EVENTS)
            .where(*mine)
            .values(
                attempts=made,
                next_attempt_at=now + timedelta(seconds=self.config.retry_delay(made, self._rng)),
                locked_until=None,
            )
        )


async def run_worker(settings: Settings, *, ready_message: str = "webhook worker started") -> None:
    """`bookable worker`: a dispatcher alone, until SIGTERM or SIGINT."""
    engine = create_engine(settings.database_url)
    dispatcher = Dispatcher(session_factory(engine), DispatcherConfig.from_settings(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await dispatcher.start()
    log.info(ready_message)
    try:
        await stop.wait()
    finally:
        await dispatcher.stop()
        await engine.dispose()
