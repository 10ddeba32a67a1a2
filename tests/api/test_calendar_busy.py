"""Busy times of selected calendars in GET /slots and GET /availability, end to end: a real
Radicale (and a real ICS feed server), accounts connected and calendars selected over the API,
events put in with a CalDAV client as a user's calendar app would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.app import create_app
from bookable.models import User
from bookable.settings import Settings
from tests.api.booking_helpers import NOW, hosted_event_type
from tests.api.calendar_helpers import connect_caldav
from tests.api.scheduling_seed import add_event_type, add_schedule
from tests.calendar_servers import IcsServer, RadicaleAccount, RadicaleServer
from tests.conftest import Account, client_for


def vevent(uid: str, start: str, end: str, *extra: str) -> str:
    lines = [f"UID:{uid}", "DTSTAMP:20260101T000000Z", f"DTSTART{start}", f"DTEND{end}", *extra]
    return "BEGIN:VEVENT\r\n" + "\r\n".join(lines) + "\r\nEND:VEVENT\r\n"


def vcalendar(*events: str) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bookable tests//EN\r\n"
        + "".join(events)
        + "END:VCALENDAR\r\n"
    )


async def app_with(make_settings: Callable[..., Settings], **settings: Any) -> FastAPI:
    return create_app(make_settings(clock=NOW, **settings))


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    application = await app_with(make_settings)
    async with application.router.lifespan_context(application):
        yield application


async def select_calendar(
    client: httpx.AsyncClient, caller: Account, credential: dict[str, Any], calendar_url: str
) -> dict[str, Any]:
    response = await client.post(
        "/v1/selected-calendars",
        params=caller.params,
        json={
            "integration": credential["type"],
            "externalId": calendar_url,
            "credentialId": credential["id"],
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["selected_calendar"])


async def slot_times(
    client: httpx.AsyncClient, caller: Account, event_type_id: int, day: str = "2026-01-06"
) -> tuple[list[str], dict[str, Any]]:
    response = await client.get(
        "/v1/slots",
        params={
            **caller.params,
            "eventTypeId": event_type_id,
            "startTime": f"{day}T00:00:00Z",
            "endTime": f"{day}T23:59:59Z",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    times = [s["time"][11:16] for s in body["slots"].get(day, [])]
    return times, body


WORKDAY = [f"{h:02d}:{m:02d}" for h in range(9, 17) for m in (0, 30)]


async def test_selected_calendar_events_disappear_from_slots(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    event_type = await hosted_event_type(app, alice)
    work = radicale.make_calendar("Work")
    other = radicale.make_calendar("Private")
    radicale.put_event(work, vcalendar(vevent("meeting", ":20260106T100000Z", ":20260106T110000Z")))
    # In a calendar that is not selected: it does not count.
    radicale.put_event(other, vcalendar(vevent("gym", ":20260106T140000Z", ":20260106T150000Z")))
    credential = await connect_caldav(client, alice, radicale)
    assert (await slot_times(client, alice, event_type))[0] == WORKDAY
    await select_calendar(client, alice, credential, work)
    times, body = await slot_times(client, alice, event_type)
    assert times == [t for t in WORKDAY if t not in ("10:00", "10:30")]
    assert "calendarErrors" not in body
    # Availability lists the event as busy, with the app it comes from.
    availability = await client.get(
        "/v1/availability",
        params={
            **alice.params,
            "userId": alice.id,
            "dateFrom": "2026-01-06",
            "dateTo": "2026-01-06",
        },
    )
    assert availability.status_code == 200, availability.text
    assert {
        "start": "2026-01-06T10:00:00.000Z",
        "end": "2026-01-06T11:00:00.000Z",
        "source": "caldav-calendar",
    } in availability.json()["busy"]


async def test_each_kind_of_event_blocks_exactly_its_time(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    event_type = await hosted_event_type(app, alice)
    work = radicale.make_calendar("Work")
    objects = [
        # Free time on the calendar: never blocks.
        vcalendar(vevent("free", ":20260106T090000Z", ":20260106T100000Z", "TRANSP:TRANSPARENT")),
        vcalendar(
            vevent("called-off", ":20260106T120000Z", ":20260106T130000Z", "STATUS:CANCELLED")
        ),
        vcalendar(
            vevent(
                "declined",
                ":20260106T130000Z",
                ":20260106T140000Z",
                f"ATTENDEE;PARTSTAT=DECLINED:mailto:{alice.email}",
            )
        ),
        # Began the evening before and runs into the morning: overlaps the window.
        vcalendar(vevent("overnight", ":20260105T220000Z", ":20260106T093000Z")),
        # Weekly on Wednesdays 10:00, the 2nd one cancelled, the 3rd moved to 15:00 (one
        # calendar object holds the series and its override, as CalDAV requires).
        vcalendar(
            vevent(
                "weekly",
                ":20260107T100000Z",
                ":20260107T110000Z",
                "RRULE:FREQ=WEEKLY;COUNT=4",
                "EXDATE:20260114T100000Z",
            ),
            vevent(
                "weekly", ":20260121T150000Z", ":20260121T160000Z", "RECURRENCE-ID:20260121T100000Z"
            ),
        ),
        # All day on Thursday 8 January, in the host's zone (UTC here).
        vcalendar(vevent("holiday", ";VALUE=DATE:20260108", ";VALUE=DATE:20260109")),
    ]
    for text in objects:
        radicale.put_event(work, text)
    credential = await connect_caldav(client, alice, radicale)
    await select_calendar(client, alice, credential, work)

    tuesday, _ = await slot_times(client, alice, event_type, "2026-01-06")
    assert tuesday == [t for t in WORKDAY if t not in ("09:00",)]
    wednesdays = {
        day: (await slot_times(client, alice, event_type, day))[0]
        for day in ("2026-01-07", "2026-01-14", "2026-01-21", "2026-01-28")
    }
    assert "10:00" not in wednesdays["2026-01-07"]
    assert wednesdays["2026-01-14"] == WORKDAY  # EXDATE
    assert "10:00" in wednesdays["2026-01-21"]  # moved away from 10:00 ...
    assert "15:00" not in wednesdays["2026-01-21"]  # ... to 15:00
    assert "10:00" not in wednesdays["2026-01-28"]
    assert (await slot_times(client, alice, event_type, "2026-01-08"))[0] == []


async def test_an_unreadable_calendar_fails_closed_visibly_and_recovers(
    make_settings: Callable[..., Settings], alice: Account, private_radicale: RadicaleServer
) -> None:
    # No caching: every request asks the server, so stopping it shows at once.
    app = await app_with(make_settings, calendar_cache_seconds=0)
    account = private_radicale.new_account()
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        work = account.make_calendar("Work")
        credential = await connect_caldav(client, alice, account)
        selected = await select_calendar(client, alice, credential, work)
        assert (await slot_times(client, alice, event_type))[0] == WORKDAY

        private_radicale.stop()
        times, body = await slot_times(client, alice, event_type)
        assert times == []
        (problem,) = body["calendarErrors"]
        assert problem["userId"] == alice.id
        assert problem["externalId"] == work
        assert problem["error"]
        assert account.password not in str(body)
        # The error is stored on the selected calendar, with its time.
        listed = await client.get("/v1/selected-calendars", params=alice.params)
        (row,) = [r for r in listed.json()["selected_calendars"] if r["id"] == selected["id"]]
        assert row["error"] == problem["error"]
        assert row["lastErrorAt"] == problem["lastErrorAt"]
        availability = await client.get(
            "/v1/availability",
            params={**alice.params, "userId": alice.id, "dateFrom": "2026-01-06",
                    "dateTo": "2026-01-06"},
        )  # fmt: skip
        assert availability.json()["dateRanges"] == []
        assert availability.json()["calendarErrors"] == [problem]

        private_radicale.start()
        times, body = await slot_times(client, alice, event_type)
        assert times == WORKDAY
        assert "calendarErrors" not in body
        listed = await client.get("/v1/selected-calendars", params=alice.params)
        (row,) = [r for r in listed.json()["selected_calendars"] if r["id"] == selected["id"]]
        assert row["error"] is None
        assert row["syncedAt"] is not None


async def test_fail_open_offers_slots_but_still_says_why(
    make_settings: Callable[..., Settings], alice: Account, private_radicale: RadicaleServer
) -> None:
    app = await app_with(make_settings, calendar_cache_seconds=0, calendar_fail_open=True)
    account = private_radicale.new_account()
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        work = account.make_calendar("Work")
        credential = await connect_caldav(client, alice, account)
        await select_calendar(client, alice, credential, work)
        private_radicale.stop()
        times, body = await slot_times(client, alice, event_type)
        assert times == WORKDAY
        assert len(body["calendarErrors"]) == 1


async def connect_feed(client: httpx.AsyncClient, caller: Account, url: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/credentials",
        params=caller.params,
        json={"appId": "ics-feed", "key": {"urls": [url]}},
    )
    assert response.status_code == 200, response.text
    credential = dict(response.json()["credential"])
    await select_calendar(client, caller, credential, url)
    return credential


async def test_busy_times_are_cached_then_revalidated_cheaply(
    make_settings: Callable[..., Settings], alice: Account, ics_server: IcsServer
) -> None:
    app = await app_with(make_settings, calendar_cache_seconds=3600)
    async with app.router.lifespan_context(app), client_for(app) as client:
        event_type = await hosted_event_type(app, alice)
        url = ics_server.set_feed(
            "/team.ics", vcalendar(vevent("standup", ":20260106T100000Z", ":20260106T103000Z"))
        )
        await connect_feed(client, alice, url)
        before = ics_server.count("/team.ics")
        first, _ = await slot_times(client, alice, event_type)
        assert "10:00" not in first and "10:30" in first
        read_once = ics_server.count("/team.ics")
        assert read_once > before
        # Fresh: the second request does not ask the feed at all.
        assert (await slot_times(client, alice, event_type))[0] == first
        assert ics_server.count("/team.ics") == read_once

    # Stale (no freshness): the feed is asked, answers 304, and the cached read is used.
    app = await app_with(make_settings, calendar_cache_seconds=0)
    async with app.router.lifespan_context(app), client_for(app) as client:
        await slot_times(client, alice, event_type)
        unchanged_304 = ics_server.count("/team.ics", status=304)
        assert (await slot_times(client, alice, event_type))[0] == first
        assert ics_server.count("/team.ics", status=304) == unchanged_304 + 1
        # A changed feed is read again.
        ics_server.set_feed(
            "/team.ics", vcalendar(vevent("standup", ":20260106T140000Z", ":20260106T143000Z"))
        )
        moved, _ = await slot_times(client, alice, event_type)
        assert "10:00" in moved and "14:00" not in moved


async def test_zoned_floating_hourly_and_dst_events_block_the_hosts_local_times(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    """A host in New York (09:00-17:00 local); DST starts there on Sunday 8 March 2026."""
    async with app.state.sessions() as session, session.begin():
        user = await session.get(User, alice.id)
        assert user is not None
        user.time_zone = "America/New_York"
    await add_schedule(app, alice.id, "America/New_York")
    event_type = await add_event_type(app, alice.id)
    work = radicale.make_calendar("Work")
    for text in (
        # Daily at 10:00 New York time, from Thursday to the Wednesday after the change.
        vcalendar(vevent("daily", ";TZID=America/New_York:20260305T100000",
                         ";TZID=America/New_York:20260305T103000", "RRULE:FREQ=DAILY;COUNT=7")),
        # Floating: 13:00 wherever the host is.
        vcalendar(vevent("floating", ":20260310T130000", ":20260310T133000")),
        # Hourly, three times, a quarter of an hour each, from 09:00 on Wednesday.
        vcalendar(vevent("hourly", ";TZID=America/New_York:20260311T090000",
                         ";TZID=America/New_York:20260311T091500", "RRULE:FREQ=HOURLY;COUNT=3")),
    ):  # fmt: skip
        radicale.put_event(work, text)
    credential = await connect_caldav(client, alice, radicale)
    await select_calendar(client, alice, credential, work)

    async def local_times(day: str) -> list[str]:
        response = await client.get(
            "/v1/slots",
            params={**alice.params, "eventTypeId": event_type, "timeZone": "America/New_York",
                    "startTime": day, "endTime": day},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return [s["time"][11:16] for s in response.json()["slots"].get(day, [])]

    # Before (EST) and after (EDT) the change, the same local 10:00 is taken.
    for day in ("2026-03-06", "2026-03-09", "2026-03-10"):
        times = await local_times(day)
        assert "10:00" not in times and "09:30" in times and "10:30" in times, day
    assert "13:00" not in await local_times("2026-03-10")
    wednesday = await local_times("2026-03-11")
    assert [t for t in ("09:00", "10:00", "11:00", "12:00") if t not in wednesday] == [
        "09:00", "10:00", "11:00"
    ]  # fmt: skip
    assert "09:30" in wednesday


@pytest.mark.redis
async def test_processes_share_busy_times_through_redis(
    make_settings: Callable[..., Settings], alice: Account, ics_server: IcsServer, redis_url: str
) -> None:
    """Two server processes (two apps) on one database and one Redis: what one read, the other
    uses without asking the calendar's server."""
    url = ics_server.set_feed(
        "/shared.ics", vcalendar(vevent("sync", ":20260106T100000Z", ":20260106T103000Z"))
    )
    first = await app_with(make_settings, calendar_cache_seconds=3600, redis_url=redis_url)
    second = await app_with(make_settings, calendar_cache_seconds=3600, redis_url=redis_url)
    async with (
        first.router.lifespan_context(first),
        second.router.lifespan_context(second),
        client_for(first) as one,
        client_for(second) as other,
    ):
        await first.state.calendar_busy.forget_cached()
        event_type = await hosted_event_type(first, alice)
        await connect_feed(one, alice, url)
        read, _ = await slot_times(one, alice, event_type)
        asked = ics_server.count("/shared.ics")
        assert "10:00" not in read
        assert (await slot_times(other, alice, event_type))[0] == read
        assert ics_server.count("/shared.ics") == asked
