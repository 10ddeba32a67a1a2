"""Booking emails (issue 13) across real `bookable serve` processes.

1. SIGKILL while sends are in flight: a real SMTP server (aiosmtpd on loopback, `tests/
   mail_servers.py`) holds its answers, so messages have arrived but the dead server never
   learns it; a new server on the same database sends everything, again where it must (at
   least once), each message with its one Message-ID, to nobody but the booking's people.
2. The SMTP server is down while a booking is made: the booking succeeds, its emails wait
   PENDING with the reason, and go out once the server is back.
3. No SMTP server and no BOOKABLE_EMAIL_DIR: `bookable serve --demo` writes readable .eml files
   with the invitation into ./mail of its working directory.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any, cast

import httpx
import icalendar

from tests.mail_servers import ReceivedMail, SmtpServer
from tests.system.conftest import (
    Server,
    create_admin,
    run_cli,
    serving,
)
from tests.system.test_webhook_delivery import _seed_host

# Email lease = max(webhook lease, 3 x email timeout) = 3 s: what a killed server claimed comes
# free that long after its claim. Four sends at a time, so at the kill some rows are claimed
# (held by the SMTP server) and the rest wait unclaimed.
FAST_ENV = {
    "BOOKABLE_RATE_LIMIT": "0",
    "BOOKABLE_WEBHOOK_POLL_INTERVAL": "0.1",
    "BOOKABLE_WEBHOOK_TIMEOUT": "1",
    "BOOKABLE_WEBHOOK_LEASE_SECONDS": "3",
    "BOOKABLE_WEBHOOK_CONCURRENCY": "4",
    "BOOKABLE_EMAIL_TIMEOUT": "1",
    "BOOKABLE_EMAIL_RETRY_DELAYS": "0.05",
    "BOOKABLE_EMAIL_MAX_ATTEMPTS": "1000",
}
BOOKINGS = 10  # made in all: 6 while the SMTP server answers, 4 while it holds its answers
BEFORE_HOLD = 6
CANCELLED = (0, 1)  # cancelled while held
MOVED = (2, 3)  # rescheduled while held
SETTLE_TIMEOUT = 30.0  # seconds; the lease alone is 3


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _book(
    server: Server,
    key: str,
    event_type: int,
    start: datetime,
    guest: str,
    *,
    reschedule: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventTypeId": event_type,
        "start": _iso(start),
        "timeZone": "UTC",
        "language": "en",
        "metadata": {},
        "responses": {"name": "Guest", "email": guest},
    }
    if reschedule is not None:
        body["rescheduleUid"] = reschedule
    r = httpx.post(f"{server.base_url}/v1/bookings", params={"apiKey": key}, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return cast(dict[str, Any], r.json())


def _emails(server: Server, key: str, booking_id: int) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{server.base_url}/v1/bookings/{booking_id}/emails", params={"apiKey": key}, timeout=30
    )
    assert r.status_code == 200, r.text
    return cast(list[dict[str, Any]], r.json()["emails"])


def _kill(server: Server) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def _invitation(message: EmailMessage) -> icalendar.Calendar:
    """The `invite.ics` attachment, parsed."""
    for part in message.walk():
        if part.get_filename() == "invite.ics":
            return icalendar.Calendar.from_ical(part.get_content())
    raise AssertionError(f"no invite.ics in {message['Subject']!r}")


def _meeting(mail: ReceivedMail) -> tuple[str, str, str, int]:
    """What a message is about, read from its envelope and invitation, not its Message-ID:
    (recipient, UID, METHOD, SEQUENCE); one per email the outbox holds in this scenario."""
    (recipient,) = mail.recipients  # the row's recipient alone
    calendar = _invitation(mail.message)
    (event,) = calendar.walk("VEVENT")
    return recipient, str(event["UID"]), str(calendar["METHOD"]), int(event["SEQUENCE"])


@dataclass
class Booked:
    id: int
    guest: str
    expected: set[tuple[str, str]]  # (recipient, kind) this booking must send


def test_no_email_is_lost_when_the_server_is_killed_mid_send(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    host, _username, key = create_admin(database_url, prefix="host")
    meet = asyncio.run(_seed_host(database_url, host))
    env = {**FAST_ENV, "BOOKABLE_SMTP_URL": smtp_server.smtp_url}
    day = datetime.combine(datetime.now(UTC).date() + timedelta(days=3), datetime.min.time(), UTC)
    booked: list[Booked] = []

    def book(index: int, server: Server) -> dict[str, Any]:
        guest = f"guest{index}@example.com"
        made = _book(server, key, meet, day + timedelta(minutes=30 * index), guest)
        expected = {(guest, "attendee.confirmed"), (host, "host.new")}
        booked.append(Booked(made["id"], guest, expected))
        return made

    with serving(database_url, tmp_path / "first", env=env) as server:
        made = [book(i, server) for i in range(BEFORE_HOLD)]
        smtp_server.hold()
        # Every message kept from now on waits for its answer: none of them is recorded SENT.
        before_hold = len(smtp_server.messages)
        for i in range(BEFORE_HOLD, BOOKINGS):
            book(i, server)
        for i in CANCELLED:
            r = httpx.delete(
                f"{server.base_url}/v1/bookings/{made[i]['id']}/cancel",
                params={"apiKey": key},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            booked[i].expected |= {
                (booked[i].guest, "attendee.cancelled"),
                (host, "host.cancelled"),
            }
        for i in MOVED:
            start = day + timedelta(minutes=30 * (BOOKINGS + i))
            moved = _book(server, key, meet, start, booked[i].guest, reschedule=made[i]["uid"])
            assert moved["iCalUID"] == made[i]["iCalUID"]  # the same meeting, moved
            booked.append(
                Booked(
                    moved["id"],
                    booked[i].guest,
                    {(booked[i].guest, "attendee.rescheduled"), (host, "host.rescheduled")},
                )
            )
        deadline = time.monotonic() + 10
        while len(smtp_server.messages) - before_hold < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(smtp_server.messages) - before_hold >= 4, "sends never got under way"
        _kill(server)
        first_logs = server.logs()
    at_kill = smtp_server.messages
    held_ids = {m.message_id for m in at_kill[before_hold:]}
    smtp_server.release()

    settle_started = time.monotonic()
    with serving(database_url, tmp_path / "second", env=env) as server:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            rows = {b.id: _emails(server, key, b.id) for b in booked}
            if all(e["status"] == "SENT" for emails in rows.values() for e in emails):
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.1)
        settled = time.monotonic() - settle_started
        second_logs = server.logs()
    received = smtp_server.messages

    # What the outbox holds is what each change must send.
    for b in booked:
        assert {(e["recipient"], e["kind"]) for e in rows[b.id]} == b.expected, rows[b.id]
    wanted = {e["messageId"]: (b.id, e["recipient"], e["kind"]) for b in booked for e in rows[b.id]}
    arrivals = Counter(m.message_id for m in received)
    duplicates = {mid: n for mid, n in arrivals.items() if n > 1}
    figures = (
        f"{len(wanted)} emails, {len(received)} arrivals ({len(at_kill)} before the kill, "
        f"{len(held_ids)} held at the kill), duplicated: {duplicates}, settled in {settled:.1f} s"
    )
    print(figures)
    # Nothing lost: every email arrived at least once, as itself.
    assert set(arrivals) == set(wanted), figures
    by_id: dict[str, list[ReceivedMail]] = {}
    for mail in received:
        by_id.setdefault(mail.message_id, []).append(mail)
        assert mail.recipients == (wanted[mail.message_id][1],), (mail.recipients, figures)
    # At least once: what the SMTP server took while the dead server waited was sent again.
    assert held_ids and all(arrivals[mid] >= 2 for mid in held_ids), figures
    # A message sent again is the same message, under the same Message-ID: one per meeting
    # change and recipient, read from the invitation.
    ids_per_meeting: dict[tuple[str, str, str, int], set[str]] = {}
    for mail in received:
        ids_per_meeting.setdefault(_meeting(mail), set()).add(mail.message_id)
    assert len(ids_per_meeting) == len(wanted), (sorted(ids_per_meeting), figures)
    assert all(len(ids) == 1 for ids in ids_per_meeting.values()), (ids_per_meeting, figures)
    for mid, copies in by_id.items():
        assert len({m.raw for m in copies}) == 1, (mid, figures)
    # Nobody but the bookings' people got mail.
    people = {host} | {b.guest for b in booked}
    for mail in received:
        addressed = {a.lower() for _, a in getaddresses(mail.message.get_all("To", []))}
        assert set(mail.recipients) <= people and addressed <= people, (mail.recipients, addressed)
    assert "Traceback" not in first_logs, first_logs
    assert "Traceback" not in second_logs, second_logs


def test_a_booking_made_while_smtp_is_down_is_mailed_when_it_is_back(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    host, _username, key = create_admin(database_url, prefix="host")
    meet = asyncio.run(_seed_host(database_url, host))
    smtp_server.stop()  # connections to its port are refused
    env = {
        **FAST_ENV,
        "BOOKABLE_SMTP_URL": smtp_server.smtp_url,
        "BOOKABLE_EMAIL_RETRY_DELAYS": "0.3",
    }
    start = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), datetime.min.time(), UTC)
    with serving(database_url, tmp_path, env=env) as server:
        made = _book(server, key, meet, start + timedelta(hours=9), "down@example.com")
        deadline = time.monotonic() + 15
        while True:
            emails = _emails(server, key, made["id"])
            if len(emails) == 2 and all(e["attempts"] >= 2 for e in emails):
                break
            assert time.monotonic() < deadline, emails
            time.sleep(0.1)
        assert {(e["recipient"], e["kind"]) for e in emails} == {
            ("down@example.com", "attendee.confirmed"),
            (host, "host.new"),
        }
        for row in emails:
            assert row["status"] == "PENDING", row
            assert "cannot connect" in row["lastError"], row
            assert row["nextAttemptAt"] is not None and row["sentAt"] is None, row
        assert smtp_server.messages == []

        smtp_server.start()
        asyncio.run(smtp_server.wait_for(2))
        deadline = time.monotonic() + 15
        while True:
            emails = _emails(server, key, made["id"])
            if all(e["status"] == "SENT" for e in emails):
                break
            assert time.monotonic() < deadline, emails
            time.sleep(0.1)
        for row in emails:
            assert row["lastError"] is None and row["sentAt"] is not None, row
        assert "Traceback" not in server.logs(), server.logs()
    assert sorted(m.recipients for m in smtp_server.messages) == sorted(
        [("down@example.com",), (host,)]
    )
    assert {m.message_id for m in smtp_server.messages} == {e["messageId"] for e in emails}


def test_demo_server_writes_eml_files_into_mail_of_its_working_directory(
    sqlite_url: str, tmp_path: Path
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with serving(
        sqlite_url,
        tmp_path / "logs",
        "--demo",
        env={"BOOKABLE_RATE_LIMIT": "0"},
        unset=("BOOKABLE_EMAIL_DIR", "BOOKABLE_SMTP_URL"),
        cwd=cwd,
    ) as server:
        key = server.stdout().splitlines()[0].strip()
        assert key.startswith("cal_")
        http = httpx.Client(base_url=server.base_url, params={"apiKey": key}, timeout=30)
        r = http.get("/v1/event-types")
        assert r.status_code == 200, r.text
        (event_type,) = [t for t in r.json()["event_types"] if t["slug"] == "30min"]
        now = datetime.now(UTC)
        r = http.get(
            "/v1/slots",
            params={
                "eventTypeId": event_type["id"],
                "startTime": _iso(now),
                "endTime": _iso(now + timedelta(days=8)),
                "timeZone": "UTC",
            },
        )
        assert r.status_code == 200, r.text
        slots = [s["time"] for day in r.json()["slots"].values() for s in day]
        assert slots, r.json()
        r = http.post(
            "/v1/bookings",
            json={
                "eventTypeId": event_type["id"],
                "start": slots[0],
                "timeZone": "Europe/Paris",
                "language": "en",
                "metadata": {},
                "responses": {"name": "Booker", "email": "booker@example.com"},
            },
        )
        assert r.status_code == 200, r.text
        booking = r.json()
        deadline = time.monotonic() + 15
        while True:
            emails = http.get(f"/v1/bookings/{booking['id']}/emails").json()["emails"]
            if emails and all(e["status"] == "SENT" for e in emails):
                break
            assert time.monotonic() < deadline, emails
            time.sleep(0.1)
        host = http.get("/v1/me").json()["user"]["email"]
        assert "Traceback" not in server.logs(), server.logs()

    files = sorted((cwd / "mail").glob("*.eml"))
    assert len(files) == len(emails) == 2, (files, emails)
    to: dict[str, EmailMessage] = {}
    for path in files:
        message = cast(
            EmailMessage, email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        )
        ((_, address),) = getaddresses(message.get_all("To", []))
        to[address] = message
    assert set(to) == {"booker@example.com", host}
    for address, message in to.items():
        assert message["Subject"], address
        assert message["Message-ID"] in {e["messageId"] for e in emails}
        text = message.get_body(preferencelist=("plain",))
        assert text is not None and "30 Minute Meeting" in text.get_content(), address
        calendar = _invitation(message)
        assert str(calendar["METHOD"]) == "REQUEST"
        (event,) = calendar.walk("VEVENT")
        assert str(event["UID"]) == booking["iCalUID"]
        assert event.decoded("DTSTART").astimezone(UTC) == datetime.fromisoformat(
            booking["startTime"]
        )


def test_a_demo_user_seeded_on_the_old_address_is_moved_to_one_that_gets_mail(
    sqlite_url: str,
) -> None:
    # Before issue 13 the demo user was demo@bookable.local: a special-use domain, so its
    # booking emails would all be DROPPED as to an invalid address.
    first = run_cli(sqlite_url, "demo")
    assert first.returncode == 0, first.stderr
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("update users set email = 'demo@bookable.local' where username = 'demo'")
    again = run_cli(sqlite_url, "demo")
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(path) as db:
        rows = db.execute("select email from users where username like 'demo%'").fetchall()
    assert rows == [("demo@example.com",)]
