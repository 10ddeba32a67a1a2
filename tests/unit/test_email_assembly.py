"""The hand-written message assembly (`render_email`) against the email package it replaced:
for any names, addresses, titles, senders and message ids, the same bytes as building an
`EmailMessage` under the SMTP policy and flattening it, as rendering did before.

The golden file (test_email_golden.py) pins a fixed set of messages; this checks the fast paths
(headers written as "Name: value", the MIME skeleton) and their hand-off to the package's own
folding at their edges: lengths around the 78-character line, characters that need quoting or
an encoded word, "=?" in a value. Deterministic: hypothesis runs derandomized.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from datetime import UTC, datetime
from email import quoprimime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookable.calendars.ical import ItipMethod
from bookable.notifications.messages import (
    BookingMail,
    MailKind,
    Party,
    _base64,
    _context,
    _folded,
    _quoted_printable,
    _templates,
    _text_header,
    build_invitation,
    one_line,
    render_email,
    subject_for,
)

DETERMINISTIC = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_FOLDED_AT_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\r\n[ \t]+", re.MULTILINE)


def by_the_email_package(
    mail: BookingMail,
    kind: MailKind,
    recipient: Party,
    *,
    sender: str,
    message_id: str,
    stamp: datetime,
) -> str:
    """The message as render_email built it with the email package (until issue 15 round 4)."""
    from email.utils import format_datetime

    def address(party: Party) -> Address:
        return Address(display_name=one_line(party.name), addr_spec=party.email)

    context = _context(mail, kind, recipient)
    text = _templates().get_template(f"{kind.value}.txt").render(context)
    html = _templates().get_template(f"{kind.value}.html").render(context)
    message = EmailMessage(policy=SMTP)
    message["From"] = one_line(sender)
    message["To"] = address(recipient)
    reply_to = mail.attendees[0] if kind.to_host and mail.attendees else None
    if not kind.to_host:
        reply_to = mail.organizer
    if reply_to is not None and reply_to.email.lower() != recipient.email.lower():
        message["Reply-To"] = address(reply_to)
    message["Subject"] = subject_for(mail, kind, recipient)
    message["Date"] = format_datetime(stamp)
    bare_id = one_line(message_id).strip("<>")
    message["Message-ID"] = f"<{bare_id}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    method = kind.method
    invitation = build_invitation(mail, kind, stamp=stamp)
    if method is not None and invitation is not None:
        message.add_alternative(
            invitation,
            maintype="text",
            subtype="calendar",
            cte="base64",
            params={"method": method.value, "charset": "UTF-8"},
        )
        message.add_attachment(
            invitation,
            maintype="application",
            subtype="ics",
            cte="base64",
            filename="invite.ics",
            params={"name": "invite.ics"},
        )
    digest = hashlib.sha256(bare_id.encode()).hexdigest()[:32]
    for number, part in enumerate(message.walk()):
        if part is not message:
            del part["MIME-Version"]
        if part.is_multipart():
            part.set_boundary(f"=_{digest}.{number}")
    wire = message.as_bytes(policy=SMTP).decode("ascii")
    head, body = wire.split("\r\n\r\n", 1)
    head = _FOLDED_AT_NAME.sub(r"\1: ", head)
    return f"{head}\r\n\r\n{body}"


# Words that take each path: plain atoms, specials that need quoting, non-ASCII, encoded-word
# look-alikes, and lengths that straddle the line.
WORDS = st.one_of(
    st.sampled_from(
        ["Ann", "O'Neil", "J.", "Smith,", '"JJ"', "(Sales)", "<x@y>", "=?utf-8?q?hi?=", "=?",
         "Zoë", "山田", "Łukasz", "a" * 40, "é" * 30, "x@y", "back\\slash", "tab\tin", "#1",
         "Ünïcødé-Ñame", "-", ""]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=12),
)  # fmt: skip
NAMES = st.lists(WORDS, max_size=8).map(" ".join)
LOCAL = st.sampled_from(["ann", "a.b", "a+tag", "o'neil", "x_y-z", "UPPER", "a" * 60])
DOMAIN = st.sampled_from(["example.com", "sub.example.co.uk", "x-y.test", "e" * 50 + ".com"])
EMAILS = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
PARTIES = st.builds(
    Party,
    NAMES,
    EMAILS,
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "No/Where"]),
)
SENDERS = st.one_of(
    st.sampled_from(["bookings@bookable.test", '"Books, Inc." <b@bookable.test>']),
    st.builds(lambda name, email: f"{name} <{email}>", NAMES, EMAILS),
)
MESSAGE_IDS = st.one_of(
    st.sampled_from(["bk7Qx2.host.new.c0ffee.0@bookable.test", "<abc@bookable.test>"]),
    st.builds(lambda local, domain: f"{local}.{local}@{domain}", LOCAL, DOMAIN),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=90),
)


@DETERMINISTIC
@given(
    kind=st.sampled_from(list(MailKind)),
    organizer=PARTIES,
    attendee=PARTIES,
    recipient_is_attendee=st.booleans(),
    title=NAMES.filter(lambda t: bool(one_line(t))),
    sender=SENDERS,
    message_id=MESSAGE_IDS,
)
def test_the_assembly_makes_the_email_packages_bytes(
    kind: MailKind,
    organizer: Party,
    attendee: Party,
    recipient_is_attendee: bool,
    title: str,
    sender: str,
    message_id: str,
) -> None:
    stamp = datetime(2026, 3, 29, 0, 30, 5, tzinfo=UTC)
    mail = BookingMail(
        booking_id=7,
        booking_uid="uid7",
        ical_uid="uid7@bookable.test",
        sequence=1,
        title=title,
        start=datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        end=datetime(2026, 3, 29, 1, 45, tzinfo=UTC),
        organizer=organizer,
        hosts=(organizer,),
        attendees=(attendee,),
        location=title,
        description=title,
    )
    recipient = attendee if recipient_is_attendee else organizer
    options = {"sender": sender, "message_id": message_id, "stamp": stamp}
    try:
        expected = by_the_email_package(mail, kind, recipient, **options)
    except (ValueError, IndexError) as error:  # the package refuses it: so must we
        try:
            render_email(mail, kind, recipient, **options)
        except type(error):
            return
        raise AssertionError(f"rendered what the email package refused: {error!r}") from None
    shared: dict[ItipMethod, bytes] = {}
    assert render_email(mail, kind, recipient, **options).message == expected
    # Again, with the invitation shared and the cached pieces warm.
    assert render_email(mail, kind, recipient, invitations=shared, **options).message == expected


ASCII_WORDS = st.lists(
    st.one_of(
        st.text(
            alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=9
        ),
        st.integers(1, 90).map(lambda n: "w" * n),
        st.sampled_from(["=?", "=?utf-8?q?x?=", "é", "a\tb", "", "  "]),
    ),
    min_size=1,
    max_size=30,
).map(" ".join)


@settings(derandomize=True, max_examples=2000, deadline=None)
@given(name=st.sampled_from(["Subject", "Auto-Submitted", "X-Note"]), value=ASCII_WORDS)
def test_plain_headers_fold_as_the_email_package_folds_them(name: str, value: str) -> None:
    # Unstructured headers only: the Date is always format_datetime's (the other test).
    value = one_line(value)
    if not value:
        return
    assert _text_header(name, value) == _folded(name, value)


ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
MESSAGE_ID_WORDS = st.text(alphabet=ATEXT, min_size=1, max_size=30)


@settings(derandomize=True, max_examples=1000, deadline=None)
@given(
    left=st.lists(MESSAGE_ID_WORDS, min_size=1, max_size=6),
    right=st.lists(st.text(alphabet="abcXYZ019-", min_size=1, max_size=20), min_size=1, max_size=4),
)
def test_plain_message_ids_stay_on_one_line_at_any_length(
    left: list[str], right: list[str]
) -> None:
    value = f"<{'.'.join(left)}@{'.'.join(right)}>"
    mail = BookingMail(
        booking_id=1, booking_uid="u", ical_uid="u@b", sequence=0, title="T",
        start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 1, 1, tzinfo=UTC),
        organizer=Party("O", "o@example.com", "UTC"), hosts=(), attendees=(),
    )  # fmt: skip
    rendered = render_email(
        mail, MailKind.HOST_REQUEST, mail.organizer, sender="b@example.com", message_id=value
    ).message
    assert _folded("Message-ID", value) in rendered


# Lines of every length around the 78-character limit, made of what the encoder treats apart:
# "=" (an escape's start), spaces and tabs (quoted at a line's end), multi-byte characters
# (three or more escapes each), control characters and the separators str.splitlines() would
# break at but bytes.splitlines() does not.
_QP_PIECES = st.sampled_from(
    ["a", "Z", "=", " ", "\t", "é", "€", "😀", "\x0b", "\x0c", "\x1c", "\x85", "\u2028",
     "\x00", "~", ".", "ab=cd", "x" * 70, "y " * 20]
)  # fmt: skip
_QP_LINE = st.lists(_QP_PIECES, max_size=40).map("".join)
_QP_TEXT = st.tuples(
    st.lists(_QP_LINE, max_size=6), st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=6)
).map(lambda parts: "".join(line + end for line, end in zip(parts[0], parts[1], strict=False)))


@DETERMINISTIC
@given(text=st.one_of(_QP_TEXT, _QP_TEXT.map(lambda text: text.rstrip("\r\n")), st.text()))
def test_quoted_printable_is_the_email_packages(text: str) -> None:
    """`_quoted_printable` (body_encode's steps, rewritten for speed in issue 15 round 9)
    against what it replaced: contentmanager's quoprimime.body_encode(..., 78) with the
    generator's CRLF line ends."""
    body = (b"\n".join(text.encode("utf-8").splitlines()) + b"\n").decode("latin-1")
    expected = re.sub(r"\r\n|\r|\n", "\r\n", quoprimime.body_encode(body, 78))
    assert _quoted_printable(text) == expected


def test_quoted_printable_of_nothing_is_one_line_end() -> None:
    assert _quoted_printable("") == "\r\n"


def test_quoted_printable_at_every_length_around_the_breaks() -> None:
    """Every line length up to three lines' worth, with every kind of last character and
    escapes placed across the break points: each branch of the soft-break rules."""
    for length in range(1, 240):
        for fill in ("x", "=", "xé", "x=", "é"):
            for last in (" ", "\t", "=", "é", "x"):
                line = (fill * length)[: length - 1] + last
                body = line.encode("utf-8").decode("latin-1") + "\n"
                expected = re.sub(r"\r\n|\r|\n", "\r\n", quoprimime.body_encode(body, 78))
                assert _quoted_printable(line) == expected, (fill, length, last)


def test_a_long_line_seen_again_is_broken_as_the_first_time() -> None:
    """The breaking of long lines is cached by line: the same line in another text, at
    another place, is the package's each time."""
    lines = ["a" * 100 + " ", "=" * 90, "é" * 40 + "\t", "x" * 77 + " "]
    for text in ("\n".join(lines), "\n".join(reversed(lines)) + "\n", "\n".join(lines * 3)):
        body = (b"\n".join(text.encode("utf-8").splitlines()) + b"\n").decode("latin-1")
        expected = re.sub(r"\r\n|\r|\n", "\r\n", quoprimime.body_encode(body, 78))
        assert _quoted_printable(text) == expected


def _package_base64(data: bytes) -> str:
    # contentmanager._encode_base64(data, 78), with the generator's CRLF line ends.
    step = 78 // 4 * 3
    pieces = [binascii.b2a_base64(data[i : i + step]).decode() for i in range(0, len(data), step)]
    return "".join(pieces).replace("\n", "\r\n")


@DETERMINISTIC
@given(data=st.one_of(st.binary(max_size=600), st.integers(0, 400).map(lambda n: b"x" * n)))
def test_base64_is_the_email_packages(data: bytes) -> None:
    assert _base64.__wrapped__(data) == _package_base64(data)


def test_base64_at_every_length_around_a_line() -> None:
    for size in range(0, 240):
        data = bytes(range(256))[:size] if size < 256 else b""
        assert _base64.__wrapped__(data) == _package_base64(data), size
