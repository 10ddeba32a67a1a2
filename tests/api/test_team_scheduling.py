"""Team scheduling over HTTP: collective and round-robin slots and bookings, hosts in several
time zones, round-robin assignment, and collective bookings that occupy every host.

"Now" is frozen at Monday 2026-01-05 12:00 UTC; the days used are the Tuesday and Wednesday
after it, in January (no DST change anywhere involved).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bookable.models import BookingHost
from bookable.settings import Settings
from tests.api.booking_helpers import frozen_app
from tests.api.scheduling_seed import add_event_type, add_schedule
from tests.api.test_teams import add_member, create_team
from tests.conftest import Account

TUESDAY = {"startTime": "2026-01-06T00:00:00Z", "endTime": "2026-01-07T00:00:00Z"}


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


class Crew(list[Account]):
    """The team's members, in id order, and the team's id."""

    team_id: int


@pytest.fixture
async def members(
    client: httpx.AsyncClient, make_account: Callable[..., Any], alice: Account, bob: Account
) -> Crew:
    """alice (OWNER), bob, carol, dave, erin: accepted members of one team, in id order."""
    carol = await make_account("carol")
    dave = await make_account("dave")
    erin = await make_account("erin")
    team_id = int((await create_team(client, alice, slug="crew"))["team"]["id"])
    for member in (bob, carol, dave, erin):
        await add_member(client, alice, member, team_id)
    crew = Crew([alice, bob, carol, dave, erin])
    crew.team_id = team_id
    return crew


def team_id_of(members: list[Account]) -> int:
    assert isinstance(members, Crew)
    return members.team_id


async def hours(
    app: FastAPI, account: Account, zone: str, start: time = time(9), end: time = time(17)
) -> None:
    """Monday to Friday ``start``-``end`` in ``zone``: the account's default schedule."""
    await add_schedule(app, account.id, zone, [([1, 2, 3, 4, 5], start, end)])


async def team_event_type(
    client: httpx.AsyncClient,
    owner: Account,
    team_id: int,
    kind: str,
    hosts: list[tuple[Account, bool]],
    slug: str = "panel",
    **fields: Any,
) -> int:
    response = await client.post(
        "/v1/event-types",
        params=owner.params,
        json={
            "title": "Panel",
            "slug": slug,
            "length": 30,
            "teamId": team_id,
            "schedulingType": kind,
            "minimumBookingNotice": 0,
            "hosts": [{"userId": a.id, "isFixed": fixed} for a, fixed in hosts],
            **fields,
        },
    )
    assert response.status_code == 200, response.text
    return int(response.json()["event_type"]["id"])


async def london_pair(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account], **fields: Any
) -> int:
    """alice and bob, both 09:00-17:00 in London, hosting one COLLECTIVE event type."""
    alice, bob = members[:2]
    await hours(app, alice, "Europe/London")
    await hours(app, bob, "Europe/London")
    return await team_event_type(
        client, alice, team_id_of(members), "COLLECTIVE", [(alice, False), (bob, False)], **fields
    )


async def slot_times(
    client: httpx.AsyncClient, account: Account, event_type_id: int, window: dict[str, str]
) -> list[str]:
    response = await client.get(
        "/v1/slots",
        params={**account.params, "eventTypeId": event_type_id, "timeZone": "UTC", **window},
    )
    assert response.status_code == 200, response.text
    return [
        datetime.fromisoformat(s["time"]).astimezone(UTC).strftime("%a %H:%M")
        for day in response.json()["slots"].values()
        for s in day
    ]


async def post_booking(
    client: httpx.AsyncClient,
    account: Account,
    event_type_id: int,
    start: str,
    email: str = "guest@example.com",
) -> httpx.Response:
    return await client.post(
        "/v1/bookings",
        params=account.params,
        json={
            "eventTypeId": event_type_id,
            "start": start,
            "timeZone": "America/Chicago",
            "language": "en",
            "metadata": {},
            "responses": {"name": "Guest", "email": email},
        },
    )


async def occupied_hosts(app: FastAPI, booking_id: int) -> list[int]:
    async with app.state.sessions() as session:
        rows = await session.scalars(
            select(BookingHost.user_id)
            .where(BookingHost.booking_id == booking_id)
            .order_by(BookingHost.user_id)
        )
        return list(rows)


def half_hours(day: str, first: str, last: str) -> list[str]:
    """ "Tue 14:00" .. "Tue 16:30" every 30 minutes, both ends included."""
    start = datetime.strptime(first, "%H:%M")
    end = datetime.strptime(last, "%H:%M")
    out = []
    while start <= end:
        out.append(f"{day} {start:%H:%M}")
        start += timedelta(minutes=30)
    return out


# --- collective ---------------------------------------------------------------------------------


