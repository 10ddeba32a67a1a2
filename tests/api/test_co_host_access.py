"""Co-hosts of a team booking see, and manage as the booking's rules allow, its attendees,
booking references and payments; never those of bookings they are not on.

alice (OWNER) and bob host a priced COLLECTIVE event type; alice organises its bookings, bob is
their co-host (a `booking_hosts` row with organizer = false). carol is a team member who hosts
nothing. alice also has a personal booking bob is not on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.settings import Settings
from tests.api.booking_helpers import frozen_app
from tests.api.test_team_scheduling import hours, post_booking, team_event_type
from tests.api.test_teams import add_member, create_team
from tests.conftest import Account

from .booking_helpers import book, hosted_event_type


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


@dataclass
class Scene:
    alice: Account
    bob: Account
    carol: Account
    team_booking: dict[str, Any]
    personal_booking: dict[str, Any]


@pytest.fixture
async def scene(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    make_account: Callable[..., Any],
) -> Scene:
    carol = await make_account("carol")
    team_id = int((await create_team(client, alice, slug="crew"))["team"]["id"])
    for member in (bob, carol):
        await add_member(client, alice, member, team_id)
    await hours(app, bob, "UTC")
    personal_type = await hosted_event_type(app, alice, slug="solo")
    personal = await book(client, alice, personal_type, email="solo-guest@example.com")
    panel = await team_event_type(
        client, alice, team_id, "COLLECTIVE", [(alice, False), (bob, False)],
        price=2500, currency="eur",
    )  # fmt: skip
    r = await post_booking(client, alice, panel, "2026-01-06T14:00:00Z", "panel-guest@example.com")
    assert r.status_code == 200, r.text
    team_booking = r.json()
    assert team_booking["userId"] == alice.id
    assert team_booking["payment"], "a priced booking has a payment"
    return Scene(alice, bob, carol, team_booking, personal)


def emails(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {a["email"] for a in response.json()["attendees"]}


async def test_co_host_sees_and_manages_the_attendees(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    bob, carol = scene.bob, scene.carol
    booking_id = scene.team_booking["id"]
    assert emails(await client.get("/v1/attendees", params=bob.params)) == {
        "panel-guest@example.com"
    }
    assert emails(await client.get("/v1/attendees", params=carol.params)) == set()
    # The organiser still sees both of their bookings' attendees.
    assert emails(await client.get("/v1/attendees", params=scene.alice.params)) == {
        "panel-guest@example.com",
        "solo-guest@example.com",
    }

    (attendee,) = scene.team_booking["attendees"]
    attendee_id = attendee["id"]
    r = await client.get(f"/v1/attendees/{attendee_id}", params=bob.params)
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/v1/attendees/{attendee_id}", params=bob.params, json={"name": "Renamed"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["attendee"]["name"] == "Renamed"
    new = {"bookingId": booking_id, "email": "extra@example.com", "name": "X", "timeZone": "UTC"}
    r = await client.post("/v1/attendees", params=bob.params, json=new)
    assert r.status_code == 200, r.text

    # Someone on no booking of the pair, and bob on alice's personal booking: refused.
    for path in (f"/v1/attendees/{attendee_id}",):
        r = await client.get(path, params=carol.params)
        assert r.status_code == 403, r.text
        r = await client.patch(path, params=carol.params, json={"name": "Hacked"})
        assert r.status_code == 403, r.text
    r = await client.post("/v1/attendees", params=carol.params, json=new)
    assert r.status_code == 403, r.text
    solo_attendee = scene.personal_booking["attendees"][0]["id"]
    r = await client.get(f"/v1/attendees/{solo_attendee}", params=bob.params)
    assert r.status_code == 403, r.text
    r = await client.post(
        "/v1/attendees",
        params=bob.params,
        json={**new, "bookingId": scene.personal_booking["id"]},
    )
    assert r.status_code == 403, r.text
    r = await client.delete(f"/v1/attendees/{attendee_id}", params=bob.params)
    assert r.status_code == 200, r.text


async def test_co_host_sees_and_manages_the_references(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    alice, bob, carol = scene.alice, scene.bob, scene.carol
    body = {"bookingId": scene.team_booking["id"], "type": "daily_video", "uid": "room-1"}
    r = await client.post("/v1/booking-references", params=bob.params, json=body)
    assert r.status_code == 200, r.text
    reference_id = r.json()["booking_reference"]["id"]
    solo = {"bookingId": scene.personal_booking["id"], "type": "daily_video", "uid": "room-2"}
    r = await client.post("/v1/booking-references", params=alice.params, json=solo)
    assert r.status_code == 200, r.text
    solo_id = r.json()["booking_reference"]["id"]

    def uids(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {ref["uid"] for ref in response.json()["booking_references"]}

    assert uids(await client.get("/v1/booking-references", params=bob.params)) == {"room-1"}
    assert uids(await client.get("/v1/booking-references", params=alice.params)) == {
        "room-1",
        "room-2",
    }
    assert uids(await client.get("/v1/booking-references", params=carol.params)) == set()
    r = await client.patch(
        f"/v1/booking-references/{reference_id}",
        params=bob.params,
        json={"meetingUrl": "https://meet.example/room-1"},
    )
    assert r.status_code == 200, r.text
    for caller, ref in ((carol, reference_id), (bob, solo_id)):
        r = await client.get(f"/v1/booking-references/{ref}", params=caller.params)
        assert r.status_code in (403, 404), r.text
    r = await client.post("/v1/booking-references", params=carol.params, json=body)
    assert r.status_code == 404, r.text
    r = await client.post("/v1/booking-references", params=bob.params, json=solo)
    assert r.status_code == 404, r.text


async def test_co_host_reads_the_payments(client: httpx.AsyncClient, scene: Scene) -> None:
    bob, carol = scene.bob, scene.carol
    (payment,) = scene.team_booking["payment"]
    r = await client.get("/v1/payments", params=bob.params)
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()["payments"]] == [payment["id"]]
    r = await client.get(f"/v1/payments/{payment['id']}", params=bob.params)
    assert r.status_code == 200, r.text
    r = await client.get("/v1/payments", params=carol.params)
    assert r.json()["payments"] == []
    r = await client.get(f"/v1/payments/{payment['id']}", params=carol.params)
    # Not a host of it: answered as a missing payment (no existence oracle).
    assert r.status_code == 404, r.text
    assert r.json() == {"message": f"Payment with id: {payment['id']} not found"}
