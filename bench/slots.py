"""GET /slots benchmark: one user, a Mon-Fri 09:00-17:00 schedule, a 30-minute event type and N
accepted bookings spread over the window; a 31-day window is asked for, in process.

For each N (100, 1,000, 10,000) and each database (SQLite; PostgreSQL when
BOOKABLE_BENCH_DATABASE_URL or BOOKABLE_TEST_DATABASE_URL is set) it prints, per request:
- total: GET /v1/slots through the whole app (httpx ASGI transport, auth cache warm, no rate limit);
- load: the service's database reads (load_host_calendar: the schedules, the busy bookings; told
  as GET /slots tells it that the host selected no calendar, so no query asks);
- engine: compute_slots alone, on the loaded inputs;
- db floor: the raw busy-bookings query alone (SQLAlchemy Core, one row per booking, nothing
  built): the floor issue 15's aims are set against; beside it, the same times aggregated into one
  row as GET /slots now reads them (text on both databases, parsed with
  `datetime.fromisoformat`), which costs less than the row floor;
- GET /v1/me: the cheapest authenticated route through the same app (the framework floor);
- render: the response body of the engine's slots alone (`slots_body`, in the zone asked);
and a summary line per case: `slots_total/db_read_floor`, and total against GET /v1/me; then a
lower bound per case: what every slots request must do at least (GET /v1/me's auth and framework,
the db floor, the engine, the rendering), summed, and that sum against GET /v1/me. Aims
(issue 15): total at most 2x the database read at 1,000 and 10,000 bookings, at most 3x GET
/v1/me at 100; time grows no faster than linearly in N.

Run: .venv/bin/python bench/slots.py [--repeat 30]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/http.py would shadow the
# standard library's `http` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).resolve().parent))  # last: for _server, after the stdlib
# httpx's ASGI transport asks on every request whether it runs under trio by importing sniffio,
# which is not installed here: the failed import walks sys.path each time (~0.1-0.2 ms of the
# client's own, counted in `total` and GET /v1/me alike). A None entry fails it at once; an
# installed sniffio is left as it is. slots_pair.py imports this module, so it holds there too.
sys.modules.setdefault("sniffio", None)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from datetime import time as wall_time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import String, Text, cast, func, insert, select, text, type_coerce  # noqa: E402

from _server import format_rss, own_rss  # noqa: E402
from bookable.api_keys.service import issue_key  # noqa: E402
from bookable.app import create_app  # noqa: E402
from bookable.migrations.runner import upgrade  # noqa: E402
from bookable.models import Availability, Base, Booking, EventType, Schedule, User  # noqa: E402
from bookable.scheduling import SlotRequest, compute_slots  # noqa: E402
from bookable.settings import Settings  # noqa: E402
from bookable.slots.schemas import slots_body  # noqa: E402
from bookable.slots.service import (  # noqa: E402
    calendar_window,
    event_rules,
    load_host_calendar,
)

WINDOW_START = datetime(2027, 3, 1, tzinfo=UTC)
WINDOW_END = WINDOW_START + timedelta(days=31)
NOW = datetime(2027, 2, 1, tzinfo=UTC)
# The booker's zone GET /slots is asked for (timeZone), also the rendering's.
BOOKER_ZONE = "Europe/Berlin"


async def seed(app: Any, bookings: int) -> tuple[int, str, int]:
    async with app.state.sessions() as session, session.begin():
        user = User(email="bench@example.com", username="bench", time_zone="Europe/Berlin")
        session.add(user)
        await session.flush()
        schedule = Schedule(user_id=user.id, name="Week", time_zone="Europe/Berlin")
        schedule.availability.append(
            Availability(days=[1, 2, 3, 4, 5], start_time=wall_time(9), end_time=wall_time(17))
        )
        session.add(schedule)
        await session.flush()
        user.default_schedule_id = schedule.id
        event_type = EventType(
            user_id=user.id, title="Bench", slug="bench", length=30, locations=[],
            minimum_booking_notice=0,
        )  # fmt: skip
        session.add(event_type)
        await session.flush()
        _key, clear = await issue_key(session, user_id=user.id, prefix="cal_")
        # Spread N bookings over twice the window, so half overlap it. They must not overlap
        # one another (PostgreSQL refuses that): 15 minutes long, or half the gap between them.
        span = (WINDOW_END - WINDOW_START) * 2
        step = span / bookings
        busy = min(timedelta(minutes=15), step / 2)
        rows = [
            {
                "uid": f"bench{i}",
                "user_id": user.id,
                "event_type_id": event_type.id,
                "title": "busy",
                "start_time": WINDOW_START - span / 4 + step * i,
                "end_time": WINDOW_START - span / 4 + step * i + busy,
                "blocked_start": WINDOW_START - span / 4 + step * i,
                "blocked_end": WINDOW_START - span / 4 + step * i + busy,
                "status": "ACCEPTED",
                "created_at": NOW,
            }
            for i in range(bookings)
        ]
        for chunk in range(0, len(rows), 2000):
            await session.execute(insert(Booking), rows[chunk : chunk + 2000])
        ids = user.id, clear, event_type.id
    if app.state.engine.dialect.name == "postgresql":
        # The statistics autovacuum gathers within a minute of such a change on a server: without
        # them the planner takes the fresh tables for a few pages and scans bookings whole for
        # the bookings a host co-hosts or attends (0.25-0.4 ms at 1,000; 0.04 ms with them).
        async with app.state.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    return ids


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.median(ordered) * 1000, p95 * 1000


async def measure(url: str, label: str, bookings: int, repeat: int) -> dict[str, Any]:
    app = create_app(Settings(database_url=url, rate_limit="0", clock=NOW))
    async with app.router.lifespan_context(app):
        user_id, key, event_type_id = await seed(app, bookings)
        params = {
            "apiKey": key,
            "eventTypeId": str(event_type_id),
            "startTime": WINDOW_START.date().isoformat(),
            "endTime": (WINDOW_END - timedelta(days=1)).date().isoformat(),
            "timeZone": BOOKER_ZONE,
        }
        totals: list[float] = []
        loads: list[float] = []
        engines: list[float] = []
        floors: list[float] = []
        row_floors: list[float] = []
        aggregate_floors: list[float] = []
        mes: list[float] = []
        renders: list[float] = []
        slot_count = 0
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for i in range(repeat + 3):
                began = time.perf_counter()
                response = await client.get("/v1/slots", params=params)
                elapsed = time.perf_counter() - began
                assert response.status_code == 200, response.text
                if i >= 3:  # warm-up
                    totals.append(elapsed)
                slot_count = sum(len(v) for v in response.json()["slots"].values())
            # The framework floor: the cheapest authenticated route through the same app.
            for i in range(repeat + 3):
                began = time.perf_counter()
                response = await client.get("/v1/me", params={"apiKey": key})
                elapsed = time.perf_counter() - began
                assert response.status_code == 200, response.text
                if i >= 3:
                    mes.append(elapsed)

        async with app.state.sessions() as session:
            user = await session.get(User, user_id)
            event_type = await session.get(EventType, event_type_id)
            assert user is not None and event_type is not None
            rules = event_rules(event_type)
            # What GET /slots hands the load for a host without calendars (no query to ask).
            external = app.state.calendar_busy.none_selected(
                [user_id], *calendar_window(event_type, WINDOW_START, WINDOW_END)
            )
            for i in range(repeat + 3):
                began = time.perf_counter()
                calendar = await load_host_calendar(
                    session, event_type, user, WINDOW_START, WINDOW_END, external=external
                )
                loaded = time.perf_counter()
                slots = compute_slots(
                    rules, calendar, SlotRequest(WINDOW_START, WINDOW_END, NOW, calendar.zone)
                )
                done = time.perf_counter()
                slots_body(slots, ZoneInfo(BOOKER_ZONE), [])
                rendered = time.perf_counter()
                if i >= 3:
                    loads.append(loaded - began)
                    engines.append(done - loaded)
                    renders.append(rendered - done)
            busy = (
                Booking.user_id == user_id,
                Booking.status == "ACCEPTED",
                Booking.start_time < WINDOW_END + timedelta(days=2),
                Booking.end_time > WINDOW_START - timedelta(days=2),
            )
            floor_query = select(Booking.start_time, Booking.end_time).where(*busy)
            # The same times aggregated into one row, as GET /slots now reads them: UTC text
            # parsed with datetime.fromisoformat on both databases (PostgreSQL: the wall time
            # in UTC, the connection's DateStyle being ISO; asyncpg's timestamptz arrays cost
            # more to decode), the database's own work with the least per-row work in Python.
            # The issue's floor stays the first (the one the bench printed when the aims were
            # set); both are printed, and the lower bound takes the cheaper.
            start, end = Booking.start_time, Booking.end_time
            postgres = session.get_bind().dialect.name == "postgresql"
            if postgres:
                aggregated = [
                    func.string_agg(
                        cast(func.timezone("UTC", column), Text()) + "+00:00",
                        ",",
                        type_=String(),
                    )
                    for column in (start, end)
                ]
            else:
                aggregated = [
                    func.group_concat(type_coerce(column, String()) + "+00:00")
                    for column in (start, end)
                ]
            aggregate_query = select(*aggregated).where(*busy)
            for i in range(repeat + 3):
                began = time.perf_counter()
                (await session.execute(floor_query)).all()
                if i >= 3:
                    row_floors.append(time.perf_counter() - began)
                began = time.perf_counter()
                texts = (await session.execute(aggregate_query)).one()
                _instants = [
                    [datetime.fromisoformat(t) for t in (x or "").split(",") if t] for x in texts
                ]
                if i >= 3:
                    aggregate_floors.append(time.perf_counter() - began)
            floors.extend(row_floors)
        # The app runs in this process: its RSS, measured while the app is still up.
        rss = own_rss()
    return {
        "db": label,
        "n": bookings,
        "slots": slot_count,
        "total": summary(totals),
        "load": summary(loads),
        "engine": summary(engines),
        "floor": summary(floors),
        "row_floor": summary(row_floors),
        "aggregate_floor": summary(aggregate_floors),
        "me": summary(mes),
        "render": summary(renders),
        "rss": rss,
    }


async def reset_postgres(url: str) -> None:
    from bookable.core.db import create_engine

    engine = create_engine(url)
    async with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pg_url = os.environ.get("BOOKABLE_BENCH_DATABASE_URL") or os.environ.get(
        "BOOKABLE_TEST_DATABASE_URL"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"slots-{n}.db"
            url = f"sqlite:///{path}"
            await asyncio.to_thread(upgrade, url)
            results.append(await measure(url, "sqlite", n, args.repeat))
    if pg_url:
        await asyncio.to_thread(upgrade, pg_url)
        for n in sizes:
            await reset_postgres(pg_url)
            results.append(await measure(pg_url, "postgresql", n, args.repeat))
        await reset_postgres(pg_url)
    else:
        print("# PostgreSQL skipped: set BOOKABLE_BENCH_DATABASE_URL to include it")

    print(f"# GET /v1/slots, 31-day window, Mon-Fri 09-17, 30-min event; {args.repeat} requests")
    print("# times in ms as median / p95")
    header = (
        f"{'db':<11}{'N':>7}{'slots':>7}  {'total':>15}{'load':>15}{'engine':>15}{'db floor':>15}"
        f"{'GET /v1/me':>15}  RSS after (this process: the app runs in it)"
    )
    print(header)
    for r in results:
        cells = "".join(
            f"{m:>8.2f} /{p:>5.1f}"
            for m, p in (r["total"], r["load"], r["engine"], r["floor"], r["me"])
        )
        print(f"{r['db']:<11}{r['n']:>7}{r['slots']:>7}  {cells}  {format_rss(r['rss'])}")
    for r in results:
        ratio = r["total"][0] / r["floor"][0]
        engine_vs_db = r["engine"][0] / r["floor"][0]
        print(
            f"slots_total/db_read_floor {r['db']} N={r['n']}: {ratio:.2f} "
            f"(engine/db_read_floor {engine_vs_db:.2f}; slots_total/aggregated_read "
            f"{r['total'][0] / r['aggregate_floor'][0]:.2f}, aggregated read "
            f"{r['aggregate_floor'][0]:.2f} ms; "
            f"slots_total/in-process GET /v1/me {r['total'][0] / r['me'][0]:.2f})"
        )
    # The least a slots request can cost: authentication and the framework (GET /v1/me), the
    # busy read (the cheaper of the two), the engine and the rendering of its slots; medians,
    # in ms. At
    # N=100 it says whether slots_total/in-process GET /v1/me <= 3 is reachable at all.
    for r in results:
        me, engine, render = (r[k][0] for k in ("me", "engine", "render"))
        floor = min(r["floor"][0], r["aggregate_floor"][0])
        bound = me + floor + engine + render
        print(
            f"slots_lower_bound {r['db']} N={r['n']}: {bound:.2f} ms = GET /v1/me {me:.2f} "
            f"+ db floor {floor:.2f} + engine {engine:.2f} + render {render:.2f} "
            f"({r['slots']} slots); lower_bound/in-process GET /v1/me {bound / me:.2f} "
            f"(slots_total/in-process GET /v1/me {r['total'][0] / me:.2f})"
        )


if __name__ == "__main__":
    asyncio.run(main())
