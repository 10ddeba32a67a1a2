"""IcsFeedProvider against a real local HTTP server."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bookable.calendars.providers.base import BusyRules, CalendarError, Connection
from bookable.calendars.providers.ics import IcsFeedProvider, feed_url
from tests.calendar_servers import IcsServer, free_port, silent_server

BERLIN = ZoneInfo("Europe/Berlin")
JAN = (datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC))

FEED = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//test//EN
{header}BEGIN:VEVENT
UID:meeting
DTSTART:20300110T090000Z
DTEND:20300110T100000Z
END:VEVENT
BEGIN:VEVENT
UID:holiday
DTSTART;VALUE=DATE:20300101
TRANSP:TRANSPARENT
END:VEVENT
{more}END:VCALENDAR
"""


def feed(header: str = "", more: str = "") -> str:
    return FEED.format(header=header, more=more)


def ics(*urls: str, **connection: object) -> IcsFeedProvider:
    return IcsFeedProvider(Connection(key={"urls": list(urls)}, **connection))  # type: ignore[arg-type]


def path() -> str:
    return f"/{secrets.token_hex(4)}/basic.ics"  # the in-process cache is keyed by URL


async def test_lists_one_read_only_calendar_per_feed(ics_server: IcsServer) -> None:
    named = ics_server.set_feed(path(), feed("X-WR-CALNAME:Team holidays\n"))
    unnamed_path = path()
    unnamed = ics_server.set_feed(unnamed_path, feed())
    calendars = await ics(named, unnamed).list_calendars()
    assert [(c.external_id, c.name, c.read_only) for c in calendars] == [
        (named, "Team holidays", True),
        (unnamed, f"127.0.0.1{unnamed_path}", True),
    ]


def test_webcal_is_read_as_https() -> None:
    assert feed_url(" webcal://example.com/a.ics ") == "https://example.com/a.ics"
    assert feed_url("webcals://example.com/a.ics") == "https://example.com/a.ics"
    assert feed_url("http://example.com/a.ics") == "http://example.com/a.ics"


async def test_busy_times_and_the_transparent_switch(ics_server: IcsServer) -> None:
    url = ics_server.set_feed(path(), feed())
    read = await ics(url).busy_times(url, *JAN, BusyRules(zone=BERLIN))
    assert [(p.uid, p.start, p.end) for p in read.busy] == [
        ("meeting", datetime(2030, 1, 10, 9, tzinfo=UTC), datetime(2030, 1, 10, 10, tzinfo=UTC))
    ]
    busy = BusyRules(zone=BERLIN, transparent_is_busy=True)
    read = await ics(url).busy_times(url, *JAN, busy)
    assert {p.uid for p in read.busy} == {"meeting", "holiday"}


async def test_version_revalidates_with_a_conditional_request(ics_server: IcsServer) -> None:
    feed_path = path()
    url = ics_server.set_feed(feed_path, feed())
    provider = ics(url)
    first = await provider.version(url)
    assert first and first.startswith("etag:")
    assert await provider.version(url) == first
    read = await provider.busy_times(url, *JAN, BusyRules(zone=BERLIN))
    assert read.version == first and len(read.busy) == 1
    # The second and third requests were answered 304, with the body from the first.
    assert ics_server.count(feed_path, 200) == 1
    assert ics_server.count(feed_path, 304) == 2
    more = "BEGIN:VEVENT\nUID:new\nDTSTART:20300111T090000Z\nDURATION:PT1H\nEND:VEVENT\n"
    ics_server.set_feed(feed_path, feed(more=more))
    changed = await provider.version(url)
    assert changed != first
    read = await provider.busy_times(url, *JAN, BusyRules(zone=BERLIN))
    assert {p.uid for p in read.busy} == {"meeting", "new"}


async def test_without_validators_the_version_is_a_hash(ics_server: IcsServer) -> None:
    ics_server.send_etag = False
    url = ics_server.set_feed(path(), feed())
    version = await ics(url).version(url)
    assert version and version.startswith("sha256:")


async def test_a_feed_not_in_the_account_is_refused(ics_server: IcsServer) -> None:
    url = ics_server.set_feed(path(), feed())
    with pytest.raises(CalendarError, match="not one of this account's feeds"):
        await ics(url).busy_times(url + "x", *JAN, BusyRules(zone=BERLIN))


async def test_unparseable_data_is_an_error(ics_server: IcsServer) -> None:
    url = ics_server.set_feed(path(), "<html>this is a web page</html>")
    with pytest.raises(CalendarError, match="did not return a calendar"):
        await ics(url).list_calendars()
    with pytest.raises(CalendarError, match="could not be read"):
        await ics(url).busy_times(url, *JAN, BusyRules(zone=BERLIN))


async def test_http_errors(ics_server: IcsServer) -> None:
    missing = f"{ics_server.url}/missing.ics"
    with pytest.raises(CalendarError, match="No feed was found"):
        await ics(missing).list_calendars()
    port = free_port()
    with pytest.raises(CalendarError, match="Could not connect"):
        await ics(f"http://127.0.0.1:{port}/a.ics").list_calendars()


async def test_metadata_and_other_schemes_are_refused() -> None:
    with pytest.raises(CalendarError, match="metadata addresses are not allowed"):
        await ics("http://169.254.169.254/latest/meta-data").list_calendars()
    with pytest.raises(CalendarError, match="only http and https"):
        await ics("file:///etc/passwd").list_calendars()


async def test_size_cap_and_timeout(ics_server: IcsServer) -> None:
    url = ics_server.set_feed(path(), feed(more="X-FILLER:" + "x" * 5000 + "\n"))
    with pytest.raises(CalendarError, match="larger than 2000 bytes"):
        await ics(url, max_bytes=2000).list_calendars()
    with silent_server() as silent:
        with pytest.raises(CalendarError, match=r"did not answer within 0\.3 seconds"):
            await ics(silent + "a.ics", timeout=0.3).list_calendars()
