"""Bookings made through the real API, for the resources that hang off a booking."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from bookable.app import create_app
from bookable.settings import Settings
from tests.conftest import Account

from .scheduling_seed import add_event_type, add_schedule

# A frozen "now" (a Monday noon, UTC) before every booking made here.
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
# Tuesday after NOW: inside the seeded Mon-Fri 09:00-17:00 UTC working hours.
TUESDAY_10 = "2026-01-06T10:00:00.000Z"
TUESDAY_11 = "2026-01-06T11:00:00.000Z"


async def frozen_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    """The app with its clock frozen at NOW (use as the body of a test module's `app` fixture)."""
    application = create_app(make_settings(clock=NOW))
    async with application.router.lifespan_context(application):
        yield application


async def hosted_event_type(
    app: FastAPI, account: Account, slug: str = "meet", **fields: Any
) -> int:
    """Working hours in UTC and an event type of ``account``'s own; returns its id."""
    await add_schedule(app, account.id, "UTC")
    return await add_event_type(app, account.id, slug, **fields)


async def book(
    client: httpx.AsyncClient,
    account: Account,
    event_type_id: int,
    start: str = TUESDAY_10,
    *,
    email: str = "guest@example.com",
    name: str = "Guest",
) -> dict[str, Any]:
    """POST /v1/bookings in Cal.com's modern form; returns the (bare) created booking."""
    response = await client.post(
        "/v1/bookings",
        params=account.params,
        json={
            "eventTypeId": event_type_id,
            "start": start,
            "timeZone": "Europe/Paris",
            "language": "en",
            "metadata": {},
            "responses": {"name": name, "email": email},
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def booking_of(
    app: FastAPI, client: httpx.AsyncClient, account: Account, **fields: Any
) -> int:
    """The id of a booking ``account`` hosts (made through POST /v1/bookings, one attendee);
    ``fields`` go to its event type."""
    event_type_id = await hosted_event_type(app, account, **fields)
    return int((await book(client, account, event_type_id))["id"])
