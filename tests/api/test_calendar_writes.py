"""Bookings written into the host's destination calendar, end to end on a real Radicale: after
each change (create, confirm, reject, reschedule, PATCH of the time, cancel) the calendar holds
exactly the expected events, read back with a CalDAV REPORT, at the right times in the
organiser's zone. Writes are durable: Radicale down means retried until it is back; a refused
login is FAILED with its reason; the booking stays booked either way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from icalendar import Event
from sqlalchemy import select, update

from bookable.app import create_app
from bookable.models import BookingReference, DestinationCalendar, User
from bookable.settings import Settings
from tests.api.booking_helpers import NOW, TUESDAY_10, TUESDAY_11, book, hosted_event_type
from tests.api.calendar_helpers import connect_caldav
from tests.api.scheduling_seed import add_event_type
from tests.api.test_calendar_bookings import try_booking
from tests.api.test_calendar_busy import select_calendar
from tests.api.test_team_scheduling import Crew, hours, post_booking, team_event_type
from tests.api.test_team_scheduling import members as members
from tests.calendar_servers import RadicaleAccount, RadicaleServer
from tests.conftest import Account, client_for

FAST = {"calendar_write_retry_delays": "0.05", "webhook_poll_interval": 0.05}
SETTLE_SECONDS = 15.0


async def app_with(make_settings: Callable[..., Settings], **settings: Any) -> FastAPI:
    return create_app(make_settings(clock=NOW, **{**FAST, **settings}))


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    application = await app_with(make_settings)
    async with application.router.lifespan_context(application):
        yield application


async def in_zone(app: FastAPI, account: Account, zone: str) -> None:
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == account.id).values(time_zone=zone))


async def destination(
    app: FastAPI,
    owner: Account,
    credential: dict[str, Any],
    calendar_url: str,
    *,
    event_type_id: int | None = None,
) -> None:
    """``calendar_url`` of ``credential`` as the destination of ``owner`` (or of the event type)."""
    async with app.state.sessions() as session, session.begin():
        session.add(
            DestinationCalendar(
                integration=credential["type"],
                external_id=calendar_url,
                user_id=None if event_type_id else owner.id,
                event_type_id=event_type_id,
                credential_id=credential["id"],
            )
        )


async def connected_destination(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, account: RadicaleAccount, **kw: Any
) -> str:
    """A new calendar of ``account``, connected by ``owner`` and made their destination."""
    calendar = account.make_calendar("Bookings")
    credential = await connect_caldav(client, owner, account)
    await destination(app, owner, credential, calendar, **kw)
    return calendar


async def calendar_events(
    client: httpx.AsyncClient, caller: Account, booking_id: int
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/bookings/{booking_id}/calendar-events", params=caller.params)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["calendarEvents"]
    return rows


async def settled(
    client: httpx.AsyncClient, caller: Account, booking_id: int, *, until: str | None = None
) -> list[dict[str, Any]]:
    """The booking's calendar events once none is PENDING (or all are ``until``)."""
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while True:
        rows = await calendar_events(client, caller, booking_id)
        if until is not None:
            if rows and all(row["status"] == until for row in rows):
                return rows
        elif all(row["status"] != "PENDING" for row in rows):
            return rows
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"calendar writes did not settle: {rows}")
        await asyncio.sleep(0.05)


def only_event(account: RadicaleAccount, calendar_url: str) -> Event:
    events = account.events(calendar_url)
    assert len(events) == 1, [str(e.get("UID")) for e in events]
    return events[0]


def start_of(event: Event) -> datetime:
    start: datetime = event.decoded("DTSTART")
    return start


