"""Calendar busy times in GET /slots: what reading a host's CalDAV calendar adds to a request.

A real Radicale, started by this script in a temporary folder (its request log counted), holds one
calendar of 500 events for the host: single events spread over eight months and weekly series
(``--events``, ``--weekly``). The host (Mon-Fri 09:00-17:00 Europe/Berlin, a 30-minute event type)
connects the account and selects the calendar over the API; a second host with the same schedule
and event type has no calendar. GET /v1/slots asks for 31 days, through the whole app in process
(httpx ASGI transport, auth cache warm, no rate limit), on SQLite and, when
BOOKABLE_BENCH_DATABASE_URL or BOOKABLE_TEST_DATABASE_URL is set, PostgreSQL (its tables are
emptied). Measured, median and p95 over ``--repeat`` requests:

- no calendar: the host without a calendar (the floor), interleaved with every other row;
- cold: the busy cache emptied before each request (a PROPFIND for the ctag and a REPORT);
- warm: cached and fresh (``calendar_cache_seconds`` = 3600): Radicale is not asked at all;
- revalidated: ``calendar_cache_seconds`` = 0, ctag unchanged: one PROPFIND per request;
- booking: POST /v1/bookings on a free slot of each host (a booking always revalidates).

The script checks that the answers exclude the calendar's events (a known single event and a
known weekly occurrence are missing for the host with the calendar, offered to the other one) and
counts Radicale's requests per row (it stops when a row sent other requests than its name
says). Aim: warm / no calendar <= 1.3.

Calendar writes (issue 12, ``--only writes`` runs this part alone): a real `bookable serve` per
database, one host whose destination calendar (set over the API: /v1/credentials, then
/v1/destination-calendars) is a new calendar in the same Radicale, and a BOOKING_CREATED webhook
to a receiver in this process. ``--writes 1x30,8x6``: 1 booker making 30 bookings, then 8
concurrent bookers making 6 each; a booker books again once its booking's event is readable in
Radicale (a calendar-multiget REPORT every ``--poll-interval`` while any event is awaited) and
its webhook has arrived. Printed: median and p90 of answer -> event readable and answer ->
webhook, their ratio, Radicale's own time for the dispatcher's PUTs (its log), and the floor:
the same .ics PUT straight to Radicale by this process (one at a time, and 8 at once).

Run: .venv/bin/python bench/calendars.py [--repeat 30] [--no-postgres] [--only slots|writes]
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
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Awaitable, Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from datetime import time as wall_time  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote, unquote, urlsplit  # noqa: E402
from xml.sax.saxutils import escape  # noqa: E402

import httpx  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from lxml import etree  # noqa: E402
from sqlalchemy import text  # noqa: E402

import _server  # noqa: E402
from _server import (  # noqa: E402
    BOOKABLE,
    Rss,
    Running,
    bookable_env,
    format_rss,
    free_port,
    own_rss,
)
from bookable.api_keys.service import issue_key  # noqa: E402
from bookable.app import create_app  # noqa: E402
from bookable.migrations.runner import upgrade  # noqa: E402
from bookable.models import Availability, Base, EventType, Schedule, User  # noqa: E402
from bookable.settings import Settings  # noqa: E402

ZONE = "Europe/Berlin"
WINDOW_FIRST_DAY = "2027-03-01"
WINDOW_LAST_DAY = "2027-03-31"
NOW = datetime(2027, 2, 1, tzinfo=UTC)
# Events the answers are checked against: a single event on Wednesday 10 March 10:00-10:30
# Berlin, and a weekly series on Thursdays 14:00-14:30 Berlin (11 March is one of them).
KNOWN_SINGLE = ("bench-known-single", datetime(2027, 3, 10, 9, 0, tzinfo=UTC))
KNOWN_WEEKLY = ("bench-known-weekly", datetime(2027, 1, 7, 13, 0, tzinfo=UTC))
KNOWN_SLOTS = ("2027-03-10T10:00:00+01:00", "2027-03-11T14:00:00+01:00")
WARMUP = 3
ENCRYPTION_KEY = Fernet.generate_key().decode()


# --- Radicale ----------------------------------------------------------------------------------


@dataclass
class Radicale:
    """A Radicale process whose log (level info: one line per request) is counted."""

    root: Path
    port: int = field(default_factory=free_port)
    username: str = "bench"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def log(self) -> Path:
        return self.root / "radicale.log"

    def start(self) -> None:
        (self.root / "collections").mkdir(parents=True)
        (self.root / "users").write_text(f"{self.username}:{self.password}\n")
        config = self.root / "config"
        config.write_text(
            f"""\
