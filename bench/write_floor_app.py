"""The floor of the booking-creation bench, and the same floor over HTTP.

`insert_booking` is the least database work a booking is: its row and its attendee's, inserted
with SQLAlchemy Core in one transaction on bookable's engine (SQLite: BEGIN IMMEDIATE, as the
server's writers). `bench/bookings.py` runs it directly (the raw floor) and, through ``app``, a
bare Starlette route that reads the seed body form, does only that and answers the new id (the
HTTP floor: what any Python HTTP server pays to take a booking and store it, with nothing else
a booking needs: no key, no checks, no outbox). Served by uvicorn from a copy of this file
(bench/http.py would stand in for the standard library's `http` if bench/ were the app dir),
configured by FLOOR_* environment variables.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bookable.core.db import WRITE_OPTION, create_engine
from bookable.models import Attendee, Booking


def booking_row(
    *, user_id: int, email: str, name: str, event_type_id: int, start: datetime, end: datetime
) -> dict[str, Any]:
    """The columns POST /v1/bookings writes for the seed body form (bookings/create.py)."""
    uid = secrets.token_urlsafe(16)
    return {
        "uid": uid,
        "user_id": user_id,
        "user_primary_email": email,
        "event_type_id": event_type_id,
        "title": f"Bench between {name} and Guest",
        "responses": {"name": "Guest", "email": "guest@example.com"},
        "start_time": start,
        "end_time": end,
        "blocked_start": start,
        "blocked_end": end,
        "location": "",
        "status": "ACCEPTED",
        "paid": False,
        "meta": {},
        "ical_uid": f"{uid}@bookable",
        "ical_sequence": 0,
        "creation_source": "API_V1",
        "created_at": datetime.now(UTC),
    }


def attendee_row(booking_id: int, email: str) -> dict[str, Any]:
    return {
        "booking_id": booking_id,
        "email": email,
        "name": "Guest",
        "time_zone": "UTC",
        "locale": "en",
    }


async def insert_booking(engine: AsyncEngine, row: dict[str, Any], attendee_email: str) -> int:
    """One booking and its attendee, one transaction: the floor's unit of work."""
    async with engine.connect() as conn:
        await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            booking_id = (
                await conn.execute(insert(Booking).returning(Booking.id), row)
            ).scalar_one()
            await conn.execute(insert(Attendee), attendee_row(booking_id, attendee_email))
    return int(booking_id)


_engine: dict[str, AsyncEngine] = {}


async def book(request: Request) -> Response:
    body = json.loads(await request.body())
    row = booking_row(
        user_id=int(os.environ["FLOOR_USER_ID"]),
        email=os.environ["FLOOR_EMAIL"],
        name=os.environ["FLOOR_NAME"],
        event_type_id=int(body["eventTypeId"]),
        start=datetime.fromisoformat(body["startTime"]),
        end=datetime.fromisoformat(body["endTime"]),
    )
    booking_id = await insert_booking(_engine["db"], row, body["email"])
    return JSONResponse({"booking": {"id": booking_id, "uid": row["uid"]}})


async def ready(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    _engine["db"] = create_engine(os.environ["FLOOR_DATABASE_URL"])
    try:
        yield
    finally:
        await _engine.pop("db").dispose()


app = Starlette(
    routes=[Route("/v1/bookings", book, methods=["POST"]), Route("/ready", ready)],
    lifespan=lifespan,
)
