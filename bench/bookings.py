"""Bookings benchmark: how fast bookings are made, and how GET /v1/bookings pages scale.

    .venv/bin/python bench/bookings.py [--duration 8] [--sizes 1000,100000] [--repeat 60]

On SQLite, and on PostgreSQL when BOOKABLE_BENCH_DATABASE_URL (or BOOKABLE_TEST_DATABASE_URL) is
set (its tables are emptied!):

(a) creation: bookings/s made by 1 and by 8 concurrent clients over HTTP against one
    `bookable serve` process (BOOKABLE_RATE_LIMIT=0, access log on as shipped). Every request is
    POST /v1/bookings for a distinct free slot of a 5-minute event type open 24/7 (seed body
    form), of one of WEB_HOSTS hosts in turn (each with its own key), each client on its own
    keep-alive connection (bench/_client.py: raw HTTP/1.1, not httpx, whose CPU per request
    was half the server's); every answer must be a 200. The floor:
    the same rows (a booking + its attendee, the columns the service writes) inserted with
    SQLAlchemy Core, one transaction per booking, by 1 and by 8 concurrent writers on the same
    database and engine settings (SQLite: BEGIN IMMEDIATE, as the server). Printed: bookings/s
    of each and the ratio HTTP/floor. Deployments (--dispatch): `serve`, one `serve` as
    shipped (on PostgreSQL with two CPUs or more its own dispatcher process sends the
    emails); `inline`, one `serve` whose own process also sends them
    (BOOKABLE_WEBHOOK_DISPATCHER=inline); `worker`,
    `serve` with BOOKABLE_WEBHOOK_DISPATCHER=off beside one `bookable worker` that sends
    them; `noemail`, one `serve` with BOOKABLE_EMAILS=off (no email is made: what the request
    path alone costs, not a shipped default). Otherwise every booking's two emails are really
    sent (to .eml files, or with --mail smtp to an aiosmtpd process) under the hourly per-host
    limit as shipped (none may be dropped); the emails still unsent when a run ends are printed.
    Before the first run the database is given a history, as a live one has: --history
    bookings (20,000) of another host, in 2031, VACUUM ANALYZEd on PostgreSQL. --cells N
    measures each cell N times in turn (bookable, its raw floor, the HTTP and lean floors,
    then again), each round a row, and prints the median ratio of the rounds: the VM's speed
    moves between runs seconds apart, and one round compares bookable with a floor measured
    8 s later. The first cell of each database starts with a round that is not counted
    (its database CPU was 1.5x the later cells', whichever deployment came first). Each HTTP
    run (bookable's, the lean floor's) waits until the emails of the runs before it are sent:
    otherwise a deployment's dispatcher began by sending the last one's backlog.
(b) listing: GET /v1/bookings?take=100&page=k, k random over the caller's pages, in process
    (httpx.ASGITransport, auth cache warm), with 1,000 and then 100,000 accepted bookings of the
    caller in the table (one attendee each, non-overlapping, bulk-inserted with Core). Printed:
    median and p95 of each, and the ratio of the medians 100k/1k (aim: within 1.5x). On
    PostgreSQL the list query's EXPLAIN ANALYZE is printed when the ratio is above the aim.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/http.py would shadow the
# standard library's `http` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).resolve().parent))  # last: for _server, after the stdlib
# The in-process runs (--only cpu, lane, list) go through httpx's ASGI transport, which imports
# sniffio on every request to ask whether it runs under trio; it is not installed, and the
# failed import walks sys.path each time (~0.25 ms a booking, counted as the booking's CPU). A
# None entry fails it at once (as bench/slots.py); an installed sniffio is left as it is.
sys.modules.setdefault("sniffio", None)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import AsyncIterator, Iterator, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from datetime import time as wall_time  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote, urlsplit  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import event, func, insert, select, text, update  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from _client import KeepAlive  # noqa: E402
from _server import (  # noqa: E402
    BOOKABLE,
    Rss,
    Running,
    bench_database_url,
    bookable_env,
    clean_env,
    cpu_of_tree,
    database_server_cpu,
    descendants,
    format_rss,
    own_rss,
    rss_of_tree,
    serving,
    started,
    stop,
)
from bookable.api_keys.service import issue_key  # noqa: E402
from bookable.app import create_app  # noqa: E402
from bookable.core.db import create_engine, is_sqlite, session_factory  # noqa: E402
from bookable.dispatch_process import dispatcher_place, usable_cpus  # noqa: E402
from bookable.migrations.runner import upgrade  # noqa: E402
from bookable.models import (  # noqa: E402
    Attendee,
    Availability,
    Base,
    Booking,
    EventType,
    Schedule,
    User,
)
from bookable.models.emails import EmailStatus, OutboundEmail  # noqa: E402
from bookable.settings import Settings  # noqa: E402
from write_floor_app import attendee_row, booking_row, insert_booking  # noqa: E402

LENGTH = 5  # minutes: 287 slots a day on a 00:00-23:59 schedule
SPREAD_DAYS = 365
# Bookable's bookings are dealt over this many hosts in turn, so that none passes the shipped
# limit of 200 emails an hour (100 bookings): a full run makes ~8,000 bookings a database in
# ~5 minutes. With one host and the limit lifted, each booking's count of its host's emails of
# the hour read thousands of rows (5-6 ms of PostgreSQL's time per booking by the last runs),
# which no host under the shipped limit ever makes it read. `--cells N` deals them over N
# times as many (N times the bookings in the hour).
WEB_HOSTS = 120
DRAIN_TIMEOUT = 120.0  # seconds a run waits for the last one's emails to be sent
LIST_AIM = 1.5
# Bookings of (a) start tomorrow (UTC); (b)'s are in a far, separate range.
LIST_BASE = datetime(2031, 1, 1, tzinfo=UTC)
HISTORY_FIRST = 100_000  # a history's booking ids (bulk_bookings), far above the seed's


# --- seeding ------------------------------------------------------------------------------------


@dataclass
class Host:
    user_id: int
    email: str
    name: str
    event_type_id: int
    key: str


async def add_host(engine: AsyncEngine, label: str) -> Host:
    """A user with a schedule open every day 00:00-23:59 UTC, a 5-minute event type bookable
    right away and an API key."""
    tag = uuid.uuid4().hex[:8]
    async with session_factory(engine)() as session, session.begin():
        user = User(
            email=f"{label}-{tag}@example.com", username=f"{label}-{tag}", name=label.title()
        )
        session.add(user)
        await session.flush()
        schedule = Schedule(user_id=user.id, name="Always", time_zone="UTC")
        schedule.availability.append(
            Availability(days=list(range(7)), start_time=wall_time(0), end_time=wall_time(23, 59))
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
        return Host(user.id, user.email, label.title(), event_type.id, clear)


def slots(first_day: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Every free 5-minute slot from ``first_day`` on, dealt over SPREAD_DAYS days in turn (00:00
    on each day, then 00:05 on each, ...), so that a host's days fill up evenly: a booking check
    reads the bookings of the days around its slot, which stay few (a few per day) as in life,
    instead of a wall of 287 a day."""
    for minute in range(0, 24 * 60 - LENGTH, LENGTH):  # the last ends 23:55 (<= 23:59)
        for day in range(SPREAD_DAYS):
            start = first_day + timedelta(days=day, minutes=minute)
            yield start, start + timedelta(minutes=LENGTH)