[server]
hosts = 127.0.0.1:{self.port}
[auth]
type = htpasswd
htpasswd_filename = {self.root / "users"}
htpasswd_encryption = plain
delay = 0
[rights]
type = owner_only
[storage]
filesystem_folder = {self.root / "collections"}
[logging]
level = info
"""
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "radicale", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Radicale exited: {self.log.read_text()[-2000:]}")
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("Radicale did not start within 20 seconds")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def requests(self) -> Counter[str]:
        """Requests Radicale logged so far, by method."""
        found = re.findall(r"\b([A-Z]+) request for ", self.log.read_text(errors="replace"))
        return Counter(found)

    def durations(self, method: str) -> list[float]:
        """Seconds Radicale logged for each ``method`` request so far (ms resolution)."""
        pattern = rf"\b{method} response status for .*? in ([0-9.]+) seconds"
        return [float(s) for s in re.findall(pattern, self.log.read_text(errors="replace"))]


def vevent(uid: str, start: datetime, minutes: int, *extra: str) -> str:
    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y%m%dT%H%M%SZ")

    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20270101T000000Z",
        f"DTSTART:{stamp(start)}",
        f"DTEND:{stamp(start + timedelta(minutes=minutes))}",
        "SUMMARY:Busy",
        *extra,
        "END:VEVENT",
    ]
    return "\r\n".join(lines) + "\r\n"


def calendar_text(singles: int, weekly: int) -> str:
    """``singles`` single events over November 2026 - June 2027 and ``weekly`` weekly series of
    ten weeks starting between December and April, 30 or 60 minutes, 07:00-17:00 UTC; the two
    known events are among them."""
    draw = random.Random(20270301)
    events = [vevent(KNOWN_SINGLE[0], KNOWN_SINGLE[1], 30)]
    events.append(vevent(KNOWN_WEEKLY[0], KNOWN_WEEKLY[1], 30, "RRULE:FREQ=WEEKLY;COUNT=20"))
    first = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(singles - 1):
        day = first + timedelta(days=draw.randrange(242))
        start = day.replace(hour=draw.randrange(7, 17), minute=draw.choice((0, 30)))
        events.append(vevent(f"bench-single-{i}", start, draw.choice((30, 60))))
    series_first = datetime(2026, 12, 1, tzinfo=UTC)
    for i in range(weekly - 1):
        day = series_first + timedelta(days=draw.randrange(150))
        start = day.replace(hour=draw.randrange(7, 17), minute=draw.choice((0, 30)))
        exdate = (start + timedelta(weeks=3)).strftime("%Y%m%dT%H%M%SZ")
        events.append(
            vevent(f"bench-weekly-{i}", start, 30, "RRULE:FREQ=WEEKLY;COUNT=10", f"EXDATE:{exdate}")
        )
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bookable bench//EN\r\n"
        + "".join(events)
        + "END:VCALENDAR\r\n"
    )


def fill_calendar(radicale: Radicale, singles: int, weekly: int) -> tuple[str, float]:
    """One PUT of the whole calendar on a new collection (Radicale splits it into one object per
    UID): the calendar's URL and the seconds it took."""
    url = f"{radicale.url}{radicale.username}/work/"
    auth = (radicale.username, radicale.password)
    began = time.perf_counter()
    with httpx.Client(auth=auth, timeout=120) as client:
        client.request("PROPFIND", radicale.url, headers={"Depth": "0"})  # creates the home
        response = client.put(
            url,
            content=calendar_text(singles, weekly).encode(),
            headers={"Content-Type": "text/calendar; charset=utf-8"},
        )
        response.raise_for_status()
        listing = client.request(
            "PROPFIND",
            url,
            content=b'<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>',
            headers={"Depth": "1"},
        )
        listing.raise_for_status()
    # The collection itself is one response; every event object is another.
    objects = len(etree.fromstring(listing.content).findall("{DAV:}response")) - 1
    if objects != singles + weekly:
        raise RuntimeError(f"Radicale holds {objects} objects, {singles + weekly} were put")
    return url, time.perf_counter() - began


# --- the app -----------------------------------------------------------------------------------


@dataclass
class Host:
    user_id: int
    key: str
    event_type_id: int

    @property
    def params(self) -> dict[str, str]:
        return {"apiKey": self.key}


async def seed_host(app: FastAPI, name: str) -> Host:
    async with app.state.sessions() as session, session.begin():
        user = User(email=f"{name}@example.com", username=name, time_zone=ZONE)
        session.add(user)
        await session.flush()
        schedule = Schedule(user_id=user.id, name="Week", time_zone=ZONE)
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
        return Host(user.id, clear, event_type.id)


