"""CalDavProvider against a real Radicale, and the error cases against real misbehaving servers."""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pytest
import trustme

from bookable.calendars.providers.base import BusyRules, CalendarError, Connection
from bookable.calendars.providers.caldav import CalDavProvider
from tests.calendar_servers import (
    RadicaleAccount,
    RadicaleServer,
    free_port,
    plain_http_server,
    silent_server,
    untrusted_tls_server,
)

BERLIN = ZoneInfo("Europe/Berlin")
JAN = (datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC))


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def provider(url: str, username: str, password: str, **options: object) -> CalDavProvider:
    key: dict[str, object] = {"url": url, "username": username, "password": password}
    key.update({k: v for k, v in options.items() if k == "apple"})
    return CalDavProvider(
        Connection(
            key=key,
            timeout=float(options.get("timeout", 5.0)),  # type: ignore[arg-type]
            max_bytes=int(options.get("max_bytes", 10_485_760)),  # type: ignore[call-overload]
            allow_private=True,
        )
    )


def of(account: RadicaleAccount, url: str | None = None, **options: object) -> CalDavProvider:
    return provider(url or account.url, account.username, account.password, **options)


def event(uid: str, *lines: str) -> str:
    body = "\n".join(lines)
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//test//EN\n"
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:20290101T000000Z\nSUMMARY:{uid}\n{body}\n"
        "END:VEVENT\nEND:VCALENDAR\n"
    )


async def expect_error(call: object, *, password: str, contains: str) -> CalendarError:
    with pytest.raises(CalendarError) as caught:
        await call  # type: ignore[misc]
    assert contains in str(caught.value), str(caught.value)
    assert password not in str(caught.value)
    return caught.value


# --- listing ----------------------------------------------------------------------------------


async def test_lists_calendars_from_the_server_root(radicale: RadicaleAccount) -> None:
    work = radicale.make_calendar("Work")
    holidays = radicale.make_read_only_calendar("Holidays")
    calendars = await of(radicale).list_calendars()
    by_url = {c.external_id: c for c in calendars}
    assert set(by_url) == {work, holidays}
    assert by_url[work].name == "Work" and not by_url[work].read_only
    assert by_url[holidays].name == "Holidays" and by_url[holidays].read_only
    # No default advertised by Radicale: the first writable calendar is primary.
    assert by_url[work].primary and not by_url[holidays].primary


async def test_lists_from_the_principal_url_and_from_a_calendar_url(
    radicale: RadicaleAccount,
) -> None:
    work = radicale.make_calendar("Work")
    from_principal = await of(radicale, radicale.principal_url).list_calendars()
    assert [c.external_id for c in from_principal] == [work]
    from_calendar = await of(radicale, work).list_calendars()
    assert [(c.external_id, c.name, c.primary) for c in from_calendar] == [(work, "Work", True)]


async def test_email_is_the_username_when_it_is_an_address(
    radicale_server: RadicaleServer,
) -> None:
    radicale_server.add_user("ann@example.com", "secret-ann-pw")
    account = radicale_server.account("ann@example.com")
    account.log_in()
    calendar = account.make_calendar("Mine")
    listed = await of(account).list_calendars()
    # Radicale writes the "@" of the path as %40 in its hrefs; the external id is the server's.
    assert [(unquote(c.external_id), c.email) for c in listed] == [(calendar, "ann@example.com")]


async def test_an_account_without_calendars_lists_none(radicale: RadicaleAccount) -> None:
    assert await of(radicale).list_calendars() == []


# --- version and busy times -------------------------------------------------------------------


async def test_version_changes_when_an_event_is_added(radicale: RadicaleAccount) -> None:
    calendar = radicale.make_calendar("Work")
    caldav = of(radicale)
    before = await caldav.version(calendar)
    assert before
    assert await caldav.version(calendar) == before
    radicale.put_event(calendar, event("v1", "DTSTART:20300110T090000Z", "DTEND:20300110T100000Z"))
    after = await caldav.version(calendar)
    assert after and after != before
    read = await caldav.busy_times(calendar, *JAN, BusyRules(zone=BERLIN))
    assert read.version == after


