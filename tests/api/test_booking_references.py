"""/v1/booking-references: envelopes, validation, deleted references, isolation, admins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.models import BookingReference
from bookable.settings import Settings
from tests.conftest import Account

from .booking_helpers import booking_of, frozen_app

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

FORBIDDEN = {"message": "Forbidden"}
BOOKING_NOT_FOUND = {"message": "Booking not found"}
NO_KEY = {"message": "No apiKey provided"}


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


async def create(
    client: httpx.AsyncClient, account: Account, booking_id: int, **fields: Any
) -> httpx.Response:
    body = {"type": "google_calendar", "uid": "evt-1", "bookingId": booking_id, **fields}
    return await client.post("/v1/booking-references", params=account.params, json=body)


async def create_ok(
    client: httpx.AsyncClient, account: Account, booking_id: int, **fields: Any
) -> dict[str, Any]:
    response = await create(client, account, booking_id, **fields)
    assert response.status_code == 200, response.text
    return dict(response.json()["booking_reference"])


async def stored(app: FastAPI, reference_id: int) -> dict[str, Any] | None:
    async with app.state.sessions() as session:
        row = await session.get(BookingReference, reference_id)
        if row is None:
            return None
        return {
            "booking_id": row.booking_id,
            "type": row.type,
            "uid": row.uid,
            "meeting_url": row.meeting_url,
            "deleted": row.deleted,
        }


async def count_references(app: FastAPI) -> int:
    async with app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(BookingReference)) or 0)


# --- create ----------------------------------------------------------------------------------


async def test_create_has_cal_com_envelope_and_shape(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    response = await create(
        client,
        alice,
        booking_id,
        type="zoom_video",
        uid="zoom-123",
        meetingId="123",
        meetingPassword="secret",
        meetingUrl="https://zoom.example/j/123",
        externalCalendarId="primary",
        thirdPartyRecurringEventId="series-9",
        credentialId=7,
        deleted=None,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "booking_reference": {
            "id": 1,
            "type": "zoom_video",
            "bookingId": booking_id,
            "uid": "zoom-123",
            "meetingId": "123",
            "meetingPassword": "secret",
            "meetingUrl": "https://zoom.example/j/123",
            "deleted": None,
            "externalCalendarId": "primary",
            "credentialId": 7,
            "thirdPartyRecurringEventId": "series-9",
        },
        "message": "Booking reference created successfully",
    }


async def test_create_with_only_required_fields_leaves_the_rest_null(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    assert created == {
        "id": created["id"],
        "type": "google_calendar",
        "bookingId": booking_id,
        "uid": "evt-1",
        "meetingId": None,
        "meetingPassword": None,
        "meetingUrl": None,
        "deleted": None,
        "externalCalendarId": None,
        "credentialId": None,
        "thirdPartyRecurringEventId": None,
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": ""}, "too_small in 'type': String must contain at least 1 character(s)"),
        ({"uid": ""}, "too_small in 'uid': String must contain at least 1 character(s)"),
        ({"type": None}, "invalid_type in 'type': Expected string, received null"),
        ({"bookingId": None}, "invalid_type in 'bookingId': Expected number, received null"),
        ({"bookingId": "x"}, "invalid_type in 'bookingId': Expected number, received string"),
        ({"deleted": "yes"}, "invalid_type in 'deleted': Expected boolean, received string"),
        ({"meetingId": "x" * 256}, "too_big in 'meetingId': String must contain at most 255"),
        ({"credentialId": -1}, "too_small in 'credentialId': Number must be greater than 0"),
        ({"provider": "zoom"}, "Unrecognized key(s) in object: 'provider'"),
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
    assert response.json()["message"].startswith(message)
    assert await count_references(app) == 0


async def test_create_requires_type_uid_and_booking(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.post("/v1/booking-references", params=alice.params, json={})
    assert response.status_code == 400
    assert response.json() == {
        "message": "invalid_type in 'type': Required; invalid_type in 'uid': Required; "
        "invalid_type in 'bookingId': Required"
    }


async def test_create_on_someone_elses_or_a_missing_booking_is_404(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    alices = await booking_of(app, client, alice)
    for account, target in ((bob, alices), (bob, 999), (admin, 999)):
        response = await create(client, account, target)
        assert response.status_code == 404
        assert response.json() == BOOKING_NOT_FOUND
    assert await count_references(app) == 0


# --- read ------------------------------------------------------------------------------------


async def test_list_hides_deleted_references_from_users_and_admin_sees_all(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    alices = await booking_of(app, client, alice)
    bobs = await booking_of(app, client, bob)
    live = await create_ok(client, alice, alices, uid="live")
    kept = await create_ok(client, alice, alices, uid="kept", deleted=False)
    gone = await create_ok(client, alice, alices, uid="gone", deleted=True)
    bobs_ref = await create_ok(client, bob, bobs, uid="bobs")

    def uids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        assert list(response.json()) == ["booking_references"]
        return [r["uid"] for r in response.json()["booking_references"]]

    assert uids(await client.get("/v1/booking-references", params=alice.params)) == [
        "live",
        "kept",
    ]
    assert uids(await client.get("/v1/booking-references", params=bob.params)) == ["bobs"]
    assert uids(await client.get("/v1/booking-references", params=admin.params)) == [
        "live",
        "kept",
        "gone",
        "bobs",
    ]
    # The deleted one is still readable by id.
    response = await client.get(f"/v1/booking-references/{gone['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"booking_reference": gone}
    assert live["deleted"] is None and kept["deleted"] is False and bobs_ref["bookingId"] == bobs


async def test_get_one(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    response = await client.get(f"/v1/booking-references/{created['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"booking_reference": created}


# --- change ----------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id, meetingId="m-1")
    response = await client.patch(
        f"/v1/booking-references/{created['id']}",
        params=alice.params,
        json={"meetingUrl": "https://meet.example/abc", "meetingId": None},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "booking_reference": {
            **created,
            "meetingUrl": "https://meet.example/abc",
            "meetingId": None,
        }
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": None}, "custom in 'type': Expected a value, received null"),
        ({"uid": ""}, "too_small in 'uid': String must contain at least 1 character(s)"),
        ({"bookingId": None}, "custom in 'bookingId': Expected a value, received null"),
        ({"id": 5}, "Unrecognized key(s) in object: 'id'"),
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
    response = await client.patch(
        f"/v1/booking-references/{created['id']}", params=alice.params, json=body
    )
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert await stored(app, created["id"]) == before


async def test_a_deleted_reference_cannot_be_edited(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    marked = await client.patch(
        f"/v1/booking-references/{created['id']}", params=alice.params, json={"deleted": True}
    )
    assert marked.status_code == 200
    before = await stored(app, created["id"])
    assert before is not None and before["deleted"] is True
    for account in (alice, admin):
        response = await client.patch(
            f"/v1/booking-references/{created['id']}",
            params=account.params,
            json={"deleted": None, "uid": "revived"},
        )
        assert response.status_code == 404
        assert response.json() == {
            "message": f"Booking reference with id: {created['id']} is deleted and cannot be edited"
        }
    assert await stored(app, created["id"]) == before


async def test_patch_moves_a_reference_only_to_a_hosted_booking(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    alices = await booking_of(app, client, alice)
    bobs = await booking_of(app, client, bob)
    created = await create_ok(client, alice, alices)
    before = await stored(app, created["id"])
    for target in (bobs, 999):
        response = await client.patch(
            f"/v1/booking-references/{created['id']}",
            params=alice.params,
            json={"bookingId": target, "uid": "moved"},
        )
        assert response.status_code == 404
        assert response.json() == BOOKING_NOT_FOUND
    assert await stored(app, created["id"]) == before


async def test_delete(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    response = await client.delete(f"/v1/booking-references/{created['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"message": f"BookingReference with id: {created['id']} deleted"}
    assert await stored(app, created["id"]) is None


# --- isolation and admins --------------------------------------------------------------------


async def test_other_users_cannot_read_change_or_delete(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    booking_id = await booking_of(app, client, alice)
    created = await create_ok(client, alice, booking_id)
    before = await stored(app, created["id"])
    path = f"/v1/booking-references/{created['id']}"
    for response in (
        await client.get(path, params=bob.params),
        await client.patch(path, params=bob.params, json={"meetingUrl": "https://evil.example"}),
        await client.delete(path, params=bob.params),
    ):
        assert response.status_code == 403
        assert response.json() == FORBIDDEN
    assert await stored(app, created["id"]) == before
    assert (await client.get("/v1/booking-references", params=bob.params)).json() == {
        "booking_references": []
    }


async def test_missing_id_is_403_for_users_and_404_for_admins(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        for missing in ("999", str(2**40)):
            kwargs: dict[str, Any] = {"json": {"uid": "x"}} if method == "PATCH" else {}
            path = f"/v1/booking-references/{missing}"
            as_user = await client.request(method, path, params=alice.params, **kwargs)
            assert as_user.status_code == 403
            assert as_user.json() == FORBIDDEN
            as_admin = await client.request(method, path, params=admin.params, **kwargs)
            assert as_admin.status_code == 404
            assert as_admin.json() == {"message": "Booking reference not found"}


async def test_admin_creates_reads_changes_and_deletes_anyones(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    alices = await booking_of(app, client, alice)
    bobs = await booking_of(app, client, bob)
    created = await create_ok(client, admin, alices)
    path = f"/v1/booking-references/{created['id']}"
    assert (await client.get(path, params=admin.params)).json() == {"booking_reference": created}
    assert (await client.get(path, params=alice.params)).status_code == 200
    moved = await client.patch(path, params=admin.params, json={"bookingId": bobs})
    assert moved.status_code == 200
    assert moved.json()["booking_reference"]["bookingId"] == bobs
    assert (await client.get(path, params=alice.params)).status_code == 403
    assert (await client.delete(path, params=admin.params)).status_code == 200
    assert await stored(app, created["id"]) is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/booking-references"),
        ("POST", "/v1/booking-references"),
        ("GET", "/v1/booking-references/1"),
        ("PATCH", "/v1/booking-references/1"),
        ("DELETE", "/v1/booking-references/1"),
        ("GET", "/booking-references"),
    ],
)
async def test_no_key_is_401(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path, json={"uid": "x"})
    assert response.status_code == 401
    assert response.json() == NO_KEY
