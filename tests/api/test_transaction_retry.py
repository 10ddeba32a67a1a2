"""Booking writes rerun their whole transaction when PostgreSQL aborts it as a deadlock victim
(40P01) or for a serialisation failure (40001), and give up with a 503 after a few attempts.

The errors are real: raised by PostgreSQL itself (RAISE ... USING ERRCODE, and true deadlocks
between a request and another connection, or between concurrent PATCHes). SQLite never raises
them (its writers take turns), so most tests here run on PostgreSQL only."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from bookable.core.idempotency import HEADER, REPLAYED_HEADER
from bookable.core.retry import ATTEMPTS, TransactionContention, retry_transaction
from bookable.models import Booking, BookingStatus, IdempotencyKey, Schedule

from .booking_helpers import frozen_app
from .scheduling_seed import add_event_type, add_schedule

TUESDAY = datetime(2026, 12, 1, tzinfo=UTC)
WEDNESDAY = TUESDAY + timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RACERS = 8


@pytest.fixture
async def app(make_settings):
    async for application in frozen_app(make_settings):
        yield application


@pytest.fixture
def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL raises deadlocks and serialisation failures; SQLite never does")


def wire(day: datetime, hour: int, minute: int = 0) -> str:
    return (day + timedelta(hours=hour, minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def book(client, account, event_type: int, start: str, email: str = "ann@example.com"):
    body = {
        "eventTypeId": event_type,
        "start": start,
        "timeZone": "UTC",
        "language": "en",
        "metadata": {},
        "responses": {"name": "Ann", "email": email},
    }
    r = await client.post("/v1/bookings", params=account.params, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def raise_sqlstate(code: str) -> Any:
    # A real error from PostgreSQL with that SQLSTATE, as the driver reports a true deadlock.
    return text(f"DO $$ BEGIN RAISE EXCEPTION 'provoked' USING ERRCODE = '{code}'; END $$")


# --- the helper ------------------------------------------------------------------------------


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_the_whole_transaction_reruns_and_the_failed_attempts_leave_nothing(
    app, alice, postgres_only, sqlstate
):
    attempts: list[int] = []

    async def work() -> int:
        attempts.append(len(attempts) + 1)
        session.add(Schedule(user_id=alice.id, name=f"attempt {len(attempts)}", time_zone="UTC"))
        await session.flush()
        if len(attempts) < 3:
            await session.execute(raise_sqlstate(sqlstate))
        return len(attempts)

    async with app.state.sessions() as session:
        assert await retry_transaction(session, work, backoff_seconds=0.001) == 3
        await session.commit()
    async with app.state.sessions() as session:
        names = list(await session.scalars(select(Schedule.name)))
    assert names == ["attempt 3"]


async def test_the_helper_gives_up_with_a_503_after_its_attempts(app, alice, postgres_only):
    attempts = 0

    async def work() -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(raise_sqlstate("40P01"))

    async with app.state.sessions() as session:
        with pytest.raises(TransactionContention) as raised:
            await retry_transaction(session, work, backoff_seconds=0.001)
    assert attempts == ATTEMPTS
    assert raised.value.status_code == 503
    assert raised.value.headers == {"Retry-After": "1"}
    assert raised.value.message == (
        f"The change could not be written after {ATTEMPTS} attempts because of concurrent "
        "changes to the same data (deadlock); nothing was written, please retry."
    )


async def test_other_database_errors_are_not_retried(app, alice, database_url):
    attempts = 0

    async def work() -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(text("SELECT * FROM no_such_table"))

    async with app.state.sessions() as session:
        with pytest.raises(DBAPIError):
            await retry_transaction(session, work, backoff_seconds=0.001)
    assert attempts == 1


# --- real deadlocks through the API -----------------------------------------------------------


async def _wait_for_advisory_waiter(app) -> None:
    """Until some connection waits for an advisory lock (the request, on a host's day)."""
    deadline = asyncio.get_running_loop().time() + 10.0
    async with app.state.engine.connect() as watcher:
        while asyncio.get_running_loop().time() < deadline:
            waiting = await watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND NOT l.granted "
                    "AND d.datname = current_database()"
                )
            )
            await watcher.rollback()
            if waiting:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the request never waited for the host's day lock")


async def _deadlock_with(app, host_id: int, day: datetime, booking_id: int, request: Any) -> Any:
    """Run ``request`` (a coroutine writing booking ``booking_id``) into a deadlock: another
    connection holds the host's day lock the request needs, and once the request waits for it
    while holding the booking's row lock, asks for that row. The request's deadlock check runs
    first (the other connection waits 30 s before checking), so the request is the victim."""
    async with app.state.engine.connect() as other:
        await other.execute(text("SET LOCAL deadlock_timeout = '30s'"))
        await other.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:host AS integer), CAST(:day AS integer))"),
            {"host": host_id, "day": (day - EPOCH).days},
        )
        task = asyncio.create_task(request)
        await _wait_for_advisory_waiter(app)
        # Granted once the request, aborted as the deadlock victim, has rolled back.
        await other.execute(
            text("SELECT id FROM bookings WHERE id = :id FOR UPDATE"), {"id": booking_id}
        )
        await other.commit()
    return await task