async def test_busy_times_follow_the_rules_end_to_end(radicale: RadicaleAccount) -> None:
    calendar = radicale.make_calendar("Work")
    put = radicale.put_event
    put(calendar, event("single", "DTSTART:20300110T090000Z", "DTEND:20300110T100000Z"))
    put(calendar, event("allday", "DTSTART;VALUE=DATE:20300111", "DTEND;VALUE=DATE:20300112"))
    put(calendar, event("floating", "DTSTART:20300113T090000", "DTEND:20300113T100000"))
    put(
        calendar,
        event(
            "transparent",
            "DTSTART:20300114T090000Z",
            "DTEND:20300114T100000Z",
            "TRANSP:TRANSPARENT",
        ),
    )
    put(
        calendar,
        event(
            "cancelled", "DTSTART:20300115T090000Z", "DTEND:20300115T100000Z", "STATUS:CANCELLED"
        ),
    )
    put(
        calendar,
        event(
            "declined",
            "DTSTART:20300116T090000Z",
            "DTEND:20300116T100000Z",
            "ORGANIZER:mailto:boss@example.com",
            "ATTENDEE;PARTSTAT=DECLINED:mailto:owner@example.com",
        ),
    )
    put(
        calendar,
        event(
            "unanswered",
            "DTSTART:20300117T090000Z",
            "DTEND:20300117T100000Z",
            "ORGANIZER:mailto:boss@example.com",
            "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:owner@example.com",
        ),
    )
    put(
        calendar,
        event(
            "hourly",
            "DTSTART:20300118T090000Z",
            "DTEND:20300118T091500Z",
            "RRULE:FREQ=HOURLY;COUNT=3",
        ),
    )
    put(calendar, event("longago", "DTSTART:20291231T220000Z", "DTEND:20300101T020000Z"))
    # Weekly with an EXDATE and a moved occurrence: one object, master plus override.
    weekly = (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//test//EN\n"
        "BEGIN:VEVENT\nUID:weekly\nDTSTAMP:20290101T000000Z\n"
        "DTSTART;TZID=Europe/Berlin:20300107T150000\nDTEND;TZID=Europe/Berlin:20300107T160000\n"
        "RRULE:FREQ=WEEKLY;COUNT=4\nEXDATE;TZID=Europe/Berlin:20300114T150000\nEND:VEVENT\n"
        "BEGIN:VEVENT\nUID:weekly\nDTSTAMP:20290101T000000Z\n"
        "RECURRENCE-ID;TZID=Europe/Berlin:20300121T150000\n"
        "DTSTART;TZID=Europe/Berlin:20300122T170000\nDTEND;TZID=Europe/Berlin:20300122T180000\n"
        "END:VEVENT\nEND:VCALENDAR\n"
    )
    put(calendar, weekly)
    dst = event(
        "dst",
        "DTSTART;TZID=Europe/Berlin:20300330T090000",
        "DTEND;TZID=Europe/Berlin:20300330T100000",
        "RRULE:FREQ=DAILY;COUNT=2",
    )
    put(calendar, dst)

    rules = BusyRules(zone=BERLIN, owner_emails=frozenset({"owner@example.com"}))
    read = await of(radicale).busy_times(calendar, *JAN, rules)
    got = {(p.uid, p.start, p.end) for p in read.busy}
    assert got == {
        ("single", utc(2030, 1, 10, 9), utc(2030, 1, 10, 10)),
        ("allday", utc(2030, 1, 10, 23), utc(2030, 1, 11, 23)),
        ("floating", utc(2030, 1, 13, 8), utc(2030, 1, 13, 9)),
        ("unanswered", utc(2030, 1, 17, 9), utc(2030, 1, 17, 10)),
        ("hourly", utc(2030, 1, 18, 9), utc(2030, 1, 18, 9, 15)),
        ("hourly", utc(2030, 1, 18, 10), utc(2030, 1, 18, 10, 15)),
        ("hourly", utc(2030, 1, 18, 11), utc(2030, 1, 18, 11, 15)),
        ("longago", utc(2029, 12, 31, 22), utc(2030, 1, 1, 2)),
        ("weekly", utc(2030, 1, 7, 14), utc(2030, 1, 7, 15)),
        ("weekly", utc(2030, 1, 22, 16), utc(2030, 1, 22, 17)),
        ("weekly", utc(2030, 1, 28, 14), utc(2030, 1, 28, 15)),
    }
    relaxed = BusyRules(zone=BERLIN, owner_emails=rules.owner_emails, tentative_is_busy=False)
    read = await of(radicale).busy_times(calendar, *JAN, relaxed)
    assert "unanswered" not in {p.uid for p in read.busy}
    spring = await of(radicale).busy_times(calendar, utc(2030, 3, 29), utc(2030, 4, 1), rules)
    assert [(p.start, p.end) for p in spring.busy] == [
        (utc(2030, 3, 30, 8), utc(2030, 3, 30, 9)),
        (utc(2030, 3, 31, 7), utc(2030, 3, 31, 8)),
    ]


