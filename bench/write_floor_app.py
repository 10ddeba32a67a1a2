"""The floor of the booking-creation bench, and the same floor over HTTP.

`insert_booking` is the least database work a booking is: its row and its attendee's, inserted
with SQLAlchemy Core in one transaction on bookable's engine (SQLite: BEGIN IMMEDIATE, as the
server's writers). `bench/bookings.py` runs it directly (the raw floor) and, through ``app``, a
bare Starlette route that reads the seed body form, does only that and answers the new id (the
HTTP floor: what any Python HTTP server pays to take a booking and store it, with nothing else
a booking needs: no key, no checks, no outbox) and, through ``lean_book``, the least a *correct*
booking does, written as directly as Python allows (the lean floor): the key, the event type and
its owner, the host's lock, the overlap check, the booking, its attendee and (``lean_book_sending``)
its two email rows in one transaction, and an answer; no framework, no ORM objects, no validation
beyond the fields used (``lean_book`` writes no email rows: bookable with its emails off). Served
by uvicorn from a copy of this file
(bench/http.py would stand in for the standard library's `http` if bench/ were the app dir),
configured by FLOOR_* environment variables.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bookable.core.auth import hash_secret
from bookable.core.db import WRITE_OPTION, create_engine
from bookable.core.dispatch import notify_channel
from bookable.models import (
    Attendee,
    Booking,
    BookingStatus,
    EmailStatus,
    EventType,
    OutboundEmail,
    User,
)


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


# --- the lean floor: the least a correct booking does ---------------------------------------------

_BOOKINGS, _ATTENDEES, _EMAILS = Booking.__table__, Attendee.__table__, OutboundEmail.__table__
_BUSY = (BookingStatus.ACCEPTED, BookingStatus.PENDING)
# The email rows a real booking of the lean host writes ({kind, subject, recipient, facts} each).
_templates: list[dict[str, Any]] = []


@functools.cache
def _event_type_query(postgres: bool) -> Select[Any]:
    columns = [
        EventType.id, EventType.user_id, EventType.length, EventType.title,
        EventType.minimum_booking_notice, User.email, User.name, User.time_zone,
    ]  # fmt: skip
    if postgres:
        # The host's day lock in the event type's own statement (bookable takes it in a second
        # one): the busy read after it is a new statement, whose snapshot (READ COMMITTED) sees
        # every booking committed before the lock was granted.
        day = bindparam("day")
        columns.append(func.pg_advisory_xact_lock(EventType.user_id, day).label("locked"))
    return (
        select(*columns)
        .join(User, User.id == EventType.user_id)
        .where(EventType.id == bindparam("event_type_id"))
    )


# A range of the (user_id, start_time) index bounded on both sides, as bookable's busy read:
# from 31 days (the longest booking) before the start to the end (the lean host's bookings have
# no buffers). Open below it read the host's whole history; with LIMIT 1 PostgreSQL expected a
# match soon and scanned the table (~8 ms a booking once it held 20,000).
_LONGEST_BOOKING = timedelta(days=31)
_OVERLAP = select(_BOOKINGS.c.id).where(
    _BOOKINGS.c.user_id == bindparam("host"),
    _BOOKINGS.c.start_time >= bindparam("earliest", type_=_BOOKINGS.c.start_time.type),
    _BOOKINGS.c.start_time < bindparam("end"),
    _BOOKINGS.c.status.in_(_BUSY),
    _BOOKINGS.c.blocked_start < bindparam("end"),
    _BOOKINGS.c.blocked_end > bindparam("start"),
)


def _params(model: Any, keys: list[str], prefix: str = "") -> dict[str, Any]:
    """Column name -> bind parameter named ``prefix`` + the attribute key (``meta`` is the
    column ``metadata``)."""
    columns = inspect(model).columns
    return {columns[key].name: bindparam(prefix + key, type_=columns[key].type) for key in keys}


@functools.cache
def _defaults(model: Any) -> dict[str, Any]:
    """The scalar defaults of ``model``'s columns: an INSERT inside a CTE gets no Python-side
    defaults from SQLAlchemy (bookable's writes fill them the same way)."""
    columns = inspect(model).columns.items()
    return {
        key: column.default.arg
        for key, column in columns
        if column.default is not None and column.default.is_scalar
    }


def _with_defaults(model: Any, row: dict[str, Any]) -> dict[str, Any]:
    return {**_defaults(model), **row}


@functools.cache
def _all_in_one(
    booking_columns: tuple[str, ...],
    attendee_columns: tuple[str, ...],
    email_columns: tuple[str, ...],
    emails: int,
    notify: bool,
) -> Select[Any]:
    """PostgreSQL: the booking, its attendee and its email rows in one statement (built once);
    with ``notify``, the NOTIFY that wakes the email dispatchers rides on it, as on bookable's
    email INSERT."""
    new = (
        insert(_BOOKINGS)
        .values(_params(Booking, list(booking_columns)))
        .returning(_BOOKINGS.c.id)
        .cte("new_booking")
    )
    written = [new]
    values = _params(Attendee, list(attendee_columns), "a_")
    chosen = select(new.c.id, *values.values())
    written.append(
        insert(_ATTENDEES).from_select(["booking_id", *values], chosen).cte("new_attendee")
    )
    for index in range(emails):
        values = _params(OutboundEmail, list(email_columns), f"e{index}_")
        chosen = select(new.c.id, *values.values())
        written.append(
            insert(_EMAILS).from_select(["booking_id", *values], chosen).cte(f"email{index}")
        )
    query = select(new.c.id)
    if notify:
        query = query.add_columns(
            func.pg_notify(bindparam("notify_channel"), bindparam("notify_payload"))
        )
    for cte in written[1:]:
        query = query.add_cte(cte)
    return query


def _email_row(booking_id: int, user_id: int, uid: str, index: int, guest: str) -> dict[str, Any]:
    """The ``index``th email row of a new booking: kind, subject and facts as a real booking of
    the same host writes them (FLOOR_LEAN_EMAILS, taken by the bench from one), with the
    recipient, its own message id and invitation (``change``); PENDING, for the deployment's
    dispatcher to send as it sends bookable's."""
    template = _templates[index]
    now = datetime.now(UTC)
    token = secrets.token_hex(6)
    kind = template["kind"]
    recipient = guest if kind.startswith("attendee") else template["recipient"]
    facts = {**template["facts"], "change": f"{uid}.{token}"}
    return {
        "booking_id": booking_id, "user_id": user_id, "kind": kind, "recipient": recipient,
        "message_id": f"{uid}.{kind}.{token}.{index}@bookable", "subject": template["subject"],
        "facts": facts, "message": None,
        "status": EmailStatus.PENDING, "attempts": 0, "next_attempt_at": now,
        "created_at": now,
    }  # fmt: skip


async def _lean_unit(
    conn: AsyncConnection, body: dict[str, Any], caller: int, *, send: bool
) -> Response:
    postgres = conn.dialect.name == "postgresql"
    start = datetime.fromisoformat(body["startTime"])
    end = datetime.fromisoformat(body["endTime"])
    event_type_id = int(body["eventTypeId"])
    found = (
        await conn.execute(
            _event_type_query(postgres),
            {"event_type_id": event_type_id, "day": start.toordinal()},
        )
    ).first()
    if found is None or found.user_id != caller:
        return JSONResponse({"message": "Event type not found"}, status_code=404)
    if end - start != timedelta(minutes=found.length):
        return JSONResponse({"message": "Invalid event length"}, status_code=400)
    taken = await conn.scalar(
        _OVERLAP,
        {"host": caller, "start": start, "end": end, "earliest": start - _LONGEST_BOOKING},
    )
    if taken is not None:
        return JSONResponse({"message": "Booking already exists"}, status_code=409)
    row = booking_row(
        user_id=caller, email=found.email, name=found.name, event_type_id=event_type_id,
        start=start, end=end,
    )  # fmt: skip
    guest = {"name": body["name"], "email": body["email"], "time_zone": body["timeZone"]}
    attendee = {**attendee_row(0, guest["email"]), "name": guest["name"]}
    if postgres:
        row = _with_defaults(Booking, row)
        attendee = _with_defaults(Attendee, attendee)
        params = dict(row)
        attendee.pop("booking_id")
        params.update({f"a_{k}": v for k, v in attendee.items()})
        emails = len(_templates) if send else 0
        email: dict[str, Any] = {}
        for index in range(emails):
            email = _email_row(0, caller, row["uid"], index, guest["email"])
            email = _with_defaults(OutboundEmail, email)
            email.pop("booking_id")
            params.update({f"e{index}_{k}": v for k, v in email.items()})
        params.update(notify_channel=notify_channel("email"), notify_payload="email")
        shape = (tuple(row), tuple(attendee), tuple(email), emails, send)
        booking_id = await conn.scalar(_all_in_one(*shape), params)
    else:
        booking_id = await conn.scalar(insert(_BOOKINGS).returning(_BOOKINGS.c.id), row)
        await conn.execute(insert(_ATTENDEES), {**attendee, "booking_id": booking_id})
        if send:
            rows = [
                _email_row(booking_id, caller, row["uid"], index, guest["email"])
                for index in range(len(_templates))
            ]
            await conn.execute(insert(_EMAILS), rows)
    return JSONResponse(
        {
            "booking": {
                "id": booking_id, "uid": row["uid"], "userId": caller,
                "eventTypeId": event_type_id, "title": row["title"], "description": None,
                "startTime": body["startTime"], "endTime": body["endTime"],
                "attendees": [{"name": guest["name"], "email": guest["email"],
                               "timeZone": guest["time_zone"], "locale": "en"}],
                "status": "ACCEPTED", "location": "", "metadata": {},
                "responses": {"name": guest["name"], "email": guest["email"]},
                "paid": False, "fromReschedule": None, "recurringEventId": None,
            }
        }
    )  # fmt: skip


async def lean_book(request: Request) -> Response:
    return await _lean_book(request, send=False)


async def lean_book_sending(request: Request) -> Response:
    return await _lean_book(request, send=True)


async def _lean_book(request: Request, *, send: bool) -> Response:
    # bookable keeps a cache of the keys it verified: a hash and a dict lookup.
    digest = hash_secret(request.query_params.get("apiKey", "").removeprefix("cal_"))
    caller = _keys.get(digest)
    if caller is None:
        return JSONResponse({"message": "Your API key is not valid."}, status_code=401)
    body = json.loads(await request.body())
    async with _engine["db"].connect() as conn:
        await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin() as transaction:
            response = await _lean_unit(conn, body, caller, send=send)
            if response.status_code != 200:
                await transaction.rollback()
    return response


_keys: dict[str, int] = {}


async def ready(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    _engine["db"] = create_engine(os.environ["FLOOR_DATABASE_URL"])
    if key := os.environ.get("FLOOR_LEAN_KEY"):
        _keys[hash_secret(key.removeprefix("cal_"))] = int(os.environ["FLOOR_LEAN_USER_ID"])
        _templates[:] = json.loads(os.environ["FLOOR_LEAN_EMAILS"])
    try:
        yield
    finally:
        await _engine.pop("db").dispose()


app = Starlette(
    routes=[
        Route("/v1/bookings", book, methods=["POST"]),
        Route("/lean/v1/bookings", lean_book, methods=["POST"]),
        Route("/lean-sending/v1/bookings", lean_book_sending, methods=["POST"]),
        Route("/ready", ready),
    ],
    lifespan=lifespan,
)