async def test_a_booking_is_written_once_in_the_organisers_zone_with_a_reference(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    await in_zone(app, alice, "Europe/Paris")
    event_type = await hosted_event_type(app, alice)
    calendar = await connected_destination(app, client, alice, radicale)
    booking = await book(client, alice, event_type, TUESDAY_10, email="ann@example.com")

    [row] = await settled(client, alice, booking["id"])
    assert row["status"] == "WRITTEN" and row["action"] == "write", row
    assert row["attempts"] == 1 and row["lastError"] is None
    assert row["externalCalendarId"] == calendar

    event = only_event(radicale, calendar)
    assert str(event["UID"]) == booking["iCalUID"] == row["uid"]
    start = start_of(event)
    assert start.tzinfo == ZoneInfo("Europe/Paris")  # the organiser's TZID
    assert start == datetime(2026, 1, 6, 10, tzinfo=UTC)
    assert event["DTSTART"].params["TZID"] == "Europe/Paris"
    assert int(event["SEQUENCE"]) == 0
    assert str(event["STATUS"]) == "CONFIRMED"
    attendees = event.get("ATTENDEE")
    attendees = attendees if isinstance(attendees, list) else [attendees]
    assert [str(a) for a in attendees] == ["mailto:ann@example.com"]
    assert all(a.params["SCHEDULE-AGENT"] == "CLIENT" for a in attendees)
    assert event["ORGANIZER"].params["SCHEDULE-AGENT"] == "CLIENT"

    references = await client.get("/v1/booking-references", params=alice.params)
    [reference] = [
        r for r in references.json()["booking_references"] if r["bookingId"] == booking["id"]
    ]
    assert reference["type"] == "caldav_calendar"
    assert reference["uid"] == booking["iCalUID"]
    assert reference["externalCalendarId"] == calendar
    assert reference["deleted"] is False


async def test_reschedule_patch_and_cancel_move_and_remove_the_one_event(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    event_type = await hosted_event_type(app, alice)
    calendar = await connected_destination(app, client, alice, radicale)
    first = await book(client, alice, event_type, TUESDAY_10)
    await settled(client, alice, first["id"], until="WRITTEN")

    moved = await try_booking(client, alice, event_type, TUESDAY_11, rescheduleUid=first["uid"])
    assert moved.status_code == 200, moved.text
    second = moved.json()
    assert second["iCalUID"] == first["iCalUID"]  # the same meeting, moved
    [row] = await settled(client, alice, second["id"], until="WRITTEN")
    assert row["bookingId"] == second["id"] and row["sequence"] == 1
    event = only_event(radicale, calendar)
    assert start_of(event) == datetime(2026, 1, 6, 11, tzinfo=UTC)
    assert int(event["SEQUENCE"]) == 1

    patched = await client.patch(
        f"/v1/bookings/{second['id']}",
        params=alice.params,
        json={"startTime": "2026-01-06T14:00:00.000Z", "endTime": "2026-01-06T14:30:00.000Z"},
    )
    assert patched.status_code == 200, patched.text
    await asyncio.sleep(0)  # the dispatcher is woken by the commit
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while start_of(only_event(radicale, calendar)) != datetime(2026, 1, 6, 14, tzinfo=UTC):
        assert asyncio.get_running_loop().time() < deadline, "the PATCH never reached Radicale"
        await asyncio.sleep(0.05)
    [row] = await settled(client, alice, second["id"], until="WRITTEN")
    assert int(only_event(radicale, calendar)["SEQUENCE"]) == 2 == row["sequence"]

    cancelled = await client.delete(f"/v1/bookings/{second['id']}/cancel", params=alice.params)
    assert cancelled.status_code == 200, cancelled.text
    [row] = await settled(client, alice, second["id"], until="DELETED")
    assert row["action"] == "delete"
    assert radicale.events(calendar) == []
    async with app.state.sessions() as session:
        references = list(
            await session.scalars(
                select(BookingReference).where(BookingReference.uid == first["iCalUID"])
            )
        )
    # The moved booking's reference (written at 11:00), marked deleted with the event.
    assert [r.booking_id for r in references if r.booking_id == second["id"]] == [second["id"]]
    assert references and all(r.deleted is True for r in references)


async def test_confirm_writes_reject_never_does(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    event_type = await hosted_event_type(app, alice, requires_confirmation=True)
    calendar = await connected_destination(app, client, alice, radicale)
    waiting = await book(client, alice, event_type, TUESDAY_10)
    refused = await book(client, alice, event_type, TUESDAY_11, email="other@example.com")
    assert waiting["status"] == refused["status"] == "PENDING"
    assert await calendar_events(client, alice, waiting["id"]) == []

    confirmed = await client.post(
        f"/v1/bookings/{waiting['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert confirmed.status_code == 200, confirmed.text
    rejected = await client.post(
        f"/v1/bookings/{refused['id']}/confirm",
        params=alice.params,
        json={"confirmed": False, "rejectionReason": "busy"},
    )
    assert rejected.status_code == 200, rejected.text
    await settled(client, alice, waiting["id"], until="WRITTEN")
    assert str(only_event(radicale, calendar)["UID"]) == waiting["iCalUID"]
    assert await calendar_events(client, alice, refused["id"]) == []


async def test_without_a_destination_nothing_is_written(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    event_type = await hosted_event_type(app, alice)
    calendar = radicale.make_calendar("Work")
    credential = await connect_caldav(client, alice, radicale)
    await select_calendar(client, alice, credential, calendar)  # read, never written
    booking = await book(client, alice, event_type, TUESDAY_10)
    await asyncio.sleep(0.3)
    assert await calendar_events(client, alice, booking["id"]) == []
    assert radicale.events(calendar) == []


async def test_the_event_types_destination_wins_over_the_organisers(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    event_type = await hosted_event_type(app, alice)
    personal = radicale.make_calendar("Personal")
    for_event_type = radicale.make_calendar("Interviews")
    credential = await connect_caldav(client, alice, radicale)
    await destination(app, alice, credential, personal)
    await destination(app, alice, credential, for_event_type, event_type_id=event_type)
    booking = await book(client, alice, event_type, TUESDAY_10)
    [row] = await settled(client, alice, booking["id"], until="WRITTEN")
    assert row["externalCalendarId"] == for_event_type
    assert len(radicale.events(for_event_type)) == 1
    assert radicale.events(personal) == []


async def test_an_event_types_hidden_notes_stay_out_of_its_bookings_events(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    """An event type's "hide notes in calendar" (`hideCalendarNotes`) leaves a new booking's
    notes out of its calendar event; another event type of the host keeps them. POST /bookings
    reads the flag with the event type's other columns (`common.BookedEventType`), not with a
    query of its own: a column left out of that read would show the notes (or fail the
    booking)."""
    hidden = await hosted_event_type(app, alice, "hidden", hide_calendar_notes=True)
    shown = await add_event_type(app, alice.id, "shown")
    calendar = await connected_destination(app, client, alice, radicale)
    descriptions = {}
    for event_type, start in ((hidden, TUESDAY_10), (shown, TUESDAY_11)):
        notes = {"name": "Guest", "email": "guest@example.com", "notes": "Bring the contract"}
        response = await try_booking(client, alice, event_type, start, responses=notes)
        assert response.status_code == 200, response.text
        booking = response.json()
        assert booking["description"] == "Bring the contract"
        await settled(client, alice, booking["id"], until="WRITTEN")
        [event] = [e for e in radicale.events(calendar) if str(e["UID"]) == booking["iCalUID"]]
        descriptions[event_type] = event.get("DESCRIPTION")
    assert descriptions[hidden] is None
    assert str(descriptions[shown]) == "Bring the contract"


async def test_the_bookings_own_event_never_blocks_its_move(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    """The destination calendar is also selected: the booking's event, read back, must not
    refuse moving the one-hour booking by 30 minutes (it overlaps its own old time), again
    after a second move (the event keeps the first booking's UID)."""
    event_type = await hosted_event_type(app, alice, length=60, slot_interval=30)
    calendar = radicale.make_calendar("Work")
    credential = await connect_caldav(client, alice, radicale)
    await select_calendar(client, alice, credential, calendar)
    await destination(app, alice, credential, calendar)
    booking = await book(client, alice, event_type, TUESDAY_10)
    await settled(client, alice, booking["id"], until="WRITTEN")
    for start in ("2026-01-06T10:30:00.000Z", "2026-01-06T11:00:00.000Z"):
        moved = await try_booking(client, alice, event_type, start, rescheduleUid=booking["uid"])
        assert moved.status_code == 200, moved.text
        booking = moved.json()
        await settled(client, alice, booking["id"], until="WRITTEN")
        event = only_event(radicale, calendar)
        assert start_of(event) == datetime.fromisoformat(start)


async def test_radicale_down_the_booking_stands_and_the_write_lands_later(
    make_settings: Callable[..., Settings], alice: Account, private_radicale: RadicaleServer
) -> None:
    app = await app_with(make_settings)
    account = private_radicale.new_account()
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        calendar = await connected_destination(app, client, alice, account)
        private_radicale.stop()
        booking = await book(client, alice, event_type, TUESDAY_10)
        assert booking["status"] == "ACCEPTED"
        deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
        while True:
            [row] = await calendar_events(client, alice, booking["id"])
            if row["attempts"] >= 2:
                break
            assert asyncio.get_running_loop().time() < deadline, row
            await asyncio.sleep(0.05)
        assert row["status"] == "PENDING" and row["lastError"], row
        assert account.password not in str(row)
        private_radicale.start()
        [row] = await settled(client, alice, booking["id"], until="WRITTEN")
        assert str(only_event(account, calendar)["UID"]) == booking["iCalUID"]


async def test_a_refused_login_is_failed_with_its_reason_and_the_booking_stands(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    radicale: RadicaleAccount,
    radicale_server: RadicaleServer,
) -> None:
    event_type = await hosted_event_type(app, alice)
    calendar = await connected_destination(app, client, alice, radicale)
    radicale_server.set_password(radicale.username, "changed-on-the-server")
    booking = await book(client, alice, event_type, TUESDAY_10)
    [row] = await settled(client, alice, booking["id"], until="FAILED")
    assert row["attempts"] == 1  # no retry can fix a wrong password
    assert "password" in row["lastError"].lower(), row
    assert radicale.password not in str(row)
    again = await client.get(f"/v1/bookings/{booking['id']}", params=alice.params)
    assert again.json()["booking"]["status"] == "ACCEPTED"

    # The user gives the new password: the failed write goes again and lands.
    fixed = await client.patch(
        f"/v1/credentials/{row['credentialId']}",
        params=alice.params,
        json={
            "key": {
                "url": radicale.url,
                "username": radicale.username,
                "password": "changed-on-the-server",
            }
        },
    )
    assert fixed.status_code == 200, fixed.text
    [row] = await settled(client, alice, booking["id"], until="WRITTEN")
    assert row["lastError"] is None and row["attempts"] == 1
    radicale.password = "changed-on-the-server"
    assert str(only_event(radicale, calendar)["UID"]) == booking["iCalUID"]


async def test_a_collective_booking_lands_in_every_hosts_calendar_and_leaves_with_cancel(
    app: FastAPI,
    client: httpx.AsyncClient,
    members: Crew,
    radicale_server: RadicaleServer,
) -> None:
    alice, bob = members[:2]
    await hours(app, alice, "Europe/London")
    await hours(app, bob, "America/New_York")
    panel = await team_event_type(
        client, alice, members.team_id, "COLLECTIVE", [(alice, False), (bob, False)]
    )
    alices, bobs = radicale_server.new_account(), radicale_server.new_account()
    alice_calendar = await connected_destination(app, client, alice, alices)
    bob_calendar = await connected_destination(app, client, bob, bobs)
    response = await post_booking(client, alice, panel, "2026-01-06T15:00:00.000Z")
    assert response.status_code == 200, response.text
    booking = response.json()
    rows = await settled(client, alice, booking["id"], until="WRITTEN")
    assert {row["externalCalendarId"] for row in rows} == {alice_calendar, bob_calendar}
    for account, calendar in ((alices, alice_calendar), (bobs, bob_calendar)):
        event = only_event(account, calendar)
        assert str(event["UID"]) == booking["iCalUID"]
        assert start_of(event) == datetime(2026, 1, 6, 15, tzinfo=UTC)
    # The organiser's zone on both copies; bob is among the attendees of alice's copy.
    attendees = only_event(alices, alice_calendar).get("ATTENDEE")
    assert "mailto:bob@example.com" in [str(a) for a in attendees]

    cancelled = await client.delete(f"/v1/bookings/{booking['id']}", params=bob.params)
    assert cancelled.status_code == 200, cancelled.text
    await settled(client, alice, booking["id"], until="DELETED")
    assert alices.events(alice_calendar) == [] and bobs.events(bob_calendar) == []


async def test_calendar_events_are_for_the_bookings_managers(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    event_type = await hosted_event_type(app, alice)
    booking = await book(client, alice, event_type, TUESDAY_10, email=bob.email)
    as_attendee = await client.get(
        f"/v1/bookings/{booking['id']}/calendar-events", params=bob.params
    )
    assert as_attendee.status_code == 403, as_attendee.text
    missing = await client.get("/v1/bookings/999999/calendar-events", params=alice.params)
    assert missing.status_code == 404
    assert (await client.get(f"/v1/bookings/{booking['id']}/calendar-events")).status_code == 401


async def test_round_robin_writes_to_the_chosen_and_the_fixed_hosts_only(
    app: FastAPI, client: httpx.AsyncClient, members: Crew, radicale_server: RadicaleServer
) -> None:
    alice, bob, carol = members[:3]
    for host in (alice, bob, carol):
        await hours(app, host, "Europe/London")
    event_type = await team_event_type(
        client,
        alice,
        members.team_id,
        "ROUND_ROBIN",
        [(alice, True), (bob, False), (carol, False)],
    )
    accounts = {host.id: radicale_server.new_account() for host in (alice, bob, carol)}
    calendars = {
        host.id: await connected_destination(app, client, host, accounts[host.id])
        for host in (alice, bob, carol)
    }
    response = await post_booking(client, carol, event_type, "2026-01-06T09:00:00.000Z")
    assert response.status_code == 200, response.text
    booking = response.json()
    [chosen] = booking["luckyUsers"]
    written = {alice.id, chosen}
    rows = await settled(client, alice, booking["id"], until="WRITTEN")
    assert {row["userId"] for row in rows} == written
    for host_id, calendar in calendars.items():
        expected = 1 if host_id in written else 0
        assert len(accounts[host_id].events(calendar)) == expected, host_id


async def test_a_new_organiser_moves_the_event_to_their_calendar(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    admin: Account,
    radicale_server: RadicaleServer,
) -> None:
    event_type = await hosted_event_type(app, alice)
    alices, bobs = radicale_server.new_account(), radicale_server.new_account()
    alice_calendar = await connected_destination(app, client, alice, alices)
    bob_calendar = await connected_destination(app, client, bob, bobs)
    booking = await book(client, alice, event_type, TUESDAY_10)
    await settled(client, alice, booking["id"], until="WRITTEN")
    handed = await client.patch(
        f"/v1/bookings/{booking['id']}", params=admin.params, json={"userId": bob.id}
    )
    assert handed.status_code == 200, handed.text
    rows = await settled(client, admin, booking["id"])
    assert {(row["userId"], row["status"]) for row in rows} == {
        (alice.id, "DELETED"),
        (bob.id, "WRITTEN"),
    }
    assert alices.events(alice_calendar) == []
    assert str(only_event(bobs, bob_calendar)["UID"]) == booking["iCalUID"]
