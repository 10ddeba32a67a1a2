"""Planning MEETING_STARTED / MEETING_ENDED for a new webhook that covers many bookings.

    .venv/bin/python bench/meeting_plans.py [--bookings 1000 5000]

A user with one event type and ``--bookings`` upcoming accepted bookings (two attendees each, a
payment on every tenth); then, in one transaction that is rolled back, a webhook subscribing
to both MEETING triggers is created and `outbox.sync_meeting_events` plans its events. Printed:
the time of that call and the SQL statements it ran, per database (PostgreSQL with
BOOKABLE_BENCH_DATABASE_URL or BOOKABLE_TEST_DATABASE_URL; its tables are emptied).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/http.py would shadow the
# standard library's `http` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).resolve().parent))  # last: for _server, after the stdlib

import argparse  # noqa: E402
import asyncio  # noqa: E402
import secrets  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from sqlalchemy import event, insert, text  # noqa: E402

import _server  # noqa: E402
from bookable.core.db import create_engine, session_factory  # noqa: E402
from bookable.migrations.runner import upgrade_async  # noqa: E402
from bookable.models import Attendee, Base, Booking, EventType, Payment, User, Webhook  # noqa: E402
from bookable.webhooks import outbox  # noqa: E402

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)


async def _empty(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())
    await engine.dispose()


async def _seed(url: str, count: int) -> tuple[int, int]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        user = User(email="host@example.com", username="host", name="Host")
        session.add(user)
        await session.flush()
        event_type = EventType(user_id=user.id, title="Meet", slug="meet", length=30)
        session.add(event_type)
        await session.flush()
        user_id, event_type_id = user.id, event_type.id
    batch = 500
    for first in range(0, count, batch):
        async with sessions() as session, session.begin():
            rows = []
            for n in range(first, min(count, first + batch)):
                start = START + timedelta(hours=n)
                rows.append(
                    {
                        "uid": secrets.token_hex(8),
                        "user_id": user_id,
                        "event_type_id": event_type_id,
                        "title": f"Meeting {n}",
                        "start_time": start,
                        "end_time": start + timedelta(minutes=30),
                        "blocked_start": start,
                        "blocked_end": start + timedelta(minutes=30),
                        "status": "ACCEPTED",
                        "responses": {"name": "Ann", "email": "ann@example.com"},
                    }
                )
            ids = (await session.scalars(insert(Booking).returning(Booking.id), rows)).all()
            await session.execute(
                insert(Attendee),
                [
                    {"booking_id": i, "email": f"g{k}-{i}@example.com", "name": "Guest",
                     "time_zone": "Europe/Paris"}
                    for i in ids for k in range(2)
                ],
            )  # fmt: skip
            await session.execute(
                insert(Payment),
                [
                    {"uid": uuid.uuid4().hex, "booking_id": i, "amount": 500, "fee": 0,
                     "currency": "usd", "success": True, "refunded": False, "app_id": "stripe",
                     "data": {}, "external_id": f"pi_{i}"}
                    for i in ids[::10]
                ],
            )  # fmt: skip
    await engine.dispose()
    return user_id, event_type_id


async def _measure(url: str, user_id: int, event_type_id: int) -> tuple[float, int, int]:
    engine = create_engine(url)
    statements = 0

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(*_args: object) -> None:
        nonlocal statements
        statements += 1

    sessions = session_factory(engine)
    async with sessions() as session:
        await session.execute(text("SELECT 1"))
        webhook = Webhook(
            id=str(uuid.uuid4()),
            user_id=None,
            event_type_id=event_type_id,
            subscriber_url="https://hooks.example.com/meetings",
            event_triggers=["MEETING_STARTED", "MEETING_ENDED"],
            active=True,
            version="2021-10-20",
        )
        session.add(webhook)
        await session.flush()
        statements = 0
        began = time.perf_counter()
        planned = await outbox.sync_meeting_events(session, webhook)
        elapsed = time.perf_counter() - began
        counted = statements
        await session.rollback()
    await engine.dispose()
    return elapsed, counted, planned


async def _run(label: str, url: str, counts: list[int]) -> None:
    for count in counts:
        if url.startswith("postgresql"):
            await _empty(url)
        user_id, event_type_id = await _seed(url, count)
        runs = [await _measure(url, user_id, event_type_id) for _ in range(3)]
        best = min(r[0] for r in runs)
        _elapsed, statements, planned = runs[0]
        print(
            f"{label:10} {count:6} bookings: {planned:6} events planned, "
            f"{statements:6} SQL statements, best of 3 {best * 1000:8.1f} ms"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bookings", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    for count in args.bookings:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            await upgrade_async(url)
            await _run("SQLite", url, [count])
    pg = _server.bench_database_url()
    if pg:
        await upgrade_async(pg)
        await _run("PostgreSQL", pg, args.bookings)


if __name__ == "__main__":
    asyncio.run(main())
