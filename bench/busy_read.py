"""The busy read of a host with a long history: bounded below (as shipped) against open below.

    .venv/bin/python bench/busy_read.py [--sizes 1000,10000] [--rounds 400]

A host with N past bookings (30 minutes every 2 hours, ending 3 days before a day): the
busy read of a booking on that day (`slots.service._busy_statement`, a 5-day span as a booking
check asks) is run with the parameters as shipped (`busy_span_params`: the host's bookings from
31 days before the span on) and with the lower bound moved back to 1900 (the read before issue
15 round 7: every earlier booking read and filtered), interleaved, on one connection. Printed:
the median ms of each. On SQLite, and on PostgreSQL when BOOKABLE_BENCH_DATABASE_URL is set
(its tables are emptied; ANALYZE after seeding, as autovacuum would).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/http.py would shadow the
# standard library's `http` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from bookable.core.db import create_engine  # noqa: E402
from bookable.migrations.runner import upgrade_async  # noqa: E402
from bookable.models import Booking, User  # noqa: E402
from bookable.slots.service import _busy_statement, busy_span_params  # noqa: E402

DAY = datetime(2027, 6, 1, tzinfo=UTC)


async def seed(engine: AsyncEngine, bookings: int) -> int:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("TRUNCATE users, bookings RESTART IDENTITY CASCADE"))
        user = insert(User).values(username="host", email="host@example.com", name="Host")
        host_id = (await conn.execute(user.returning(User.id))).scalar_one()
        rows = []
        for i in range(bookings):
            start = DAY - timedelta(days=3, hours=2 * (i + 1))  # before the span
            end = start + timedelta(minutes=30)
            rows.append(
                {"uid": f"b{i}", "user_id": host_id, "title": "Busy", "start_time": start,
                 "end_time": end, "blocked_start": start, "blocked_end": end,
                 "status": "ACCEPTED"}
            )  # fmt: skip
        for chunk in range(0, bookings, 2000):
            await conn.execute(insert(Booking), rows[chunk : chunk + 2000])
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    return host_id


async def measure(url: str, bookings: int, rounds: int) -> None:
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        host_id = await seed(engine, bookings)
        statement = _busy_statement(pending_blocks=False, ignoring=False, identified=False)
        span = busy_span_params(DAY - timedelta(days=2), DAY + timedelta(days=3))
        bounded = {"host_id": host_id, "host_email": "host@example.com", **span}
        open_below = {**bounded, "busy_earliest_start": datetime(1900, 1, 1, tzinfo=UTC)}
        times: dict[str, list[float]] = {"bounded": [], "open": []}
        async with engine.connect() as conn:
            for i in range(rounds):
                pairs = [("bounded", bounded), ("open", open_below)]
                for name, params in pairs if i % 2 else pairs[::-1]:
                    began = time.perf_counter()
                    found = (await conn.execute(statement, params)).all()
                    times[name].append(time.perf_counter() - began)
                    await conn.rollback()
                    assert not found  # nothing near the day: only what is read differs
        ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
        print(
            f"{engine.dialect.name:10} {bookings:6} past bookings: bounded {ms['bounded']:.3f} ms,"
            f" open below {ms['open']:.3f} ms ({ms['open'] / ms['bounded']:.1f}x)"
        )
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    pg_url = os.environ.get("BOOKABLE_BENCH_DATABASE_URL")
    for bookings in (int(size) for size in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            await measure(f"sqlite:///{tmp}/busy.db", bookings, args.rounds)
        if pg_url:
            await measure(pg_url, bookings, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
