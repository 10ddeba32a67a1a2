"""CalDavProvider writing a booking's event into a real Radicale: create, retry, update, delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from icalendar import Calendar

from bookable.calendars.ical import EventDraft, Person, build_ics
from bookable.calendars.providers.base import BusyPeriod, BusyRules, CalendarError, Connection
from bookable.calendars.providers.caldav import CalDavProvider
from tests.calendar_servers import RadicaleAccount

RULES = BusyRules(zone=ZoneInfo("America/New_York"))
MARCH = (datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 4, 1, tzinfo=UTC))
UID = "bk-7f3a9c@bookable.test"


def caldav(account: RadicaleAccount, password: str | None = None) -> CalDavProvider:
    key: dict[str, object] = {
        "url": account.url,
        "username": account.username,
        "password": account.password if password is None else password,
    }
    return CalDavProvider(Connection(key=key, timeout=10.0, allow_private=True))


def ics(start: datetime, *, sequence: int = 0, uid: str = UID) -> bytes:
    return build_ics(
        EventDraft(
            uid=uid,
            sequence=sequence,
            start=start,
            end=start + timedelta(minutes=30),
            organizer_zone="America/New_York",
            summary="Intro call, with Ada",
            organizer=Person("Olga", "olga@example.com"),
            attendees=(Person("Ada", "ada@example.com"),),
        )
    )


def objects(account: RadicaleAccount, calendar: str) -> list[str]:
    """The calendar's object URLs, by a Depth:1 PROPFIND (the collection itself left out)."""
    response = httpx.request(
        "PROPFIND",
        calendar,
        headers={"Depth": "1"},
        content=b'<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/></prop></propfind>',
        auth=(account.username, account.password),
        timeout=30,
    )
    assert response.status_code == 207, response.text
    hrefs = [part.split("</", 1)[0] for part in response.text.split("href>")[1::2]]
    return [href for href in hrefs if href.endswith(".ics")]


def stored(account: RadicaleAccount, url: str) -> httpx.Response:
    return httpx.get(url, auth=(account.username, account.password), timeout=30)


def remove(account: RadicaleAccount, url: str) -> None:
    response = httpx.delete(url, auth=(account.username, account.password), timeout=30)
    assert response.status_code in (200, 204), response.text


START = datetime(2030, 3, 12, 14, 0, tzinfo=UTC)
LATER = datetime(2030, 3, 14, 16, 0, tzinfo=UTC)


async def test_a_created_event_is_read_back_as_busy_at_its_time(
    radicale: RadicaleAccount,
) -> None:
    calendar = radicale.make_calendar("Work")
    provider = caldav(radicale)
    written = await provider.create_event(calendar, UID, ics(START))
    assert written.url == f"{calendar}{quote(UID, safe='')}.ics"
    assert written.etag
    read = await provider.busy_times(calendar, *MARCH, RULES)
    assert read.busy == (BusyPeriod(START, START + timedelta(minutes=30), uid=UID),)
    assert stored(radicale, written.url).headers["ETag"] == written.etag


async def test_creating_twice_leaves_one_event(radicale: RadicaleAccount) -> None:
    calendar = radicale.make_calendar("Work")
    provider = caldav(radicale)
    first = await provider.create_event(calendar, UID, ics(START))
    # A retry after a crash finds the first write and leaves it as it is (If-None-Match: *):
    # even a create with other content does not overwrite it.
    again = await provider.create_event(calendar, UID, ics(LATER))
    assert (again.url, again.etag) == (first.url, first.etag)
    assert again.existed and not first.existed  # the caller learns it was there already
    assert len(objects(radicale, calendar)) == 1
    read = await provider.busy_times(calendar, *MARCH, RULES)
    assert read.busy == (BusyPeriod(START, START + timedelta(minutes=30), uid=UID),)


async def test_update_moves_the_event_and_bumps_the_sequence(radicale: RadicaleAccount) -> None:
    calendar = radicale.make_calendar("Work")
    provider = caldav(radicale)
    created = await provider.create_event(calendar, UID, ics(START))
    updated = await provider.update_event(calendar, UID, ics(LATER, sequence=1), created.etag)
    assert updated.url == created.url and updated.etag and updated.etag != created.etag
    event = Calendar.from_ical(stored(radicale, updated.url).content).walk("VEVENT")[0]
    assert int(event["SEQUENCE"]) == 1
    assert event.decoded("DTSTART") == LATER
    assert event["DTSTART"].params["TZID"] == "America/New_York"
    read = await provider.busy_times(calendar, *MARCH, RULES)
    assert read.busy == (BusyPeriod(LATER, LATER + timedelta(minutes=30), uid=UID),)
    assert len(objects(radicale, calendar)) == 1


