"""Double bookings under real concurrency: `bookable serve` processes hit by simultaneous
POST /v1/bookings for one slot over real HTTP.

- SQLite: one server; writers are serialised (BEGIN IMMEDIATE), so the check-then-insert of one
  request can never interleave with another's.
- PostgreSQL (BOOKABLE_TEST_DATABASE_URL): two servers on one database; only the exclusion
  constraint `ex_booking_hosts_overlap` and the seat row lock stand between them.

Every race must end with exactly the right winners, 409s with Cal.com's codes for the others, no
5xx, no traceback in the servers' logs, and no stray row (booking or attendee) in the database.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bookable.core.db import create_engine, session_factory
from bookable.migrations.runner import upgrade
from bookable.models import (
    Attendee,
    Availability,
    Booking,
    BookingStatus,
    EventType,
    Schedule,
    User,
)
from tests.conftest import _empty_postgres
from tests.system.conftest import PG_URL, Server, create_admin, ensure_worker_database, serving

RACERS = 50
SEAT_RACERS = 20
SEATS = 3
REQUEST_TIMEOUT = 60.0  # seconds; 50 queued writers on a busy 2-core machine
SERVER_ENV = {"BOOKABLE_RATE_LIMIT": "0"}


@dataclass
class Setup:
    kind: str
    database_url: str
    servers: list[Server]
    key: str
    host_id: int
    event_type_id: int
    seated_event_type_id: int

    def mark(self) -> list[tuple[int, int]]:
        """Where each server's stdout and stderr stand now (to look only at what a race logs)."""
        return [(len(s.stdout()), len(s.stderr())) for s in self.servers]

    def logs(self, since: list[tuple[int, int]] | None = None, tail: int = 8000) -> str:
        since = since or [(0, 0)] * len(self.servers)
        return "\n".join(
            f"--- {s.base_url} ---\n{(s.stdout()[out:] + s.stderr()[err:])[-tail:]}"
            for s, (out, err) in zip(self.servers, since, strict=True)
        )


async def _seed(database_url: str, email: str) -> tuple[int, int, int]:
    """For the admin made by the CLI: a schedule open every day 00:00-23:59 UTC, a 30-minute
    event type and a seated one (3 seats), both bookable right now."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            user = await session.scalar(select(User).where(User.email == email))
            assert user is not None
            schedule = Schedule(user_id=user.id, name="Always", time_zone="UTC")
            schedule.availability.append(
                Availability(days=[0, 1, 2, 3, 4, 5, 6], start_time=time(0), end_time=time(23, 59))
            )
            session.add(schedule)
            await session.flush()
            user.default_schedule_id = schedule.id
            common: dict[str, Any] = {
                "user_id": user.id, "length": 30, "minimum_booking_notice": 0, "locations": [],
            }  # fmt: skip
            plain = EventType(title="Race", slug="race", **common)
            seated = EventType(title="Seats", slug="seats", seats_per_time_slot=SEATS, **common)
            session.add_all([plain, seated])
            await session.flush()
            return user.id, plain.id, seated.id
    finally:
        await engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """Seeded database and running servers (1 on SQLite, 2 on PostgreSQL), shared by the
    module's tests of one database; the servers are always stopped."""
    kind: str = request.param
    tmp = tmp_path_factory.mktemp(f"race-{kind}")
    if kind == "sqlite":
        database_url, processes = f"sqlite:///{tmp / 'bookable.db'}", 1
    else:
        if not PG_URL:
            pytest.skip("PostgreSQL: BOOKABLE_TEST_DATABASE_URL is not set")
        database_url, processes = PG_URL, 2
        ensure_worker_database()
        upgrade(database_url)
        asyncio.run(_empty_postgres(database_url))
    email, _username, key = create_admin(database_url, prefix="host")  # migrates SQLite too
    host_id, event_type_id, seated_id = asyncio.run(_seed(database_url, email))
    with ExitStack() as stack:
        servers = [
            stack.enter_context(serving(database_url, tmp / f"logs-{i}", env=SERVER_ENV))
            for i in range(processes)
        ]
        yield Setup(kind, database_url, servers, key, host_id, event_type_id, seated_id)


