"""Webhook delivery benchmark: how fast the outbox is delivered, and how soon after a booking.

    .venv/bin/python bench/webhooks.py [--bookings 1000] [--clients 8]

Each configuration gets a fresh database, one host with a 5-minute event type open 24/7, and one
webhook (BOOKING_CREATED, with a secret) pointing at a receiver in this process (a minimal
asyncio HTTP/1.1 server answering 200 at once, keep-alive):

(a) latency: ``--bookings`` POST /v1/bookings over HTTP by ``--clients`` concurrent clients while
    the dispatcher(s) run. The booking commits between its POST being sent and its 200 answer,
    so the time from commit to the webhook's arrival lies between (arrival - answer) and
    (arrival - sent): both medians are printed (the first can be negative: a worker woken by
    NOTIFY may deliver before the API has finished answering), with the p95 of the first, the
    booking requests' own latency, and deliveries/s over the stream (bounded by the bookings).
(b) drain: the same number of bookings made with delivery off (BOOKABLE_WEBHOOK_DISPATCHER=off,
    no worker), so the outbox holds a backlog; then the dispatcher(s) start. Printed: deliveries/s
    from the first arrival to the last (the processes' start-up is not counted).

Configurations: the in-process dispatcher of `bookable serve` on SQLite and on PostgreSQL, and
`serve` with BOOKABLE_WEBHOOK_DISPATCHER=off plus 2 `bookable worker` processes on PostgreSQL
(PostgreSQL rows need BOOKABLE_BENCH_DATABASE_URL or BOOKABLE_TEST_DATABASE_URL; its tables are
emptied). Every process runs with the shipped settings except BOOKABLE_RATE_LIMIT=0.
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
import contextlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from datetime import time as wall_time  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402

from _server import (  # noqa: E402
    BOOKABLE,
    Rss,
    bookable_env,
    format_rss,
    rss_of_tree,
    serving,
    started,
    stop,
)
from bookable.api_keys.service import issue_key  # noqa: E402
from bookable.core.db import create_engine, session_factory  # noqa: E402
from bookable.migrations.runner import upgrade  # noqa: E402
from bookable.models import Availability, Base, EventType, Schedule, User  # noqa: E402

LENGTH = 5  # minutes
DAYS = 365


# --- the receiver -----------------------------------------------------------------------------


@dataclass
class Receiver:
    """Records when each booking's webhook arrived (time.perf_counter, this process's clock)."""

    port: int = 0
    arrivals: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    bad_signatures: int = 0
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                arrived = time.perf_counter()
                self.requests += 1
                if b"x-cal-signature-256: no-secret-provided" in head.lower():
                    self.bad_signatures += 1
                uid = json.loads(body)["payload"]["uid"]
                self.arrivals.setdefault(uid, arrived)
                if len(self.arrivals) >= self.expected:
                    self.all_in.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        self.writers.discard(writer)
        writer.close()

    async def close(self) -> None:
        """End the kept-alive connections, so their handlers finish before the loop does."""
        for writer in list(self.writers):
            writer.close()
        await asyncio.sleep(0.1)

    def expect(self, count: int) -> None:
        self.arrivals.clear()
        self.all_in.clear()
        self.expected = count


# --- processes --------------------------------------------------------------------------------


@dataclass
class Processes:
    """What `running` started; after its block, the RSS of each at the end of the run."""

    base_url: str
    serve_rss: Rss | None = None
    worker_rss: list[Rss | None] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"serve {format_rss(self.serve_rss)}"
        if self.worker_rss:
            text += ", workers " + " + ".join(format_rss(r) for r in self.worker_rss)
        return text


@contextlib.contextmanager
def running(
    database_url: str, log: Path, *, dispatcher: str, workers: int = 0
) -> Iterator[Processes]:
    """`bookable serve` (+ ``workers`` `bookable worker`s) until the block ends; after it, their
    RSS at the end of the run."""
    env = bookable_env(database_url, BOOKABLE_WEBHOOK_DISPATCHER=dispatcher)
    worker_processes = [started([BOOKABLE, "worker"], env, log) for _ in range(workers)]
    try:
        with serving([BOOKABLE, "serve"], env, log, others=worker_processes) as server:
            processes = Processes(server.base_url)
            yield processes
            processes.worker_rss = [rss_of_tree(w.pid) for w in worker_processes]
        processes.serve_rss = server.rss
    finally:
        for process in worker_processes:
            stop(process)


# --- seeding and booking ----------------------------------------------------------------------


@dataclass
class Host:
    event_type_id: int
    key: str


async def reset(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            async with engine.begin() as conn:
                tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


async def add_host(url: str) -> Host:
    engine = create_engine(url)
    tag = uuid.uuid4().hex[:8]
    try:
        async with session_factory(engine)() as session, session.begin():
            user = User(email=f"host-{tag}@example.com", username=f"host-{tag}", name="Host")
            session.add(user)
            await session.flush()
            schedule = Schedule(user_id=user.id, name="Always", time_zone="UTC")
            schedule.availability.append(
                Availability(
                    days=list(range(7)), start_time=wall_time(0), end_time=wall_time(23, 59)
                )
            )
            session.add(schedule)
            await session.flush()
            user.default_schedule_id = schedule.id
            event_type = EventType(
                user_id=user.id, title="Bench", slug=f"bench-{tag}", length=LENGTH,
                minimum_booking_notice=0, locations=[],
            )  # fmt: skip
            session.add(event_type)
            await session.flush()
            _key, clear = await issue_key(session, user_id=user.id, prefix="cal_")
            return Host(event_type.id, clear)
    finally:
        await engine.dispose()


def slot_starts(first_day: datetime) -> Iterator[datetime]:
    """Free 5-minute slots, dealt over many days so no day gets crowded (see bench/bookings.py)."""
    for minute in range(0, 24 * 60 - LENGTH, LENGTH):
        for day in range(DAYS):
            yield first_day + timedelta(days=day, minutes=minute)


async def subscribe(base: str, host: Host, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        response = await client.post(
            "/v1/webhooks",
            params={"apiKey": host.key},
            json={
                "subscriberUrl": f"http://127.0.0.1:{receiver.port}/hook",
                "eventTriggers": ["BOOKING_CREATED"],
                "active": True,
                "secret": "bench-secret",
            },
        )
        assert response.status_code == 200, response.text


@dataclass
class Booked:
    sent: dict[str, float] = field(default_factory=dict)  # uid -> when its POST was sent
    answered: dict[str, float] = field(default_factory=dict)  # uid -> when the 200 came back


async def make_bookings(
    base: str, host: Host, starts: Iterator[datetime], count: int, clients: int
) -> Booked:
    """POST ``count`` bookings from ``clients`` keep-alive clients."""
    booked = Booked()
    numbers = itertools.count()
    http = [
        httpx.AsyncClient(base_url=base, timeout=60, params={"apiKey": host.key})
        for _ in range(clients)
    ]

    async def loop(client: httpx.AsyncClient) -> None:
        while (n := next(numbers)) < count:
            start = next(starts)
            sent = time.perf_counter()
            response = await client.post(
                "/v1/bookings",
                json={
                    "eventTypeId": host.event_type_id,
                    "startTime": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "endTime": (start + timedelta(minutes=LENGTH)).strftime(
                        "%Y-%m-%dT%H:%M:%S.000Z"
                    ),
                    "name": "Guest",
                    "email": f"guest{n}@example.com",
                    "timeZone": "UTC",
                },
            )
            if response.status_code != 200:
                raise SystemExit(f"booking failed: {response.status_code} {response.text[:300]}")
            uid = response.json()["uid"]
            booked.answered[uid] = time.perf_counter()
            booked.sent[uid] = sent

    try:
        await asyncio.gather(*(loop(c) for c in http))
    finally:
        for client in http:
            await client.aclose()
    return booked


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


# --- one configuration ------------------------------------------------------------------------


async def bench(
    label: str, url: str, workers: int, count: int, clients: int, receiver: Receiver, tmp: Path
) -> dict[str, float | str]:
    await reset(url)
    host = await add_host(url)
    first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = slot_starts(first_day + timedelta(days=1))
    log = tmp / f"{label.replace(' ', '-')}.log"
    inline = "off" if workers else "inline"

    # (a) latency while booking
    with running(url, log, dispatcher=inline, workers=workers) as processes:
        base = processes.base_url
        await subscribe(base, host, receiver)
        receiver.expect(count)
        began = time.perf_counter()
        booked = await make_bookings(base, host, starts, count, clients)
        await asyncio.wait_for(receiver.all_in.wait(), timeout=300)
        finished = max(receiver.arrivals.values())
    stream_rate = count / (finished - began)
    # The commit happens between the POST being sent and its answer: two bounds.
    from_answer = [(receiver.arrivals[u] - t) * 1000 for u, t in booked.answered.items()]
    from_sent = [(receiver.arrivals[u] - t) * 1000 for u, t in booked.sent.items()]
    request_ms = [(booked.answered[u] - t) * 1000 for u, t in booked.sent.items()]

    # (b) drain a backlog
    with running(url, log, dispatcher="off") as backlog:
        receiver.expect(count)
        await make_bookings(backlog.base_url, host, starts, count, clients)
    assert not receiver.arrivals, "delivery was meant to be off"
    with running(url, log, dispatcher=inline, workers=workers) as draining:
        await asyncio.wait_for(receiver.all_in.wait(), timeout=300)
        # From the first arrival to the last: the start-up of the processes is not counted.
        drain_seconds = max(receiver.arrivals.values()) - min(receiver.arrivals.values())
    if "Traceback" in log.read_text(errors="replace"):
        print(f"# {label}: a process logged a traceback, see {log}", file=sys.stderr)
    result: dict[str, float | str] = {
        "config": label,
        "answer_median_ms": statistics.median(from_answer),
        "answer_p95_ms": percentile(from_answer, 0.95),
        "sent_median_ms": statistics.median(from_sent),
        "request_median_ms": statistics.median(request_ms),
        "request_p95_ms": percentile(request_ms, 0.95),
        "stream_per_s": stream_rate,
        "drain_per_s": count / drain_seconds,
        # After (a), the run that books and delivers at once; and after draining (b).
        "rss": f"{processes}; drain: {draining}",
    }
    print(f"# {result}", file=sys.stderr)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    env = os.environ
    pg_url = env.get("BOOKABLE_BENCH_DATABASE_URL") or env.get("BOOKABLE_TEST_DATABASE_URL")
    if args.no_postgres:
        pg_url = None

    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as folder:
        tmp = Path(folder)
        configs = [("inline, sqlite", f"sqlite:///{tmp / 'bench.db'}", 0)]
        if pg_url:
            configs += [("inline, postgres", pg_url, 0), ("2 workers, postgres", pg_url, 2)]
        for label, url, workers in configs:
            results.append(
                await bench(label, url, workers, args.bookings, args.clients, receiver, tmp)
            )
        if pg_url:
            await reset(pg_url)
    server.close()
    await receiver.close()
    await server.wait_closed()
    if receiver.bad_signatures:
        print(f"# {receiver.bad_signatures} deliveries came unsigned", file=sys.stderr)

    print(
        f"\nWebhook delivery, {args.bookings} bookings by {args.clients} clients; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}\n"
    )
    print("| configuration | 200 answer -> receiver, median ms | p95 ms | POST sent -> receiver, "
          "median ms | booking request median / p95 ms | deliveries/s while booking | "
          "deliveries/s draining a backlog |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['config']} | {r['answer_median_ms']:.1f} | {r['answer_p95_ms']:.1f} | "
            f"{r['sent_median_ms']:.1f} | {r['request_median_ms']:.0f} / "
            f"{r['request_p95_ms']:.0f} | {r['stream_per_s']:.0f} | {r['drain_per_s']:.0f} |"
        )
    print("\nRSS at the end of each run (booking while delivering; draining the backlog):")
    for r in results:
        print(f"- {r['config']}: {r['rss']}")


if __name__ == "__main__":
    asyncio.run(main())