async def test_update_with_an_old_etag_replaces_the_newer_version(
    radicale: RadicaleAccount,
) -> None:
    calendar = radicale.make_calendar("Work")
    provider = caldav(radicale)
    created = await provider.create_event(calendar, UID, ics(START))
    # A calendar app changed the event since: our etag is stale, the server answers 412.
    radicale.put_event(calendar, ics(START + timedelta(hours=1), sequence=5).decode())
    assert stored(radicale, created.url).headers["ETag"] != created.etag
    updated = await provider.update_event(calendar, UID, ics(LATER, sequence=6), created.etag)
    event = Calendar.from_ical(stored(radicale, updated.url).content).walk("VEVENT")[0]
    assert event.decoded("DTSTART") == LATER and int(event["SEQUENCE"]) == 6
    assert len(objects(radicale, calendar)) == 1


@pytest.mark.parametrize("with_etag", [True, False])
async def test_update_of_a_deleted_event_creates_it_again(
    radicale: RadicaleAccount, with_etag: bool
) -> None:
    calendar = radicale.make_calendar("Work")
    provider = caldav(radicale)
    created = await provider.create_event(calendar, UID, ics(START))
    remove(radicale, created.url)  # as a calendar app would
    etag = created.etag if with_etag else None
    updated = await provider.update_event(calendar, UID, ics(LATER, sequence=1), etag)
    assert updated.url == created.url and updated.etag
    read = await provider.busy_times(calendar, *MARCH, RULES)
    assert read.busy == (BusyPeriod(LATER, LATER + timedelta(minutes=30), uid=UID),)


async def test_delete_removes_the_event_and_again_succeeds(radicale: RadicaleAccount) -> None:
    calendar = radicale.make_calendar("Work")
    provider = caldav(radicale)
    other = radicale.put_event(calendar, ics(LATER, uid="someone-else@example.com").decode())
    created = await provider.create_event(calendar, UID, ics(START))
    await provider.delete_event(calendar, UID, created.etag)
    assert stored(radicale, created.url).status_code == 404
    assert objects(radicale, calendar) == [other.removeprefix(radicale.server.url[:-1])]
    # Already gone: still a success (a retried cancellation).
    await provider.delete_event(calendar, UID, created.etag)
    await provider.delete_event(calendar, UID, None)
    read = await provider.busy_times(calendar, *MARCH, RULES)
    assert [period.uid for period in read.busy] == ["someone-else@example.com"]


async def test_delete_with_a_stale_etag_still_removes_the_event(
    radicale: RadicaleAccount,
) -> None:
    calendar = radicale.make_calendar("Work")
    provider = caldav(radicale)
    created = await provider.create_event(calendar, UID, ics(START))
    radicale.put_event(calendar, ics(LATER, sequence=3).decode())
    await provider.delete_event(calendar, UID, created.etag)
    assert objects(radicale, calendar) == []


async def test_wrong_password_is_an_authentication_error_without_the_password(
    radicale: RadicaleAccount,
) -> None:
    calendar = radicale.make_calendar("Work")
    wrong = "wrong-pw-4f9d1e"
    provider = caldav(radicale, password=wrong)
    for call in (
        provider.create_event(calendar, UID, ics(START)),
        provider.update_event(calendar, UID, ics(START), '"etag"'),
        provider.delete_event(calendar, UID, None),
    ):
        with pytest.raises(CalendarError) as caught:
            await call
        assert caught.value.authentication, str(caught.value)
        assert "user name or password" in str(caught.value)
        assert wrong not in str(caught.value) and radicale.password not in str(caught.value)
    assert objects(radicale, calendar) == []


async def test_a_read_only_calendar_refuses_without_blaming_the_password(
    radicale: RadicaleAccount,
) -> None:
    calendar = radicale.make_read_only_calendar("Holidays")
    with pytest.raises(CalendarError) as caught:
        await caldav(radicale).create_event(calendar, UID, ics(START))
    assert not caught.value.authentication
    assert "read-only" in str(caught.value)


async def test_a_calendar_on_another_site_is_refused_before_any_request(
    radicale: RadicaleAccount,
) -> None:
    provider = caldav(radicale)
    with pytest.raises(CalendarError) as caught:
        await provider.create_event("http://127.0.0.2:9/cal/", UID, ics(START))
    assert "not on this account's server" in str(caught.value)
