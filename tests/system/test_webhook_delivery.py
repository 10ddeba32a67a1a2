"""Webhook delivery across real processes: nothing is lost when the receiver is down or the
server is killed with SIGKILL, and two `bookable worker` processes on PostgreSQL never send one
event at the same time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bookable.core.db import create_engine, session_factory
from bookable.migrations.runner import upgrade
from bookable.models import (
    User,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventStatus,
)
from tests.conftest import _empty_postgres
from tests.system.conftest import (
    PG_URL,
    Server,
    add_daily_meet,
    create_admin,
    ensure_worker_database,
    free_port,
    serving,
    working,
)
from tests.webhook_receiver import Received, receiving

# Fast retries and short leases, so a killed server's claims come free within seconds.
FAST_ENV = {
    "BOOKABLE_RATE_LIMIT": "0",
    "BOOKABLE_WEBHOOK_POLL_INTERVAL": "0.1",
    "BOOKABLE_WEBHOOK_RETRY_DELAYS": "0.3",
    "BOOKABLE_WEBHOOK_RETRY_JITTER": "0",
    "BOOKABLE_WEBHOOK_MAX_ATTEMPTS": "1000",
    "BOOKABLE_WEBHOOK_TIMEOUT": "1",
    "BOOKABLE_WEBHOOK_LEASE_SECONDS": "3",
}
BOOKINGS = 12


async def _seed_host(database_url: str, email: str) -> int:
    """A schedule open all day every day and a 30-minute event type for the CLI's admin."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            user = await session.scalar(select(User).where(User.email == email))
            assert user is not None
            meet = await add_daily_meet(session, user, clock_time(0), clock_time(23, 59))
            return meet.id
    finally:
        await engine.dispose()


