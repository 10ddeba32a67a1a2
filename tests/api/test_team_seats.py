"""Seated team event types over the API: the first booking of a time picks its host(s), later
bookings of that time take its seats while seats remain, and team /slots offers the open seat
(with `attendees` and `bookingUid`) though its hosts are occupied by that very booking.

NOW is Monday 2026-01-05 12:00Z; every host works 09:00-17:00 UTC on weekdays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.settings import Settings
from tests.api.booking_helpers import frozen_app
from tests.api.test_team_scheduling import (
    Crew,
    hours,
    occupied_hosts,
    post_booking,
    team_event_type,
)
from tests.api.test_teams import add_member, create_team
from tests.conftest import Account

from .scheduling_seed import add_event_type

TUESDAY = {"startTime": "2026-01-06T00:00:00Z", "endTime": "2026-01-07T00:00:00Z"}
TEN = "2026-01-06T10:00:00Z"


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


@pytest.fixture
async def members(
    client: httpx.AsyncClient, make_account: Callable[..., Any], alice: Account, bob: Account
) -> Crew:
    """alice (OWNER) and bob, accepted members of one team."""
    team_id = int((await create_team(client, alice, slug="crew"))["team"]["id"])
    await add_member(client, alice, bob, team_id)
    crew = Crew([alice, bob])
    crew.team_id = team_id
    return crew


async def seated_team_type(
    app: FastAPI, client: httpx.AsyncClient, crew: Crew, kind: str, seats: int = 2
) -> int:
    alice, bob = crew[:2]
    await hours(app, alice, "UTC")
    await hours(app, bob, "UTC")
    return await team_event_type(
        client, alice, crew.team_id, kind, [(alice, False), (bob, False)],
        seatsPerTimeSlot=seats,
    )  # fmt: skip


async def slots_by_time(
    client: httpx.AsyncClient, account: Account, event_type_id: int
) -> dict[str, dict[str, Any]]:
    r = await client.get(
        "/v1/slots", params={**account.params, "eventTypeId": event_type_id, **TUESDAY}
    )
    assert r.status_code == 200, r.text
    return {
        datetime.fromisoformat(s["time"]).astimezone(UTC).strftime("%H:%M"): s
        for day in r.json()["slots"].values()
        for s in day
    }


@pytest.mark.parametrize("kind", ["COLLECTIVE", "ROUND_ROBIN"])
async def test_later_bookings_take_seats_in_the_first_one(
    app: FastAPI, client: httpx.AsyncClient, members: Crew, kind: str
) -> None:
    alice = members[0]
    event_type = await seated_team_type(app, client, members, kind)
    first = await post_booking(client, alice, event_type, TEN, "one@example.com")
    assert first.status_code == 200, first.text
    booking = first.json()
    hosts = await occupied_hosts(app, booking["id"])
    assert len(hosts) == (2 if kind == "COLLECTIVE" else 1)

    open_seat = (await slots_by_time(client, alice, event_type))["10:00"]
    assert open_seat["attendees"] == 1
    assert open_seat["bookingUid"] == booking["uid"]

    second = await post_booking(client, alice, event_type, TEN, "two@example.com")
    assert second.status_code == 200, second.text
    assert second.json()["uid"] == booking["uid"]
    assert await occupied_hosts(app, booking["id"]) == hosts  # the first booking chose them
    assert "10:00" not in await slots_by_time(client, alice, event_type)  # full now

    third = await post_booking(client, alice, event_type, TEN, "three@example.com")
    assert third.status_code == 409, third.text
    assert third.json()["message"] == "booking_seats_full_error"


async def test_same_booker_twice_and_the_hosts_other_calendars(
    app: FastAPI, client: httpx.AsyncClient, members: Crew
) -> None:
    alice = members[0]
    event_type = await seated_team_type(app, client, members, "COLLECTIVE", seats=3)
    first = await post_booking(client, alice, event_type, TEN, "one@example.com")
    assert first.status_code == 200, first.text
    again = await post_booking(client, alice, event_type, TEN, "one@example.com")
    assert again.status_code == 409, again.text
    assert again.json()["message"] == "already_signed_up_for_this_booking_error"
    # The seated booking still occupies alice for her own event types.
    personal = await add_event_type(app, alice.id, slug="solo")
    r = await client.get("/v1/slots", params={**alice.params, "eventTypeId": personal, **TUESDAY})
    times = [
        datetime.fromisoformat(s["time"]).astimezone(UTC).strftime("%H:%M")
        for day in r.json()["slots"].values()
        for s in day
    ]
    assert "10:00" not in times and "10:30" in times


async def test_an_open_seat_after_its_start_is_refused(
    app: FastAPI, client: httpx.AsyncClient, members: Crew
) -> None:
    """Seats follow the event's time bounds: a seated booking that has started (here: now +
    minimum notice has passed it) takes no more bookers."""
    alice = members[0]
    event_type = await seated_team_type(app, client, members, "COLLECTIVE")
    first = await post_booking(client, alice, event_type, TEN, "one@example.com")
    assert first.status_code == 200, first.text
    r = await client.patch(
        f"/v1/event-types/{event_type}",
        params=alice.params,
        json={"minimumBookingNotice": 24 * 60},
    )
    assert r.status_code == 200, r.text
    late = await post_booking(client, alice, event_type, TEN, "two@example.com")
    assert late.status_code == 400, late.text
    assert late.json()["message"] == "booking_time_out_of_bounds_error"