Booked = tuple[Host, datetime, datetime]  # a booking's host and slot


def bookings_of(hosts: list[Host], first_day: datetime) -> Iterator[Booked]:
    """The hosts in turn, each with its next free slot (`slots`)."""
    free = [slots(first_day) for _ in hosts]
    for index in itertools.cycle(range(len(hosts))):
        start, end = next(free[index])
        yield hosts[index], start, end


@dataclass
class Seeded:
    """The hosts of a profile or count of `serve` against the lean floor (`booking_profile.py`,
    `booking_instructions.py`): bookable's bookings dealt over WEB_HOSTS hosts from tomorrow
    on, the HTTP floor's host, the lean floor's host, its bookings and the email rows it copies."""

    web_bookings: Iterator[Booked]
    bare: Host
    lean: Host
    lean_bookings: Iterator[Booked]
    lean_emails: list[dict[str, Any]]


async def seeded(engine: AsyncEngine, url: str, tmp: Path) -> Seeded:
    web = [await add_host(engine, "web") for _ in range(WEB_HOSTS)]
    bare, lean = await add_host(engine, "bare"), await add_host(engine, "lean")
    tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow += timedelta(days=1)
    lean_emails = await booking_email_rows(url, lean, tmp)
    return Seeded(
        bookings_of(web, tomorrow), bare, lean, bookings_of([lean], tomorrow), lean_emails
    )


def host_booking_row(host: Host, start: datetime, end: datetime) -> dict[str, Any]:
    return booking_row(
        user_id=host.user_id, email=host.email, name=host.name,
        event_type_id=host.event_type_id, start=start, end=end,
    )  # fmt: skip