async def test_a_calendar_on_another_site_is_refused_before_any_request(
    radicale: RadicaleAccount,
) -> None:
    with pytest.raises(CalendarError, match="not on this account's server"):
        await of(radicale).busy_times("http://127.0.0.2:1/x/", *JAN, BusyRules(zone=BERLIN))


async def test_a_deleted_calendar_is_reported(radicale: RadicaleAccount) -> None:
    await expect_error(
        of(radicale).version(f"{radicale.principal_url}gone/"),
        password=radicale.password,
        contains="was not found on the server",
    )


# --- errors -----------------------------------------------------------------------------------


async def test_wrong_password(radicale: RadicaleAccount) -> None:
    wrong = "Wrong-Pa55word-xyz"
    error = await expect_error(
        provider(radicale.url, radicale.username, wrong).list_calendars(),
        password=wrong,
        contains="refused the user name or password",
    )
    assert error.authentication
    assert "app-specific" not in str(error)


async def test_wrong_password_on_apple_mentions_app_specific_passwords(
    radicale: RadicaleAccount,
) -> None:
    wrong = "Wrong-Pa55word-xyz"
    error = await expect_error(
        provider(radicale.url, radicale.username, wrong, apple=True).list_calendars(),
        password=wrong,
        contains="app-specific password (appleid.apple.com",
    )
    assert error.authentication


async def test_unreachable_port() -> None:
    port = free_port()  # nothing listens there
    await expect_error(
        provider(f"http://127.0.0.1:{port}/", "u", "pw-unreachable").list_calendars(),
        password="pw-unreachable",
        contains="Could not connect",
    )


async def test_unknown_host_name() -> None:
    async def no_such_name(host: str, port: int) -> list[str]:
        # What the system resolver raises for a name that does not exist (no DNS server asked:
        # tests never reach beyond this machine).
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    dns_fails = CalDavProvider(
        Connection(
            key={"url": "http://no-such-host.invalid/", "username": "u", "password": "pw-dns"},
            extra={"resolver": no_such_name},
        )
    )
    await expect_error(dns_fails.list_calendars(), password="pw-dns", contains="could not be found")