async def test_collective_slots_are_the_intersection_of_hosts_in_two_zones(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob = members[:2]
    await hours(app, alice, "Europe/London")  # 09:00-17:00 UTC in January
    await hours(app, bob, "America/New_York")  # 14:00-22:00 UTC
    event_type = await team_event_type(
        client, alice, team_id_of(members), "COLLECTIVE", [(alice, False), (bob, False)]
    )
    assert await slot_times(client, bob, event_type, TUESDAY) == half_hours("Tue", "14:00", "16:30")


async def test_collective_slots_of_five_hosts_in_five_zones(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob, carol, dave, erin = members
    await hours(app, alice, "Europe/London")  # 09:00-17:00 UTC
    await hours(app, bob, "Europe/Berlin")  # 08:00-16:00 UTC
    await hours(app, carol, "America/Sao_Paulo")  # 12:00-20:00 UTC
    await hours(app, dave, "Asia/Kolkata", time(12), time(20))  # 06:30-14:30 UTC
    await hours(app, erin, "America/New_York", time(7), time(15))  # 12:00-20:00 UTC
    event_type = await team_event_type(
        client, alice, team_id_of(members), "COLLECTIVE", [(m, False) for m in members]
    )
    expected = half_hours("Tue", "12:00", "14:00")
    assert await slot_times(client, dave, event_type, TUESDAY) == expected

    created = await post_booking(client, erin, event_type, "2026-01-06T12:30:00Z")
    assert created.status_code == 200, created.text
    booking = created.json()
    # The organiser is the first host; every host is occupied.
    assert booking["userId"] == alice.id
    assert booking["luckyUsers"] == []
    assert await occupied_hosts(app, booking["id"]) == sorted(m.id for m in members)
    assert await slot_times(client, dave, event_type, TUESDAY) == [
        t for t in expected if t != "Tue 12:30"
    ]


async def test_a_collective_booking_blocks_every_hosts_own_calendar(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob, carol = members[:3]
    for member, zone in ((alice, "Europe/London"), (bob, "Europe/Lisbon"), (carol, "UTC")):
        await hours(app, member, zone)
    event_type = await team_event_type(
        client,
        alice,
        team_id_of(members),
        "COLLECTIVE",
        [(alice, False), (bob, False), (carol, False)],
    )
    bob_own = await add_event_type(app, bob.id, "bob-call")
    carol_own = await add_event_type(app, carol.id, "carol-call")

    booked = await post_booking(client, carol, event_type, "2026-01-06T10:00:00Z")
    assert booked.status_code == 200, booked.text
    booking_id = booked.json()["id"]

    # Every host's personal slots lose 10:00, and their personal bookings there are refused.
    for member, own in ((bob, bob_own), (carol, carol_own)):
        assert "Tue 10:00" not in await slot_times(client, member, own, TUESDAY)
        assert "Tue 10:30" in await slot_times(client, member, own, TUESDAY)
        refused = await post_booking(client, member, own, "2026-01-06T10:00:00Z")
        assert refused.status_code == 409, refused.text
        assert refused.json()["message"] == "no_available_users_found_error"
    # Each host sees the booking as one of theirs; an outsider does not.
    for member in (alice, bob, carol):
        listed = await client.get("/v1/bookings", params=member.params)
        assert [b["id"] for b in listed.json()["bookings"]] == [booking_id]
        one = await client.get(f"/v1/bookings/{booking_id}", params=member.params)
        assert one.status_code == 200
    outsider = members[3]
    assert (await client.get("/v1/bookings", params=outsider.params)).json()["bookings"] == []
    response = await client.get(f"/v1/bookings/{booking_id}", params=outsider.params)
    assert response.status_code == 404

    # A co-host may cancel it; then every host is free again.
    cancelled = await client.delete(f"/v1/bookings/{booking_id}/cancel", params=bob.params)
    assert cancelled.status_code == 200, cancelled.text
    assert "Tue 10:00" in await slot_times(client, carol, carol_own, TUESDAY)
    assert "Tue 10:00" in await slot_times(client, alice, event_type, TUESDAY)


async def test_collective_booking_refused_when_one_host_is_busy(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob = members[:2]
    event_type = await london_pair(app, client, members)
    bob_own = await add_event_type(app, bob.id, "bob-call")
    assert (await post_booking(client, bob, bob_own, "2026-01-06T11:00:00Z")).status_code == 200

    assert "Tue 11:00" not in await slot_times(client, alice, event_type, TUESDAY)
    refused = await post_booking(client, alice, event_type, "2026-01-06T11:00:00Z")
    assert refused.status_code == 409
    body = refused.json()
    assert body["message"] == "fixed_hosts_unavailable_for_booking"
    assert f"user {bob.id}" in body["reason"]
    # Outside the hours altogether, and in the past: the event's own rules speak first.
    early = await post_booking(client, alice, event_type, "2026-01-06T07:00:00Z")
    assert (early.status_code, early.json()["message"]) == (
        409,
        "fixed_hosts_unavailable_for_booking",
    )
    past = await post_booking(client, alice, event_type, "2026-01-05T10:00:00Z")
    assert past.status_code == 400


async def test_concurrent_collective_and_personal_bookings_of_one_host_one_wins(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob = members[:2]
    event_type = await london_pair(app, client, members)
    bob_own = await add_event_type(app, bob.id, "bob-call")
    racers = [
        post_booking(client, alice, event_type, "2026-01-06T13:00:00Z", f"t{i}@example.com")
        for i in range(6)
    ] + [
        post_booking(client, bob, bob_own, "2026-01-06T13:00:00Z", f"p{i}@example.com")
        for i in range(6)
    ]
    responses = await asyncio.gather(*racers)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 11}, [r.text for r in responses if r.status_code != 409]


# --- round robin --------------------------------------------------------------------------------


async def test_round_robin_offers_a_slot_when_any_host_is_free(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob, carol = members[:3]
    await hours(app, bob, "Europe/London")  # 09:00-17:00 UTC
    await hours(app, carol, "America/New_York")  # 14:00-22:00 UTC
    await hours(app, alice, "Europe/London")
    event_type = await team_event_type(
        client, alice, team_id_of(members), "ROUND_ROBIN", [(bob, False), (carol, False)]
    )
    assert await slot_times(client, alice, event_type, TUESDAY) == half_hours(
        "Tue", "09:00", "21:30"
    )

    # Only carol works at 20:00 UTC: she gets it, and the report says so.
    late = await post_booking(client, alice, event_type, "2026-01-06T20:00:00Z")
    assert late.status_code == 200, late.text
    assert late.json()["userId"] == carol.id
    assert late.json()["luckyUsers"] == [carol.id]
    # At 10:00 only bob works.
    early = await post_booking(client, alice, event_type, "2026-01-06T10:00:00Z")
    assert early.json()["luckyUsers"] == [bob.id]
    # Both taken at 10:00? bob was; carol is not working: the slot is gone, booking refused.
    assert "Tue 10:00" not in await slot_times(client, alice, event_type, TUESDAY)
    refused = await post_booking(client, alice, event_type, "2026-01-06T10:00:00Z")
    assert refused.status_code == 409
    assert refused.json()["message"] == "round_robin_host_unavailable_for_booking"


async def test_round_robin_spreads_thirty_bookings_evenly_over_three_hosts(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob, carol, dave = members[:4]
    for member, zone in ((bob, "Europe/London"), (carol, "Africa/Abidjan"), (dave, "UTC")):
        await hours(app, member, zone)
    event_type = await team_event_type(
        client,
        alice,
        team_id_of(members),
        "ROUND_ROBIN",
        [(bob, False), (carol, False), (dave, False)],
    )
    starts = [
        *(datetime(2026, 1, 6, 9, tzinfo=UTC) + timedelta(minutes=30 * i) for i in range(16)),
        *(datetime(2026, 1, 7, 9, tzinfo=UTC) + timedelta(minutes=30 * i) for i in range(14)),
    ]
    assigned: list[int] = []
    for n, start in enumerate(starts):
        response = await post_booking(
            client, alice, event_type, start.isoformat(), f"guest{n}@example.com"
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["luckyUsers"] == [body["userId"]]
        assigned.append(body["userId"])
    assert Counter(assigned) == {bob.id: 10, carol.id: 10, dave.id: 10}
    # Fewest bookings first, ties to the least recently booked: a strict rotation.
    assert assigned[:6] == [bob.id, carol.id, dave.id] * 2


async def test_round_robin_with_a_fixed_host_occupies_both(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob, carol = members[:3]
    await hours(app, alice, "Europe/London", time(9), time(12))  # fixed: 09:00-12:00 UTC
    await hours(app, bob, "Europe/London")
    await hours(app, carol, "Europe/London")
    event_type = await team_event_type(
        client,
        alice,
        team_id_of(members),
        "ROUND_ROBIN",
        [(alice, True), (bob, False), (carol, False)],
    )
    assert await slot_times(client, bob, event_type, TUESDAY) == half_hours("Tue", "09:00", "11:30")
    created = await post_booking(client, carol, event_type, "2026-01-06T09:00:00Z")
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["userId"] == alice.id  # the fixed host organises
    assert body["luckyUsers"] == [bob.id]
    assert await occupied_hosts(app, body["id"]) == [alice.id, bob.id]
    # The fixed host is taken at 09:00 now, whoever of bob and carol is free.
    refused = await post_booking(client, carol, event_type, "2026-01-06T09:00:00Z")
    assert (refused.status_code, refused.json()["message"]) == (
        409,
        "fixed_hosts_unavailable_for_booking",
    )


async def test_round_robin_reschedule_keeps_the_host_when_free(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob, carol = members[:3]
    await hours(app, bob, "Europe/London")
    await hours(app, carol, "Europe/London")
    event_type = await team_event_type(
        client, alice, team_id_of(members), "ROUND_ROBIN", [(bob, False), (carol, False)]
    )
    first = (await post_booking(client, alice, event_type, "2026-01-06T09:00:00Z")).json()
    second = (await post_booking(client, alice, event_type, "2026-01-06T09:30:00Z")).json()
    assert [first["userId"], second["userId"]] == [bob.id, carol.id]
    # carol's booking moves to 11:00: carol keeps it, though bob has no more bookings.
    moved = await client.post(
        "/v1/bookings",
        params=alice.params,
        json={
            "eventTypeId": event_type,
            "start": "2026-01-06T11:00:00Z",
            "timeZone": "UTC",
            "language": "en",
            "metadata": {},
            "rescheduleUid": second["uid"],
            "responses": {"name": "Guest", "email": "guest@example.com"},
        },
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["userId"] == carol.id
    assert moved.json()["luckyUsers"] == [carol.id]


# --- who may schedule ---------------------------------------------------------------------------


async def test_members_schedule_team_events_outsiders_do_not(
    app: FastAPI,
    client: httpx.AsyncClient,
    members: list[Account],
    make_account: Callable[..., Any],
) -> None:
    event_type = await london_pair(app, client, members)
    stranger = await make_account("stranger")
    response = await client.get(
        "/v1/slots", params={**stranger.params, "eventTypeId": event_type, **TUESDAY}
    )
    assert response.status_code == 404
    refused = await post_booking(client, stranger, event_type, "2026-01-06T10:00:00Z")
    assert refused.status_code == 404
    # A plain member (erin hosts nothing) may query and book.
    erin = members[4]
    assert await slot_times(client, erin, event_type, TUESDAY)
    assert (await post_booking(client, erin, event_type, "2026-01-06T10:00:00Z")).status_code == 200


async def test_managed_and_untyped_team_event_types_are_refused_with_a_reason(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice = members[0]
    await hours(app, alice, "Europe/London")
    managed = await team_event_type(
        client, alice, team_id_of(members), "MANAGED", [(alice, False)], slug="managed"
    )
    response = await client.get(
        "/v1/slots", params={**alice.params, "eventTypeId": managed, **TUESDAY}
    )
    assert response.status_code == 400
    assert "managed event type" in response.json()["message"]
    refused = await post_booking(client, alice, managed, "2026-01-06T10:00:00Z")
    assert refused.status_code == 400
    assert "managed event type" in refused.json()["message"]


async def test_confirming_a_collective_booking_rechecks_and_updates_every_host(
    app: FastAPI, client: httpx.AsyncClient, members: list[Account]
) -> None:
    alice, bob = members[:2]
    event_type = await london_pair(app, client, members, requiresConfirmation=True)
    pending = await post_booking(client, alice, event_type, "2026-01-06T10:00:00Z")
    assert pending.status_code == 200, pending.text
    booking = pending.json()
    assert booking["status"] == "PENDING"
    async with app.state.sessions() as session:
        statuses = set(
            await session.scalars(
                select(BookingHost.status).where(BookingHost.booking_id == booking["id"])
            )
        )
    assert statuses == {"PENDING"}

    # Meanwhile bob takes 10:00 on his own calendar: the confirmation is refused.
    bob_own = await add_event_type(app, bob.id, "bob-call")
    assert (await post_booking(client, bob, bob_own, "2026-01-06T10:00:00Z")).status_code == 200
    refused = await client.post(
        f"/v1/bookings/{booking['id']}/confirm", params=bob.params, json={"confirmed": True}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"] == "fixed_hosts_unavailable_for_booking"

    # At another time, a co-host confirms, and every host's row follows the booking.
    other = await post_booking(client, alice, event_type, "2026-01-06T14:00:00Z", "b@example.com")
    confirmed = await client.post(
        f"/v1/bookings/{other.json()['id']}/confirm", params=bob.params, json={"confirmed": True}
    )
    assert confirmed.status_code == 200, confirmed.text
    async with app.state.sessions() as session:
        rows = (
            await session.execute(
                select(BookingHost.user_id, BookingHost.status).where(
                    BookingHost.booking_id == other.json()["id"]
                )
            )
        ).all()
    assert sorted(rows) == [(alice.id, "ACCEPTED"), (bob.id, "ACCEPTED")]
