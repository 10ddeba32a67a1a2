"""Booking emails without a server: every kind rendered, parsed back as a mail client would, and
its invitation read with icalendar."""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from icalendar import Calendar, Component

from bookable.notifications.messages import (
    BookingMail,
    MailKind,
    Party,
    RenderedEmail,
    SharedByChange,
    format_when,
    mail_facts,
    mail_from_facts,
    one_line,
    render_email,
    render_stored,
    stored_facts,
)

STAMP = datetime(2026, 1, 2, 8, 30, tzinfo=UTC)
PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"

OLGA = Party("Olga Organizer", "olga@example.com", PARIS)
HAL = Party("Hal Host", "hal@example.com", PARIS)
ANN = Party("Ann Attendee", "ann@example.com", NEW_YORK)
GUS = Party("Gus Guest", "gus@example.com", PARIS)

INVITE_KINDS = {
    MailKind.ATTENDEE_CONFIRMED: "REQUEST",
    MailKind.ATTENDEE_RESCHEDULED: "REQUEST",
    MailKind.HOST_NEW: "REQUEST",
    MailKind.HOST_RESCHEDULED: "REQUEST",
    MailKind.ATTENDEE_CANCELLED: "CANCEL",
    MailKind.ATTENDEE_REJECTED: "CANCEL",
    MailKind.HOST_CANCELLED: "CANCEL",
}
SUBJECT_PREFIXES = {
    MailKind.ATTENDEE_CONFIRMED: "Confirmed: ",
    MailKind.ATTENDEE_REQUESTED: "Awaiting confirmation: ",
    MailKind.ATTENDEE_RESCHEDULED: "Rescheduled: ",
    MailKind.ATTENDEE_CANCELLED: "Cancelled: ",
    MailKind.ATTENDEE_REJECTED: "Declined: ",
    MailKind.HOST_NEW: "New booking: ",
    MailKind.HOST_REQUEST: "Booking request: ",
    MailKind.HOST_RESCHEDULED: "Rescheduled: ",
    MailKind.HOST_CANCELLED: "Cancelled: ",
}


def booking(**changes: object) -> BookingMail:
    values: dict[str, object] = {
        "booking_id": 42,
        "booking_uid": "bk7Qx2",
        "ical_uid": "bk7Qx2@bookable.test",
        "sequence": 3,
        "title": "Intro call",
        # 2026-01-06 10:00Z: 11:00 in Paris (CET), 05:00 in New York (EST).
        "start": datetime(2026, 1, 6, 10, 0, tzinfo=UTC),
        "end": datetime(2026, 1, 6, 10, 30, tzinfo=UTC),
        "organizer": OLGA,
        "hosts": (OLGA, HAL),
        "attendees": (ANN, GUS),
        "location": "https://meet.example.com/r?a=1&b=2",
        "description": "First line\nsecond line",
        "responses": (("Company", "ACME"),),
    }
    values.update(changes)
    return BookingMail(**values)  # type: ignore[arg-type]


def render(
    mail: BookingMail, kind: MailKind, recipient: Party | None = None, **options: object
) -> RenderedEmail:
    if recipient is None:
        recipient = OLGA if kind.value.startswith("host.") else ANN
    arguments: dict[str, object] = {
        "sender": "Bookable <bookings@bookable.test>",
        "message_id": "42.attendee.ann@bookable.test",
        "stamp": STAMP,
    }
    arguments.update(options)
    return render_email(mail, kind, recipient, **arguments)  # type: ignore[arg-type]