async def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def fresh_database(kind: str, pg_url: str | None, tmp: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / f'bookings-{uuid.uuid4().hex[:6]}.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
    else:
        assert pg_url
        await asyncio.to_thread(upgrade, pg_url)
        await reset_postgres(pg_url)
        try:
            yield pg_url
        finally:
            await reset_postgres(pg_url)


# --- (a) creation -------------------------------------------------------------------------------


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def run_for(duration: float, clients: int, one: Any) -> tuple[int, float]:
    """Call ``one(client_index)`` in ``clients`` loops for ``duration`` s; (done, seconds)."""
    stop_at = time.perf_counter() + duration
    counts = [0] * clients

    async def loop(index: int) -> None:
        while time.perf_counter() < stop_at:
            await one(index)
            counts[index] += 1

    began = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    return sum(counts), time.perf_counter() - began


def cpu_reading(processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree, of the database server and of this
    process (the clients)."""
    reading = {name: cpu_of_tree(pid) for name, pid in processes.items()}
    reading["db"] = database_server_cpu()
    reading["client"] = time.process_time()
    return reading


class BookingPoster:
    """Posts the seed body form for the next (host, slot) of ``booked``, one raw keep-alive
    connection per client (not httpx: its ~1.9 ms of CPU per POST shared the two cores with
    the server, `_client.py`); counts the answers' statuses."""

    def __init__(self, base: str, booked: Iterator[Booked], clients: int) -> None:
        self.booked, self.statuses, self.numbers = booked, Counter[int](), itertools.count()
        parts = urlsplit(base)
        self.path = parts.path
        self.http = [
            KeepAlive(parts.hostname or "127.0.0.1", parts.port or 80) for _ in range(clients)
        ]

    async def one(self, index: int) -> None:
        host, start, end = next(self.booked)
        body = {
            "eventTypeId": host.event_type_id,
            "startTime": _iso(start),
            "endTime": _iso(end),
            "name": "Guest",
            "email": f"guest{next(self.numbers)}@example.com",
            "timeZone": "UTC",
        }
        target = f"{self.path}/v1/bookings?apiKey={quote(host.key)}"
        status, answer = await self.http[index].request("POST", target, json.dumps(body).encode())
        self.statuses[status] += 1
        if status != 200 and self.statuses[status] == 1:
            print(f"# unexpected {status}: {answer[:300]!r}", file=sys.stderr)

    async def aclose(self) -> None:
        for client in self.http:
            await client.aclose()


async def http_rate(
    base: str,
    booked: Iterator[Booked],
    clients: int,
    duration: float,
    cpu: tuple[dict[str, int], dict[str, float]] | None = None,
    hosts: int = 1,
    counted: list[int] | None = None,
) -> tuple[float, Counter[int]]:
    """Bookings per second over ``duration`` s after a warm-up (one booking of each of the
    ``hosts`` first, then a second of bookings: connections, key caches). ``booked``: the host
    and the slot of each booking. ``cpu``: (name -> pid of the processes to watch, a dict
    filled with each one's CPU ms per booking over the timed run, with "db" for the database
    server and "client" for this process). ``counted`` gets the timed run's bookings."""
    poster = BookingPoster(base, booked, clients)
    try:
        for _ in range(hosts):
            await poster.one(0)
        await run_for(min(1.0, duration / 4), clients, poster.one)
        poster.statuses.clear()
        before = cpu_reading(cpu[0]) if cpu else {}
        done, seconds = await run_for(duration, clients, poster.one)
        if cpu:
            after = cpu_reading(cpu[0])
            cpu[1].update({name: (after[name] - before[name]) * 1000 / done for name in after})
        if counted is not None:
            counted.append(done)
    finally:
        await poster.aclose()
    return done / seconds, poster.statuses


async def floor_rate(
    engine: AsyncEngine,
    host: Host,
    free: Iterator[tuple[datetime, datetime]],
    clients: int,
    duration: float,
) -> float:
    numbers = itertools.count()

    async def one(_index: int) -> None:
        start, end = next(free)
        row = host_booking_row(host, start, end)
        await insert_booking(engine, row, f"guest{next(numbers)}@example.com")

    await run_for(min(1.0, duration / 4), clients, one)
    done, seconds = await run_for(duration, clients, one)
    return done / seconds


@contextlib.contextmanager
def deployment(
    url: str,
    log: Path,
    mode: str,
    mail_dir: Path,
    smtp_url: str | None = None,
    wrap: Sequence[str] = (),
) -> Iterator[tuple[Running, dict[str, Rss | None], dict[str, int]]]:
    """`bookable serve` alone (``serve``: as shipped, its dispatchers where
    BOOKABLE_WEBHOOK_DISPATCHER=auto puts them, in its own child process on PostgreSQL with
    two CPUs or more;
    ``inline``: in serve's process; ``noemail``: emails off) or beside one `bookable worker`
    (``worker``). Yields the server, a dict filled with the RSS of each process once the
    block ends (serve's with its child), and the processes' pids by name ("serve", "worker",
    "child": serve's dispatcher process). Emails go to .eml files in ``mail_dir``, or to
    ``smtp_url``. ``wrap``: a command every process runs under (valgrind; serve's child is
    not wrapped)."""
    env = {
        "BOOKABLE_EMAIL_DIR": str(mail_dir),
        **({"BOOKABLE_SMTP_URL": smtp_url} if smtp_url else {}),
        # The hourly email limit as shipped (200 a host): the bookings are dealt over
        # WEB_HOSTS hosts, and an email dropped over it stops the bench (`failed_email`).
    }
    rss: dict[str, Rss | None] = {}
    workers: list[subprocess.Popen[bytes]] = []
    if mode == "noemail":
        env["BOOKABLE_EMAILS"] = "off"
    if mode == "inline":
        env["BOOKABLE_WEBHOOK_DISPATCHER"] = "inline"
    if mode == "worker":
        env["BOOKABLE_WEBHOOK_DISPATCHER"] = "off"
        workers.append(started([*wrap, BOOKABLE, "worker"], bookable_env(url, **env), log))
    try:
        serve_env = bookable_env(url, **env)
        with serving([BOOKABLE, "serve"], serve_env, log, others=workers, wrap=wrap) as server:
            pids = {"serve": server.process.pid}
            if workers:
                pids["worker"] = workers[0].pid
            if mode == "serve" and (child := serve_child(server.process.pid, url)) is not None:
                pids["child"] = child
            yield server, rss, pids
            rss["serve"] = rss_of_tree(server.process.pid)
            for worker in workers:
                rss["worker"] = rss_of_tree(worker.pid)
    finally:
        for worker in workers:
            stop(worker)


def serve_child(pid: int, url: str, timeout: float = 30.0) -> int | None:
    """The pid of `serve`'s dispatcher process once it runs; None where `auto` keeps the
    dispatchers inline (SQLite, one CPU: the rule `serve` itself applies)."""
    place = dispatcher_place("auto", cpus=usable_cpus(), sqlite=is_sqlite(url))
    if place != "process":
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in descendants(pid):
            with contextlib.suppress(OSError):
                if b"--serve-child" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return child
        time.sleep(0.05)
    raise SystemExit(f"serve ({pid}) started no dispatcher process within {timeout:g} s")


@contextlib.contextmanager
def bare_server(
    url: str,
    host: Host,
    lean: Host,
    lean_emails: list[dict[str, Any]],
    tmp: Path,
    wrap: Sequence[str] = (),
) -> Iterator[Running]:
    """uvicorn serving `write_floor_app`, access log on as bookable's: the HTTP floor for
    ``host``'s bookings at ``/v1/bookings``, the lean floor for ``lean``'s (with its key) at
    ``/lean/v1/bookings`` (email rows written as sent) and ``/lean-sending/v1/bookings`` (email
    rows PENDING: the deployment's dispatcher sends them), its email rows shaped as
    ``lean_emails``."""
    work = tmp / "bare"
    work.mkdir(exist_ok=True)
    # A copy: with bench/ as uvicorn's app dir, bench/http.py would shadow the stdlib's `http`.
    (work / "bench_write_floor.py").write_text(
        Path(__file__).with_name("write_floor_app.py").read_text()
    )
    env = clean_env(
        FLOOR_DATABASE_URL=url, FLOOR_USER_ID=str(host.user_id), FLOOR_EMAIL=host.email,
        FLOOR_NAME=host.name, FLOOR_LEAN_KEY=lean.key, FLOOR_LEAN_USER_ID=str(lean.user_id),
        FLOOR_LEAN_EMAILS=json.dumps(lean_emails),
    )  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "bench_write_floor:app", "--app-dir", str(work)]
    with serving(command, env, work / "uvicorn.log", probe="/ready", wrap=wrap) as server:
        yield server


async def booking_email_rows(url: str, host: Host, tmp: Path) -> list[dict[str, Any]]:
    """Kind, subject, recipient and facts of the email rows one real booking of ``host`` writes
    (made in process, a year ahead; the rows are then marked sent): what the lean floor's
    email rows copy, so that a dispatcher renders and sends them as it would bookable's."""
    app = create_app(in_process_settings(url, tmp))
    async with app.router.lifespan_context(app):
        engine: AsyncEngine = app.state.engine
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            far = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            await post_booking(client, host, slots(far + timedelta(days=SPREAD_DAYS + 30)))
        async with engine.begin() as conn:
            written = OutboundEmail.user_id == host.user_id
            rows = (
                await conn.execute(
                    select(
                        OutboundEmail.kind, OutboundEmail.subject, OutboundEmail.recipient,
                        OutboundEmail.facts,
                    ).where(written).order_by(OutboundEmail.id)
                )
            ).all()  # fmt: skip
            sent = {"status": EmailStatus.SENT, "sent_at": datetime.now(UTC)}
            await conn.execute(update(OutboundEmail).where(written).values(sent))
    if len(rows) != 2:
        raise SystemExit(f"a booking wrote {len(rows)} email rows, not 2")
    return [row._asdict() for row in rows]


async def failed_email(engine: AsyncEngine) -> str | None:
    """The last error of an email that did not go out, if any: a bench whose emails fail
    measures less work than it claims."""
    async with engine.connect() as conn:
        return await conn.scalar(
            select(OutboundEmail.last_error).where(OutboundEmail.last_error.is_not(None)).limit(1)
        )


async def unsent_emails(engine: AsyncEngine) -> int:
    """Emails written but not sent yet (the dispatcher's backlog at this instant)."""
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count(OutboundEmail.id)).where(OutboundEmail.status == EmailStatus.PENDING)
        )
    return int(count or 0)


