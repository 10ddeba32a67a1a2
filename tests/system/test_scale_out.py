"""Scale-out, proven: two `bookable serve` processes (BOOKABLE_WEBHOOK_DISPATCHER=off) and two
`bookable worker` processes on one PostgreSQL database and one Redis database.

One run, in this order:
- the rate-limit budget of one user is shared by both APIs (Redis): requests alternating between
  them pass exactly ``RATE_LIMIT`` times in all, not twice that;
- 200 concurrent booking attempts for 20 slots, spread over both APIs: exactly 20 bookings, the
  rest 409, no 5xx. Mid-storm one API process is SIGKILLed (its clients retry on the other, as
  behind a load balancer); the other keeps answering;
- meanwhile one worker is SIGKILLed mid-delivery: every booking's webhook still reaches the
  loopback receiver, and the few sent twice were claimed by the killed worker;
- afterwards the database holds nothing half-written (SQL checks below).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import httpx
import pytest
from redis import Redis
from sqlalchemy import select, text

from bookable.api_keys.service import issue_key
from bookable.core.db import create_engine, session_factory
from bookable.migrations.runner import upgrade
from bookable.models import (
    User,
    UserRole,
    Webhook,
    WebhookEvent,
    WebhookEventStatus,
)
from tests.conftest import REDIS_URL, _empty_postgres
from tests.system.conftest import (
    PG_URL,
    Server,
    add_daily_meet,
    ensure_worker_database,
    serving,
    working,
)
from tests.webhook_receiver import Received, Receiver, receiving

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SLOTS = 20
ATTEMPTS_PER_SLOT = 10
# Each booker tries ATTEMPTS_PER_SLOT * SLOTS / BOOKERS = 10 slots: well inside its own budget,
# even with a retry or two after the API kill (the budget is per user).
BOOKERS = 20
RATE_LIMIT = 30
KILL_API_AFTER = 50  # storm answers before one API process is SIGKILLed
KILL_WORKER_AFTER = 3  # webhook requests received before one worker is SIGKILLed
# Generous on a loaded 2-core machine (a timed-out delivery would be sent again); the lease is the
# shortest the settings allow (3 x the timeout): the killed worker's claims come free after it.
WEBHOOK_TIMEOUT = 2.0
LEASE = 3 * WEBHOOK_TIMEOUT
REQUEST_TIMEOUT = 60.0
API_ENV = {
    "BOOKABLE_WEBHOOK_DISPATCHER": "off",
    "BOOKABLE_RATE_LIMIT": f"{RATE_LIMIT}/minute",
    "BOOKABLE_EMAILS": "off",
}
WORKER_ENV = {
    "BOOKABLE_EMAILS": "off",
    "BOOKABLE_WEBHOOK_POLL_INTERVAL": "0.1",
    "BOOKABLE_WEBHOOK_RETRY_DELAYS": "0.3",
    "BOOKABLE_WEBHOOK_RETRY_JITTER": "0",
    "BOOKABLE_WEBHOOK_MAX_ATTEMPTS": "1000",
    "BOOKABLE_WEBHOOK_TIMEOUT": str(WEBHOOK_TIMEOUT),
    "BOOKABLE_WEBHOOK_LEASE_SECONDS": str(LEASE),
    # Small claims: the killed worker holds few events, the other one gets work at once.
    "BOOKABLE_WEBHOOK_CONCURRENCY": "4",
    "BOOKABLE_WEBHOOK_BATCH_SIZE": "4",
}


@dataclass
class Seeded:
    event_type_id: int
    host_key: str
    booker_keys: list[str]
    budget_key: str  # a user of its own for the rate-limit check


async def _seed(database_url: str, hook_url: str) -> Seeded:
    """A host open 09:00-17:00 UTC every day with a 30-minute event type and a BOOKING_CREATED
    webhook; admins to book it (each spends its own rate-limit budget); a user for the budget."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            host = User(email="host@example.com", username="host")
            session.add(host)
            await session.flush()
            meet = await add_daily_meet(session, host, clock_time(9), clock_time(17))
            hook = Webhook(
                user_id=host.id, subscriber_url=hook_url, event_triggers=["BOOKING_CREATED"]
            )
            session.add(hook)
            await session.flush()

            async def key_for(username: str, role: UserRole = UserRole.USER) -> str:
                user = User(email=f"{username}@example.com", username=username, role=role)
                session.add(user)
                await session.flush()
                return (await issue_key(session, user_id=user.id, prefix="cal_"))[1]

            host_key = (await issue_key(session, user_id=host.id, prefix="cal_"))[1]
            bookers = [await key_for(f"booker{i}", UserRole.ADMIN) for i in range(BOOKERS)]
            return Seeded(meet.id, host_key, bookers, await key_for("budget"))
    finally:
        await engine.dispose()


