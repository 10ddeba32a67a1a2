"""Rendered booking emails, byte for byte: a fixed set of facts and the exact messages they make,
compared with tests/unit/email_golden.json.

The guard for performance work on rendering (messages.py, the templates, calendars/ical.py): a
change that moves a byte of a header's folding, an encoded word, an address's quoting, a MIME
boundary, a quoted-printable line or the invitation fails here with a diff naming the case. The
cases reach the awkward corners: non-ASCII names and titles, long subjects that fold, names that
need quoting, every kind, zones, optional parts absent.

When a change to the messages is intended (and only then), regenerate the golden file and commit
it with the change:

    BOOKABLE_UPDATE_EMAIL_GOLDEN=1 .venv/bin/pytest tests/unit/test_email_golden.py
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bookable.calendars.ical import ItipMethod
from bookable.notifications.messages import (
    BookingMail,
    MailKind,
    Party,
    mail_facts,
    render_email,
    render_stored,
    stored_facts,
)

GOLDEN = Path(__file__).with_name("email_golden.json")
UPDATE = os.environ.get("BOOKABLE_UPDATE_EMAIL_GOLDEN") == "1"

STAMP = datetime(2026, 1, 2, 8, 30, 15, tzinfo=UTC)
SENDER = "Bookable <bookings@bookable.test>"
OLGA = Party("Olga Organizer", "olga@example.com", "Europe/Paris")
HAL = Party("Hal Host", "hal@example.com", "Europe/Paris")
ANN = Party("Ann Attendee", "ann@example.com", "America/New_York")
GUS = Party("Gus Guest", "gus+tag@example.com", "Asia/Tokyo")
ZOE = Party("Zoë Ångström 山田", "zoe@example.com", "Europe/Berlin")
LUKASZ = Party("Łukasz Żółw", "lukasz@example.com", "Europe/Warsaw")
QUOTED = Party('Smith, John "JJ" (Sales) <x@y>', "john@example.com", "UTC")
NAMELESS = Party("", "nobody@example.com", "America/Los_Angeles")
LONG_NAME = Party("Maximilian Alexander " * 5 + "von Hohenzollern", "max@example.com", "UTC")
LONG_UNICODE = Party("Ðørøthéå " * 9, "dor@example.com", "Australia/Sydney")
UNKNOWN_ZONE = Party("Una Known", "una@example.com", "Mars/Olympus_Mons")


def booking(**changes: object) -> BookingMail:
    values: dict[str, object] = {
        "booking_id": 42,
        "booking_uid": "bk7Qx2",
        "ical_uid": "bk7Qx2@bookable.test",
        "sequence": 3,
        "title": "Intro call",
        "start": datetime(2026, 1, 6, 10, 0, tzinfo=UTC),
        "end": datetime(2026, 1, 6, 10, 30, tzinfo=UTC),
        "organizer": OLGA,
        "hosts": (OLGA, HAL),
        "attendees": (ANN, GUS),
        "location": "https://meet.example.com/r?a=1&b=2",
        "description": "First line\nsecond line with ünïcödé and a very long line " + "x" * 90,
        "responses": (("Company", "ACME & Sons <ltd>"), ("Notes", "two\nlines")),
    }
    values.update(changes)
    return BookingMail(**values)  # type: ignore[arg-type]


LONG_TITLE = "Quarterly planning review of the infrastructure roadmap and budget for 2026 " * 2
CASES: list[tuple[str, BookingMail, MailKind, Party, str]] = [
    *((f"kind {k.value}", booking(), k, OLGA if k.to_host else ANN, SENDER) for k in MailKind),
    (
        "rescheduled with the old time",
        booking(
            previous_start=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
            previous_end=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
        ),
        MailKind.ATTENDEE_RESCHEDULED,
        ANN,
        SENDER,
    ),
    (
        "reasons",
        booking(cancellation_reason="Ill,\nsorry", rejection_reason="Busy\r\nthat day"),
        MailKind.ATTENDEE_REJECTED,
        ANN,
        SENDER,
    ),
    (
        "non-ASCII names and title",
        booking(title="Café ☕ chat", organizer=LUKASZ, hosts=(LUKASZ,), attendees=(ZOE,)),
        MailKind.ATTENDEE_CONFIRMED,
        ZOE,
        SENDER,
    ),
    (
        "non-ASCII to the host",
        booking(title="Café ☕ chat", organizer=LUKASZ, hosts=(LUKASZ, HAL), attendees=(ZOE,)),
        MailKind.HOST_NEW,
        LUKASZ,
        "Bookäble Ñotifications <bookings@bookable.test>",
    ),
    ("long ASCII title", booking(title=LONG_TITLE), MailKind.HOST_NEW, OLGA, SENDER),
    (
        "long ASCII title, attendee",
        booking(title=LONG_TITLE),
        MailKind.ATTENDEE_CONFIRMED,
        ANN,
        SENDER,
    ),
    (
        "long non-ASCII title",
        booking(title="Réunion trimestrielle économique à Zürich " * 4),
        MailKind.ATTENDEE_CANCELLED,
        ZOE,
        SENDER,
    ),
    (
        "names to quote",
        booking(attendees=(QUOTED, ANN), organizer=QUOTED, hosts=(QUOTED,)),
        MailKind.HOST_NEW,
        QUOTED,
        SENDER,
    ),
    (
        "names to quote, attendee",
        booking(attendees=(QUOTED,)),
        MailKind.ATTENDEE_CONFIRMED,
        QUOTED,
        '"Books, Inc." <bookings@bookable.test>',
    ),
    (
        "nameless booker",
        booking(attendees=(NAMELESS,)),
        MailKind.HOST_REQUEST,
        OLGA,
        "bookings@bookable.test",
    ),
    (
        "nameless recipient",
        booking(attendees=(NAMELESS,)),
        MailKind.ATTENDEE_REQUESTED,
        NAMELESS,
        SENDER,
    ),
    (
        "long names",
        booking(attendees=(LONG_NAME, LONG_UNICODE), organizer=LONG_UNICODE, hosts=(LONG_UNICODE,)),
        MailKind.ATTENDEE_CONFIRMED,
        LONG_NAME,
        SENDER,
    ),
    (
        "long unicode name to the host",
        booking(attendees=(LONG_NAME,), organizer=LONG_UNICODE, hosts=(LONG_UNICODE,)),
        MailKind.HOST_RESCHEDULED,
        LONG_UNICODE,
        SENDER,
    ),
    (
        "UTC organiser, no location nor notes",
        booking(
            organizer=replace(OLGA, time_zone="UTC"),
            hosts=(replace(OLGA, time_zone="UTC"),),
            location=None,
            description=None,
            responses=(),
        ),
        MailKind.HOST_CANCELLED,
        replace(OLGA, time_zone="UTC"),
        SENDER,
    ),
    (
        "unknown zones, a place not a link",
        booking(
            organizer=replace(OLGA, time_zone="Nowhere/Else"),
            attendees=(UNKNOWN_ZONE,),
            location="Room 4, 2nd floor",
        ),
        MailKind.ATTENDEE_CONFIRMED,
        UNKNOWN_ZONE,
        SENDER,
    ),
    (
        "over midnight, summer time",
        booking(
            start=datetime(2026, 7, 1, 21, 30, tzinfo=UTC),
            end=datetime(2026, 7, 1, 23, 0, tzinfo=UTC),
            title='Late <b>show</b> & "talk"',
        ),
        MailKind.ATTENDEE_CONFIRMED,
        GUS,
        SENDER,
    ),
]


def render_all() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, mail, kind, recipient, sender in CASES:
        message_id = f"bk7Qx2.{kind.value}.{len(out)}@bookable.test"
        out[name] = render_email(
            mail, kind, recipient, sender=sender, message_id=message_id, stamp=STAMP
        ).message
    # Through the outbox's stored facts, the rows of one change sharing their invitation.
    shared: dict[ItipMethod, bytes] = {}
    mail = booking(title="Shared ☕ invitation")
    for kind, recipient in ((MailKind.HOST_NEW, OLGA), (MailKind.ATTENDEE_CONFIRMED, ANN)):
        facts = json.loads(
            json.dumps(
                stored_facts(mail_facts(mail), recipient, sender=SENDER, stamp=STAMP, change="c")
            )
        )
        message_id = f"bk7Qx2.{kind.value}.c.0@bookable.test"
        out[f"stored {kind.value}"] = render_stored(
            facts, kind.value, message_id, invitations=shared
        ).message
    return out


def test_rendered_messages_have_not_changed() -> None:
    actual = render_all()
    if UPDATE:
        GOLDEN.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n")
    expected = json.loads(GOLDEN.read_text())
    report = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want == got:
            continue
        diff = difflib.unified_diff(
            (want or "").split("\r\n"), (got or "").split("\r\n"), "golden", "now", lineterm=""
        )
        report.append(f"{name}:\n" + "\n".join(diff))
    assert not report, (
        "a rendered message changed (BOOKABLE_UPDATE_EMAIL_GOLDEN=1 regenerates the golden "
        "file, for an intended change only):\n\n" + "\n\n".join(report)
    )