async def test_a_patch_chosen_as_deadlock_victim_is_retried(
    app, client, alice, postgres_only, caplog
):
    await add_schedule(app, alice.id, "UTC")
    meet = await add_event_type(app, alice.id)
    booking = await book(client, alice, meet, wire(TUESDAY, 10))
    caplog.set_level(logging.INFO, logger="bookable.retry")
    patch = client.patch(
        f"/v1/bookings/{booking['id']}",
        params=alice.params,
        json={"startTime": wire(WEDNESDAY, 10), "endTime": wire(WEDNESDAY, 10, 30)},
    )
    response = await _deadlock_with(app, alice.id, WEDNESDAY, booking["id"], patch)
    assert response.status_code == 200, response.text
    assert response.json()["booking"]["startTime"] == wire(WEDNESDAY, 10)
    assert any("deadlock" in r.getMessage() for r in caplog.records), caplog.text


async def test_a_confirm_chosen_as_deadlock_victim_is_retried_and_keeps_its_idempotency_key(
    app, client, alice, postgres_only, caplog
):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    pending = await book(client, alice, event_type, wire(TUESDAY, 10))
    assert pending["status"] == "PENDING"
    caplog.set_level(logging.INFO, logger="bookable.retry")
    confirm = client.post(
        f"/v1/bookings/{pending['id']}/confirm",
        params=alice.params,
        json={"confirmed": True},
        headers={HEADER: "confirm-1"},
    )
    response = await _deadlock_with(app, alice.id, TUESDAY, pending["id"], confirm)
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Booking confirmed", "status": "ACCEPTED"}
    assert any("deadlock" in r.getMessage() for r in caplog.records), caplog.text
    # The key was taken again in the retried transaction and holds its answer.
    async with app.state.sessions() as session:
        rows = list(await session.scalars(select(IdempotencyKey)))
    assert [(r.key, r.response_status) for r in rows] == [("confirm-1", 200)]
    again = await client.post(
        f"/v1/bookings/{pending['id']}/confirm",
        params=alice.params,
        json={"confirmed": True},
        headers={HEADER: "confirm-1"},
    )
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.content == response.content


async def test_seat_joins_racing_patches_of_the_seated_booking_end_without_errors(
    app, client, alice, postgres_only
):
    """A booker joining a seated booking locks the host's day, then the booking's row; a PATCH
    of that booking locks the row, then the day: run concurrently, they deadlock, again and
    again. Every answer must be a 200 (possibly after retries) or, when every attempt lost, the
    documented 503; never a 500. The booking ends with exactly the seats and the title of the
    requests that were answered 200."""
    await add_schedule(app, alice.id, "UTC")
    seated = await add_event_type(app, alice.id, seats_per_time_slot=50)
    booking = await book(client, alice, seated, wire(TUESDAY, 10), "first@example.com")

    async def join(n: int) -> tuple[str, int, int]:
        body = {
            "eventTypeId": seated,
            "start": wire(TUESDAY, 10),
            "timeZone": "UTC",
            "language": "en",
            "metadata": {},
            "responses": {"name": f"Joiner {n}", "email": f"joiner{n}@example.com"},
        }
        r = await client.post("/v1/bookings", params=alice.params, json=body)
        return "join", n, r.status_code

    async def rename(n: int) -> tuple[str, int, int]:
        r = await client.patch(
            f"/v1/bookings/{booking['id']}", params=alice.params, json={"title": f"Title {n}"}
        )
        return "rename", n, r.status_code

    results = await asyncio.gather(*(join(n) if n % 2 else rename(n) for n in range(RACERS)))
    assert {status for _kind, _n, status in results} <= {200, 503}, results
    joined = {
        f"joiner{n}@example.com" for kind, n, status in results if kind == "join" and status == 200
    }
    renamed = {f"Title {n}" for kind, n, status in results if kind == "rename" and status == 200}
    assert joined and renamed, results  # the retries let most through
    async with app.state.sessions() as session:
        stored = await session.get(Booking, booking["id"])
        assert stored is not None
        assert stored.status == BookingStatus.ACCEPTED
        assert stored.title in renamed
        emails = set(
            await session.scalars(
                text("SELECT email FROM attendees WHERE booking_id = :id"), {"id": booking["id"]}
            )
        )
        total = await session.scalar(select(func.count()).select_from(Booking))
    assert emails == {"first@example.com", *joined}
    assert total == 1
