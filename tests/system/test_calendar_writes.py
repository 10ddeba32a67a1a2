"""Calendar writes across a SIGKILL (issue 12): `bookable serve` writes bookings into the host's
destination calendar on a real Radicale; it is killed while creates, moves and deletes are in
flight, some of which reached Radicale without the answer reaching the server. A new server on
the same database finishes the job: the calendar then holds exactly one event per accepted
booking, at its current time, none for cancelled ones, and each booking one reference.

Radicale is reached through `HoldingProxy` (loopback only), which can hold requests: every
other one is passed on and only its answer held (the write happened; the dead server never
learns it), the others are held before Radicale sees them (lost with the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import select

from bookable.core.db import create_engine, session_factory
from bookable.models import CalendarEvent, CalendarEventStatus
from tests.calendar_servers import RadicaleAccount, RadicaleServer, _QuietServer, running_radicale
from tests.system.conftest import (
    Server,
    create_admin,
    serving,
)
from tests.system.test_webhook_delivery import _seed_host

# Calendar lease = max(webhook lease, 3 x 4 x calendar timeout) = 12 s: what a killed server
# claimed comes free that long after its claim. Four writes at a time, so at the kill some rows
# are claimed and the rest wait unclaimed.
CONCURRENCY = 4
FAST_ENV = {
    "BOOKABLE_RATE_LIMIT": "0",
    "BOOKABLE_WEBHOOK_POLL_INTERVAL": "0.1",
    "BOOKABLE_WEBHOOK_TIMEOUT": "1",
    "BOOKABLE_WEBHOOK_LEASE_SECONDS": "12",
    "BOOKABLE_WEBHOOK_CONCURRENCY": str(CONCURRENCY),
    "BOOKABLE_CALENDAR_TIMEOUT": "1",
    "BOOKABLE_CALENDAR_WRITE_RETRY_DELAYS": "0.05",
    "BOOKABLE_CALENDAR_WRITE_MAX_ATTEMPTS": "1000",
    "BOOKABLE_CALENDAR_ALLOWED_HOSTS": "127.0.0.1,localhost",
}
BOOKINGS = 20  # made in all: 12 while writes pass, 8 while they are held
BEFORE_HOLD = 12
MOVED = range(0, 5)  # rescheduled while held (some written already, some not)
CANCELLED = range(5, 10)  # cancelled while held
SETTLE_TIMEOUT = 40.0  # seconds; the lease alone is 12
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


# --- a proxy in front of Radicale that can hold requests ----------------------------------------


@dataclass
class HoldingProxy:
    target: str  # Radicale's root URL
    delay: float = 0.05  # per request, so writes overlap the bookings
    port: int = 0
    holding: bool = False
    seen: int = 0
    landed: list[tuple[str, str]] = field(default_factory=list)  # reached Radicale, answer held
    lost: list[tuple[str, str]] = field(default_factory=list)  # held before Radicale saw it
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def hold(self) -> None:
        with self.lock:
            self.holding = True

    def let_go(self) -> None:
        """Stop holding; held requests end (their answers go to a dead client, or nowhere)."""
        with self.lock:
            self.holding = False
        self.release.set()

    def held(self) -> int:
        with self.lock:
            return len(self.landed) + len(self.lost)

    def landed_creates(self) -> set[str]:
        """The UIDs of events a create (``If-None-Match: *``) put into Radicale unanswered."""
        with self.lock:
            return {uid for kind, uid in self.landed if kind == "CREATE"}


def _proxy_handler(proxy: HoldingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with proxy.lock:
                holding, number = proxy.holding, proxy.seen
                proxy.seen += 1
                if holding and number % 2:
                    proxy.lost.append((self._kind(), self._uid()))
            if holding and number % 2:
                proxy.release.wait()
                return  # closed unanswered: Radicale never saw it
            time.sleep(proxy.delay)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            answer = httpx.request(
                self.command,
                proxy.target.rstrip("/") + self.path,
                headers=headers,
                content=body,
                timeout=30,
            )
            if holding:
                with proxy.lock:
                    proxy.landed.append((self._kind(), self._uid()))
                proxy.release.wait()
            with contextlib.suppress(OSError):  # the client may be dead by now
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in HOP_BY_HOP | {"content-encoding"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        def _kind(self) -> str:
            create = self.command == "PUT" and self.headers.get("If-None-Match") == "*"
            return "CREATE" if create else self.command

        def _uid(self) -> str:
            name = unquote(self.path.rstrip("/").rsplit("/", 1)[-1])
            return name.removesuffix(".ics")

        do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_MKCALENDAR = _relay
        do_OPTIONS = do_POST = do_HEAD = _relay

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def holding_proxy(target: str) -> Iterator[HoldingProxy]:
    proxy = HoldingProxy(target)
    httpd = _QuietServer(("127.0.0.1", 0), _proxy_handler(proxy))
    proxy.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.let_go()
        httpd.shutdown()
        httpd.server_close()


# --- the scenario -------------------------------------------------------------------------------


@dataclass
class Booked:
    """A booking as the test expects it now."""

    id: int
    uid: str
    ical_uid: str
    start: datetime
    cancelled: bool = False


def _slot(day: datetime, index: int) -> datetime:
    return day + timedelta(minutes=30 * index)


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _book(
    server: Server, key: str, event_type: int, start: datetime, *, reschedule: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventTypeId": event_type,
        "start": _iso(start),
        "timeZone": "UTC",
        "language": "en",
        "metadata": {},
        "responses": {"name": "Guest", "email": f"guest-{start:%H%M}@example.com"},
    }
    if reschedule is not None:
        body["rescheduleUid"] = reschedule
    r = httpx.post(f"{server.base_url}/v1/bookings", params={"apiKey": key}, json=body, timeout=30)
    assert r.status_code == 200, r.text
    made: dict[str, Any] = r.json()
    return made


def _booked(answer: dict[str, Any], start: datetime) -> Booked:
    return Booked(answer["id"], answer["uid"], answer["iCalUID"], start)


def _cancel(server: Server, key: str, booking: Booked) -> None:
    r = httpx.delete(
        f"{server.base_url}/v1/bookings/{booking.id}/cancel", params={"apiKey": key}, timeout=30
    )
    assert r.status_code == 200, r.text
    booking.cancelled = True


def _move(server: Server, key: str, event_type: int, booking: Booked, start: datetime) -> Booked:
    moved = _booked(_book(server, key, event_type, start, reschedule=booking.uid), start)
    assert moved.ical_uid == booking.ical_uid  # the same meeting, moved
    return moved


def _connect(server: Server, key: str, account: RadicaleAccount, proxy: HoldingProxy) -> str:
    """Connect the Radicale account (through the proxy) and make a new calendar of it the
    host's destination; returns that calendar's URL as the server knows it."""
    calendar = account.make_calendar("Bookings")
    params = {"apiKey": key}
    r = httpx.post(
        f"{server.base_url}/v1/credentials",
        params=params,
        json={
            "appId": "caldav-calendar",
            "key": {"url": proxy.url, "username": account.username, "password": account.password},
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    credential = r.json()["credential"]
    through_proxy = calendar.replace(account.server.url, proxy.url)
    r = httpx.post(
        f"{server.base_url}/v1/destination-calendars",
        params=params,
        json={
            "integration": "caldav_calendar",
            "externalId": through_proxy,
            "credentialId": credential["id"],
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return through_proxy


async def _rows(database_url: str) -> list[CalendarEvent]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return list(await session.scalars(select(CalendarEvent).order_by(CalendarEvent.id)))
    finally:
        await engine.dispose()


def _calendar_events(server: Server, key: str, booking: Booked) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{server.base_url}/v1/bookings/{booking.id}/calendar-events",
        params={"apiKey": key},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["calendarEvents"]
    return rows


def _kill(server: Server) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[RadicaleServer]:
    with running_radicale(tmp_path / "radicale") as server:
        yield server


@pytest.fixture
def proxy(radicale: RadicaleServer) -> Iterator[HoldingProxy]:
    with holding_proxy(radicale.url) as running:
        yield running


def test_writes_in_flight_at_a_sigkill_end_exactly_once(
    database_url: str, tmp_path: Path, radicale: RadicaleServer, proxy: HoldingProxy
) -> None:
    email, _username, key = create_admin(database_url, prefix="host")  # migrates SQLite too
    event_type = asyncio.run(_seed_host(database_url, email))
    today = datetime.now(UTC).date() + timedelta(days=3)
    day = datetime(today.year, today.month, today.day, tzinfo=UTC)

    account = radicale.new_account()
    with (
        serving(database_url, tmp_path / "first", env=FAST_ENV) as server,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        through_proxy = _connect(server, key, account, proxy)
        calendar = through_proxy.replace(proxy.url, radicale.url)

        # 1. Bookings while writes pass (slowly): some are written, some in flight.
        booked = list(
            pool.map(
                lambda i: _booked(_book(server, key, event_type, _slot(day, i)), _slot(day, i)),
                range(BEFORE_HOLD),
            )
        )
        # 2. Radicale's answers are held: more bookings, moves and cancels, all at once.
        proxy.hold()
        more = [
            pool.submit(_book, server, key, event_type, _slot(day, i))
            for i in range(BEFORE_HOLD, BOOKINGS)
        ]
        moved_from = {booked[i].id for i in MOVED}
        moves = {
            i: pool.submit(_move, server, key, event_type, booked[i], _slot(day, 24 + i))
            for i in MOVED
        }
        cancels = [pool.submit(_cancel, server, key, booked[i]) for i in CANCELLED]
        for i, future in enumerate(more, start=BEFORE_HOLD):
            booked.append(_booked(future.result(), _slot(day, i)))
        for i, move in moves.items():
            booked[i] = move.result()
        for cancel in cancels:
            cancel.result()
        # Two new bookings whose create reached Radicale unanswered (the server thinks them
        # unwritten): one is moved, the other cancelled.
        new = {b.ical_uid: i for i, b in enumerate(booked) if i >= BEFORE_HOLD}
        deadline = time.monotonic() + 20
        while len(landed := sorted(new[uid] for uid in proxy.landed_creates() if uid in new)) < 2:
            assert time.monotonic() < deadline, f"no create landed: {proxy.landed}"
            time.sleep(0.05)
        to_move, to_cancel = landed[:2]
        moved_from.add(booked[to_move].id)
        booked[to_move] = _move(server, key, event_type, booked[to_move], _slot(day, 40))
        _cancel(server, key, booked[to_cancel])

        held = proxy.held()
        deadline = time.monotonic() + 15
        while proxy.held() < held + CONCURRENCY:  # the new revisions are in flight too
            assert time.monotonic() < deadline, "no calendar write was held after the changes"
            time.sleep(0.05)
        _kill(server)  # SIGKILL, writes in flight

    at_kill = asyncio.run(_rows(database_url))
    killed_at = datetime.now(UTC)
    statuses = Counter(row.status for row in at_kill)
    claimed = [
        row
        for row in at_kill
        if row.status == CalendarEventStatus.PENDING
        and row.locked_until is not None
        and row.locked_until > killed_at
    ]
    waiting = statuses[CalendarEventStatus.PENDING] - len(claimed)
    landed_count, lost_count = len(proxy.landed), len(proxy.lost)
    proxy.let_go()
    assert len(at_kill) == BOOKINGS  # one row per meeting: a move keeps the iCal UID
    assert claimed and waiting, (len(claimed), statuses)

    # 3. A new server on the same database finishes every write.
    with serving(database_url, tmp_path / "second", env=FAST_ENV) as server:
        started = time.monotonic()
        deadline = started + SETTLE_TIMEOUT
        while True:
            rows = {b.id: _calendar_events(server, key, b) for b in booked}
            if all(r["status"] != "PENDING" for found in rows.values() for r in found):
                break
            assert time.monotonic() < deadline, f"calendar writes did not settle: {rows}"
            time.sleep(0.2)
        settle_seconds = time.monotonic() - started
        references = httpx.get(
            f"{server.base_url}/v1/booking-references", params={"apiKey": key}, timeout=30
        )
        assert references.status_code == 200, references.text
        logs = server.logs()

    print(
        f"\n[{database_url.split(':')[0]}] {BOOKINGS} bookings, {len(MOVED) + 1} moved, "
        f"{len(CANCELLED) + 1} cancelled; at the kill: {len(claimed)} rows claimed, "
        f"{waiting} pending unclaimed; proxy held {landed_count} requests that reached "
        f"Radicale and {lost_count} that did not; settled {settle_seconds:.1f} s after restart"
    )
    assert "Traceback" not in logs, logs

    # Each meeting's one row: WRITTEN for the accepted, DELETED for the cancelled.
    for booking in booked:
        [row] = rows[booking.id]
        assert row["uid"] == booking.ical_uid and row["bookingId"] == booking.id, row
        expected = ("delete", "DELETED") if booking.cancelled else ("write", "WRITTEN")
        assert (row["action"], row["status"]) == expected, row
        assert row["externalCalendarId"] == through_proxy

    # The calendar, read straight from Radicale: one event per accepted booking, at its time.
    accepted = {b.ical_uid: b for b in booked if not b.cancelled}
    events = account.events(calendar)
    counted = Counter(str(event["UID"]) for event in events)
    assert [uid for uid, n in counted.items() if n > 1] == []  # nothing doubled
    assert set(counted) == set(accepted)  # nothing lost, nothing cancelled left
    for event in events:
        booking = accepted[str(event["UID"])]
        assert event.decoded("DTSTART") == booking.start, (booking, event.to_ical())
        assert event.decoded("DTEND") == booking.start + timedelta(minutes=30)
        assert int(event["SEQUENCE"]) == rows[booking.id][0]["sequence"]

    # References: exactly one live one per accepted booking; none left for a cancelled event.
    live = Counter(
        (r["bookingId"], r["uid"])
        for r in references.json()["booking_references"]
        if not r["deleted"]
    )
    for booking in booked:
        assert live[(booking.id, booking.ical_uid)] == (0 if booking.cancelled else 1), booking
    # A moved booking's old self has none left: the event was handed to its successor.
    others = [pair for pair in live if pair[0] not in {b.id for b in booked}]
    assert others == [], others
    assert all(n == 1 for n in live.values()), live
