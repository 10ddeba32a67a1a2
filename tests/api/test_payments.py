"""/v1/payments: read-only; the payments of the bookings a caller hosts (no admin mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.models import Payment
from bookable.settings import Settings
from tests.conftest import Account

from .booking_helpers import TUESDAY_11, book, frozen_app, hosted_event_type

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

NO_KEY = {"message": "No apiKey provided"}
ONLY_GET = {"message": "Only GET Method allowed"}


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


async def paid_booking(
    app: FastAPI, client: httpx.AsyncClient, account: Account, start: str | None = None
) -> dict[str, Any]:
    """A booking of a priced event type (EUR 25.00) ``account`` hosts: it comes with a payment."""
    event_type_id = await hosted_event_type(app, account, price=2500, currency="eur")
    booking = await book(client, account, event_type_id, *([start] if start else []))
    assert booking["paymentRequired"] is True
    return booking


async def stored(app: FastAPI, payment_id: int) -> dict[str, Any] | None:
    async with app.state.sessions() as session:
        row = await session.get(Payment, payment_id)
        if row is None:
            return None
        return {"booking_id": row.booking_id, "amount": row.amount, "success": row.success}


async def test_a_priced_booking_shows_its_unpaid_payment(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    booking = await paid_booking(app, client, alice)
    expected = {
        "id": booking["paymentId"],
        "uid": booking["paymentUid"],
        "amount": 2500,
        "success": False,
        "refunded": False,
        "fee": 0,
        "paymentOption": "ON_BOOKING",
        "currency": "eur",
        "bookingId": booking["id"],
    }
    listed = await client.get("/v1/payments", params=alice.params)
    assert listed.status_code == 200
    assert listed.json() == {"payments": [expected]}
    one = await client.get(f"/v1/payments/{booking['paymentId']}", params=alice.params)
    assert one.status_code == 200
    assert one.json() == {"payment": expected}


async def test_a_free_booking_has_no_payment(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    event_type_id = await hosted_event_type(app, alice)
    await book(client, alice, event_type_id)
    response = await client.get("/v1/payments", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"payments": []}


async def test_someone_elses_payment_answers_as_a_missing_one(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    # Cal.com answers 401 here, which tells that the id exists: Bookable answers 404 for both.
    booking = await paid_booking(app, client, alice)
    theirs = await client.get(f"/v1/payments/{booking['paymentId']}", params=bob.params)
    assert theirs.status_code == 404
    assert theirs.json() == {"message": f"Payment with id: {booking['paymentId']} not found"}
    assert (await client.get("/v1/payments", params=bob.params)).json() == {"payments": []}
    for missing in (999, 2**40):
        response = await client.get(f"/v1/payments/{missing}", params=alice.params)
        assert response.status_code == 404
        assert response.json() == {"message": f"Payment with id: {missing} not found"}


async def test_the_payer_as_attendee_does_not_see_the_payment(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    # Cal.com lists payments of the bookings a user hosts, not of those they attend.
    event_type_id = await hosted_event_type(app, alice, price=900)
    booking = await book(client, alice, event_type_id, email=bob.email)
    assert (await client.get("/v1/payments", params=bob.params)).json() == {"payments": []}
    response = await client.get(f"/v1/payments/{booking['paymentId']}", params=bob.params)
    assert response.status_code == 404


async def test_admins_see_only_the_payments_of_their_own_bookings(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    # Cal.com v1 has no admin mode on payments.
    alices = await paid_booking(app, client, alice)
    admins = await paid_booking(app, client, admin, TUESDAY_11)
    listed = await client.get("/v1/payments", params=admin.params)
    assert [p["id"] for p in listed.json()["payments"]] == [admins["paymentId"]]
    response = await client.get(f"/v1/payments/{alices['paymentId']}", params=admin.params)
    assert response.status_code == 404
    assert response.json() == {"message": f"Payment with id: {alices['paymentId']} not found"}


async def test_non_numeric_id_is_400(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/payments/abc", params=alice.params)
    assert response.status_code == 400
    assert response.json() == {"message": "invalid_type in 'id': Expected number, received nan"}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/v1/payments", "/v1/payments/{id}", "/payments"])
async def test_other_methods_are_405_and_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, method: str, path: str
) -> None:
    booking = await paid_booking(app, client, alice)
    before = await stored(app, booking["paymentId"])
    response = await client.request(
        method,
        path.format(id=booking["paymentId"]),
        params=alice.params,
        json={"success": True, "amount": 1},
    )
    assert response.status_code == 405
    assert response.json() == ONLY_GET
    assert response.headers["allow"] == "GET"
    assert await stored(app, booking["paymentId"]) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/payments"),
        ("GET", "/v1/payments/1"),
        ("GET", "/payments"),
        # As in Cal.com, the key is checked before the method.
        ("POST", "/v1/payments"),
        ("DELETE", "/v1/payments/1"),
    ],
)
async def test_no_key_is_401(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401
    assert response.json() == NO_KEY


async def test_priced_seated_slot_is_shared_while_pending(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    """Bookers of a priced seated slot join one PENDING booking instead of opening new ones."""
    event_type_id = await hosted_event_type(
        app, alice, slug="paid-seats", price=500, currency="eur", seats_per_time_slot=2
    )
    first = await book(client, alice, event_type_id, TUESDAY_11, email="a1@example.com")
    second = await book(client, alice, event_type_id, TUESDAY_11, email="a2@example.com")
    assert first["status"] == "PENDING"
    assert second["id"] == first["id"]
    assert {a["email"] for a in second["attendees"]} == {"a1@example.com", "a2@example.com"}
    third = await client.post(
        "/v1/bookings",
        params=alice.params,
        json={
            "eventTypeId": event_type_id,
            "start": TUESDAY_11,
            "timeZone": "UTC",
            "responses": {"name": "Three", "email": "a3@example.com"},
        },
    )
    assert third.status_code == 409, third.text
    assert third.json()["message"] == "booking_seats_full_error"


async def test_simultaneous_bookers_of_a_priced_seated_slot_share_one_booking(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    """Pending bookings are not covered by the overlap constraint: the per-host lock taken
    before the availability check must still make later bookers join the first one."""
    import asyncio

    from sqlalchemy import func, select

    from bookable.models import Attendee, Booking

    event_type_id = await hosted_event_type(
        app, alice, slug="paid-seats", price=500, currency="eur", seats_per_time_slot=3
    )

    async def attempt(n: int) -> httpx.Response:
        return await client.post(
            "/v1/bookings",
            params=alice.params,
            json={
                "eventTypeId": event_type_id,
                "start": TUESDAY_11,
                "timeZone": "UTC",
                "responses": {"name": f"Guest {n}", "email": f"g{n}@example.com"},
            },
        )

    responses = await asyncio.gather(*(attempt(n) for n in range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 200, 409, 409, 409], [r.text for r in responses]
    async with app.state.sessions() as session:
        bookings = await session.scalar(
            select(func.count()).select_from(Booking).where(Booking.event_type_id == event_type_id)
        )
        attendees = await session.scalar(select(func.count()).select_from(Attendee))
    assert (bookings, attendees) == (1, 3)