async def _events(database_url: str) -> list[tuple[WebhookEvent, int]]:
    """Every outbox event with its number of successful attempts."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            events = list(await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
            ok = Counter(
                await session.scalars(
                    select(WebhookDelivery.event_id).where(WebhookDelivery.ok.is_(True))
                )
            )
            return [(e, ok[e.id]) for e in events]
    finally:
        await engine.dispose()


def _kill(server: Server) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def _uid(record: Received) -> str:
    return str(record.json()["payload"]["uid"])


def test_nothing_is_lost_when_the_receiver_is_down_or_the_server_is_killed(
    sqlite_url: str, tmp_path: Path
) -> None:
    email, _username, key = create_admin(sqlite_url, prefix="host")
    meet = asyncio.run(_seed_host(sqlite_url, email))
    port = free_port()  # the receiver's, not listening yet
    day = datetime.now(UTC).date() + timedelta(days=3)
    uids: list[str] = []

    # 1. The receiver is down: bookings commit, deliveries fail and are retried; then SIGKILL.
    with serving(sqlite_url, tmp_path / "first", env=FAST_ENV) as server:
        params = {"apiKey": key}
        r = httpx.post(
            f"{server.base_url}/v1/webhooks",
            params=params,
            json={
                "subscriberUrl": f"http://127.0.0.1:{port}/hook",
                "eventTriggers": ["BOOKING_CREATED"],
                "active": True,
                "secret": "kill-test",
            },
            timeout=10,
        )
        assert r.status_code == 200, r.text
        for i in range(BOOKINGS):
            start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=30 * i)
            r = httpx.post(
                f"{server.base_url}/v1/bookings",
                params=params,
                json={
                    "eventTypeId": meet,
                    "start": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "timeZone": "UTC",
                    "language": "en",
                    "metadata": {},
                    "responses": {"name": f"Guest {i}", "email": f"guest{i}@example.com"},
                },
                timeout=10,
            )
            assert r.status_code == 200, r.text
            uids.append(r.json()["uid"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = asyncio.run(_events(sqlite_url))
            if len(events) == BOOKINGS and all(e.attempts >= 1 for e, _ in events):
                break
            time.sleep(0.1)
        assert all(e.attempts >= 1 for e, _ in events), "deliveries were never attempted"
        _kill(server)
    events = asyncio.run(_events(sqlite_url))
    assert [e.status for e, _ in events] == [WebhookEventStatus.PENDING] * BOOKINGS

    # 2. The receiver is up but holds every request: deliveries are in flight; SIGKILL again.
    held = threading.Event()
    with receiving(port, hold=held) as receiver:
        with serving(sqlite_url, tmp_path / "second", env=FAST_ENV) as server:
            in_flight = receiver.wait_for_sync(1, ok_only=False)
            assert in_flight
            _kill(server)
        killed_in_flight = {_uid(r) for r in receiver.all()}
        held.set()
        receiver.hold = None
        # The answers to the dead server may still be written; only the database knows better.
        assert all(
            e.status == WebhookEventStatus.PENDING for e, _ in asyncio.run(_events(sqlite_url))
        )

        # 3. A new server: every event is delivered, the ones killed in flight included.
        with serving(sqlite_url, tmp_path / "third", env=FAST_ENV) as server:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                events = asyncio.run(_events(sqlite_url))
                if all(e.status == WebhookEventStatus.DELIVERED for e, _ in events):
                    break
                time.sleep(0.1)
            assert [e.status for e, _ in events] == [WebhookEventStatus.DELIVERED] * BOOKINGS
            assert all(ok >= 1 for _, ok in events)
            assert "Traceback" not in server.logs(), server.logs()
        delivered = Counter(_uid(r) for r in receiver.all())
        assert set(delivered) == set(uids)
        # At least once: what was in flight when the server died was sent again.
        assert killed_in_flight and all(delivered[uid] >= 2 for uid in killed_in_flight)


async def _outbox(database_url: str, url: str, count: int) -> None:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            user = User(email="workers@example.com", username="workers")
            session.add(user)
            await session.flush()
            hook = Webhook(user_id=user.id, subscriber_url=url, event_triggers=["BOOKING_CREATED"])
            session.add(hook)
            await session.flush()
            session.add_all(
                WebhookEvent(webhook_id=hook.id, trigger="BOOKING_CREATED", body=f'{{"n":{n}}}')
                for n in range(count)
            )
    finally:
        await engine.dispose()


def test_two_workers_on_postgresql_never_send_one_event_at_the_same_time(
    tmp_path: Path,
) -> None:
    if not PG_URL:
        pytest.skip("PostgreSQL: BOOKABLE_TEST_DATABASE_URL is not set")
    ensure_worker_database()
    upgrade(PG_URL)
    asyncio.run(_empty_postgres(PG_URL))
    count = 500
    # A generous timeout: on a loaded machine a 1 s one could expire and retry (sequentially,
    # but then "exactly once" below would not hold).
    env = {
        **FAST_ENV,
        "BOOKABLE_WEBHOOK_CONCURRENCY": "8",
        "BOOKABLE_WEBHOOK_BATCH_SIZE": "8",
        "BOOKABLE_WEBHOOK_TIMEOUT": "20",
        "BOOKABLE_WEBHOOK_LEASE_SECONDS": "60",
    }

    def event_key(record: Received) -> str:
        return str(record.json()["n"])

    # A little delay per answer keeps many deliveries in flight at once in both workers.
    with receiving(delay=0.01, key=event_key) as receiver:
        with working(PG_URL, tmp_path, 2, env=env) as workers:
            asyncio.run(_outbox(PG_URL, receiver.url + "/many", count))
            receiver.wait_for_sync(count, within=120)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                events = asyncio.run(_events(PG_URL))
                if all(e.status == WebhookEventStatus.DELIVERED for e, _ in events):
                    break
                time.sleep(0.1)
        # Stopped with SIGTERM as the block ended: a clean exit each.
        codes = [worker.process.returncode for worker in workers]
        logs = [worker.logs() for worker in workers]
        assert codes == [0, 0], logs
        assert receiver.overlaps == []  # no event was ever in flight twice
        seen = Counter(event_key(r) for r in receiver.all())
        assert set(seen) == {str(n) for n in range(count)}
        assert [e.status for e, _ in events] == [WebhookEventStatus.DELIVERED] * count
        # No crash, leases far longer than a delivery: every event went out exactly once.
        assert sum(seen.values()) == count, seen.most_common(3)
        assert all("Traceback" not in text for text in logs), logs