async def drain(engine: AsyncEngine, mode: str) -> int:
    """Wait until the deployment's dispatcher has sent every pending email (the backlog of
    the last run, or of the deployment before), so that no run pays for an earlier one's
    emails; gives up after DRAIN_TIMEOUT s. Returns the emails left (0 when drained)."""
    if mode == "noemail":  # no email dispatcher: what is pending stays so
        return 0
    deadline = time.monotonic() + DRAIN_TIMEOUT
    # Polled: the count is in the database, written by another process.
    while (left := await unsent_emails(engine)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    return left


async def sending_cpu(
    engine: AsyncEngine, mode: str, processes: dict[str, int], cpu: dict[str, float], done: int
) -> float:
    """CPU ms a booking of a run with its emails sent: ``cpu`` (the run's, by process, per
    booking) plus what the watched processes and the database spend sending the emails still
    pending when it ended (`drain`; the bench's own polling meanwhile left out). A rate
    measured while a backlog grows does not say what the machine sustains; this does: on N
    cores, at most N * 1000 / it bookings a second. ``child`` is in ``serve``'s tree: not
    counted twice."""
    before = cpu_reading(processes)
    if left := await drain(engine, mode):  # the figure then leaves their sending out
        print(f"# {mode}: {left} emails still unsent after {DRAIN_TIMEOUT:g} s: the CPU with"
              " emails sent is too low", file=sys.stderr)  # fmt: skip
    after = cpu_reading(processes)
    backlog = sum(after[name] - before[name] for name in after if name != "client")
    return sum(ms for name, ms in cpu.items() if name != "child") + backlog * 1000 / done


async def gather_statistics(engine: AsyncEngine) -> None:
    """PostgreSQL: the statistics a server's autovacuum keeps up to date (it analyses a table
    once a tenth of it has changed). Without them, after the first runs the planner still took
    the tables for a few pages and read every booking for the busy read's co-host branch: the
    database's CPU per booking grew 6-18 ms over a run, which measured the bench, not bookable."""
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))


async def bench_creation(
    kind: str,
    pg_url: str | None,
    tmp: Path,
    concurrency: list[int],
    duration: float,
    dispatch: list[str],
    smtp_url: str | None = None,
    history: int = 0,
    cells: int = 1,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    async with fresh_database(kind, pg_url, tmp) as url:
        engine = create_engine(url)
        bare_http = contextlib.ExitStack()
        try:
            if history:
                # A live server's tables hold a history, and its statistics say so: without one
                # the first cell's plans were made for empty tables (PostgreSQL's busy read then
                # scanned the span's bookings: 4.4 ms of database CPU a booking, not 3.1).
                past = await add_host(engine, "history")
                await bulk_bookings(engine, past, HISTORY_FIRST, HISTORY_FIRST + history)
            web_hosts = WEB_HOSTS * (cells + 1)  # + the warm-up round's bookings
            web = [await add_host(engine, "web") for _ in range(web_hosts)]
            raw = await add_host(engine, "raw")
            bare, lean = await add_host(engine, "bare"), await add_host(engine, "lean")
            tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            tomorrow += timedelta(days=1)
            web_bookings, raw_slots = bookings_of(web, tomorrow), slots(tomorrow)
            bare_bookings, lean_bookings = (
                bookings_of([bare], tomorrow),
                bookings_of([lean], tomorrow),
            )
            lean_emails = await booking_email_rows(url, lean, tmp)
            floors = bare_server(url, bare, lean, lean_emails, tmp)
            bare_floor = bare_http.enter_context(floors)
            bare_base = bare_floor.base_url
            warm = True
            for mode in dispatch:
                log = tmp / f"serve-{kind}-{mode}.log"
                mail_dir = tmp / f"mail-{kind}-{mode}"
                with deployment(url, log, mode, mail_dir, smtp_url) as (server, rss, pids):
                    for clients in concurrency:
                        # The database's first cell: a round first, not counted. The first
                        # measured cell of a run cost PostgreSQL 1.9-2.6 ms a booking where the
                        # same deployment measured later cost 1.2-1.4 (round 13), whichever
                        # deployment came first.
                        rounds = range(-1 if warm else 0, cells)
                        warm = False
                        for round_ in rounds:
                            if left := await drain(engine, mode):
                                print(f"# {kind} {mode}: {left} emails still unsent after "
                                      f"{DRAIN_TIMEOUT:g} s", file=sys.stderr)  # fmt: skip
                            await gather_statistics(engine)
                            cpu: dict[str, float] = {}
                            counted: list[int] = []
                            rate, statuses = await http_rate(
                                server.base_url, web_bookings, clients, duration, (pids, cpu),
                                hosts=web_hosts, counted=counted,
                            )  # fmt: skip
                            if round_ < 0:
                                print(
                                    f"# {kind} {mode} {clients} client(s): warm-up round, not "
                                    f"counted: http {rate:.1f}/s {dict(statuses)}, CPU ms a "
                                    f"booking {cpu}",
                                    file=sys.stderr,
                                )
                                continue
                            unsent = await unsent_emails(engine)
                            sent_cpu = await sending_cpu(engine, mode, pids, cpu, counted[-1])
                            floor = await floor_rate(engine, raw, raw_slots, clients, duration)
                            bare_rate, bare_statuses = await http_rate(
                                bare_base, bare_bookings, clients, duration
                            )
                            # The lean floor's emails are sent by this deployment's dispatcher, if
                            # it sends any.
                            lean_path = "/lean" if mode == "noemail" else "/lean-sending"
                            await drain(engine, mode)
                            lean_cpu: dict[str, float] = {}
                            lean_pids = {"lean": bare_floor.process.pid, **pids}
                            lean_rate, lean_statuses = await http_rate(
                                bare_base + lean_path, lean_bookings, clients, duration,
                                (lean_pids, lean_cpu), counted=counted,
                            )  # fmt: skip
                            lean_unsent = await unsent_emails(engine)
                            lean_sent_cpu = await sending_cpu(
                                engine, mode, lean_pids, lean_cpu, counted[-1]
                            )
                            answers = (("HTTP", bare_statuses), ("lean", lean_statuses))
                            for name, answered in answers:
                                if set(answered) != {200}:
                                    raise SystemExit(f"the {name} floor answered {dict(answered)}")
                            results.append(
                                {"db": kind, "dispatch": mode, "clients": clients, "http": rate,
                                 "floor": floor, "bare": bare_rate, "lean": lean_rate,
                                 "statuses": dict(statuses), "unsent": unsent,
                                 "lean_unsent": lean_unsent, "rss": rss, "cpu": cpu,
                                 "lean_cpu": lean_cpu, "round": round_,
                                 "sent_cpu": sent_cpu, "lean_sent_cpu": lean_sent_cpu}
                            )  # fmt: skip
                            print(
                                f"# {kind} {mode} {clients} client(s): http {rate:.1f}/s "
                                f"{dict(statuses)}, floor {floor:.1f}/s, HTTP floor "
                                f"{bare_rate:.1f}/s, lean floor {lean_rate:.1f}/s, unsent "
                                f"{unsent} (lean {lean_unsent})",
                                file=sys.stderr,
                            )
                if (error := await failed_email(engine)) is not None:
                    raise SystemExit(f"# {kind} {mode}: an email failed: {error}")
                text_log = log.read_text(errors="replace")
                if "Traceback" in text_log:
                    print(
                        f"# {kind} {mode}: the server logged a traceback:\n{text_log[-3000:]}",
                        file=sys.stderr,
                    )
        finally:
            bare_http.close()
            await engine.dispose()
    return results


# --- (b) listing --------------------------------------------------------------------------------


async def bulk_bookings(engine: AsyncEngine, host: Host, first: int, last: int) -> None:
    """Bookings number first..last-1 of ``host``: 15 minutes every 30, one attendee each."""
    chunk = 5000
    for low in range(first, last, chunk):
        numbers = range(low, min(low + chunk, last))
        rows = []
        for n in numbers:
            start = LIST_BASE + timedelta(minutes=30 * n)
            rows.append({**host_booking_row(host, start, start + timedelta(minutes=15)), "id": n})
        async with engine.begin() as conn:
            await conn.execute(insert(Booking), rows)
            await conn.execute(
                insert(Attendee), [attendee_row(n, f"guest{n}@example.com") for n in numbers]
            )
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("SELECT setval('bookings_id_seq', :n)"), {"n": last})
        # What autovacuum would have done by now on a live database: statistics, and the
        # visibility map that lets index-only scans skip the table.
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE bookings"))
            await conn.execute(text("VACUUM ANALYZE attendees"))


