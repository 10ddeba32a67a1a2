"""Booking emails end to end, read from a real SMTP server (aiosmtpd): for every booking change,
exactly the expected messages reach exactly the expected recipients, each invitation parses
with the right UID, SEQUENCE, METHOD and times in the recipient's zone (across a DST change);
`disableStandardEmails`, header injection, the hourly limit, SMTP down then back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from icalendar import Calendar
from sqlalchemy import update

from bookable.app import create_app
from bookable.models import EventType, User
from bookable.settings import Settings
from tests.api.booking_helpers import NOW, TUESDAY_10, TUESDAY_11, hosted_event_type
from tests.api.test_calendar_bookings import try_booking
from tests.api.test_team_scheduling import Crew, hours, post_booking, team_event_type
from tests.api.test_team_scheduling import members as members
from tests.conftest import Account, client_for
from tests.mail_servers import ReceivedMail, SmtpServer

FAST = {
    "emails": "on",
    "webhook_poll_interval": 0.05,
    "email_retry_delays": "0.05",
    "email_timeout": 10.0,
    "email_from": "Bookable <bookings@bookable.test>",
}
QUIET = 0.4  # seconds with no new message before "nothing more is coming" is believed


async def app_with(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer, **settings: Any
) -> FastAPI:
    return create_app(
        make_settings(clock=NOW, smtp_url=smtp_server.smtp_url, **{**FAST, **settings})
    )


@pytest.fixture
async def app(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> AsyncIterator[FastAPI]:
    application = await app_with(make_settings, smtp_server)
    async with application.router.lifespan_context(application):
        yield application


async def set_zone(app: FastAPI, account: Account, zone: str) -> None:
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == account.id).values(time_zone=zone))


async def set_meta(app: FastAPI, event_type_id: int, meta: dict[str, Any]) -> None:
    async with app.state.sessions() as session, session.begin():
        await session.execute(
            update(EventType).where(EventType.id == event_type_id).values(meta=meta)
        )


async def received(smtp: SmtpServer, count: int) -> list[ReceivedMail]:
    """Exactly ``count`` messages: they arrive, then nothing more for a moment."""
    await smtp.wait_for(count)
    await asyncio.sleep(QUIET)
    mails = smtp.messages
    assert len(mails) == count, [(m.recipients, str(m.message["Subject"])) for m in mails]
    return mails


def by_recipient(mails: list[ReceivedMail]) -> dict[str, ReceivedMail]:
    found: dict[str, ReceivedMail] = {}
    for mail in mails:
        [recipient] = mail.recipients  # one envelope recipient per message, always
        assert recipient not in found, f"{recipient} got two messages"
        found[recipient] = mail
    return found


def invitation(mail: ReceivedMail) -> Calendar | None:
    message: EmailMessage = mail.message
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            return Calendar.from_ical(part.get_content())
    return None


def text_of(mail: ReceivedMail) -> str:
    part = mail.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def check_invite(mail: ReceivedMail, method: str, uid: str, sequence: int) -> Calendar:
    calendar = invitation(mail)
    assert calendar is not None, f"no invitation for {mail.recipients}"
    assert str(calendar["METHOD"]) == method
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == uid
    assert int(event["SEQUENCE"]) == sequence
    return calendar


async def emails_of(client: httpx.AsyncClient, caller: Account, booking_id: int) -> list[Any]:
    response = await client.get(f"/v1/bookings/{booking_id}/emails", params=caller.params)
    assert response.status_code == 200, response.text
    rows: list[Any] = response.json()["emails"]
    return rows


async def book(
    client: httpx.AsyncClient, caller: Account, event_type: int, start: str, **extra: Any
) -> dict[str, Any]:
    response = await try_booking(client, caller, event_type, start, **extra)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_booking_reaches_attendee_guest_and_host_in_their_own_zones(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, smtp_server: SmtpServer
) -> None:
    """Across the DST changes: on 2026-03-29 Paris is already on summer time (UTC+2) and New
    York too (UTC-4, since 8 March)."""
    await set_zone(app, alice, "Europe/Paris")
    event_type = await hosted_event_type(app, alice)
    booking = await book(
        client, alice, event_type, "2026-03-30T09:00:00.000Z",
        timeZone="America/New_York",
        responses={"name": "Ann", "email": "ann@example.com", "guests": ["gus@example.com"],
                   "notes": "Bring the contract"},
    )  # fmt: skip
    mails = by_recipient(await received(smtp_server, 3))
    assert set(mails) == {"ann@example.com", "gus@example.com", alice.email}
    for mail in mails.values():
        assert mail.sender == "bookings@bookable.test"
        assert mail.message["Bcc"] is None and mail.message["Cc"] is None
        calendar = check_invite(mail, "REQUEST", booking["iCalUID"], 0)
        [event] = calendar.walk("VEVENT")
        assert event["DTSTART"].params["TZID"] == "Europe/Paris"
        assert event.decoded("DTSTART") == datetime(2026, 3, 30, 9, tzinfo=UTC)
    assert "05:00" in text_of(mails["ann@example.com"])  # New York, summer time
    assert "11:00" in text_of(mails[alice.email])  # Paris, summer time
    assert "Bring the contract" in text_of(mails[alice.email])
    assert str(mails["ann@example.com"].message["Subject"]).startswith("Confirmed")

    rows = await emails_of(client, alice, booking["id"])
    assert sorted((r["kind"], r["recipient"]) for r in rows) == [
        ("attendee.confirmed", "ann@example.com"),
        ("attendee.confirmed", "gus@example.com"),
        ("host.new", alice.email),
    ]
    await asyncio.sleep(0.2)
    rows = await emails_of(client, alice, booking["id"])
    assert all(r["status"] == "SENT" and r["attempts"] == 1 for r in rows), rows
    assert {r["messageId"] for r in rows} == {
        m.message_id for m in mails.values()
    }  # the ids the server saw


async def test_request_confirm_and_reject(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, smtp_server: SmtpServer
) -> None:
    event_type = await hosted_event_type(app, alice, requires_confirmation=True)
    waiting = await book(client, alice, event_type, TUESDAY_10)
    mails = by_recipient(await received(smtp_server, 2))
    assert invitation(mails["guest@example.com"]) is None  # nothing is scheduled yet
    assert invitation(mails[alice.email]) is None
    assert f"/v1/bookings/{waiting['id']}/confirm" in text_of(mails[alice.email])
    assert str(mails["guest@example.com"].message["Subject"]).startswith("Awaiting")

    confirmed = await client.post(
        f"/v1/bookings/{waiting['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert confirmed.status_code == 200, confirmed.text
    mails = by_recipient((await received(smtp_server, 4))[2:])
    assert set(mails) == {"guest@example.com", alice.email}
    for mail in mails.values():
        check_invite(mail, "REQUEST", waiting["iCalUID"], 0)

    refused = await book(client, alice, event_type, TUESDAY_11, responses={
        "name": "Rita", "email": "rita@example.com"})  # fmt: skip
    await received(smtp_server, 6)
    rejected = await client.post(
        f"/v1/bookings/{refused['id']}/confirm",
        params=alice.params,
        json={"confirmed": False, "rejectionReason": "Fully booked"},
    )
    assert rejected.status_code == 200, rejected.text
    [mail] = (await received(smtp_server, 7))[6:]  # the attendee only: the host did it
    assert mail.recipients == ("rita@example.com",)
    check_invite(mail, "CANCEL", refused["iCalUID"], 1)
    assert "Fully booked" in text_of(mail)


async def test_reschedule_patch_and_cancel_follow_with_one_uid(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, smtp_server: SmtpServer
) -> None:
    event_type = await hosted_event_type(app, alice)
    first = await book(client, alice, event_type, TUESDAY_10)
    await received(smtp_server, 2)
    moved = await book(client, alice, event_type, TUESDAY_11, rescheduleUid=first["uid"])
    mails = by_recipient((await received(smtp_server, 4))[2:])
    assert set(mails) == {"guest@example.com", alice.email}
    for mail in mails.values():
        check_invite(mail, "REQUEST", first["iCalUID"], 1)
        assert str(mail.message["Subject"]).startswith("Rescheduled")

    patched = await client.patch(
        f"/v1/bookings/{moved['id']}",
        params=alice.params,
        json={"startTime": "2026-01-06T14:00:00.000Z", "endTime": "2026-01-06T14:30:00.000Z"},
    )
    assert patched.status_code == 200, patched.text
    mails = by_recipient((await received(smtp_server, 6))[4:])
    for mail in mails.values():
        calendar = check_invite(mail, "REQUEST", first["iCalUID"], 2)
        [event] = calendar.walk("VEVENT")
        assert event.decoded("DTSTART").astimezone(UTC) == datetime(2026, 1, 6, 14, tzinfo=UTC)

    cancelled = await client.delete(
        f"/v1/bookings/{moved['id']}/cancel",
        params={**alice.params, "cancellationReason": "Sick"},
    )
    assert cancelled.status_code == 200, cancelled.text
    mails = by_recipient((await received(smtp_server, 8))[6:])
    assert set(mails) == {"guest@example.com", alice.email}
    for mail in mails.values():
        check_invite(mail, "CANCEL", first["iCalUID"], 3)
        assert "Sick" in text_of(mail)


async def test_cancelling_all_of_a_recurring_series_tells_of_each(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, smtp_server: SmtpServer
) -> None:
    event_type = await hosted_event_type(app, alice)
    series = [
        await book(client, alice, event_type, f"2026-01-{day}T10:00:00.000Z",
                   recurringEventId="series-1")
        for day in ("06", "13", "20")
    ]  # fmt: skip
    await received(smtp_server, 6)
    one = await client.delete(f"/v1/bookings/{series[2]['id']}/cancel", params=alice.params)
    assert one.status_code == 200, one.text
    only = (await received(smtp_server, 8))[6:]
    for mail in only:
        check_invite(mail, "CANCEL", series[2]["iCalUID"], 1)
    rest = await client.delete(
        f"/v1/bookings/{series[0]['id']}/cancel",
        params={**alice.params, "allRemainingBookings": "true"},
    )
    assert rest.status_code == 200, rest.text
    mails = (await received(smtp_server, 12))[8:]
    uids = sorted(str(c.walk("VEVENT")[0]["UID"]) for m in mails if (c := invitation(m)))
    assert uids == sorted([series[0]["iCalUID"]] * 2 + [series[1]["iCalUID"]] * 2)


async def test_seats_tell_only_the_seat_holder_and_the_host(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, smtp_server: SmtpServer
) -> None:
    event_type = await hosted_event_type(app, alice, seats_per_time_slot=3)
    first = await book(client, alice, event_type, TUESDAY_10, responses={
        "name": "Ann", "email": "ann@example.com"})  # fmt: skip
    await received(smtp_server, 2)
    await book(client, alice, event_type, TUESDAY_10, responses={
        "name": "Bob", "email": bob.email})  # fmt: skip
    mails = by_recipient((await received(smtp_server, 4))[2:])
    assert set(mails) == {bob.email, alice.email}  # not Ann again
    check_invite(mails[bob.email], "REQUEST", first["iCalUID"], 0)

    left = await client.delete(f"/v1/bookings/{first['id']}", params=bob.params)
    assert left.status_code == 200, left.text
    [mail] = (await received(smtp_server, 5))[4:]  # the meeting goes on: the host is not told
    assert mail.recipients == (bob.email,)
    check_invite(mail, "CANCEL", first["iCalUID"], 1)


async def test_team_bookings_tell_the_hosts_they_occupy(
    app: FastAPI, client: httpx.AsyncClient, members: Crew, smtp_server: SmtpServer
) -> None:
    alice, bob, carol = members[:3]
    for host in (alice, bob, carol):
        await hours(app, host, "Europe/London")
    panel = await team_event_type(
        client, alice, members.team_id, "COLLECTIVE", [(alice, False), (bob, False)]
    )
    response = await post_booking(client, alice, panel, "2026-01-06T10:00:00.000Z")
    assert response.status_code == 200, response.text
    mails = by_recipient(await received(smtp_server, 3))
    assert set(mails) == {"guest@example.com", alice.email, bob.email}

    robin = await team_event_type(
        client, alice, members.team_id, "ROUND_ROBIN",
        [(alice, True), (bob, False), (carol, False)], slug="robin",
    )  # fmt: skip
    response = await post_booking(client, carol, robin, "2026-01-06T11:00:00.000Z")
    assert response.status_code == 200, response.text
    [chosen] = response.json()["luckyUsers"]
    emails = {m.id: m.email for m in members}
    mails = by_recipient((await received(smtp_server, 6))[3:])
    assert set(mails) == {"guest@example.com", alice.email, emails[chosen]}


async def test_disable_standard_emails(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, smtp_server: SmtpServer
) -> None:
    quiet_host = await hosted_event_type(app, alice, slug="quiet-host")
    await set_meta(app, quiet_host, {"disableStandardEmails": {"all": {"host": True}}})
    booking = await book(client, alice, quiet_host, TUESDAY_10)
    [mail] = await received(smtp_server, 1)
    assert mail.recipients == ("guest@example.com",)

    no_confirmation = await hosted_event_type(app, alice, slug="no-confirmation")
    await set_meta(
        app, no_confirmation, {"disableStandardEmails": {"confirmation": {"attendee": True}}}
    )
    other = await book(client, alice, no_confirmation, TUESDAY_11)
    [mail] = (await received(smtp_server, 2))[1:]
    assert mail.recipients == (alice.email,)
    # Only the confirmation is off: a cancellation still reaches the attendee.
    cancelled = await client.delete(f"/v1/bookings/{other['id']}", params=alice.params)
    assert cancelled.status_code == 200, cancelled.text
    mails = by_recipient((await received(smtp_server, 4))[2:])
    assert set(mails) == {"guest@example.com", alice.email}
    assert [r["kind"] for r in await emails_of(client, alice, booking["id"])] == [
        "attendee.confirmed"
    ]


async def test_header_injection_in_names_and_titles_adds_no_recipient(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, smtp_server: SmtpServer
) -> None:
    event_type = await hosted_event_type(app, alice)
    await book(
        client, alice, event_type, TUESDAY_10,
        title="Call\r\nBcc: title@evil.example",
        responses={"name": "Ann\r\nBcc: name@evil.example\r\nX-Evil: 1",
                   "email": "ann@example.com"},
    )  # fmt: skip
    mails = await received(smtp_server, 2)
    for mail in mails:
        assert mail.message["Bcc"] is None and mail.message["X-Evil"] is None
        assert all("evil" not in r for r in mail.recipients)
        assert "\n" not in str(mail.message["Subject"])
    assert {r for m in mails for r in m.recipients} == {"ann@example.com", alice.email}


async def test_the_hourly_limit_per_host_drops_the_rest_visibly(
    make_settings: Callable[..., Settings],
    alice: Account,
    smtp_server: SmtpServer,
) -> None:
    app = await app_with(make_settings, smtp_server, email_max_per_host_per_hour=3)
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        await book(client, alice, event_type, TUESDAY_10)
        second = await book(client, alice, event_type, TUESDAY_11)
        await received(smtp_server, 3)
        rows = await emails_of(client, alice, second["id"])
        assert [r["status"] for r in rows] == ["PENDING", "DROPPED"] or [
            r["status"] for r in rows
        ] == ["SENT", "DROPPED"], rows
        assert "BOOKABLE_EMAIL_MAX_PER_HOST_PER_HOUR" in rows[1]["lastError"]


async def test_smtp_down_the_booking_stands_and_the_mail_arrives_later(
    make_settings: Callable[..., Settings], alice: Account, smtp_server: SmtpServer
) -> None:
    app = await app_with(make_settings, smtp_server)
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        smtp_server.stop()
        booking = await book(client, alice, event_type, TUESDAY_10)
        assert booking["status"] == "ACCEPTED"
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            rows = await emails_of(client, alice, booking["id"])
            if all(r["attempts"] >= 2 for r in rows):
                break
            assert asyncio.get_running_loop().time() < deadline, rows
            await asyncio.sleep(0.05)
        assert all(r["status"] == "PENDING" and r["lastError"] for r in rows), rows
        smtp_server.start()
        mails = by_recipient(await received(smtp_server, 2))
        assert set(mails) == {"guest@example.com", alice.email}


async def test_emails_off_makes_none(
    make_settings: Callable[..., Settings], alice: Account, smtp_server: SmtpServer
) -> None:
    app = await app_with(make_settings, smtp_server, emails="off")
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        booking = await book(client, alice, event_type, TUESDAY_10)
        await asyncio.sleep(QUIET)
        assert smtp_server.messages == []
        assert await emails_of(client, alice, booking["id"]) == []


async def test_without_smtp_the_mail_is_written_as_eml_files(
    make_settings: Callable[..., Settings], app: FastAPI, alice: Account, tmp_path: Any
) -> None:
    # Only this test's app may send: the module's app (alice's) would use its SMTP server.
    await app.state.email_dispatcher.stop()
    folder = tmp_path / "outbox-mail"
    app = create_app(make_settings(clock=NOW, email_dir=folder, **FAST))
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        booking = await book(client, alice, event_type, TUESDAY_10)
        deadline = asyncio.get_running_loop().time() + 15
        while len(list(folder.glob("*.eml"))) < 2:
            assert asyncio.get_running_loop().time() < deadline, (
                list(folder.glob("*")),
                [
                    (r["status"], r["lastError"])
                    for r in await emails_of(client, alice, booking["id"])
                ],
            )
            await asyncio.sleep(0.05)
        rows = await emails_of(client, alice, booking["id"])
    assert sorted(r["recipient"] for r in rows) == sorted(["guest@example.com", alice.email])


async def test_emails_are_for_the_bookings_managers(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    event_type = await hosted_event_type(app, alice)
    booking = await book(client, alice, event_type, TUESDAY_10, responses={
        "name": "Bob", "email": bob.email})  # fmt: skip
    response = await client.get(f"/v1/bookings/{booking['id']}/emails", params=bob.params)
    assert response.status_code == 403
    assert (await client.get(f"/v1/bookings/{booking['id']}/emails")).status_code == 401