def _slot_starts() -> list[datetime]:
    """20 slots on the 30-minute grid: 5 a day on 4 days (each day is its own advisory lock)."""
    first = datetime.now(UTC).date() + timedelta(days=2)
    return [
        datetime(first.year, first.month, first.day, 9 + (i % 5), tzinfo=UTC)
        + timedelta(days=i // 5)
        for i in range(SLOTS)
    ]


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Attempt:
    slot: int
    booker: int
    server: int  # index of the API first asked
    # (API index, status code or transport error name, monotonic time), one per try.
    answers: list[tuple[int, int | str, float]] = field(default_factory=list)

    @property
    def final(self) -> int | str:
        return self.answers[-1][1]


@dataclass
class Kills:
    api_at: float = 0.0  # monotonic
    worker_at: datetime | None = None  # UTC, comparable with the leases written by workers
    worker_at_monotonic: float = 0.0
    claimed_at_kill: set[int] = field(default_factory=set)  # event ids
    claimed_by_killed: set[int] = field(default_factory=set)


async def _pending_claims(
    database_url: str, after: datetime, until: datetime | None = None
) -> set[int]:
    """Ids of undelivered events leased past ``after`` (and at most until ``until``)."""
    query = select(WebhookEvent.id).where(
        WebhookEvent.status == WebhookEventStatus.PENDING, WebhookEvent.locked_until > after
    )
    if until is not None:
        query = query.where(WebhookEvent.locked_until <= until)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return set(await session.scalars(query))
    finally:
        await engine.dispose()


async def _kill_worker(database_url: str, pid: int, kills: Kills) -> None:
    """SIGKILL the worker, then tell which events it held. Right after the kill, the claimed
    undelivered events are both workers'; half a lease later the survivor has recorded its own
    (a delivery takes at most the timeout), so those still leased until at most kill + lease
    are the dead worker's. If that look comes too late (the leases ran out and were taken
    again), the first, wider set stands."""
    os.killpg(pid, signal.SIGKILL)
    kills.worker_at, kills.worker_at_monotonic = datetime.now(UTC), time.monotonic()
    kills.claimed_at_kill = await _pending_claims(database_url, kills.worker_at)
    await asyncio.sleep(LEASE / 2)
    lease_end = kills.worker_at + timedelta(seconds=LEASE)
    still_held = await _pending_claims(database_url, kills.worker_at, lease_end)
    in_time = datetime.now(UTC) < lease_end
    kills.claimed_by_killed = (
        kills.claimed_at_kill & still_held if in_time else kills.claimed_at_kill
    )


async def _run_storm(
    servers: list[Server], worker_pid: int, seeded: Seeded, receiver: Receiver
) -> tuple[list[Attempt], Kills]:
    """Every attempt at once, half to each API; API 0 is SIGKILLed after ``KILL_API_AFTER``
    answers (its clients then retry on API 1) and the worker after ``KILL_WORKER_AFTER``
    webhook requests."""
    starts = _slot_starts()
    attempts = [
        Attempt(slot, (slot + j) % BOOKERS, (slot * ATTEMPTS_PER_SLOT + j) % 2)
        for slot in range(SLOTS)
        for j in range(ATTEMPTS_PER_SLOT)
    ]
    kills = Kills()
    answered = 0
    limits = httpx.Limits(max_connections=len(attempts) + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:

        async def book(attempt: Attempt) -> None:
            nonlocal answered
            start = starts[attempt.slot]
            server = attempt.server
            while True:
                try:
                    response = await client.post(
                        f"{servers[server].base_url}/v1/bookings",
                        params={"apiKey": seeded.booker_keys[attempt.booker]},
                        json={
                            "eventTypeId": seeded.event_type_id,
                            "start": _iso(start),
                            "end": _iso(start + timedelta(minutes=30)),
                            "timeZone": "UTC",
                            "language": "en",
                            "metadata": {},
                            "responses": {
                                "name": f"Booker {attempt.booker}",
                                "email": f"booker{attempt.booker}@example.com",
                            },
                        },
                    )
                except httpx.TransportError as error:
                    attempt.answers.append((server, type(error).__name__, time.monotonic()))
                    if server == 1:
                        raise  # the surviving API must always answer
                    server = 1  # as a load balancer would: the retry goes to the live API
                    continue
                attempt.answers.append((server, response.status_code, time.monotonic()))
                answered += 1
                return

        async def kill_in_the_middle() -> None:
            deadline = time.monotonic() + REQUEST_TIMEOUT
            worker_kill: asyncio.Task[None] | None = None
            while kills.api_at == 0.0 or worker_kill is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"kills never happened: {answered} answers, {kills}")
                if kills.api_at == 0.0 and answered >= KILL_API_AFTER:
                    os.killpg(servers[0].process.pid, signal.SIGKILL)
                    kills.api_at = time.monotonic()
                if worker_kill is None and len(receiver.all()) >= KILL_WORKER_AFTER:
                    worker_kill = asyncio.create_task(_kill_worker(PG_URL or "", worker_pid, kills))
                await asyncio.sleep(0.01)
            await worker_kill

        await asyncio.gather(kill_in_the_middle(), *(book(a) for a in attempts))
    return attempts, kills


def _uid(record: Received) -> str:
    return str(record.json()["payload"]["uid"])


def _sql(database_url: str, query: str) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in await conn.execute(text(query))]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_two_apis_and_two_workers_share_one_database_and_one_redis(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("PostgreSQL: BOOKABLE_TEST_DATABASE_URL is not set")
    if not REDIS_URL:
        pytest.skip("Redis: BOOKABLE_TEST_REDIS_URL is not set")
    began = time.monotonic()
    ensure_worker_database()
    upgrade(PG_URL)
    asyncio.run(_empty_postgres(PG_URL))
    # Limiter counters are per user id, and ids restart with the emptied database.
    with Redis.from_url(REDIS_URL) as redis:
        redis.flushdb()
    api_env = {**API_ENV, "BOOKABLE_REDIS_URL": REDIS_URL}

    # A little delay per answer keeps deliveries in flight when the worker is killed.
    with receiving(delay=0.05) as receiver, ExitStack() as stack:
        seeded = asyncio.run(_seed(PG_URL, receiver.url + "/hook"))
        # The workers start in a thread while the APIs start here: each start costs seconds.
        with ThreadPoolExecutor(max_workers=1) as pool:
            starting = pool.submit(
                stack.enter_context, working(PG_URL, tmp_path / "workers", 2, env=WORKER_ENV)
            )
            servers = [
                stack.enter_context(serving(PG_URL, tmp_path / f"api-{i}", env=api_env))
                for i in range(2)
            ]
            workers = starting.result()
        started = time.monotonic() - began

        # 1. One budget across both APIs.
        statuses = []
        for i in range(RATE_LIMIT + 10):
            r = httpx.get(
                f"{servers[i % 2].base_url}/v1/me", params={"apiKey": seeded.budget_key}, timeout=10
            )
            statuses.append(r.status_code)
            if r.status_code == 200:
                assert r.headers["X-RateLimit-Remaining"] == str(RATE_LIMIT - 1 - i), r.headers
        assert statuses == [200] * RATE_LIMIT + [429] * 10, statuses

        # 2. The storm, with one API and one worker SIGKILLed in the middle of it.
        storm_began = time.monotonic()
        attempts, kills = asyncio.run(_run_storm(servers, workers[0].process.pid, seeded, receiver))
        storm_seconds = time.monotonic() - storm_began
        survivor = servers[1]

        # 3. Every booking's webhook is delivered, whatever the killed worker held.
        deadline = time.monotonic() + 3 * LEASE
        while time.monotonic() < deadline:
            pending = _sql(
                PG_URL, "SELECT count(*) FROM webhook_events WHERE status <> 'DELIVERED'"
            )
            if pending == [(0,)]:
                break
            time.sleep(0.1)
        received = receiver.answered()
        worker_logs = [w.logs() for w in workers]
        survivor_logs = survivor.logs()
        after = httpx.get(
            f"{survivor.base_url}/v1/bookings", params={"apiKey": seeded.host_key}, timeout=10
        )
    total_seconds = time.monotonic() - began

    # The storm: every attempt ends in 200 or 409, never a 5xx, and no slot has two winners.
    finals = Counter(a.final for a in attempts)
    server_errors = [
        a for a in attempts if any(isinstance(s, int) and s >= 500 for _, s, _ in a.answers)
    ]
    assert not server_errors, server_errors[:3]
    assert set(finals) <= {200, 409}, finals
    answered_winners = {a.slot: a.booker for a in attempts if a.final == 200}
    assert finals[200] == len(answered_winners), "a slot answered 200 twice"
    # Whose booking each slot holds (one attendee each, checked below): the answered winner's,
    # or, where the killed API committed a booking and died before answering, the booking of
    # one of that slot's clients whose first try was lost with it (its retry then got a 409).
    holders = {
        start: int(email.removeprefix("booker").split("@")[0])
        for start, email in _sql(
            PG_URL,
            "SELECT b.start_time, a.email FROM bookings b JOIN attendees a ON a.booking_id = b.id",
        )
    }
    starts = _slot_starts()
    lost = {(a.slot, a.booker) for a in attempts if len(a.answers) > 1}
    for slot, start in enumerate(starts):
        holder = holders.get(start)
        if slot in answered_winners:
            assert holder == answered_winners[slot], (slot, holder, answered_winners[slot])
        else:
            assert (slot, holder) in lost, (slot, holder, sorted(lost))
    committed_unanswered = SLOTS - len(answered_winners)

    # The surviving API answered every request sent to it, during the storm and after the kill.
    to_survivor = [(s, at) for a in attempts for srv, s, at in a.answers if srv == 1]
    assert all(s in (200, 409) for s, _ in to_survivor), Counter(s for s, _ in to_survivor)
    assert any(at > kills.api_at for _, at in to_survivor), "no answer after the kill"
    retried = sum(len(a.answers) > 1 for a in attempts)
    assert "Traceback" not in survivor_logs and " 500 " not in survivor_logs, survivor_logs[-3000:]

    # Seen through the API and in the database: 20 bookings, one per slot.
    assert after.status_code == 200, after.text
    listed = after.json()["bookings"]
    assert sorted(b["startTime"] for b in listed) == sorted(_iso(s) for s in starts)

    # Nothing half-written: every booking whole (its attendee, its host row, its outbox event),
    # nothing pointing at a booking that does not exist.
    checks = {
        "bookings": "SELECT count(*) FROM bookings",
        "distinct starts": "SELECT count(DISTINCT start_time) FROM bookings",
        "without one attendee": "SELECT count(*) FROM bookings b WHERE (SELECT count(*) FROM"
        " attendees a WHERE a.booking_id = b.id) <> 1",
        "without a host row": "SELECT count(*) FROM bookings b WHERE NOT EXISTS (SELECT 1 FROM"
        " booking_hosts h WHERE h.booking_id = b.id)",
        "without one BOOKING_CREATED event": "SELECT count(*) FROM bookings b WHERE (SELECT"
        " count(*) FROM webhook_events e WHERE e.booking_id = b.id AND"
        " e.trigger = 'BOOKING_CREATED') <> 1",
        "orphan attendees": "SELECT count(*) FROM attendees a WHERE NOT EXISTS (SELECT 1 FROM"
        " bookings b WHERE b.id = a.booking_id)",
        "orphan host rows": "SELECT count(*) FROM booking_hosts h WHERE NOT EXISTS (SELECT 1"
        " FROM bookings b WHERE b.id = h.booking_id)",
        "orphan events": "SELECT count(*) FROM webhook_events e WHERE e.booking_id IS NULL OR"
        " NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = e.booking_id)",
        "undelivered events": "SELECT count(*) FROM webhook_events WHERE status <> 'DELIVERED'",
    }
    found = {name: _sql(PG_URL, query)[0][0] for name, query in checks.items()}
    expected = dict.fromkeys(checks, 0) | {"bookings": SLOTS, "distinct starts": SLOTS}
    assert found == expected, found

    # At least once: every booking delivered; the only repeats are events the killed worker had
    # claimed (its lease had to run out first), and they are few.
    uids = {b["uid"] for b in listed}
    delivered = Counter(_uid(r) for r in received)
    assert set(delivered) == uids, (delivered, uids)
    repeated = {uid for uid, n in delivered.items() if n > 1}
    duplicates = sum(delivered.values()) - len(delivered)
    ids = dict(
        _sql(
            PG_URL,
            "SELECT b.uid, e.id FROM bookings b JOIN webhook_events e ON e.booking_id = b.id",
        )
    )
    assert {ids[uid] for uid in repeated} <= kills.claimed_by_killed, (repeated, kills)
    assert duplicates <= 2 * int(WORKER_ENV["BOOKABLE_WEBHOOK_CONCURRENCY"]), delivered
    assert "Traceback" not in worker_logs[1], worker_logs[1][-3000:]

    print(
        f"\nscale-out: {SLOTS} bookings ({committed_unanswered} committed by the killed API "
        f"unanswered), {finals[409]} x 409, {retried} retried after the API kill, "
        f"{len(received)} deliveries, {duplicates} duplicate(s) (killed worker held "
        f"{len(kills.claimed_by_killed)}), storm {storm_seconds:.1f} s (API killed at "
        f"{kills.api_at - storm_began:.1f} s, worker at "
        f"{kills.worker_at_monotonic - storm_began:.1f} s), start {started:.1f} s, "
        f"total {total_seconds:.1f} s"
    )