async def list_latency(
    client: httpx.AsyncClient, key: str, total: int, repeat: int, rng: random.Random
) -> list[float]:
    pages = max(1, total // 100)
    samples: list[float] = []
    for i in range(repeat + 5):
        page = rng.randint(1, pages)
        began = time.perf_counter()
        response = await client.get(
            "/v1/bookings", params={"apiKey": key, "take": "100", "page": str(page)}
        )
        elapsed = time.perf_counter() - began
        assert response.status_code == 200, response.text[:300]
        assert len(response.json()["bookings"]) == 100
        if i >= 5:  # warm-up
            samples.append(elapsed)
    return samples


async def explain_list(app: Any, key: str, page: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the statements one list request runs, as it runs them."""
    engine: AsyncEngine = app.state.engine
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "bookings" in statement:
            seen.append((statement, params))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await client.get(
                "/v1/bookings", params={"apiKey": key, "take": "100", "page": str(page)}
            )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    lines = []
    async with engine.connect() as conn:
        for statement, params in seen:
            if "api_keys" in statement:
                continue
            plan = await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params)
            lines.append(f"-- {' '.join(statement.split())[:160]} ... params={params!r}"[:300])
            lines.extend(row[0] for row in plan)
    return "\n".join(lines)


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.95)] * 1000


async def bench_listing(
    kind: str, pg_url: str | None, tmp: Path, sizes: list[int], repeat: int
) -> dict[str, Any]:
    result: dict[str, Any] = {"db": kind, "sizes": {}}
    async with fresh_database(kind, pg_url, tmp) as url:
        app = create_app(
            Settings(database_url=url, rate_limit="0", encryption_key_file=tmp / "bookable.key")
        )
        async with app.router.lifespan_context(app):
            engine: AsyncEngine = app.state.engine
            host = await add_host(engine, "lister")
            rng = random.Random(42)
            have = 1
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                for size in sizes:
                    began = time.perf_counter()
                    await bulk_bookings(engine, host, have, size + 1)
                    have = size + 1
                    print(
                        f"# {kind}: {size} bookings in {time.perf_counter() - began:.1f} s",
                        file=sys.stderr,
                    )
                    samples = await list_latency(client, host.key, size, repeat, rng)
                    result["sizes"][size] = summary(samples)
            first, last = sizes[0], sizes[-1]
            ratio = result["sizes"][last][0] / result["sizes"][first][0]
            result["ratio"] = ratio
            result["rss"] = own_rss()
            if kind == "postgresql" and ratio > LIST_AIM:
                result["explain"] = await explain_list(app, host.key, last // 100)
    return result


# --- statements of one booking ------------------------------------------------------------------


async def post_booking(
    client: httpx.AsyncClient, host: Host, free: Iterator[tuple[datetime, datetime]]
) -> None:
    """POST /v1/bookings (seed body form) for the next free slot, in process; must be a 200."""
    start, end = next(free)
    response = await client.post(
        "/v1/bookings",
        params={"apiKey": host.key},
        json={
            "eventTypeId": host.event_type_id, "startTime": _iso(start), "endTime": _iso(end),
            "name": "Guest", "email": "guest@example.com", "timeZone": "UTC",
        },
    )  # fmt: skip
    assert response.status_code == 200, response.text


def in_process_settings(url: str, tmp: Path) -> Settings:
    """The app of the in-process measures: no rate limit; no dispatchers in the app (their
    polls would be counted too; --only emails runs its own); the hourly email limit raised so
    every booking's emails are written PENDING; the encryption key file in the temporary
    folder, never the checkout's."""
    return Settings(
        database_url=url, rate_limit="0", webhook_dispatcher="off",
        email_max_per_host_per_hour=100_000_000, encryption_key_file=tmp / "bookable.key",
    )  # fmt: skip


async def booking_statements(kind: str, pg_url: str | None, tmp: Path) -> list[str]:
    """The SQL statements (first line of each) one POST /v1/bookings runs, in process, once a
    first booking has warmed the key cache: the round trips a booking costs."""
    async with fresh_database(kind, pg_url, tmp) as url:
        app = create_app(in_process_settings(url, tmp))
        async with app.router.lifespan_context(app):
            engine: AsyncEngine = app.state.engine
            host = await add_host(engine, "counted")
            tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            free = slots(tomorrow + timedelta(days=1))
            seen: list[str] = []

            def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                seen.append(" ".join(statement.split())[:150])

            def commit(_conn: Any) -> None:
                seen.append("COMMIT")

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

                async def book() -> None:
                    await post_booking(client, host, free)

                await book()  # warm-up: the key cache
                event.listen(engine.sync_engine, "before_cursor_execute", record)
                event.listen(engine.sync_engine, "commit", commit)
                try:
                    await book()
                finally:
                    event.remove(engine.sync_engine, "before_cursor_execute", record)
                    event.remove(engine.sync_engine, "commit", commit)
    return seen


async def booking_cpu(
    kind: str, pg_url: str | None, tmp: Path, count: int, profile: Path | None
) -> dict[str, float]:
    """CPU ms of this process per POST /v1/bookings, in process (httpx.ASGITransport, key cache
    warm, dispatchers off, the hourly email limit raised so every email is written PENDING):
    what a booking costs the server, without the client's socket or other processes' noise.
    ``profile``: a cProfile of the measured bookings is written there."""
    async with fresh_database(kind, pg_url, tmp) as url:
        app = create_app(in_process_settings(url, tmp))
        async with app.router.lifespan_context(app):
            host = await add_host(app.state.engine, "cpu")
            tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            free = slots(tomorrow + timedelta(days=1))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

                async def book() -> None:
                    await post_booking(client, host, free)

                for _ in range(max(count // 5, 20)):  # warm-up: key cache, statement caches
                    await book()
                profiler = None
                if profile is not None:
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(count):
                    await book()
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(str(profile))
    return {"cpu_ms": cpu * 1000 / count, "wall_ms": wall * 1000 / count}


async def booking_cpu_lane(
    kind: str, pg_url: str | None, tmp: Path, count: int, rounds: int
) -> list[tuple[float, float]]:
    """CPU ms of this process per POST /v1/bookings answered by the fast lane and by FastAPI's
    route, in process, interleaved: two apps (``create_app(fast_lane=...)``) on one database,
    ``count`` bookings each per round, the lane's batch then FastAPI's, ``rounds`` times (as
    `booking_cpu`: key caches warm, dispatchers off). One (lane, FastAPI) pair per round."""
    async with fresh_database(kind, pg_url, tmp) as url, contextlib.AsyncExitStack() as stack:
        clients = []
        for fast_lane in (True, False):
            app = create_app(in_process_settings(url, tmp), fast_lane=fast_lane)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://bench")
                )
            )
        host = await add_host(app.state.engine, "lane")
        tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        free = slots(tomorrow + timedelta(days=1))
        for client in clients:  # warm-up: key caches, statement caches
            for _ in range(max(count // 5, 20)):
                await post_booking(client, host, free)
        pairs = []
        for _ in range(rounds):
            costs = []
            for client in clients:
                cpu = time.process_time()
                for _ in range(count):
                    await post_booking(client, host, free)
                costs.append((time.process_time() - cpu) * 1000 / count)
            pairs.append((costs[0], costs[1]))
    return pairs


# --- the email dispatcher's work per email -----------------------------------------------------


@contextlib.contextmanager
def smtp_sink() -> Iterator[str]:
    """A real SMTP server (aiosmtpd, accepting and dropping every message) on a free loopback
    port, in a process of its own so that its CPU is not counted as the dispatcher's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
         "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("aiosmtpd did not start")
        yield f"smtp://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


async def email_cpu(
    kind: str, pg_url: str | None, tmp: Path, count: int, rounds: int, profile: Path | None
) -> list[dict[str, Any]]:
    """CPU ms of this process per booking email for the email dispatcher's whole work on it:
    claim, render from the stored facts, send, record (the rendered message stored). The rows
    are those ``count`` bookings made in process (two emails each, host and attendee); each
    round puts them back to their first attempt (PENDING, no message) and runs the dispatcher
    (`run_once`, batches of 20, as its concurrency) until none is left, once per transport: a
    real SMTP server (aiosmtpd in another process) and the .eml folder. Shares: rendering
    (`render`, the CPU of its thread), the claim and the record transactions; "send" is the
    rest (the transport and its threads, the event loop). ``profile``: a cProfile of the SMTP
    rounds (it inflates what it profiles: shares only)."""
    from bookable.core.dispatch import DispatcherConfig
    from bookable.notifications.dispatcher import EmailDispatcher, email_dispatcher_config

    class Timed(EmailDispatcher):
        """The dispatcher, its parts timed (CPU of this process)."""

        parts: Counter[str]

        def render(self, job: Any) -> str:
            # This thread's CPU alone: the .eml transport's writer threads run meanwhile.
            started = time.thread_time()
            try:
                return super().render(job)
            finally:
                self.parts["render"] += time.thread_time() - started

        async def exchange(self, outcomes: list[Any], limit: int) -> list[Any]:
            started = time.process_time()
            try:
                return await super().exchange(outcomes, limit)
            finally:
                self.parts["store" if outcomes else "claim"] += time.process_time() - started

    results: list[dict[str, Any]] = []
    async with fresh_database(kind, pg_url, tmp) as url:
        settings = in_process_settings(url, tmp)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            engine: AsyncEngine = app.state.engine
            host = await add_host(engine, "mail")
            tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            free = slots(tomorrow + timedelta(days=1))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                for _ in range(count):
                    await post_booking(client, host, free)
        sessions = session_factory(engine := create_engine(url))
        rows = OutboundEmail.__table__
        try:
            async with engine.connect() as conn:
                emails = int(
                    (await conn.execute(select(func.count()).select_from(rows))).scalar_one()
                )
            with smtp_sink() as smtp_url:
                targets = {
                    "smtp": settings.model_copy(update={"smtp_url": smtp_url}),
                    "eml": settings.model_copy(update={"email_dir": tmp / f"eml-{kind}"}),
                }
                profiler = None
                for round_ in range(rounds + 1):  # round 0 warms up (templates, connections)
                    for name, target in targets.items():
                        async with engine.begin() as conn:
                            await conn.execute(
                                rows.update().values(
                                    status=EmailStatus.PENDING.value, message=None, attempts=0,
                                    locked_until=None, sent_at=None, last_error=None,
                                    next_attempt_at=datetime.now(UTC) - timedelta(minutes=1),
                                )
                            )  # fmt: skip
                        config = email_dispatcher_config(target)
                        config = DispatcherConfig(
                            timeout=config.timeout, max_attempts=config.max_attempts,
                            retry_delays=config.retry_delays, lease=config.lease,
                            batch_size=20, concurrency=20,
                        )  # fmt: skip
                        dispatcher = Timed(sessions, target, config=config)
                        dispatcher.parts = Counter()
                        if profile is not None and round_ > 0 and name == "smtp":
                            import cProfile

                            profiler = profiler or cProfile.Profile()
                            profiler.enable()
                        cpu, wall = time.process_time(), time.perf_counter()
                        done = 0
                        while handled := await dispatcher.run_once():
                            done += handled
                        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                        if profiler is not None:
                            profiler.disable()
                        await dispatcher.aclose()
                        async with engine.connect() as conn:
                            sent = (
                                await conn.execute(
                                    select(func.count()).select_from(rows)
                                    .where(rows.c.status == EmailStatus.SENT.value)
                                )
                            ).scalar_one()  # fmt: skip
                        assert done == emails == sent, (done, emails, sent)
                        if round_ == 0:
                            continue
                        parts = {k: v * 1000 / emails for k, v in dispatcher.parts.items()}
                        total = cpu * 1000 / emails
                        results.append(
                            {
                                "db": kind, "transport": name, "round": round_,
                                "emails": emails, "cpu_ms": total, "wall_ms": wall * 1000 / emails,
                                "render_ms": parts.get("render", 0.0),
                                "claim_ms": parts.get("claim", 0.0),
                                "store_ms": parts.get("store", 0.0),
                                "send_ms": total - sum(parts.values()),
                            }
                        )  # fmt: skip
                if profiler is not None and profile is not None:
                    profiler.dump_stats(str(profile))
        finally:
            await engine.dispose()
    return results


# --- report -------------------------------------------------------------------------------------


def describe() -> str:
    import sqlalchemy
    import uvicorn

    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, Python {platform.python_version()}, "
        f"uvicorn {uvicorn.__version__}, SQLAlchemy {sqlalchemy.__version__}"
    )


async def postgres_version(url: str) -> str:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(text("SHOW server_version"))).scalar_one())
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per creation run")
    parser.add_argument("--clients", default="1,8", help="concurrent clients for (a)")
    parser.add_argument("--sizes", default="1000,100000", help="bookings for (b), ascending")
    parser.add_argument("--repeat", type=int, default=60, help="list requests per size")
    parser.add_argument(
        "--history", type=int, default=20_000,
        help="(a): bookings of another host written first, as a live database holds (0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--cells", type=int, default=1,
        help="(a): measure each cell this many times in turn (bookable, then its floors); the "
        "median ratio of the rounds is printed too",
    )  # fmt: skip
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--only", choices=["create", "list", "statements", "cpu", "lane", "emails"], default=None
    )
    parser.add_argument(
        "--count", type=int, default=None, help="bookings measured by cpu (150) or emails (100)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="emails: rounds per transport; lane: batches"
    )
    parser.add_argument(
        "--profile", type=Path, help="cpu, emails: write a cProfile per database here"
    )
    parser.add_argument(
        "--dispatch", default="serve,inline,worker",
        help="(a)'s deployments: serve (as shipped: its dispatcher process sends the emails, "
        "on two CPUs or more), inline (BOOKABLE_WEBHOOK_DISPATCHER=inline: serve's own "
        "process does), worker (a bookable worker does), noemail (BOOKABLE_EMAILS=off: the "
        "request path alone)",
    )  # fmt: skip
    parser.add_argument(
        "--mail", choices=["eml", "smtp"], default="eml",
        help="(a)'s emails: .eml files (as before), or a real SMTP server (aiosmtpd, another "
        "process, dropping them)",
    )  # fmt: skip
    args = parser.parse_args()
    dispatch = [d for d in args.dispatch.split(",") if d]
    if not set(dispatch) <= {"serve", "inline", "worker", "noemail"}:
        parser.error("--dispatch: serve, inline, worker and/or noemail")
    concurrency = [int(c) for c in args.clients.split(",")]
    sizes = sorted(int(s) for s in args.sizes.split(","))
    pg_url = None
    if not args.no_postgres:
        pg_url = bench_database_url()
    kinds = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if pg_url else [])
    header = describe()
    if pg_url:
        header += f", PostgreSQL {await postgres_version(pg_url)}"
    else:
        header += "; PostgreSQL skipped (set BOOKABLE_BENCH_DATABASE_URL)"
    print(f"# {header}")

    creation: list[dict[str, Any]] = []
    listing: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for kind in kinds:
            if args.only == "statements":
                statements = await booking_statements(kind, pg_url, tmp)
                print(f"\n# {kind}: {len(statements)} statements for one POST /v1/bookings")
                print("\n".join(statements))
            if args.only == "cpu":
                profile = args.profile.with_suffix(f".{kind}.prof") if args.profile else None
                count = args.count or 150
                cost = await booking_cpu(kind, pg_url, tmp, count, profile)
                print(
                    f"# {kind}: {cost['cpu_ms']:.2f} ms CPU, {cost['wall_ms']:.2f} ms wall per"
                    f" POST /v1/bookings (in process, {count} bookings)"
                )
            if args.only == "lane":
                count = args.count or 50
                for lane, plain in await booking_cpu_lane(kind, pg_url, tmp, count, args.rounds):
                    print(
                        f"# {kind}: fast lane {lane:.2f}, FastAPI {plain:.2f} ms CPU per POST"
                        f" /v1/bookings ({count} each, in process; lane/FastAPI {lane / plain:.2f})"
                    )
            if args.only == "emails":
                profile = args.profile.with_suffix(f".{kind}.prof") if args.profile else None
                count = args.count or 100
                for r in await email_cpu(kind, pg_url, tmp, count, args.rounds, profile):
                    print(
                        f"# {kind:<10} {r['transport']:<4} round {r['round']}: "
                        f"{r['cpu_ms']:.2f} ms CPU per email ({r['wall_ms']:.2f} ms wall): "
                        f"render {r['render_ms']:.2f} ({r['render_ms'] / r['cpu_ms']:.0%}), "
                        f"claim {r['claim_ms']:.2f}, store {r['store_ms']:.2f}, "
                        f"send {r['send_ms']:.2f}  [{r['emails']} emails]"
                    )
            if args.only in (None, "create"):
                with contextlib.ExitStack() as sink:
                    smtp_url = sink.enter_context(smtp_sink()) if args.mail == "smtp" else None
                    creation += await bench_creation(
                        kind, pg_url, tmp, concurrency, args.duration, dispatch, smtp_url,
                        args.history, args.cells,
                    )  # fmt: skip
            if args.only in (None, "list"):
                listing.append(await bench_listing(kind, pg_url, tmp, sizes, args.repeat))

    if creation:
        print(f"\n# (a) bookings created per second, {args.duration:g} s per run")
        print(
            f"{'db':<11}{'dispatch':>9}{'clients':>8}{'HTTP/s':>10}{'floor/s':>10}"
            f"{'HTTP/floor':>12}{'bare/s':>9}{'bare/floor':>12}{'lean/s':>9}{'lean/floor':>12}"
            f"{'unsent':>8}{'lean unsent':>12}  statuses"
        )
        for r in creation:
            print(
                f"{r['db']:<11}{r['dispatch']:>9}{r['clients']:>8}{r['http']:>10.1f}"
                f"{r['floor']:>10.1f}{r['http'] / r['floor']:>12.3f}{r['bare']:>9.1f}"
                f"{r['bare'] / r['floor']:>12.3f}{r['lean']:>9.1f}{r['lean'] / r['floor']:>12.3f}"
                f"{r['unsent']:>8}{r['lean_unsent']:>12}  {r['statuses']}"
            )
        if args.cells > 1:
            print(f"\n# (a) the median of each cell's {args.cells} rounds (lowest-highest)")
            print(f"{'db':<11}{'dispatch':>9}{'clients':>8}{'HTTP/floor':>24}{'lean/floor':>24}")
            cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
            for r in creation:
                cells.setdefault((r["db"], r["dispatch"], r["clients"]), []).append(r)
            for (db, mode, clients), rounds in cells.items():
                shown = []
                for key in ("http", "lean"):
                    ratios = [r[key] / r["floor"] for r in rounds]
                    shown.append(
                        f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
                    )
                print(f"{db:<11}{mode:>9}{clients:>8}{shown[0]:>24}{shown[1]:>24}")
        print("# bare: the HTTP floor, the same two inserts behind a bare Starlette route")
        print(
            "# lean: the least a correct booking does (key, event type, lock, overlap check,"
            " booking, attendee, two email rows, answer) behind the same bare route"
        )
        print(
            "# unsent: emails still pending when the run ended (the dispatcher's backlog); lean"
            " unsent: the same after the lean floor's run (its emails are sent by the"
            " deployment's dispatcher, but for noemail's)"
        )
        print(
            "\n# CPU ms per booking over each timed run, by process (serve, worker: bookable's;"
            " serve's counts its dispatcher process, also shown alone as child;"
            " lean: the lean floor's app; db: the database server's processes, PostgreSQL"
            " only; client: the bench's clients)"
        )
        for r in creation:
            for label, cpu in (("bookable", r["cpu"]), ("lean", r["lean_cpu"])):
                shares = "  ".join(
                    f"{name} {ms:.2f}"
                    for name, ms in cpu.items()
                    if not (name == "db" and r["db"] == "sqlite")
                )
                print(f"# {r['db']:<11}{r['dispatch']:>8}{r['clients']:>3} {label:<9} {shares}")
        cores = len(os.sched_getaffinity(0))
        print(
            f"\n# CPU ms a booking with its emails sent (the run's, and sending what it left"
            f" pending), and the most that allows on {cores} CPUs, against the run's raw floor"
        )
        print(f"{'db':<11}{'dispatch':>9}{'clients':>8}{'bookable':>10}{'most/s':>8}"
              f"{'/floor':>8}{'lean':>8}{'most/s':>8}{'/floor':>8}")  # fmt: skip
        for r in creation:
            most, lean_most = (cores * 1000 / r[key] for key in ("sent_cpu", "lean_sent_cpu"))
            print(
                f"{r['db']:<11}{r['dispatch']:>9}{r['clients']:>8}{r['sent_cpu']:>10.2f}"
                f"{most:>8.0f}{most / r['floor']:>8.3f}{r['lean_sent_cpu']:>8.2f}"
                f"{lean_most:>8.0f}{lean_most / r['floor']:>8.3f}"
            )
        # One deployment per database and mode serves every client count: RSS after all.
        for r in {(r["db"], r["dispatch"]): r for r in creation}.values():
            rss = ", ".join(f"{name} {format_rss(size)}" for name, size in r["rss"].items())
            print(f"# RSS after the {r['db']} {r['dispatch']} runs: {rss}")
    if listing:
        print(f"\n# (b) GET /v1/bookings?take=100&page=<random>, {args.repeat} requests, ms")
        cells = "".join(f"{f'{n:,} median / p95':>24}" for n in sizes)
        print(f"{'db':<11}{cells}{f'{sizes[-1]:,}/{sizes[0]:,}':>16}")
        for r in listing:
            cells = "".join(f"{m:>15.2f} / {p:>6.2f}" for m, p in r["sizes"].values())
            flag = "" if r["ratio"] <= LIST_AIM else f"  (above the {LIST_AIM}x aim)"
            print(f"{r['db']:<11}{cells}{r['ratio']:>16.2f}{flag}")
        # (b) runs the app in this process: the RSS of this process once the listing ran.
        print(
            "# RSS of this process (the app in process) after (b): "
            + ", ".join(f"{r['db']} {format_rss(r['rss'])}" for r in listing)
        )
        for r in listing:
            if "explain" in r:
                print(f"\n# EXPLAIN of the list request's queries ({r['db']}, last page):")
                print(r["explain"])


if __name__ == "__main__":
    asyncio.run(main())