async def select_calendar(client: httpx.AsyncClient, host: Host, radicale: Radicale) -> None:
    """Connect the Radicale account and select its calendar, over the API as a user would."""
    key = {"url": radicale.url, "username": radicale.username, "password": radicale.password}
    response = await client.post(
        "/v1/credentials", params=host.params, json={"appId": "caldav-calendar", "key": key}
    )
    assert response.status_code == 200, response.text
    credential = response.json()["credential"]
    listed = await client.get("/v1/connected-calendars", params=host.params)
    assert listed.status_code == 200, listed.text
    (calendar,) = [c for entry in listed.json() for c in entry["calendars"]]
    response = await client.post(
        "/v1/selected-calendars",
        params=host.params,
        json={
            "integration": credential["type"],
            "externalId": calendar["externalId"],
            "credentialId": credential["id"],
        },
    )
    assert response.status_code == 200, response.text


async def slots(client: httpx.AsyncClient, host: Host) -> list[str]:
    response = await client.get(
        "/v1/slots",
        params={
            **host.params,
            "eventTypeId": str(host.event_type_id),
            "startTime": WINDOW_FIRST_DAY,
            "endTime": WINDOW_LAST_DAY,
            "timeZone": ZONE,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "calendarErrors" not in body, body["calendarErrors"]
    return [s["time"] for day in body["slots"].values() for s in day]


async def book(client: httpx.AsyncClient, host: Host, start: str) -> None:
    response = await client.post(
        "/v1/bookings",
        params=host.params,
        json={
            "eventTypeId": host.event_type_id,
            "start": datetime.fromisoformat(start).astimezone(UTC).isoformat(),
            "timeZone": ZONE,
            "language": "en",
            "metadata": {},
            "responses": {"name": "Guest", "email": "guest@example.com"},
        },
    )
    assert response.status_code == 200, response.text


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.median(ordered) * 1000, p95 * 1000


async def timed(call: Awaitable[Any]) -> float:
    began = time.perf_counter()
    await call
    return time.perf_counter() - began


@dataclass
class Row:
    samples: list[float] = field(default_factory=list)
    radicale: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    # The no-calendar requests interleaved with this row's (the floor it is compared with).
    floor: list[float] = field(default_factory=list)


async def interleaved(
    radicale: Radicale,
    repeat: int,
    floor: Callable[[], Awaitable[Any]],
    measured: Callable[[], Awaitable[Any]],
    before_each: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Row, Row]:
    """``repeat`` (after a warm-up) of ``floor`` then ``measured``, alternately; Radicale's
    requests are counted over the measured part only."""
    floor_row, row = Row(), Row()
    for i in range(repeat + WARMUP):
        if i == WARMUP:
            seen = radicale.requests()
        floor_time = await timed(floor())
        if before_each is not None:
            await before_each()
        measured_time = await timed(measured())
        if i >= WARMUP:
            floor_row.samples.append(floor_time)
            row.samples.append(measured_time)
    row.radicale = radicale.requests() - seen
    row.requests = repeat
    row.floor = floor_row.samples
    return floor_row, row


def settings_for(url: str, cache_seconds: float) -> Settings:
    return Settings(
        database_url=url,
        rate_limit="0",
        redis_url=None,
        clock=NOW,
        encryption_key=ENCRYPTION_KEY,
        calendar_cache_seconds=cache_seconds,
    )


async def measure(url: str, label: str, radicale: Radicale, repeat: int) -> dict[str, Any]:
    rows: dict[str, Row] = {}
    floors: list[float] = []
    app = create_app(settings_for(url, cache_seconds=3600))
    async with app.router.lifespan_context(app):
        with_calendar = await seed_host(app, "busy")
        without = await seed_host(app, "free")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await select_calendar(client, with_calendar, radicale)
            free_slots = await slots(client, without)
            busy_slots = await slots(client, with_calendar)
            # The benchmark measures real work: the calendar's events are gone from the answer.
            for known in KNOWN_SLOTS:
                assert known in free_slots and known not in busy_slots, known
            assert len(busy_slots) < len(free_slots)

            async def empty_cache() -> None:
                # An empty cache: the next read is the first (what a new process sees).
                await app.state.calendar_busy.forget_cached()

            _, rows["cold"] = await interleaved(
                radicale,
                repeat,
                lambda: slots(client, without),
                lambda: slots(client, with_calendar),
                empty_cache,
            )
            _, rows["warm"] = await interleaved(
                radicale,
                repeat,
                lambda: slots(client, without),
                lambda: slots(client, with_calendar),
            )
            assert await slots(client, with_calendar) == busy_slots

    # The same database, now with no freshness: every read asks Radicale for the ctag.
    app = create_app(settings_for(url, cache_seconds=0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            _, rows["revalidated"] = await interleaved(
                radicale,
                repeat,
                lambda: slots(client, without),
                lambda: slots(client, with_calendar),
            )
            assert await slots(client, with_calendar) == busy_slots
            # Bookings on slots each host offers, one by one from the start of the window.
            free_times = iter(free_slots)
            busy_times = iter(busy_slots)
            _, rows["booking"] = await interleaved(
                radicale,
                repeat,
                lambda: book(client, without, next(free_times)),
                lambda: book(client, with_calendar, next(busy_times)),
            )
    # The figures mean what their names say: warm never reaches Radicale, a revalidation (and a
    # booking) is one PROPFIND, a first read adds the REPORT.
    once = Counter({"PROPFIND": repeat})
    assert rows["warm"].radicale == Counter(), rows["warm"].radicale
    assert rows["revalidated"].radicale == once, rows["revalidated"].radicale
    assert rows["booking"].radicale == once, rows["booking"].radicale
    assert rows["cold"].radicale == once + Counter({"REPORT": repeat}), rows["cold"].radicale
    for name in ("cold", "warm", "revalidated"):
        floors += rows[name].floor
    return {"db": label, "slots": (len(busy_slots), len(free_slots)), "floor": floors, "rows": rows}


async def radicale_alone(radicale: Radicale, calendar_url: str, repeat: int) -> dict[str, Row]:
    """Radicale's own time for the two requests a read makes (keep-alive client, no app):
    the ctag PROPFIND and the REPORT over the 48 days of blocks a 31-day window needs."""
    read_from = datetime(2027, 2, 17, tzinfo=UTC)  # the 16-day blocks around March 2027
    body = (
        '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
        f'<C:time-range start="{read_from:%Y%m%dT%H%M%SZ}" '
        f'end="{read_from + timedelta(days=48):%Y%m%dT%H%M%SZ}"/>'
        "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"
    ).encode()
    ctag = b'<D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/"><D:prop>'
    ctag += b"<CS:getctag/></D:prop></D:propfind>"
    rows = {"radicale alone: PROPFIND ctag": Row(), "radicale alone: REPORT": Row()}
    auth = (radicale.username, radicale.password)
    async with httpx.AsyncClient(auth=auth) as client:
        for row, (method, content, depth) in zip(
            rows.values(), (("PROPFIND", ctag, "0"), ("REPORT", body, "1")), strict=True
        ):
            for i in range(repeat + WARMUP):
                began = time.perf_counter()
                response = await client.request(
                    method, calendar_url, content=content, headers={"Depth": depth}
                )
                elapsed = time.perf_counter() - began
                assert response.status_code == 207, response.text
                if i >= WARMUP:
                    row.samples.append(elapsed)
    return rows


async def reset_postgres(url: str) -> None:
    from bookable.core.db import create_engine

    engine = create_engine(url)
    async with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


async def run_all(
    radicale: Radicale, calendar_url: str, folder: Path, pg_url: str | None, repeat: int
) -> tuple[list[dict[str, Any]], dict[str, Row]]:
    results = []
    sqlite_url = f"sqlite:///{folder / 'calendars.db'}"
    await asyncio.to_thread(upgrade, sqlite_url)
    results.append(await measure(sqlite_url, "sqlite", radicale, repeat))
    if pg_url:
        await asyncio.to_thread(upgrade, pg_url)
        await reset_postgres(pg_url)
        results.append(await measure(pg_url, "postgresql", radicale, repeat))
        await reset_postgres(pg_url)
    return results, await radicale_alone(radicale, calendar_url, repeat)


def report(results: list[dict[str, Any]], alone: dict[str, Row], repeat: int) -> None:
    print(f"# {repeat} requests per row; ms as median / p95; each row against the no-calendar")
    print("# requests interleaved with it; Radicale: requests it logged, per measured request")
    for r in results:
        busy, free = r["slots"]
        floor = summary(r["floor"])
        print(f"\n## {r['db']}: {busy} slots offered with the calendar, {free} without")
        print(f"{'row':<16}{'median':>9}{'p95':>8}{'floor':>9}{'/ floor':>9}  radicale")
        print(f"{'no calendar':<16}{floor[0]:>9.2f}{floor[1]:>8.1f}{'':>9}{'':>9}  0")
        for name, row in r["rows"].items():
            (median, p95), base = summary(row.samples), summary(row.floor)[0]
            per = ", ".join(
                f"{method} {count / row.requests:g}"
                for method, count in sorted(row.radicale.items())
            )
            print(
                f"{name:<16}{median:>9.2f}{p95:>8.1f}{base:>9.2f}{median / base:>9.2f}  {per or 0}"
            )
    print()
    for name, row in alone.items():
        median, p95 = summary(row.samples)
        print(f"{name}: {median:.2f} / {p95:.1f}")
    for r in results:
        ratios = {
            name: summary(row.samples)[0] / summary(row.floor)[0] for name, row in r["rows"].items()
        }
        print(
            f"{r['db']}: warm/no-calendar {ratios['warm']:.2f} (aim <= 1.3), "
            f"revalidated/no-calendar {ratios['revalidated']:.2f}, "
            f"booking/booking-no-calendar {ratios['booking']:.2f}, "
            f"cold {summary(r['rows']['cold'].samples)[0]:.1f} ms"
        )


# --- calendar writes (issue 12) -----------------------------------------------------------------
#
# A real `bookable serve` process (its own process and event loop, as deployed: the bench's
# pollers and receiver do not share its CPU time slices with the dispatchers), shipped settings
# but BOOKABLE_RATE_LIMIT=0 and loopback calendar hosts allowed. One host, a 5-minute event type
# open 24/7 (UTC), a destination calendar in the bench's Radicale and a BOOKING_CREATED webhook
# to a receiver in this process. Each booker books, then waits until its booking's event is
# readable (`EventWatcher`) and its webhook has arrived, then books again.

WRITE_LENGTH = 5  # minutes
WRITE_WARMUP = 3
ARRIVAL_TIMEOUT = 60.0


@dataclass
class HookReceiver:
    """A minimal HTTP/1.1 server (keep-alive, answers 200 at once) that records when each
    booking's webhook arrived, on this process's perf_counter clock."""

    port: int = 0
    arrivals: dict[str, float] = field(default_factory=dict)
    waiting: dict[str, asyncio.Event] = field(default_factory=dict)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def signal(self, uid: str) -> asyncio.Event:
        return self.waiting.setdefault(uid, asyncio.Event())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                arrived = time.perf_counter()
                uid = json.loads(body)["payload"]["uid"]
                self.arrivals.setdefault(uid, arrived)
                self.signal(uid).set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def arrival(self, uid: str) -> float:
        async with asyncio.timeout(ARRIVAL_TIMEOUT):
            await self.signal(uid).wait()
        return self.arrivals[uid]

    async def close(self) -> None:
        for writer in list(self.writers):
            writer.close()
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def serving(database_url: str, log: Path, label: str) -> Iterator[Running]:
    """`bookable serve` on a free loopback port until the block ends (bench/_server.py); its
    RSS at the end is printed and kept on the `Running`."""
    env = bookable_env(
        database_url,
        BOOKABLE_ENCRYPTION_KEY=ENCRYPTION_KEY,
        BOOKABLE_CALENDAR_ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    with _server.serving(
        [BOOKABLE, "serve"], env, log, label=f"bookable serve ({label})"
    ) as running:
        yield running


async def seed_always_open_host(url: str) -> Host:
    """A host open 24/7 (UTC) with a 5-minute event type and an API key, written directly."""
    from bookable.core.db import create_engine, session_factory

    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            user = User(email="writer@example.com", username="writer", name="Writer")
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
                user_id=user.id, title="Bench", slug="bench-writes", length=WRITE_LENGTH,
                minimum_booking_notice=0, locations=[],
            )  # fmt: skip
            session.add(event_type)
            await session.flush()
            _key, clear = await issue_key(session, user_id=user.id, prefix="cal_")
            return Host(user.id, clear, event_type.id)
    finally:
        await engine.dispose()


def make_calendar(radicale: Radicale, slug: str) -> str:
    """A new, empty calendar collection (MKCALENDAR): its URL."""
    url = f"{radicale.url}{radicale.username}/{slug}/"
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
        f"<D:displayname>{slug}</D:displayname>"
        '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
        "</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
    )
    with httpx.Client(auth=(radicale.username, radicale.password), timeout=30) as client:
        client.request("PROPFIND", radicale.url, headers={"Depth": "0"})  # creates the home
        response = client.request("MKCALENDAR", url, content=body.encode())
        response.raise_for_status()
    return url


async def set_up_destination(
    client: httpx.AsyncClient, host: Host, radicale: Radicale, calendar_url: str, hook_url: str
) -> None:
    """Over the API, as a user would: the CalDAV credential, the destination calendar, the
    BOOKING_CREATED webhook."""
    key = {"url": radicale.url, "username": radicale.username, "password": radicale.password}
    response = await client.post(
        "/v1/credentials", params=host.params, json={"appId": "caldav-calendar", "key": key}
    )
    assert response.status_code == 200, response.text
    credential = response.json()["credential"]
    response = await client.post(
        "/v1/destination-calendars",
        params=host.params,
        json={
            "integration": "caldav_calendar",
            "externalId": calendar_url,
            "credentialId": credential["id"],
        },
    )
    assert response.status_code == 200, response.text
    response = await client.post(
        "/v1/webhooks",
        params=host.params,
        json={"subscriberUrl": hook_url, "eventTriggers": ["BOOKING_CREATED"], "active": True},
    )
    assert response.status_code == 200, response.text


def write_slots(first_day: datetime) -> Iterator[datetime]:
    """Free 5-minute slots, dealt over many days so no day gets crowded."""
    for minute in range(0, 24 * 60 - WRITE_LENGTH, WRITE_LENGTH):
        for day in range(365):
            yield first_day + timedelta(days=day, minutes=minute)


@dataclass
class WriteSample:
    booking_id: int
    request: float  # POST sent -> 200 answer
    readable: float  # answer -> the event's GET answered 200
    webhook: float  # answer -> the webhook arrived
    event_url: str


class EventWatcher:
    """Finds when awaited events become readable: while any is awaited, one REPORT
    (calendar-multiget of their URLs, ETags only) every ``interval``, whatever the number of
    bookers, so the polling load on Radicale is the same for 1 and for 8 (a GET per event and
    booker every few ms kept Radicale's threads busy and slowed the writes measured)."""

    def __init__(self, client: httpx.AsyncClient, calendar_url: str, interval: float) -> None:
        self.client = client
        self.calendar_url = calendar_url
        self.interval = interval
        self.awaited: dict[str, asyncio.Future[float]] = {}
        self.reports = 0
        self._wake = asyncio.Event()

    async def readable(self, event_url: str) -> float:
        """When (perf_counter) a REPORT first found the event at ``event_url``."""
        path = unquote(urlsplit(event_url).path)
        found = self.awaited[path] = asyncio.get_running_loop().create_future()
        self._wake.set()
        async with asyncio.timeout(ARRIVAL_TIMEOUT):
            return await found

    async def run(self) -> None:
        while True:
            if not self.awaited:
                self._wake.clear()
                await self._wake.wait()
            hrefs = "".join(f"<D:href>{escape(quote(path))}</D:href>" for path in self.awaited)
            body = (
                '<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
                f"<D:prop><D:getetag/></D:prop>{hrefs}</C:calendar-multiget>"
            )
            answer = await self.client.request(
                "REPORT", self.calendar_url, content=body.encode(), headers={"Depth": "1"}
            )
            seen = time.perf_counter()
            self.reports += 1
            if answer.status_code != 207:
                raise SystemExit(f"REPORT {self.calendar_url}: {answer.status_code}")
            for response in etree.fromstring(answer.content).iter("{DAV:}response"):
                statuses = response.findall("{DAV:}propstat/{DAV:}status")
                if any(" 200 " in (status.text or "") for status in statuses):
                    path = unquote(urlsplit(response.findtext("{DAV:}href") or "").path)
                    waiter = self.awaited.pop(path, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(seen)
            await asyncio.sleep(self.interval)


async def bookers(
    base: str,
    host: Host,
    calendar_url: str,
    receiver: HookReceiver,
    watcher: EventWatcher,
    starts: Iterator[datetime],
    count: int,
    each: int,
) -> list[WriteSample]:
    """``count`` bookers, ``each`` bookings each; a booker books again only once its last
    booking's event is readable and its webhook has arrived."""
    samples: list[WriteSample] = []

    async def booker(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60, params=host.params) as client:
            for i in range(each):
                start = next(starts)
                sent = time.perf_counter()
                response = await client.post(
                    "/v1/bookings",
                    json={
                        "eventTypeId": host.event_type_id,
                        "start": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                        "timeZone": "UTC",
                        "language": "en",
                        "metadata": {},
                        "responses": {"name": "Guest", "email": f"guest{n}-{i}@example.com"},
                    },
                )
                answered = time.perf_counter()
                if response.status_code != 200:
                    raise SystemExit(f"booking: {response.status_code} {response.text[:300]}")
                booking = response.json()
                event_url = f"{calendar_url}{quote(booking['iCalUID'], safe='')}.ics"
                seen, hooked = await asyncio.gather(
                    watcher.readable(event_url), receiver.arrival(booking["uid"])
                )
                samples.append(
                    WriteSample(
                        booking["id"],
                        answered - sent,
                        seen - answered,
                        hooked - answered,
                        event_url,
                    )
                )

    await asyncio.gather(*(booker(n) for n in range(count)))
    return samples


async def all_written(base: str, host: Host, samples: list[WriteSample]) -> None:
    """Every measured booking has one calendar event, WRITTEN at its first attempt."""
    async with httpx.AsyncClient(base_url=base, timeout=60, params=host.params) as client:
        for sample in samples:
            response = await client.get(f"/v1/bookings/{sample.booking_id}/calendar-events")
            assert response.status_code == 200, response.text
            rows = response.json()["calendarEvents"]
            assert [(r["status"], r["attempts"]) for r in rows] == [("WRITTEN", 1)], rows


@dataclass
class WriteRun:
    db: str
    bookers: int
    samples: list[WriteSample]
    radicale: Counter[str]  # Radicale's requests during the measured bookings, but the REPORTs
    puts: list[float]  # how long Radicale took for each of those PUTs (its log)
    reports: int  # the watcher's REPORTs
    server: Running  # the `bookable serve` of the run (its RSS once it has stopped)


async def measure_writes(
    url: str, label: str, radicale: Radicale, folder: Path, plan: list[tuple[int, int]],
    interval: float,
) -> list[WriteRun]:  # fmt: skip
    """One `bookable serve` on ``url`` and one destination calendar; for each (bookers,
    bookings each) of ``plan``, warm-up bookings by one booker, then the measured ones."""
    receiver = HookReceiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    runs = []
    first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = write_slots(first_day + timedelta(days=1))
    auth = (radicale.username, radicale.password)
    watching: asyncio.Task[None] | None = None
    try:
        host = await seed_always_open_host(url)
        calendar_url = make_calendar(radicale, f"bookings-{label}")
        with serving(url, folder / f"serve-{label}.log", label) as running:
            base = running.base_url
            async with (
                httpx.AsyncClient(base_url=base, timeout=60) as api,
                httpx.AsyncClient(auth=auth, timeout=30) as radicale_client,
            ):
                watcher = EventWatcher(radicale_client, calendar_url, interval)
                watching = asyncio.create_task(watcher.run())
                hook_url = f"http://127.0.0.1:{receiver.port}/"
                await set_up_destination(api, host, radicale, calendar_url, hook_url)
                args = (base, host, calendar_url, receiver, watcher, starts)
                for count, each in plan:
                    await bookers(*args, 1, WRITE_WARMUP)
                    seen, puts, reports = (
                        radicale.requests(),
                        radicale.durations("PUT"),
                        watcher.reports,
                    )
                    samples = await bookers(*args, count, each)
                    used = radicale.requests() - seen
                    reports = watcher.reports - reports
                    used["REPORT"] -= reports
                    await all_written(base, host, samples)
                    runs.append(
                        WriteRun(
                            label,
                            count,
                            samples,
                            +used,
                            radicale.durations("PUT")[len(puts) :],
                            reports,
                            running,
                        )
                    )
        log = (folder / f"serve-{label}.log").read_text(errors="replace")
        if "Traceback" in log:
            print(f"# {label}: bookable serve logged a traceback:\n{log[-3000:]}", file=sys.stderr)
    finally:
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        server.close()
        await receiver.close()
        await server.wait_closed()
    return runs


async def put_alone(radicale: Radicale, example_url: str, repeat: int) -> dict[str, list[float]]:
    """The floor: one of the bench's events (its .ics as the dispatcher wrote it) PUT under new
    UIDs with If-None-Match: *, by a new client each (as the dispatcher opens one per write) and
    by one client (Radicale's wsgiref server closes every connection, so both connect afresh),
    Radicale's own time for the first kind (its log), and each PUT's time when 8 go at once."""
    auth = (radicale.username, radicale.password)
    calendar_url = make_calendar(radicale, "floor")
    async with httpx.AsyncClient(auth=auth) as client:
        response = await client.get(example_url)
        response.raise_for_status()
        ics = response.text
    old_uid = re.search(r"^UID:(.*?)\r?$", ics, re.MULTILINE)
    assert old_uid is not None, ics
    headers = {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"}
    rows: dict[str, list[float]] = {"fresh client": [], "one client": []}

    async def put(client: httpx.AsyncClient) -> float:
        uid = f"floor-{secrets.token_hex(8)}@bookable"
        body = ics.replace(f"UID:{old_uid.group(1)}", f"UID:{uid}").encode()
        began = time.perf_counter()
        answer = await client.put(
            f"{calendar_url}{quote(uid, safe='')}.ics", content=body, headers=headers
        )
        elapsed = time.perf_counter() - began
        assert answer.status_code == 201, answer.text
        return elapsed

    for i in range(repeat + WARMUP):
        async with httpx.AsyncClient(auth=auth) as fresh:
            elapsed = await put(fresh)
        if i >= WARMUP:
            rows["fresh client"].append(elapsed)
    rows["in radicale (its log)"] = radicale.durations("PUT")[-repeat:]
    # Eight at once, as the dispatcher sends them for 8 bookers: Radicale serialises writes.
    rows["8 at once, each"] = []
    async with httpx.AsyncClient(auth=auth) as kept:
        for _ in range(max(1, repeat // 2)):
            rows["8 at once, each"] += await asyncio.gather(*(put(kept) for _ in range(8)))
    async with httpx.AsyncClient(auth=auth) as kept:
        for i in range(repeat + WARMUP):
            elapsed = await put(kept)
            if i >= WARMUP:
                rows["one client"].append(elapsed)
    return rows


async def run_writes(
    radicale: Radicale, folder: Path, pg_url: str | None, plan: list[tuple[int, int]],
    interval: float, repeat: int,
) -> tuple[list[WriteRun], dict[str, list[float]]]:  # fmt: skip
    runs = []
    sqlite_url = f"sqlite:///{folder / 'writes.db'}"
    await asyncio.to_thread(upgrade, sqlite_url)
    runs += await measure_writes(sqlite_url, "sqlite", radicale, folder, plan, interval)
    if pg_url:
        await asyncio.to_thread(upgrade, pg_url)
        await reset_postgres(pg_url)
        runs += await measure_writes(pg_url, "postgresql", radicale, folder, plan, interval)
        await reset_postgres(pg_url)
    # Any written event will do as the floor's model: they differ only in times and names.
    return runs, await put_alone(radicale, runs[0].samples[0].event_url, repeat)


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


def report_writes(runs: list[WriteRun], floor: dict[str, list[float]], interval: float) -> None:
    print(
        "\n# Calendar writes: ms from a booking's 200 answer to its event readable in Radicale "
        f"(a REPORT every {interval * 1000:g} ms while any is awaited) and to its webhook's "
        "arrival; median / p90. 'PUT in radicale': Radicale's own time for the dispatcher's "
        "PUTs (its log). Radicale: its requests per booking, the watcher's REPORTs left out."
    )
    print(
        f"{'db':<11}{'bookers':>8}{'n':>4}{'booking':>9}{'readable':>10}{'p90':>7}"
        f"{'webhook':>9}{'p90':>7}{'read/hook':>10}{'read/PUT':>9}{'PUT in radicale':>17}"
        "  radicale"
    )
    put_floor = statistics.median(floor["fresh client"]) * 1000
    for run in runs:
        readable = [s.readable * 1000 for s in run.samples]
        hooked = [s.webhook * 1000 for s in run.samples]
        request = statistics.median(s.request for s in run.samples) * 1000
        per = ", ".join(
            f"{method} {count / len(run.samples):g}"
            for method, count in sorted(run.radicale.items())
        )
        median_readable, median_hook = statistics.median(readable), statistics.median(hooked)
        puts = [p * 1000 for p in run.puts]
        in_radicale = f"{statistics.median(puts):.0f} / {p90(puts):.0f}" if puts else "-"
        print(
            f"{run.db:<11}{run.bookers:>8}{len(run.samples):>4}{request:>9.1f}"
            f"{median_readable:>10.1f}{p90(readable):>7.1f}{median_hook:>9.1f}{p90(hooked):>7.1f}"
            f"{median_readable / median_hook:>10.2f}{median_readable / put_floor:>9.2f}"
            f"{in_radicale:>17}  {per or 0}"
        )
    for name, samples in floor.items():
        ms = [s * 1000 for s in samples]
        median = statistics.median(ms)
        print(f"radicale alone: PUT If-None-Match, {name}: {median:.2f} / {p90(ms):.1f}")
    for db in dict.fromkeys(run.db for run in runs):
        server = next(run.server for run in runs if run.db == db)
        print(f"RSS of bookable serve ({db}) after its run: {format_rss(server.rss)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--events", type=int, default=500, help="events in the calendar")
    parser.add_argument("--weekly", type=int, default=50, help="of which weekly series")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--only", choices=("slots", "writes"), help="one part: busy times in slots, or writes"
    )
    parser.add_argument(
        "--writes",
        default="1x30,8x6",
        help="calendar writes: BOOKERSxEACH configurations, comma-separated",
    )
    parser.add_argument(
        "--poll-interval", type=float, default=0.005, help="s between checks for awaited events"
    )
    args = parser.parse_args()
    plan = [
        (int(bookers), int(each))
        for bookers, each in (part.split("x") for part in args.writes.split(","))
    ]
    pg_url = None
    if not args.no_postgres:
        pg_url = _server.bench_database_url()
    results: list[dict[str, Any]] = []
    alone: dict[str, Row] = {}
    runs: list[WriteRun] = []
    floor: dict[str, list[float]] = {}
    slots_rss: Rss | None = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        radicale = Radicale(folder / "radicale")
        radicale.start()
        try:
            if args.only != "writes":
                calendar_url, seconds = fill_calendar(
                    radicale, args.events - args.weekly, args.weekly
                )
                print(
                    f"# {calendar_url}: {args.events} events ({args.weekly} weekly) "
                    f"in {seconds:.1f} s"
                )
                results, alone = asyncio.run(
                    run_all(radicale, calendar_url, folder, pg_url, args.repeat)
                )
                slots_rss = own_rss()  # the slots part runs the app in this process
            if args.only != "slots":
                runs, floor = asyncio.run(
                    run_writes(radicale, folder, pg_url, plan, args.poll_interval, args.repeat)
                )
        finally:
            radicale.stop()
    if not pg_url:
        print("# PostgreSQL skipped: set BOOKABLE_BENCH_DATABASE_URL to include it")
    if results:
        report(results, alone, args.repeat)
        print(
            "RSS of this process (the app in process) after the slots part: "
            + format_rss(slots_rss)
        )
    if runs:
        report_writes(runs, floor, args.poll_interval)


if __name__ == "__main__":
    main()
