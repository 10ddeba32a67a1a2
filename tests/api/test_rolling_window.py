"""ROLLING_WINDOW over the API: /slots and POST /bookings agree on where the window ends,
counting business days when ``periodCountCalendarDays`` is false.

NOW is Monday 2026-01-05 12:00Z. The host works 09:00-17:00 UTC every day of the week and
Wednesday 01-07 is fully booked, so it does not count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, time

import httpx
import pytest
from fastapi import FastAPI

from bookable.settings import Settings
from tests.conftest import Account

from .booking_helpers import frozen_app
from .scheduling_seed import add_booking, add_event_type, add_schedule

EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


async def rolling_window_event(app: FastAPI, account: Account, *, calendar_days: bool) -> int:
    await add_schedule(app, account.id, "UTC", [(EVERY_DAY, time(9), time(17))])
    event_type = await add_event_type(
        app, account.id, period_type="ROLLING_WINDOW", period_days=5,
        period_count_calendar_days=calendar_days,
    )  # fmt: skip
    wednesday = datetime(2026, 1, 7, 9, tzinfo=UTC)
    await add_booking(app, account.id, wednesday, wednesday.replace(hour=17))
    return event_type


async def offered_dates(
    client: httpx.AsyncClient, account: Account, event_type: int, start: str = "2026-01-05"
) -> list[str]:
    r = await client.get(
        "/v1/slots",
        params={
            **account.params,
            "eventTypeId": event_type,
            "startTime": start,
            "endTime": "2026-01-20",
        },
    )
    assert r.status_code == 200, r.text
    return list(r.json()["slots"])


async def post_booking(
    client: httpx.AsyncClient, account: Account, event_type: int, start: str
) -> httpx.Response:
    return await client.post(
        "/v1/bookings",
        params=account.params,
        json={
            "eventTypeId": event_type,
            "start": start,
            "timeZone": "UTC",
            "language": "en",
            "metadata": {},
            "responses": {"name": "Guest", "email": f"guest-{start[:10]}@example.com"},
        },
    )


async def test_business_days_window_in_slots_and_bookings(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    event_type = await rolling_window_event(app, alice, calendar_days=False)
    # Mon, Tue, Thu, Fri, Mon count (Wednesday is full); the weekend between stays bookable.
    assert await offered_dates(client, alice, event_type) == [
        "2026-01-05", "2026-01-06", "2026-01-08", "2026-01-09", "2026-01-10", "2026-01-11",
        "2026-01-12",
    ]  # fmt: skip
    # Asked from Saturday on, the full Wednesday before still does not count.
    assert await offered_dates(client, alice, event_type, "2026-01-10") == [
        "2026-01-10", "2026-01-11", "2026-01-12",
    ]  # fmt: skip
    for inside in ("2026-01-11T10:00:00.000Z", "2026-01-12T16:30:00.000Z"):
        r = await post_booking(client, alice, event_type, inside)
        assert r.status_code == 200, r.text
    r = await post_booking(client, alice, event_type, "2026-01-13T09:00:00.000Z")
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "booking_time_out_of_bounds_error"


async def test_calendar_days_window_counts_the_weekend(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    event_type = await rolling_window_event(app, alice, calendar_days=True)
    assert await offered_dates(client, alice, event_type) == [
        "2026-01-05", "2026-01-06", "2026-01-08", "2026-01-09", "2026-01-10",
    ]  # fmt: skip
    r = await post_booking(client, alice, event_type, "2026-01-11T10:00:00.000Z")
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "booking_time_out_of_bounds_error"
