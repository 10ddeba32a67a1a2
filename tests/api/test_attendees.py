"""/v1/attendees: envelopes, validation, tenant isolation, admin behaviour, the seat limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.models import Attendee
from bookable.settings import Settings
from tests.conftest import Account

from .booking_helpers import TUESDAY_11, book, booking_of, frozen_app, hosted_event_type

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

FORBIDDEN = {"message": "Forbidden"}
NO_KEY = {"message": "No apiKey provided"}


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


async def create(
    client: httpx.AsyncClient, account: Account, booking_id: int, **fields: Any
) -> httpx.Response:
    body = {
        "bookingId": booking_id,
        "email": "carol@example.com",
        "name": "Carol",
        "timeZone": "America/New_York",
        **fields,
    }
    return await client.post("/v1/attendees", params=account.params, json=body)


async def create_ok(
    client: httpx.AsyncClient, account: Account, booking_id: int, **fields: Any
) -> dict[str, Any]:
    response = await create(client, account, booking_id, **fields)
    assert response.status_code == 200, response.text
    return dict(response.json()["attendee"])


async def stored(app: FastAPI, attendee_id: int) -> dict[str, Any] | None:
    async with app.state.sessions() as session:
        row = await session.get(Attendee, attendee_id)
        if row is None:
            return None
        return {
            "booking_id": row.booking_id,
            "name": row.name,
            "email": row.email,
            "time_zone": row.time_zone,
        }


async def attendees_of(app: FastAPI, booking_id: int) -> int:
    async with app.state.sessions() as session:
        query = select(func.count()).select_from(Attendee).where(Attendee.booking_id == booking_id)
        return int(await session.scalar(query) or 0)


# --- create ----------------------------------------------------------------------------------


async def test_create_has_cal_com_envelope_and_shape(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    response = await create(client, alice, booking_id, timeZone="america/new_york")
    assert response.status_code == 200
    assert response.json() == {
        "attendee": {
            "id": 2,  # the booker is attendee 1
            "bookingId": booking_id,
            "name": "Carol",
            "email": "carol@example.com",
            "timeZone": "America/New_York",  # stored in tzdata's spelling
            "locale": "en",
            "phoneNumber": None,
            "noShow": False,
        },
        "message": "Attendee created successfully",
    }
    assert await stored(app, 2) == {
        "booking_id": booking_id,
        "name": "Carol",
        "email": "carol@example.com",
        "time_zone": "America/New_York",
    }
    # The booking shows its new attendee.
    booking = await client.get(f"/v1/bookings/{booking_id}", params=alice.params)
    assert [a["email"] for a in booking.json()["booking"]["attendees"]] == [
        "guest@example.com",
        "carol@example.com",
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": "not-an-email"}, "invalid_string in 'email': Invalid email"),
        (
            {"timeZone": "Mars/Olympus"},
            "custom in 'timeZone': 'Mars/Olympus' is not a valid IANA time zone, "
            "e.g. 'Europe/London'",
        ),
        ({"name": ""}, "too_small in 'name': String must contain at least 1 character(s)"),
        ({"name": 5}, "invalid_type in 'name': Expected string, received number"),
        ({"bookingId": "one"}, "invalid_type in 'bookingId': Expected number, received string"),
        ({"bookingId": None}, "invalid_type in 'bookingId': Expected number, received null"),
        ({"bookingId": 0}, "too_small in 'bookingId': Number must be greater than 0"),
        ({"locale": "en"}, "Unrecognized key(s) in object: 'locale'"),
    ],
)
async def test_create_rejects_bad_input_naming_the_field(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    fields: dict[str, Any],
    message: str,
) -> None:
    booking_id = await booking_of(app, client, alice)
    response = await create(client, alice, booking_id, **fields)
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert await attendees_of(app, booking_id) == 1


async def test_create_requires_every_field(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.post("/v1/attendees", params=alice.params, json={})
    assert response.status_code == 400
    assert response.json() == {
        "message": "invalid_type in 'bookingId': Required; invalid_type in 'email': Required; "
        "invalid_type in 'name': Required; invalid_type in 'timeZone': Required"
    }


async def test_create_on_someone_elses_or_a_missing_booking_is_403(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    for target in (booking_id, 999):
        response = await create(client, bob, target)
        assert response.status_code == 403, target
        assert response.json() == FORBIDDEN
    assert await attendees_of(app, booking_id) == 1


# --- read ------------------------------------------------------------------------------------


async def test_list_shows_attendees_of_hosted_bookings_and_admin_sees_all(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    alices = await booking_of(app, client, alice)
    bobs = await booking_of(app, client, bob)
    await create_ok(client, alice, alices)

    def ids(response: httpx.Response) -> list[tuple[int, int]]:
        assert response.status_code == 200, response.text
        assert list(response.json()) == ["attendees"]
        return [(a["id"], a["bookingId"]) for a in response.json()["attendees"]]

    assert ids(await client.get("/v1/attendees", params=alice.params)) == [
        (1, alices),
        (3, alices),
    ]
    assert ids(await client.get("/v1/attendees", params=bob.params)) == [(2, bobs)]
    assert ids(await client.get("/v1/attendees", params=admin.params)) == [
        (1, alices),
        (2, bobs),
        (3, alices),
    ]


async def test_an_attendee_of_a_booking_does_not_list_it(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    # Cal.com lists attendees of the bookings a user hosts, not of those they attend.
    event_type_id = await hosted_event_type(app, alice)
    await book(client, alice, event_type_id, email=bob.email)
    response = await client.get("/v1/attendees", params=bob.params)
    assert response.json() == {"attendees": []}


async def test_get_one(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    response = await client.get(f"/v1/attendees/{created['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"attendee": created}


# --- change ----------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    response = await client.patch(
        f"/v1/attendees/{created['id']}",
        params=alice.params,
        json={"name": "Caroline", "timeZone": "asia/tokyo"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "attendee": {**created, "name": "Caroline", "timeZone": "Asia/Tokyo"}
    }
    assert await stored(app, created["id"]) == {
        "booking_id": booking_id,
        "name": "Caroline",
        "email": "carol@example.com",
        "time_zone": "Asia/Tokyo",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": None}, "custom in 'name': Expected a value, received null"),
        ({"email": "nope"}, "invalid_string in 'email': Invalid email"),
        ({"timeZone": "Nowhere"}, "custom in 'timeZone': 'Nowhere' is not a valid IANA time zone"),
        ({"bookingId": None}, "custom in 'bookingId': Expected a value, received null"),
        ({"noShow": True}, "Unrecognized key(s) in object: 'noShow'"),
    ],
)
async def test_patch_rejects_bad_input_naming_the_field(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    body: dict[str, Any],
    message: str,
) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    before = await stored(app, created["id"])
    response = await client.patch(f"/v1/attendees/{created['id']}", params=alice.params, json=body)
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)
    assert await stored(app, created["id"]) == before


async def test_patch_moves_an_attendee_only_to_a_hosted_booking(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    alices = await booking_of(app, client, alice)
    event_type_id = await hosted_event_type(app, alice, "second")
    alices_other = int((await book(client, alice, event_type_id, TUESDAY_11))["id"])
    bobs = await booking_of(app, client, bob)
    created = await create_ok(client, alice, alices)
    before = await stored(app, created["id"])

    for target in (bobs, 999):
        response = await client.patch(
            f"/v1/attendees/{created['id']}",
            params=alice.params,
            json={"bookingId": target, "name": "Moved"},
        )
        assert response.status_code == 403
        assert response.json() == {"message": "You don't have access to the booking"}
        assert await stored(app, created["id"]) == before

    response = await client.patch(
        f"/v1/attendees/{created['id']}", params=alice.params, json={"bookingId": alices_other}
    )
    assert response.status_code == 200, response.text
    assert response.json()["attendee"]["bookingId"] == alices_other


async def test_delete(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    response = await client.delete(f"/v1/attendees/{created['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"message": f"Attendee with id: {created['id']} deleted successfully"}
    assert await stored(app, created["id"]) is None
    assert await attendees_of(app, booking_id) == 1


# --- isolation and admins --------------------------------------------------------------------


async def test_other_users_cannot_read_change_or_delete(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    before = await stored(app, created["id"])
    path = f"/v1/attendees/{created['id']}"
    for response in (
        await client.get(path, params=bob.params),
        await client.patch(path, params=bob.params, json={"name": "Mallory"}),
        await client.delete(path, params=bob.params),
    ):
        assert response.status_code == 403
        assert response.json() == FORBIDDEN
    assert await stored(app, created["id"]) == before
    # Bob cannot take Alice's attendee into a booking of his own either.
    bobs = await booking_of(app, client, bob)
    response = await client.patch(path, params=bob.params, json={"bookingId": bobs})
    assert response.status_code == 403
    assert await stored(app, created["id"]) == before


async def test_missing_id_is_403_for_users_and_404_for_admins(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        for missing in ("999", str(2**40)):
            kwargs: dict[str, Any] = {"json": {"name": "X"}} if method == "PATCH" else {}
            path = f"/v1/attendees/{missing}"
            as_user = await client.request(method, path, params=alice.params, **kwargs)
            assert as_user.status_code == 403
            assert as_user.json() == FORBIDDEN
            as_admin = await client.request(method, path, params=admin.params, **kwargs)
            assert as_admin.status_code == 404
            assert as_admin.json() == {"message": "Attendee not found"}


async def test_non_numeric_id_is_400(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/attendees/abc", params=alice.params)
    assert response.status_code == 400
    assert response.json() == {"message": "invalid_type in 'id': Expected number, received nan"}


async def test_admin_creates_reads_changes_and_deletes_anyones(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    alices = await booking_of(app, client, alice)
    bobs = await booking_of(app, client, bob)
    created = await create_ok(client, admin, alices)
    path = f"/v1/attendees/{created['id']}"
    assert (await client.get(path, params=admin.params)).json() == {"attendee": created}
    moved = await client.patch(path, params=admin.params, json={"bookingId": bobs})
    assert moved.status_code == 200
    assert moved.json()["attendee"]["bookingId"] == bobs
    # Now Bob hosts it, and Alice no longer sees it.
    assert (await client.get(path, params=bob.params)).status_code == 200
    assert (await client.get(path, params=alice.params)).status_code == 403
    assert (await client.delete(path, params=admin.params)).status_code == 200
    assert await stored(app, created["id"]) is None

    missing = await create(client, admin, 999)
    assert missing.status_code == 404
    assert missing.json() == {"message": "Booking not found"}
    moved_nowhere = await client.patch(
        "/v1/attendees/1", params=admin.params, json={"bookingId": 999}
    )
    assert moved_nowhere.status_code == 404
    assert moved_nowhere.json() == {"message": "Booking not found"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/attendees"),
        ("POST", "/v1/attendees"),
        ("GET", "/v1/attendees/1"),
        ("PATCH", "/v1/attendees/1"),
        ("DELETE", "/v1/attendees/1"),
        ("GET", "/attendees"),
    ],
)
async def test_no_key_is_401(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path, json={"name": "x"})
    assert response.status_code == 401
    assert response.json() == NO_KEY


async def test_bad_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/attendees", params={"apiKey": "cal_" + "0" * 32})
    assert response.status_code == 401
    assert response.json() == {"error": "Your API key is not valid."}


# --- seats -----------------------------------------------------------------------------------


async def test_a_seated_booking_takes_no_more_attendees_than_seats(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    booking_id = await booking_of(app, client, alice, seats_per_time_slot=2)
    await create_ok(client, alice, booking_id)
    response = await create(client, alice, booking_id, email="dave@example.com")
    assert response.status_code == 409
    body = response.json()
    assert body["message"] == "booking_seats_full_error"
    assert "seat" in body["reason"]
    assert await attendees_of(app, booking_id) == 2


async def test_moving_an_attendee_into_a_full_seated_booking_is_refused(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    seated = await booking_of(app, client, alice, seats_per_time_slot=1)
    event_type_id = await hosted_event_type(app, alice, "plain")
    plain = int((await book(client, alice, event_type_id, TUESDAY_11))["id"])
    mover = await create_ok(client, alice, plain)
    response = await client.patch(
        f"/v1/attendees/{mover['id']}", params=alice.params, json={"bookingId": seated}
    )
    assert response.status_code == 409
    assert response.json()["message"] == "booking_seats_full_error"
    assert (await stored(app, mover["id"]) or {})["booking_id"] == plain
    # Staying on a full booking is not taking another seat.
    guest = await client.patch("/v1/attendees/1", params=alice.params, json={"bookingId": seated})
    assert guest.status_code == 200, guest.text


async def test_concurrent_adds_never_exceed_the_seats(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    # The count and the insert happen under a lock on the booking row.
    booking_id = await booking_of(app, client, alice, seats_per_time_slot=3)
    responses = await asyncio.gather(
        *(create(client, alice, booking_id, email=f"p{i}@example.com") for i in range(6))
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 409, 409, 409, 409]
    assert await attendees_of(app, booking_id) == 3


async def test_unseated_bookings_have_no_attendee_limit(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    for i in range(3):
        await create_ok(client, alice, booking_id, email=f"p{i}@example.com")
    assert await attendees_of(app, booking_id) == 4