async def test_allowed_hosts_refuse_others_before_any_lookup(radicale: RadicaleAccount) -> None:
    async def must_not_resolve(host: str, port: int) -> list[str]:
        raise AssertionError(f"{host} was looked up")

    def limited(url: str) -> CalDavProvider:
        key = {"url": url, "username": radicale.username, "password": radicale.password}
        return CalDavProvider(
            Connection(
                key=key,
                allowed_hosts=frozenset({"127.0.0.1"}),
                extra={"resolver": must_not_resolve},
            )
        )

    await expect_error(
        limited("https://dav.example.net/").list_calendars(),
        password=radicale.password,
        contains="BOOKABLE_CALENDAR_ALLOWED_HOSTS",
    )
    # The listed host works as before.
    radicale.make_calendar("Allowed")
    assert [c.name for c in await limited(radicale.url).list_calendars()] == ["Allowed"]


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://metadata.google.internal/"],
)
async def test_metadata_address_is_refused_without_connecting(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_connection(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    monkeypatch.setattr(socket.socket, "connect", no_connection)
    await expect_error(
        provider(url, "u", "pw-metadata").list_calendars(),
        password="pw-metadata",
        contains="metadata addresses are not allowed",
    )


async def test_private_address_refused_when_private_targets_are_off() -> None:
    caldav = CalDavProvider(
        Connection(
            key={"url": "http://127.0.0.1:9/", "username": "u", "password": "pw-private"},
            allow_private=False,
        )
    )
    await expect_error(caldav.list_calendars(), password="pw-private", contains="cannot be used")


async def test_a_web_server_that_is_not_caldav_has_no_calendar_home() -> None:
    for status in (200, 404, 405):
        with plain_http_server(status=status) as url:
            await expect_error(
                provider(url + "some/page", "u", "pw-plain").list_calendars(),
                password="pw-plain",
                contains="No CalDAV calendar home was found at",
            )


async def test_server_error() -> None:
    with plain_http_server(status=503) as url:
        await expect_error(
            provider(url, "u", "pw-5xx").list_calendars(),
            password="pw-5xx",
            contains="internal error (HTTP 503)",
        )


async def test_xml_that_cannot_be_read() -> None:
    with plain_http_server(body=b"<multistatus><oops", status=207) as url:
        await expect_error(
            provider(url, "u", "pw-xml").list_calendars(),
            password="pw-xml",
            contains="XML that could not be read",
        )


async def test_untrusted_certificate() -> None:
    with untrusted_tls_server() as url:
        await expect_error(
            provider(url, "u", "pw-tls").list_calendars(),
            password="pw-tls",
            contains="secure (TLS) connection",
        )


async def test_trusted_certificate_is_accepted_when_the_ca_is_given() -> None:
    # The same server with its CA trusted gets past TLS (then its answer is unreadable): the
    # previous test failed for the certificate, not for something else. (It answers an empty 207.)
    authority = trustme.CA()
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with untrusted_tls_server(authority) as url:
        caldav = CalDavProvider(
            Connection(
                key={"url": url, "username": "u", "password": "pw-tls"},
                extra={"verify": context},
            )
        )
        await expect_error(
            caldav.list_calendars(), password="pw-tls", contains="XML that could not"
        )


async def test_a_server_that_never_answers_times_out() -> None:
    with silent_server() as url:
        began = time.monotonic()
        await expect_error(
            provider(url, "u", "pw-slow", timeout=0.5).list_calendars(),
            password="pw-slow",
            contains="did not answer within 0.5 seconds",
        )
        assert time.monotonic() - began < 3


async def test_answers_larger_than_the_cap_are_refused(radicale: RadicaleAccount) -> None:
    calendar = radicale.make_calendar("Big")
    for n in range(5):
        radicale.put_event(
            calendar,
            event(
                f"big{n}",
                "DTSTART:20300110T090000Z",
                "DTEND:20300110T100000Z",
                f"DESCRIPTION:{'x' * 3000}",
            ),
        )
    await expect_error(
        of(radicale, max_bytes=8000).busy_times(calendar, *JAN, BusyRules(zone=BERLIN)),
        password=radicale.password,
        contains="larger than 8000 bytes",
    )
    read = await of(radicale).busy_times(calendar, *JAN, BusyRules(zone=BERLIN))
    assert len(read.busy) == 5


async def test_a_stopped_server_then_restarted(private_radicale: RadicaleServer) -> None:
    account = private_radicale.new_account()
    calendar = account.make_calendar("Work")
    account.put_event(calendar, event("e", "DTSTART:20300110T090000Z", "DTEND:20300110T100000Z"))
    private_radicale.stop()
    await expect_error(
        of(account).busy_times(calendar, *JAN, BusyRules(zone=BERLIN)),
        password=account.password,
        contains="Could not connect",
    )
    private_radicale.start()
    read = await of(account).busy_times(calendar, *JAN, BusyRules(zone=BERLIN))
    assert [p.uid for p in read.busy] == ["e"]