def _slot(hour: int) -> tuple[datetime, datetime]:
    """A 30-minute slot on the grid, two days ahead (well inside any booking window)."""
    day = datetime.now(UTC).date() + timedelta(days=2)
    start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return start, start + timedelta(minutes=30)


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def _race(
    setup: Setup, event_type_id: int, start: datetime, end: datetime, emails: list[str]
) -> list[tuple[str, httpx.Response]]:
    """One POST per email, all at once, spread round-robin over the servers."""
    limits = httpx.Limits(max_connections=len(emails) + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:

        async def book(i: int, email: str) -> tuple[str, httpx.Response]:
            server = setup.servers[i % len(setup.servers)]
            response = await client.post(
                f"{server.base_url}/v1/bookings",
                params={"apiKey": setup.key},
                json={
                    "eventTypeId": event_type_id,
                    "startTime": _iso(start),
                    "endTime": _iso(end),
                    "name": f"Racer {i}",
                    "email": email,
                    "timeZone": "UTC",
                },
            )
            return email, response

        return await asyncio.gather(*(book(i, e) for i, e in enumerate(emails)))


def _assert_no_server_errors(
    setup: Setup, mark: list[tuple[int, int]], results: list[tuple[str, httpx.Response]]
) -> None:
    """(d): no 5xx answered, no traceback or 500 logged by any server during the race."""
    errors = [(e, r.status_code, r.text[:300]) for e, r in results if r.status_code >= 500]
    assert not errors, f"{len(errors)} server errors: {errors[:3]}\n{setup.logs(mark)}"
    logs = setup.logs(mark, tail=10**9)
    assert "Traceback" not in logs, setup.logs(mark)
    assert " 500 " not in logs, setup.logs(mark)


def _outcome(results: list[tuple[str, httpx.Response]]) -> Counter[tuple[int, str]]:
    def label(response: httpx.Response) -> str:
        try:
            return str(response.json().get("message", "")) if response.status_code != 200 else ""
        except ValueError:
            return response.text[:100]

    return Counter((r.status_code, label(r)) for _e, r in results)


@dataclass
class Stored:
    bookings: list[tuple[int, str, BookingStatus]]  # every booking of the event type
    attendees: dict[int, list[str]]  # booking id -> attendee emails
    orphans: int  # attendee rows whose booking does not exist


async def _stored(setup: Setup, event_type_id: int) -> Stored:
    engine = create_engine(setup.database_url)
    try:
        async with session_factory(engine)() as session:
            rows = (
                await session.execute(
                    select(Booking.id, Booking.start_time, Booking.status)
                    .where(Booking.event_type_id == event_type_id)
                    .order_by(Booking.id)
                )
            ).all()
            attendees: dict[int, list[str]] = {}
            for booking_id, email in await session.execute(
                select(Attendee.booking_id, Attendee.email)
                .where(Attendee.booking_id.in_([r.id for r in rows]))
                .order_by(Attendee.id)
            ):
                attendees.setdefault(booking_id, []).append(email)
            orphans = await session.scalar(
                select(func.count())
                .select_from(Attendee)
                .where(~Attendee.booking_id.in_(select(Booking.id)))
            )
    finally:
        await engine.dispose()
    return Stored(
        [(r.id, r.start_time.isoformat(), r.status) for r in rows], attendees, orphans or 0
    )


async def test_one_of_fifty_simultaneous_bookings_wins(setup: Setup) -> None:
    start, end = _slot(12)
    emails = [f"racer{i}-{setup.kind}@example.com" for i in range(RACERS)]
    mark = setup.mark()
    results = await _race(setup, setup.event_type_id, start, end, emails)

    _assert_no_server_errors(setup, mark, results)
    outcome = _outcome(results)
    assert outcome == {(200, ""): 1, (409, "no_available_users_found_error"): RACERS - 1}, outcome
    winner_email, winner = next((e, r) for e, r in results if r.status_code == 200)
    body = winner.json()
    assert (body["startTime"], body["status"]) == (_iso(start), "ACCEPTED")
    assert [a["email"] for a in body["attendees"]] == [winner_email]

    stored = await _stored(setup, setup.event_type_id)
    # The losers left nothing behind: one booking in all, accepted, with one attendee.
    assert stored.bookings == [(body["id"], start.isoformat(), BookingStatus.ACCEPTED)]
    assert stored.attendees == {body["id"]: [winner_email]}
    assert stored.orphans == 0


async def test_three_of_twenty_take_the_three_seats(setup: Setup) -> None:
    start, end = _slot(15)
    emails = [f"seat{i}-{setup.kind}@example.com" for i in range(SEAT_RACERS)]
    mark = setup.mark()
    results = await _race(setup, setup.seated_event_type_id, start, end, emails)

    _assert_no_server_errors(setup, mark, results)
    outcome = _outcome(results)
    # A loser always finds the seated booking (on PostgreSQL the exclusion constraint makes a
    # concurrent opener wait for the first to commit, then it joins or finds the seats full):
    # never no_available_users_found_error.
    assert outcome == {(200, ""): SEATS, (409, "booking_seats_full_error"): SEAT_RACERS - SEATS}, (
        outcome
    )
    winners = {e: r.json() for e, r in results if r.status_code == 200}
    assert len({b["id"] for b in winners.values()}) == 1, winners
    booking_id = next(iter(winners.values()))["id"]

    stored = await _stored(setup, setup.seated_event_type_id)
    assert stored.bookings == [(booking_id, start.isoformat(), BookingStatus.ACCEPTED)]
    assert sorted(stored.attendees[booking_id]) == sorted(winners)
    assert stored.orphans == 0


async def test_ten_simultaneous_retries_with_one_idempotency_key_book_once(setup: Setup) -> None:
    """The same request with one Idempotency-Key, ten times at once over every server: one
    booking, and every answer is the first one's (nine of them replayed)."""
    start, end = _slot(9)
    body = {
        "eventTypeId": setup.event_type_id,
        "startTime": _iso(start),
        "endTime": _iso(end),
        "name": "Retrying Client",
        "email": f"retry-{setup.kind}@example.com",
        "timeZone": "UTC",
    }
    mark = setup.mark()
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{setup.servers[i % len(setup.servers)].base_url}/v1/bookings",
                    params={"apiKey": setup.key},
                    json=body,
                    headers={"Idempotency-Key": f"retry-{setup.kind}"},
                )
                for i in range(10)
            )
        )
    _assert_no_server_errors(setup, mark, [("", r) for r in responses])
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("Idempotency-Replayed") == "true" for r in responses) == 9
    stored = await _stored(setup, setup.event_type_id)
    at_slot = [b for b in stored.bookings if b[1] == start.isoformat()]
    assert at_slot == [(responses[0].json()["id"], start.isoformat(), BookingStatus.ACCEPTED)]