def parse(rendered: RenderedEmail) -> EmailMessage:
    parsed = email.message_from_string(rendered.message, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    # Quoted-printable keeps the CRLF line ends of the wire; compare with LF.
    return part.get_content().replace("\r\n", "\n")


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


def leaf_types(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk() if not part.is_multipart()]


def calendar_of(message: EmailMessage) -> Calendar:
    inline = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert len(inline) == 1
    return Calendar.from_ical(inline[0].get_payload(decode=True))


def only_event(calendar: Calendar) -> Component:
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return events[0]


@pytest.mark.parametrize("kind", list(MailKind))
def test_every_kind_has_the_headers_and_the_parts(kind: MailKind) -> None:
    rendered = render(booking(), kind)
    # Stored as text and sent as is: 7-bit, every line ends with CRLF, none too long for SMTP.
    assert rendered.message.isascii()
    assert "\n" not in rendered.message.replace("\r\n", "")
    assert all(len(line) <= 998 for line in rendered.message.split("\r\n"))

    message = parse(rendered)
    recipient = OLGA if kind.value.startswith("host.") else ANN
    assert message["From"] == "Bookable <bookings@bookable.test>"
    assert [a.addr_spec for a in message["To"].addresses] == [recipient.email]
    assert message["To"].addresses[0].display_name == recipient.name
    assert message["Subject"] == rendered.subject
    assert rendered.subject.startswith(SUBJECT_PREFIXES[kind] + "Intro call on ")
    assert message["Message-ID"] == "<42.attendee.ann@bookable.test>"
    assert message["MIME-Version"] == "1.0"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == STAMP
    assert "Bcc" not in message and "Cc" not in message

    text, html = text_of(message), html_of(message)
    assert "Intro call" in text and "Intro call" in html
    assert "https://meet.example.com/r?a=1&b=2" in text
    assert '<a href="https://meet.example.com/r?a=1&amp;b=2">' in html
    for person in (OLGA, HAL, ANN, GUS):
        assert f"{person.name} <{person.email}>" in text
        assert f"{person.name} &lt;{person.email}&gt;" in html
    assert "First line\n  second line" in text and "First line\nsecond line" in html
    assert "Company:\n  ACME" in text and "ACME" in html
    assert "<img" not in html.lower() and "src=" not in html.lower()

    method = INVITE_KINDS.get(kind)
    if method is None:
        assert message.get_content_type() == "multipart/alternative"
        assert leaf_types(message) == ["text/plain", "text/html"]
        assert "BEGIN:VCALENDAR" not in rendered.message
        assert "invite.ics" not in text
        return
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    assert leaf_types(alternative) == ["text/plain", "text/html", "text/calendar"]
    inline = alternative.get_payload()[2]
    assert inline.get_param("method") == method
    assert inline.get_param("charset") == "UTF-8"
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_content_disposition() == "attachment"
    # The same calendar twice, byte for byte, with its CRLFs intact.
    ics = inline.get_payload(decode=True)
    assert attachment.get_payload(decode=True) == ics
    assert b"\r\n" in ics and b"\n" not in ics.replace(b"\r\n", b"")

    calendar = Calendar.from_ical(ics)
    assert str(calendar["METHOD"]) == method
    event = only_event(calendar)
    assert str(event["UID"]) == "bk7Qx2@bookable.test"
    assert event.decoded("DTSTAMP") == STAMP
    if method == "REQUEST":
        assert int(event["SEQUENCE"]) == 3
        assert str(event["STATUS"]) == "CONFIRMED"
    else:
        # One past the booking's: a client ignores a CANCEL not newer than its copy.
        assert int(event["SEQUENCE"]) == 4
        assert str(event["STATUS"]) == "CANCELLED"
    assert event["DTSTART"].params["TZID"] == PARIS
    assert event["DTEND"].params["TZID"] == PARIS
    assert event.decoded("DTSTART") == datetime(2026, 1, 6, 10, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2026, 1, 6, 10, 30, tzinfo=UTC)
    assert [str(zone["TZID"]) for zone in calendar.walk("VTIMEZONE")] == [PARIS]
    assert str(event["SUMMARY"]) == "Intro call"
    assert str(event["LOCATION"]) == "https://meet.example.com/r?a=1&b=2"
    assert "invite.ics" in text


def test_the_invitation_names_the_organiser_and_everyone_else_as_attendees() -> None:
    message = parse(render(booking(), MailKind.ATTENDEE_CONFIRMED))
    event = only_event(calendar_of(message))
    organizer = event["ORGANIZER"]
    assert str(organizer) == "mailto:olga@example.com"
    assert organizer.params["CN"] == "Olga Organizer"
    attendees = event["ATTENDEE"]
    # Attendees and guests, then the other hosts; the organiser is not an attendee.
    assert [str(a) for a in attendees] == [
        "mailto:ann@example.com",
        "mailto:gus@example.com",
        "mailto:hal@example.com",
    ]
    for attendee in attendees:
        assert attendee.params["RSVP"] == "TRUE"
        assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
        assert "SCHEDULE-AGENT" not in attendee.params
    assert "SCHEDULE-AGENT" not in organizer.params


def test_a_host_who_is_also_an_attendee_is_listed_once() -> None:
    mail = booking(attendees=(ANN, Party("Hal", "HAL@example.com", PARIS)))
    event = only_event(calendar_of(parse(render(mail, MailKind.HOST_NEW))))
    assert [str(a).lower() for a in event["ATTENDEE"]] == [
        "mailto:ann@example.com",
        "mailto:hal@example.com",
    ]


def test_times_are_in_each_recipients_zone_across_the_march_dst_change() -> None:
    # Paris moves from CET to CEST at 01:00Z on 2026-03-29: 00:30Z is 01:30 CET, 01:30Z is
    # 03:30 CEST. New York has been on EDT since 8 March: 20:30 and 21:30 the day before.
    mail = booking(
        start=datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        end=datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
    )
    paris = "Sunday 29 March 2026, 01:30\u201303:30 (Europe/Paris)"
    new_york = "Saturday 28 March 2026, 20:30\u201321:30 (America/New_York)"

    for_ann = render(mail, MailKind.ATTENDEE_CONFIRMED, ANN)
    message = parse(for_ann)
    text = text_of(message)
    assert f"When:  {new_york}\n" in text
    # The host's clock too, since Ann is in another zone.
    assert f"Olga Organizer's time: {paris}" in text
    assert new_york in html_of(message) and paris in html_of(message)
    assert (
        for_ann.subject
        == "Confirmed: Intro call on Saturday 28 March 2026, 20:30 (America/New_York)"
    )

    for_olga = render(mail, MailKind.HOST_NEW, OLGA)
    text = text_of(parse(for_olga))
    assert f"When:  {paris}\n" in text
    assert f"Ann Attendee's time: {new_york}" in text
    assert (
        for_olga.subject == "New booking: Intro call on Sunday 29 March 2026, 01:30 (Europe/Paris)"
    )

    # The invitation keeps the organiser's wall clock and its VTIMEZONE describes the jump.
    calendar = calendar_of(message)
    ics = calendar.to_ical().decode()
    assert "DTSTART;TZID=Europe/Paris:20260329T013000" in ics
    assert "DTEND;TZID=Europe/Paris:20260329T033000" in ics
    zone = calendar.walk("VTIMEZONE")[0].to_tz()
    event = only_event(calendar)
    wall_start = event.decoded("DTSTART").replace(tzinfo=None)
    assert wall_start.replace(tzinfo=zone).astimezone(UTC) == mail.start


def test_between_the_two_dst_changes_the_zones_are_five_hours_apart() -> None:
    # New York is on EDT from 8 March, Paris on CET until 29 March: 14:00Z is 10:00 and 15:00.
    mail = booking(
        start=datetime(2026, 3, 10, 14, 0, tzinfo=UTC),
        end=datetime(2026, 3, 10, 14, 45, tzinfo=UTC),
    )
    text = text_of(parse(render(mail, MailKind.ATTENDEE_CONFIRMED, ANN)))
    assert "When:  Tuesday 10 March 2026, 10:00\u201310:45 (America/New_York)" in text
    assert "Olga Organizer's time: Tuesday 10 March 2026, 15:00\u201315:45 (Europe/Paris)" in text


def test_the_same_zone_shows_one_time() -> None:
    text = text_of(parse(render(booking(), MailKind.ATTENDEE_CONFIRMED, GUS)))
    assert "When:  Tuesday 6 January 2026, 11:00\u201311:30 (Europe/Paris)" in text
    assert "'s time:" not in text


def test_an_unknown_recipient_zone_falls_back_to_the_organisers() -> None:
    stranger = Party("Sam", "sam@example.com", "Mars/Olympus_Mons")
    rendered = render(booking(), MailKind.ATTENDEE_CONFIRMED, stranger)
    assert "11:00\u201311:30 (Europe/Paris)" in text_of(parse(rendered))


def test_a_meeting_over_midnight_names_both_days() -> None:
    start = datetime(2026, 1, 6, 22, 30, tzinfo=UTC)
    end = datetime(2026, 1, 7, 0, 0, tzinfo=UTC)
    from zoneinfo import ZoneInfo

    assert format_when(start, end, ZoneInfo(PARIS)) == (
        "Tuesday 6 January 2026, 23:30 \u2013 Wednesday 7 January 2026, 01:00 (Europe/Paris)"
    )
    # Ending at midnight stays one day.
    assert (
        format_when(start, end, ZoneInfo("UTC")) == "Tuesday 6 January 2026, 22:30\u201300:00 (UTC)"
    )


def test_a_reschedule_shows_the_old_time_struck_through() -> None:
    mail = booking(
        previous_start=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        previous_end=datetime(2026, 1, 5, 10, 30, tzinfo=UTC),
    )
    message = parse(render(mail, MailKind.ATTENDEE_RESCHEDULED, GUS))
    old = "Monday 5 January 2026, 11:00\u201311:30 (Europe/Paris)"
    assert f"(was {old})" in text_of(message)
    assert f'<s style="color:#71717a;">{old}</s>' in html_of(message)
    assert "Tuesday 6 January 2026, 11:00\u201311:30 (Europe/Paris)" in text_of(message)


def test_the_host_request_says_how_to_confirm_or_reject_over_the_api() -> None:
    message = parse(render(booking(), MailKind.HOST_REQUEST))
    for body in (text_of(message), html_of(message)):
        assert "POST /v1/bookings/42/confirm" in body
    assert '{"confirmed": true}' in text_of(message)
    assert '{"confirmed": false, "rejectionReason": "..."}' in text_of(message)
    assert '{"confirmed": false, "rejectionReason": "..."}' in html_of(message)


def test_reasons_are_shown() -> None:
    cancelled = booking(cancellation_reason="Something came up.\nSorry!")
    text = text_of(parse(render(cancelled, MailKind.ATTENDEE_CANCELLED)))
    assert "Reason for cancelling:\n  Something came up.\n  Sorry!" in text
    rejected = booking(rejection_reason="Fully booked")
    message = parse(render(rejected, MailKind.ATTENDEE_REJECTED))
    assert "Reason for declining:\n  Fully booked" in text_of(message)
    assert "Fully booked" in html_of(message)


def test_html_escapes_what_the_booker_typed() -> None:
    mail = booking(
        title="<script>alert(1)</script> & co",
        description='<img src="https://tracker.example/p.gif">',
        responses=(("<b>Label</b>", "<i>answer</i>"),),
        location="javascript:alert(1)",
        attendees=(Party('Ann "<Boss>"', "ann@example.com", NEW_YORK),),
    )
    rendered = render(mail, MailKind.HOST_NEW)
    message = parse(rendered)
    html = html_of(message)
    assert "<script>" not in html and "<img" not in html and "<b>Label" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "&lt;img src=&#34;https://tracker.example/p.gif&#34;&gt;" in html
    assert "&lt;i&gt;answer&lt;/i&gt;" in html
    # Only http(s) locations become links.
    assert "javascript:alert(1)" in html and 'href="javascript' not in html
    # The plain text and the subject show the title as typed.
    assert "<script>alert(1)</script> & co" in text_of(message)
    assert message["Subject"].startswith("New booking: <script>alert(1)</script> & co on ")
    # The invitation escapes it the iCalendar way and keeps it.
    assert str(only_event(calendar_of(message))["SUMMARY"]) == "<script>alert(1)</script> & co"


@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r", "\u2028", "\x0b", "\x85"])
def test_no_header_injection_through_names_or_the_title(breaker: str) -> None:
    evil_ann = Party(f"Ann{breaker}Bcc: x@evil.example", "ann@example.com", NEW_YORK)
    mail = booking(
        title=f"Call{breaker}Bcc: y@evil.example{breaker}{breaker}<html>body</html>",
        attendees=(evil_ann,),
        organizer=Party(f"Olga{breaker}Cc: z@evil.example", "olga@example.com", PARIS),
    )
    for kind, recipient in ((MailKind.ATTENDEE_CONFIRMED, evil_ann), (MailKind.HOST_NEW, OLGA)):
        rendered = render(mail, kind, recipient)
        message = parse(rendered)
        headers = rendered.message.split("\r\n\r\n", 1)[0]
        for line in headers.split("\r\n"):
            assert not line.lower().startswith(("bcc:", "cc:"))
        assert "Bcc" not in message and "Cc" not in message
        assert [a.addr_spec for a in message["To"].addresses] == [recipient.email]
        assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
        assert message["Subject"].startswith(
            f"{SUBJECT_PREFIXES[kind]}Call Bcc: y@evil.example <html>body</html> on "
        )
        # The attendee and the reply-to still name exactly one address each.
        reply_to = message["Reply-To"].addresses
        assert len(reply_to) == 1
        # The body still parses as the same parts: nothing ended the headers early.
        assert leaf_types(message) == [
            "text/plain",
            "text/html",
            "text/calendar",
            "application/ics",
        ]
    event = only_event(calendar_of(parse(render(mail, MailKind.ATTENDEE_CONFIRMED))))
    assert str(event["SUMMARY"]) == "Call Bcc: y@evil.example <html>body</html>"
    assert event["ATTENDEE"][0].params["CN"] == "Ann Bcc: x@evil.example"


def test_a_name_that_looks_like_an_address_adds_no_recipient() -> None:
    trick = Party("x@evil.example, Eve <eve@evil.example>", "ann@example.com", NEW_YORK)
    message = parse(render(booking(attendees=(trick,)), MailKind.ATTENDEE_CONFIRMED, trick))
    (address,) = message["To"].addresses
    assert address.addr_spec == "ann@example.com"
    assert address.display_name == "x@evil.example, Eve <eve@evil.example>"


def test_a_sender_with_a_line_break_adds_no_header() -> None:
    rendered = render(
        booking(), MailKind.HOST_NEW, sender="Bookable <b@bookable.test>\r\nBcc: x@evil.example"
    )
    assert "\r\nBcc:" not in rendered.message.split("\r\n\r\n", 1)[0]


def test_non_ascii_names_and_titles_are_encoded_and_come_back() -> None:
    zoe = Party("Zoë Ångström 山田", "zoe@example.com", PARIS)
    mail = booking(title="Café ☕ chat", organizer=Party("Łukasz Żółw", "olga@example.com", PARIS))
    rendered = render(mail, MailKind.ATTENDEE_CONFIRMED, zoe)
    headers = rendered.message.split("\r\n\r\n", 1)[0]
    assert "=?utf-8?" in headers  # RFC 2047 encoded words
    message = parse(rendered)
    assert message["To"].addresses[0].display_name == "Zoë Ångström 山田"
    assert message["Reply-To"].addresses[0].display_name == "Łukasz Żółw"
    assert message["Subject"] == rendered.subject
    assert rendered.subject.startswith("Confirmed: Café ☕ chat on Tuesday 6 January 2026")
    assert "Café ☕ chat with Łukasz Żółw" in text_of(message)
    event = only_event(calendar_of(message))
    assert str(event["SUMMARY"]) == "Café ☕ chat"
    assert event["ORGANIZER"].params["CN"] == "Łukasz Żółw"


def test_reply_to_reaches_the_other_side() -> None:
    to_attendee = parse(render(booking(), MailKind.ATTENDEE_CONFIRMED))
    assert [a.addr_spec for a in to_attendee["Reply-To"].addresses] == ["olga@example.com"]
    to_host = parse(render(booking(), MailKind.HOST_NEW))
    assert [a.addr_spec for a in to_host["Reply-To"].addresses] == ["ann@example.com"]


def test_a_bracketed_message_id_is_not_bracketed_twice() -> None:
    message = parse(render(booking(), MailKind.HOST_NEW, message_id="<abc@bookable.test>"))
    assert message["Message-ID"] == "<abc@bookable.test>"


def test_a_utc_organiser_gets_utc_times_in_the_invitation() -> None:
    utc_olga = replace(OLGA, time_zone="UTC")
    mail = booking(organizer=utc_olga, hosts=(utc_olga,))
    message = parse(render(mail, MailKind.ATTENDEE_CONFIRMED))
    ics = calendar_of(message).to_ical().decode()
    assert "DTSTART:20260106T100000Z" in ics and "BEGIN:VTIMEZONE" not in ics
    assert "Olga Organizer's time: Tuesday 6 January 2026, 10:00\u201310:30 (UTC)" in text_of(
        message
    )


def test_one_line_removes_control_characters() -> None:
    assert one_line(" a\r\nb\tc\x00d\u2029e\x7f  f ") == "a b c d e f"


def test_an_organiser_zone_this_machine_does_not_know_is_written_as_utc() -> None:
    lost = replace(OLGA, time_zone="Nowhere/Atlantis")
    message = parse(render(booking(organizer=lost, hosts=(lost,)), MailKind.HOST_NEW, lost))
    assert "Tuesday 6 January 2026, 10:00\u201310:30 (UTC)" in text_of(message)
    assert "DTSTART:20260106T100000Z" in calendar_of(message).to_ical().decode()


def test_the_other_sides_time_names_them_by_address_when_nameless() -> None:
    nameless = Party("", "anon@example.com", NEW_YORK)
    message = parse(render(booking(attendees=(nameless,)), MailKind.HOST_NEW))
    assert "anon@example.com's time: Tuesday 6 January 2026, 05:00" in text_of(message)


def test_the_rows_of_one_change_render_the_same_bytes_sharing_their_mail() -> None:
    """The dispatcher renders a change's rows with one `SharedByChange` (their facts read
    once, their invitation built once): every row's bytes are those it renders alone. A row
    whose mail differs under the same change token is read afresh, its invitation its own."""
    mail = booking(cancellation_reason="Ill")
    moved = replace(
        mail, title="Moved call", start=mail.end, end=mail.end + (mail.end - mail.start)
    )

    def row(of: BookingMail, kind: MailKind, recipient: Party) -> tuple[dict, str]:
        facts = stored_facts(
            mail_facts(of), recipient, sender="Bookable <b@bookable.test>", stamp=STAMP,
            change="bk7Qx2.c0ffee",
        )  # fmt: skip
        return json.loads(json.dumps(facts)), f"bk7Qx2.{kind.value}.{of.title[:5]}@bookable.test"

    rows = [
        (*row(mail, MailKind.ATTENDEE_CONFIRMED, ANN), MailKind.ATTENDEE_CONFIRMED),
        (*row(mail, MailKind.HOST_NEW, OLGA), MailKind.HOST_NEW),
        (*row(mail, MailKind.ATTENDEE_CANCELLED, ANN), MailKind.ATTENDEE_CANCELLED),
        (*row(moved, MailKind.HOST_NEW, OLGA), MailKind.HOST_NEW),
        (*row(moved, MailKind.ATTENDEE_CONFIRMED, ANN), MailKind.ATTENDEE_CONFIRMED),
    ]
    shared = SharedByChange()
    for facts, message_id, kind in rows:
        alone = render_stored(facts, kind.value, message_id)
        assert render_stored(facts, kind.value, message_id, shared=shared) == alone
    assert shared.mail == moved


def test_stored_facts_render_the_same_bytes_every_time() -> None:
    """The outbox stores facts; the dispatcher renders them, again after a crash: the facts,
    through JSON, make the message `render_email` makes of the booking, byte for byte, twice
    (Date, DTSTAMP and the MIME boundaries do not depend on when or how often)."""
    mail = booking(previous_start=STAMP, previous_end=STAMP, cancellation_reason="Ill\nsorry")
    assert mail_from_facts(json.loads(json.dumps(mail_facts(mail)))) == mail
    for kind in MailKind:
        recipient = OLGA if kind.to_host else ANN
        facts = stored_facts(
            mail_facts(mail),
            recipient,
            sender="Bookable <bookings@bookable.test>",
            stamp=STAMP,
            change="bk7Qx2.c0ffee",
        )
        stored = json.loads(json.dumps(facts))
        message_id = f"bk7Qx2.{kind.value}.c0ffee.0@bookable.test"
        first = render_stored(stored, kind.value, message_id)
        assert render_stored(stored, kind.value, message_id, invitations={}) == first
        assert first == render(mail, kind, recipient, message_id=f"<{message_id}>")
        if kind.method is not None:
            assert 'boundary="=_' in first.message
