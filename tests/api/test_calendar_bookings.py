"""Calendar busy times at booking time, end to end against a real Radicale and ICS feed server:
a time a selected calendar marks busy is refused (personal and team event types), an unreadable
calendar refuses with its reason, a booking revalidates a fresh cache, confirm re-checks, and a
booking's own calendar event never blocks it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.settings import Settings
from tests.api.booking_helpers import TUESDAY_10, TUESDAY_11, book, frozen_app, hosted_event_type
from tests.api.calendar_helpers import connect_caldav
from tests.api.scheduling_seed import add_event_type, add_schedule
from tests.api.test_calendar_busy import (
    app_with,
    connect_feed,
    select_calendar,
    slot_times,
    vcalendar,
    vevent,
)
from tests.api.test_team_scheduling import (
    TUESDAY,
    Crew,
    hours,
    occupied_hosts,
    post_booking,
    team_event_type,
    team_id_of,
)
from tests.api.test_team_scheduling import members as members
from tests.api.test_team_scheduling import slot_times as team_slot_times
from tests.calendar_servers import IcsServer, RadicaleAccount, RadicaleServer
from tests.conftest import Account, client_for


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


async def busy_calendar(
    client: httpx.AsyncClient, caller: Account, account: RadicaleAccount, *events: str
) -> str:
    """A calendar of ``account`` holding ``events``, connected and selected by ``caller``."""
    calendar = account.make_calendar("Work")
    for event in events:
        account.put_event(calendar, vcalendar(event))
    credential = await connect_caldav(client, caller, account)
    await select_calendar(client, caller, credential, calendar)
    return calendar


async def try_booking(
    client: httpx.AsyncClient, caller: Account, event_type: int, start: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/v1/bookings",
        params=caller.params,
        json={
            "eventTypeId": event_type,
            "start": start,
            "timeZone": "Europe/Paris",
            "language": "en",
            "metadata": {},
            "responses": {"name": "Guest", "email": "guest@example.com"},
            **extra,
        },
    )


async def test_a_busy_time_is_refused_a_free_one_booked(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    event_type = await hosted_event_type(app, alice)
    await busy_calendar(
        client, alice, radicale, vevent("dentist", ":20260106T100000Z", ":20260106T103000Z")
    )
    refused = await try_booking(client, alice, event_type, TUESDAY_10)
    assert refused.status_code == 409, refused.text
    booked = await try_booking(client, alice, event_type, TUESDAY_11)
    assert booked.status_code == 200, booked.text


async def test_a_selected_calendar_is_read_outside_the_transaction_and_write_turn(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    """The booking's first query finds a selected calendar: the transaction is left before
    anything is written, the calendar read with no transaction open and, on SQLite, the write
    turn free for others; then the booking is made in a new transaction, its Idempotency-Key
    claimed there (a replay answers the same booking)."""
    event_type = await hosted_event_type(app, alice)
    await busy_calendar(client, alice, radicale)
    reader = app.state.calendar_busy
    gate_lock = app.state.write_gate._lock
    seen: list[bool] = []
    real_read = reader.read

    async def read(*args: Any, **kwargs: Any) -> Any:
        seen.append(gate_lock is None or not gate_lock.locked())
        return await real_read(*args, **kwargs)

    reader.read = read
    try:
        headers = {"Idempotency-Key": "calendar-read-once"}
        first = await try_booking(client, alice, event_type, TUESDAY_10)
        assert first.status_code == 200, first.text
        body = {
            "eventTypeId": event_type,
            "start": TUESDAY_11,
            "timeZone": "Europe/Paris",
            "responses": {"name": "Guest", "email": "guest@example.com"},
        }
        again = await client.post("/v1/bookings", params=alice.params, headers=headers, json=body)
        assert again.status_code == 200, again.text
        replay = await client.post("/v1/bookings", params=alice.params, headers=headers, json=body)
    finally:
        del reader.read
    assert replay.status_code == 200, replay.text
    assert replay.headers.get("Idempotency-Replayed") == "true"
    assert replay.json()["id"] == again.json()["id"]
    assert seen == [True, True]


async def test_an_unreadable_calendar_refuses_with_its_reason(
    make_settings: Callable[..., Settings], alice: Account, private_radicale: RadicaleServer
) -> None:
    app = await app_with(make_settings)
    account = private_radicale.new_account()
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        await busy_calendar(client, alice, account)
        private_radicale.stop()
        refused = await try_booking(client, alice, event_type, TUESDAY_10)
        assert refused.status_code == 409, refused.text
        assert "calendar" in refused.json()["reason"]
        assert account.password not in refused.text
        private_radicale.start()
        booked = await try_booking(client, alice, event_type, TUESDAY_10)
        assert booked.status_code == 200, booked.text


async def test_a_booking_revalidates_a_fresh_cache(
    make_settings: Callable[..., Settings], alice: Account, ics_server: IcsServer
) -> None:
    app = await app_with(make_settings, calendar_cache_seconds=3600)
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        url = ics_server.set_feed("/mine.ics", vcalendar())
        await connect_feed(client, alice, url)
        assert "10:00" in (await slot_times(client, alice, event_type))[0]
        # The feed changes; /slots may still serve its fresh cached read, a booking may not.
        ics_server.set_feed(
            "/mine.ics", vcalendar(vevent("new", ":20260106T100000Z", ":20260106T103000Z"))
        )
        assert "10:00" in (await slot_times(client, alice, event_type))[0]
        refused = await try_booking(client, alice, event_type, TUESDAY_10)
        assert refused.status_code == 409, refused.text
        # The booking's read refreshed the cache: /slots agrees now.
        assert "10:00" not in (await slot_times(client, alice, event_type))[0]


async def test_confirm_rechecks_the_calendar(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    pending = await book(client, alice, event_type)
    assert pending["status"] == "PENDING"
    # The host accepts a meeting elsewhere at that time before confirming.
    await busy_calendar(
        client, alice, radicale, vevent("other", ":20260106T100000Z", ":20260106T110000Z")
    )
    confirm = await client.post(
        f"/v1/bookings/{pending['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert confirm.status_code == 409, confirm.text


async def test_a_bookings_own_event_never_blocks_it(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    pending = await book(client, alice, event_type)
    # The booking's own event (UID <booking uid>@host, as Bookable writes it), an hour long.
    own = vevent(f"{pending['uid']}@bookable.test", ":20260106T100000Z", ":20260106T110000Z")
    await busy_calendar(client, alice, radicale, own)
    # Confirming it is not refused by its own event ...
    confirm = await client.post(
        f"/v1/bookings/{pending['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert confirm.status_code == 200, confirm.text
    # ... nor is moving it to 10:30, which only its own event covers.
    moved = await try_booking(
        client, alice, event_type, "2026-01-06T10:30:00.000Z", rescheduleUid=pending["uid"]
    )
    assert moved.status_code == 200, moved.text
    # Another booking at 10:30 is blocked by it (and by the moved booking).
    other = await try_booking(client, alice, event_type, "2026-01-06T10:00:00.000Z")
    assert other.status_code == 409, other.text


async def test_one_hosts_calendar_removes_the_collective_slot_and_steers_round_robin(
    app: FastAPI,
    client: httpx.AsyncClient,
    members: Crew,
    radicale_server: RadicaleServer,
) -> None:
    alice, bob = members[:2]
    await hours(app, alice, "UTC")
    await hours(app, bob, "UTC")
    hosts = [(alice, False), (bob, False)]
    collective = await team_event_type(
        client, alice, team_id_of(members), "COLLECTIVE", hosts, slug="both"
    )
    round_robin = await team_event_type(
        client, alice, team_id_of(members), "ROUND_ROBIN", hosts, slug="either"
    )
    assert "Tue 10:00" in await team_slot_times(client, alice, collective, TUESDAY)
    # bob is busy at 10:00 in his own calendar.
    await busy_calendar(
        client,
        bob,
        radicale_server.new_account(),
        vevent("bob-busy", ":20260106T100000Z", ":20260106T103000Z"),
    )
    times = await team_slot_times(client, alice, collective, TUESDAY)
    assert "Tue 10:00" not in times and "Tue 10:30" in times
    refused = await post_booking(client, alice, collective, "2026-01-06T10:00:00.000Z")
    assert refused.status_code == 409, refused.text
    # Round robin still offers 10:00 and gives it to alice, the free host, every time.
    assert "Tue 10:00" in await team_slot_times(client, alice, round_robin, TUESDAY)
    booked = await post_booking(client, alice, round_robin, "2026-01-06T10:00:00.000Z")
    assert booked.status_code == 200, booked.text
    assert await occupied_hosts(app, booked.json()["id"]) == [alice.id]


async def test_a_seated_bookings_event_leaves_its_seats_open(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    event_type = await hosted_event_type(app, alice, seats_per_time_slot=2)
    first = await book(client, alice, event_type, email="one@example.com", name="One")
    # The seated booking's event in the host's calendar: the booking counts as seats, not twice.
    own = vevent(f"{first['uid']}@bookable.test", ":20260106T100000Z", ":20260106T103000Z")
    await busy_calendar(client, alice, radicale, own)
    response = await client.get(
        "/v1/slots",
        params={**alice.params, "eventTypeId": event_type,
                "startTime": "2026-01-06T00:00:00Z", "endTime": "2026-01-06T23:59:59Z"},
    )  # fmt: skip
    ten = [s for s in response.json()["slots"]["2026-01-06"] if s["time"].endswith("10:00:00.000Z")]
    assert ten and ten[0]["attendees"] == 1, response.text
    second = await try_booking(client, alice, event_type, TUESDAY_10)
    assert second.status_code == 200, second.text
    assert second.json()["uid"] == first["uid"]
