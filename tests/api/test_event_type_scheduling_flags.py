"""offsetStart and requiresConfirmationWillBlockSlot: Cal.com columns, accepted at the top level
of POST/PATCH /v1/event-types and inside `metadata`, each kept in one place (offsetStart its
column, the other the metadata key), and both taking effect on /slots and bookings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.models import EventType
from bookable.settings import Settings
from tests.conftest import Account

from .booking_helpers import frozen_app
from .scheduling_seed import add_schedule

DAY = "2026-12-01"  # a Tuesday; NOW (booking_helpers) is 2026-01-05


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


async def create(client: httpx.AsyncClient, account: Account, **fields: Any) -> httpx.Response:
    body = {"title": "Chat", "slug": "chat", "length": 30, "minimumBookingNotice": 0, **fields}
    return await client.post("/v1/event-types", params=account.params, json=body)


async def create_ok(client: httpx.AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    r = await create(client, account, **fields)
    assert r.status_code == 200, r.text
    return dict(r.json()["event_type"])


async def patch(
    client: httpx.AsyncClient, account: Account, event_type_id: int, **fields: Any
) -> httpx.Response:
    return await client.patch(
        f"/v1/event-types/{event_type_id}", params=account.params, json=fields
    )


async def stored(app: FastAPI, event_type_id: int) -> EventType:
    async with app.state.sessions() as session:
        row = await session.get(EventType, event_type_id)
        assert row is not None
        return row


async def slot_times(client: httpx.AsyncClient, account: Account, event_type_id: int) -> list[str]:
    r = await client.get(
        "/v1/slots",
        params={**account.params, "eventTypeId": event_type_id, "startTime": DAY, "endTime": DAY},
    )
    assert r.status_code == 200, r.text
    return [
        datetime.fromisoformat(s["time"]).strftime("%H:%M") for s in r.json()["slots"].get(DAY, [])
    ]


async def book(
    client: httpx.AsyncClient, account: Account, event_type_id: int, start: str, email: str
) -> httpx.Response:
    return await client.post(
        "/v1/bookings",
        params=account.params,
        json={
            "eventTypeId": event_type_id,
            "start": start,
            "timeZone": "UTC",
            "language": "en",
            "metadata": {},
            "responses": {"name": "Guest", "email": email},
        },
    )


# --- offsetStart ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["top", "metadata"])
async def test_offset_start_from_either_place_lives_in_its_column_and_shifts_slots(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, where: str
) -> None:
    await add_schedule(app, alice.id, "UTC")
    fields: dict[str, Any] = (
        {"offsetStart": 5} if where == "top" else {"metadata": {"offsetStart": 5, "apps": {"x": 1}}}
    )
    created = await create_ok(client, alice, **fields)
    assert "offsetStart" not in created  # not in Cal.com's v1 read shape
    assert created["metadata"] == (None if where == "top" else {"apps": {"x": 1}})
    row = await stored(app, created["id"])
    assert row.offset_start == 5
    assert "offsetStart" not in (row.meta or {})
    times = await slot_times(client, alice, created["id"])
    # Each start moves 5 minutes on from the previous step: 09:05, 09:40, 10:15, ...
    assert times[:3] == ["09:05", "09:40", "10:15"]
    r = await book(client, alice, created["id"], f"{DAY}T09:40:00Z", "ann@example.com")
    assert r.status_code == 200, r.text


async def test_offset_start_patched_through_metadata(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await add_schedule(app, alice.id, "UTC")
    created = await create_ok(client, alice)
    assert (await slot_times(client, alice, created["id"]))[:2] == ["09:00", "09:30"]
    r = await patch(client, alice, created["id"], metadata={"offsetStart": 10})
    assert r.status_code == 200, r.text
    assert r.json()["event_type"]["metadata"] == {}
    assert (await stored(app, created["id"])).offset_start == 10
    assert (await slot_times(client, alice, created["id"]))[:2] == ["09:10", "09:50"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"offsetStart": 5, "metadata": {"offsetStart": 10}}, "metadata,offsetStart"),
        ({"metadata": {"offsetStart": -1}}, "metadata,offsetStart"),
        ({"metadata": {"offsetStart": "soon"}}, "metadata,offsetStart"),
        (
            {
                "requiresConfirmationWillBlockSlot": True,
                "metadata": {"requiresConfirmationWillBlockSlot": False},
            },
            "metadata,requiresConfirmationWillBlockSlot",
        ),
        ({"requiresConfirmationWillBlockSlot": "maybe"}, "requiresConfirmationWillBlockSlot"),
    ],
)
async def test_bad_or_contradicting_values_are_a_400_naming_the_field(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, fields: dict[str, Any], field: str
) -> None:
    r = await create(client, alice, **fields)
    assert r.status_code == 400, r.text
    assert f"'{field}'" in r.json()["message"]
    listed = await client.get("/v1/event-types", params=alice.params)
    assert listed.json()["event_types"] == []


# --- requiresConfirmationWillBlockSlot -----------------------------------------------------


async def test_will_block_slot_at_the_top_level_is_kept_in_metadata_and_blocks(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await add_schedule(app, alice.id, "UTC")
    created = await create_ok(
        client, alice, requiresConfirmation=True, requiresConfirmationWillBlockSlot=True,
        metadata={"apps": {"x": 1}},
    )  # fmt: skip
    assert "requiresConfirmationWillBlockSlot" not in created
    assert created["metadata"] == {"apps": {"x": 1}, "requiresConfirmationWillBlockSlot": True}
    first = await book(client, alice, created["id"], f"{DAY}T10:00:00Z", "ann@example.com")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "PENDING"
    # The pending booking holds its slot: /slots hides it and a second booking is refused.
    assert "10:00" not in await slot_times(client, alice, created["id"])
    second = await book(client, alice, created["id"], f"{DAY}T10:00:00Z", "bea@example.com")
    assert second.status_code == 409, second.text
    assert second.json()["message"] == "no_available_users_found_error"

    # PATCH at the top level merges into the stored metadata; false frees the slot again.
    r = await patch(client, alice, created["id"], requiresConfirmationWillBlockSlot=False)
    assert r.status_code == 200, r.text
    assert r.json()["event_type"]["metadata"] == {
        "apps": {"x": 1},
        "requiresConfirmationWillBlockSlot": False,
    }
    assert "10:00" in await slot_times(client, alice, created["id"])
    third = await book(client, alice, created["id"], f"{DAY}T10:00:00Z", "cid@example.com")
    assert third.status_code == 200, third.text


async def test_without_will_block_slot_a_pending_booking_does_not_block(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await add_schedule(app, alice.id, "UTC")
    created = await create_ok(client, alice, requiresConfirmation=True)
    first = await book(client, alice, created["id"], f"{DAY}T10:00:00Z", "ann@example.com")
    assert first.json()["status"] == "PENDING", first.text
    assert "10:00" in await slot_times(client, alice, created["id"])
    r = await patch(client, alice, created["id"], requiresConfirmationWillBlockSlot=True)
    assert r.status_code == 200, r.text
    assert "10:00" not in await slot_times(client, alice, created["id"])
