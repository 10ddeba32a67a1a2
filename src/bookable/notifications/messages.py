"""Booking emails rendered whole: subject, plain text, HTML and the iCalendar invitation, in one
RFC 5322 message ready for SMTP.

Pure: no I/O, no database. The outbox stores the facts of a message when the change commits
(`stored_facts`: what was true then) and the email dispatcher renders them (`render_stored`)
before the first attempt: the same facts make the same bytes (the Date, DTSTAMP and MIME
boundaries come from the stored stamp and message id). Times are shown in the recipient's own
zone. Everything a booker typed that lands in a header (names, the title) goes through
``one_line`` first: a CR or LF there could add headers or recipients. Addresses are used as given
(the caller validated them).
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from email.headerregistry import Address
from email.policy import SMTP
from email.utils import format_datetime
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, StrictUndefined, Template, select_autoescape

from bookable.calendars.ical import EventDraft, ItipMethod, Person, build_ics


class MailKind(enum.StrEnum):
    ATTENDEE_CONFIRMED = "attendee.confirmed"  # invite REQUEST
    ATTENDEE_REQUESTED = "attendee.requested"  # awaiting the host: no invite
    ATTENDEE_RESCHEDULED = "attendee.rescheduled"  # invite REQUEST (new time; old time shown)
    ATTENDEE_CANCELLED = "attendee.cancelled"  # invite CANCEL
    ATTENDEE_REJECTED = "attendee.rejected"  # invite CANCEL
    HOST_NEW = "host.new"  # invite REQUEST
    HOST_REQUEST = "host.request"  # no invite; says how to confirm/reject over the API
    HOST_RESCHEDULED = "host.rescheduled"  # invite REQUEST
    HOST_CANCELLED = "host.cancelled"  # invite CANCEL

    @property
    def to_host(self) -> bool:
        return self.value.startswith("host.")

    @property
    def method(self) -> ItipMethod | None:
        """The iTIP method of the attached invitation; None: no invitation."""
        return _METHODS.get(self)


_METHODS: dict[MailKind, ItipMethod] = {
    MailKind.ATTENDEE_CONFIRMED: ItipMethod.REQUEST,
    MailKind.ATTENDEE_RESCHEDULED: ItipMethod.REQUEST,
    MailKind.HOST_NEW: ItipMethod.REQUEST,
    MailKind.HOST_RESCHEDULED: ItipMethod.REQUEST,
    MailKind.ATTENDEE_CANCELLED: ItipMethod.CANCEL,
    MailKind.ATTENDEE_REJECTED: ItipMethod.CANCEL,
    MailKind.HOST_CANCELLED: ItipMethod.CANCEL,
}

_SUBJECT_PREFIXES: dict[MailKind, str] = {
    MailKind.ATTENDEE_CONFIRMED: "Confirmed",
    MailKind.ATTENDEE_REQUESTED: "Awaiting confirmation",
    MailKind.ATTENDEE_RESCHEDULED: "Rescheduled",
    MailKind.ATTENDEE_CANCELLED: "Cancelled",
    MailKind.ATTENDEE_REJECTED: "Declined",
    MailKind.HOST_NEW: "New booking",
    MailKind.HOST_REQUEST: "Booking request",
    MailKind.HOST_RESCHEDULED: "Rescheduled",
    MailKind.HOST_CANCELLED: "Cancelled",
}


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    email: str
    time_zone: str  # IANA name; the recipient's times are shown in it


@dataclass(frozen=True, slots=True)
class BookingMail:
    """What every email about one booking change says."""

    booking_id: int
    booking_uid: str
    ical_uid: str
    sequence: int
    title: str
    start: datetime  # aware
    end: datetime  # aware
    organizer: Party
    hosts: tuple[Party, ...]  # every host, organiser first
    attendees: tuple[Party, ...]  # attendees then guests
    location: str | None = None
    description: str | None = None  # the booker's notes
    responses: tuple[tuple[str, str], ...] = ()  # other booking questions: (label, answer text)
    cancellation_reason: str | None = None
    rejection_reason: str | None = None
    previous_start: datetime | None = None  # rescheduled: the old time
    previous_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    # The whole RFC 5322 message: CRLF line ends, 7-bit (encoded parts), ready for SMTP.
    message: str


# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators, which
# str.splitlines() (and so the email package) treats as line breaks.
_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1024)  # names, titles and places come back in every message of a change
def one_line(text: str) -> str:
    """``text`` with every control character and line break turned into a space, runs of
    whitespace collapsed: safe in a header, and cannot start a new line in a body either."""
    return _SPACES.sub(" ", _BREAKING.sub(" ", text)).strip()


def multi_line(text: str) -> str:
    """Free text (notes, answers, reasons) with its line breaks kept as LF and every other
    control character removed (a tab becomes a space)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = "".join(
        ch
        for ch in text
        if ch == "\n" or not (unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029")
    )
    return text.strip()


EN_DASH = "\u2013"
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _zone(name: str, fallback: ZoneInfo) -> ZoneInfo:
    # A zone the booker sent that this machine's tzdata does not know must not stop the email.
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _day(moment: datetime) -> str:
    # Spelled out here, not with strftime: %A and %B follow the process locale.
    return f"{_WEEKDAYS[moment.weekday()]} {moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def _clock(moment: datetime) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}"


def format_when(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    """E.g. "Tuesday 6 January 2026, 11:00\u201311:30 (Europe/Paris)" (an en dash); a range
    over midnight names both days."""
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    same_day = local_end.date() == local_start.date() or (
        local_end.time() == time(0) and local_end.date() == local_start.date() + timedelta(days=1)
    )
    if same_day:
        times = f"{_clock(local_start)}{EN_DASH}{_clock(local_end)}"
        return f"{_day(local_start)}, {times} ({zone.key})"
    return (
        f"{_day(local_start)}, {_clock(local_start)} {EN_DASH} "
        f"{_day(local_end)}, {_clock(local_end)} ({zone.key})"
    )


def _is_link(location: str) -> bool:
    parts = urlsplit(location)
    return parts.scheme in {"http", "https"} and bool(parts.netloc) and " " not in location


@cache
def _templates() -> Environment:
    environment = Environment(
        loader=PackageLoader("bookable.notifications", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # The templates ship with the package: no stat() of each file at every render.
        auto_reload=False,
        # A plain dict of the few templates, never evicted: each render looks its base
        # template up again (``extends``), and the default LRU cache's lookup is Python.
        cache_size=-1,
    )
    # No globals (range, dict, lipsum, cycler, joiner, namespace: the templates use none):
    # every render copies the globals into its context, item by item from a ChainMap.
    environment.globals.clear()
    return environment


@cache
def _template(name: str) -> Template:
    return _templates().get_template(name)


def _clean_party(party: Party) -> Party:
    name = one_line(party.name)
    return party if name == party.name else Party(name, party.email, party.time_zone)


def _context(mail: BookingMail, kind: MailKind, recipient: Party) -> dict[str, Any]:
    organizer_zone = _zone(mail.organizer.time_zone, ZoneInfo("UTC"))
    zone = _zone(recipient.time_zone, organizer_zone)
    organizer = _clean_party(mail.organizer)
    attendees = [_clean_party(p) for p in mail.attendees]
    other_hosts = [
        _clean_party(p) for p in mail.hosts if p.email.lower() != mail.organizer.email.lower()
    ]
    when = format_when(mail.start, mail.end, zone)
    # The other side's clock, when it is another zone: the host's for attendees, the
    # booker's for hosts.
    other: Party | None = organizer if not kind.to_host else (attendees[0] if attendees else None)
    other_when: str | None = None
    if other is not None:
        other_zone = _zone(other.time_zone, organizer_zone)
        if other_zone.key != zone.key:
            other_when = format_when(mail.start, mail.end, other_zone)
    previous_when: str | None = None
    if mail.previous_start is not None and mail.previous_end is not None:
        previous_when = format_when(mail.previous_start, mail.previous_end, zone)
    location = one_line(mail.location) if mail.location else None
    return {
        "kind": kind.value,
        "title": one_line(mail.title),
        "booking_id": mail.booking_id,
        "booking_uid": mail.booking_uid,
        "recipient": _clean_party(recipient),
        "when": when,
        "other_name": (other.name or other.email) if other is not None else None,
        "other_when": other_when,
        "previous_when": previous_when,
        "location": location,
        "location_is_link": bool(location) and _is_link(location or ""),
        "organizer": organizer,
        "other_hosts": other_hosts,
        "attendees": attendees,
        "booker": attendees[0] if attendees else None,
        "description": multi_line(mail.description) if mail.description else None,
        "responses": [
            (one_line(label), multi_line(answer))
            for label, answer in mail.responses
            if one_line(label) and multi_line(answer)
        ],
        "cancellation_reason": (
            multi_line(mail.cancellation_reason) if mail.cancellation_reason else None
        ),
        "rejection_reason": multi_line(mail.rejection_reason) if mail.rejection_reason else None,
        "has_invite": kind.method is not None,
    }


def subject_for(mail: BookingMail, kind: MailKind, recipient: Party) -> str:
    """E.g. "Confirmed: Intro call on Tuesday 6 January 2026, 11:00 (Europe/Paris)"."""
    zone = _zone(recipient.time_zone, _zone(mail.organizer.time_zone, ZoneInfo("UTC")))
    local = mail.start.astimezone(zone)
    return one_line(
        f"{_SUBJECT_PREFIXES[kind]}: {mail.title} on {_day(local)}, {_clock(local)} ({zone.key})"
    )


def build_invitation(mail: BookingMail, kind: MailKind, *, stamp: datetime) -> bytes | None:
    """The iTIP invitation for ``kind`` (None for the kinds without one). The attendees are the
    booking's attendees plus every host but the organiser; a CANCEL goes one SEQUENCE past the
    booking's, since a calendar app ignores a message not newer than its copy."""
    method = kind.method
    if method is None:
        return None
    organizer_email = mail.organizer.email.lower()
    seen = {organizer_email}
    people: list[Person] = []
    for party in (*mail.attendees, *mail.hosts):
        if party.email.lower() in seen:
            continue
        seen.add(party.email.lower())
        people.append(Person(one_line(party.name), party.email))
    draft = EventDraft(
        uid=mail.ical_uid,
        sequence=mail.sequence + 1 if method is ItipMethod.CANCEL else mail.sequence,
        start=mail.start,
        end=mail.end,
        # The zone the body shows for the organiser (UTC when this machine does not know it).
        organizer_zone=_zone(mail.organizer.time_zone, ZoneInfo("UTC")).key,
        summary=one_line(mail.title),
        organizer=Person(one_line(mail.organizer.name), mail.organizer.email),
        attendees=tuple(people),
        description=multi_line(mail.description) if mail.description else None,
        location=one_line(mail.location) if mail.location else None,
    )
    return build_ics(draft, stamp=stamp, method=method)


def _address(party: Party) -> Address:
    return Address(display_name=one_line(party.name), addr_spec=party.email)


# --- the message's text --------------------------------------------------------------------------
#
# The message is written here as the email package wrote it (EmailMessage under the SMTP policy,
# flattened with as_bytes), without building it: the package's header registry, MIME assembly and
# generator were ~75 % of rendering. Every piece is what the package makes of the same input:
# the bodies go through the very encoders `set_content` calls, the MIME skeleton (part headers,
# boundaries, blank lines) is the package's for this one structure, and a header the package
# would fold, encode or quote differently from "Name: value" is folded by the package itself.
# tests/unit/test_email_golden.py pins the bytes.

_NEWLINES = re.compile(r"\r\n|\r|\n")  # the generator's line ends (email.generator.NLCRE)
_MAX_LINE = SMTP.max_line_length  # 78
# Values the header registry writes back unchanged on one line: printable ASCII words with
# single spaces, no encoded-word opener ("=?" is decoded by its parser), no quoting needed.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")
_PLAIN_NAME = re.compile(rf"{_ATOM}(?: {_ATOM})*")
_PLAIN_ADDR = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_PLAIN_MESSAGE_ID = re.compile(rf"<{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")


def _folded(name: str, value: str | Address) -> str:
    """The header as the email package writes it under SMTP (fold, encoded words, quoting)."""
    header = SMTP.header_store_parse(name, value)[1]
    line = SMTP.fold_binary(name, header).decode("ascii")
    # A value that fits a line of its own but not after its name is moved whole to a
    # continuation line ("Subject:\r\n Confirmed: ..."), which Python's own parser reads back
    # with a leading space. Joined again the line stays far below SMTP's 998 octets.
    return _FOLDED_AT_NAME.sub(r"\1: ", line)


_FOLDED_AT_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\r\n[ \t]+", re.MULTILINE)


@cache
def _folded_sender(sender: str) -> str:
    # Cached: the From is a setting, the same in every message.
    return _folded("From", sender)


def _text_header(name: str, value: str) -> str:
    """An unstructured header (Subject, Date...) as the package writes it."""
    if "=?" not in value and _PLAIN_TEXT.fullmatch(value) is not None:
        if len(name) + 2 + len(value) <= _MAX_LINE:
            return f"{name}: {value}\r\n"
        words = value.split(" ")
        # The package's folding of plain ASCII words (_refold_parse_tree): as many words as
        # fit on each line of 78, the next one on a continuation line after one space; a
        # value that fits a line of its own is joined back to its name (_FOLDED_AT_NAME).
        # A word too long for a line is encoded instead: left to the package.
        if max(map(len, words)) + 1 < _MAX_LINE:
            if len(value) + 1 <= _MAX_LINE:
                return f"{name}: {value}\r\n"
            # The same lines cut at the last space that fits (each continuation line starts
            # with its space), found with rfind instead of adding word by word.
            whole = f"{name}: {value}"
            lines = []
            start = 0
            while len(whole) - start > _MAX_LINE:
                stop = whole.rfind(" ", start + 1, start + _MAX_LINE + 1)
                lines.append(whole[start:stop])
                start = stop
            lines.append(whole[start:])
            return _FOLDED_AT_NAME.sub(r"\1: ", "\r\n".join(lines) + "\r\n")
    return _folded(name, value)


def _address_header(name: str, party: Party) -> str:
    display = one_line(party.name)
    if _PLAIN_ADDR.fullmatch(party.email) is not None and "=?" not in display:
        value = f"{display} <{party.email}>" if display else party.email
        fits = len(name) + 2 + len(value) <= _MAX_LINE
        if fits and (not display or _PLAIN_NAME.fullmatch(display)):
            return f"{name}: {value}\r\n"
    return _folded(name, _address(party))


def _sender_header(sender: str) -> str:
    display, bracket, rest = sender.rpartition(" <")
    plain = (
        bracket
        and rest.endswith(">")
        and _PLAIN_NAME.fullmatch(display) is not None
        and _PLAIN_ADDR.fullmatch(rest[:-1]) is not None
    ) or (not bracket and _PLAIN_ADDR.fullmatch(sender) is not None)
    if plain and "=?" not in sender and len(sender) + 6 <= _MAX_LINE:
        return f"From: {sender}\r\n"
    return _folded_sender(sender)


# What `quoprimime.body_encode` quotes as =XX: all but printable ASCII other than "=", tab and
# the line ends (only LF is left once the lines are joined). As bytes: the text is quoted as
# its UTF-8 bytes, each read as one character (latin-1).
_QP_KEPT = bytes([ord("\t"), ord("\n"), *range(ord(" "), ord("=")), *range(ord(">"), ord("~") + 1)])
_QP_CODES = {chr(code): f"={code:02X}" for code in range(256)}
_QP_SPACES = (" ", "\t")


def _quoted_printable(text: str) -> str:
    """``text`` as `set_content(cte="quoted-printable")` encodes it (contentmanager's
    _encode_text: ``quoprimime.body_encode(..., 78)``) and the generator writes it (CRLF line
    ends). body_encode's own steps, made cheaper with string methods rather than a pass of
    Python or of a regex over every character (each costs more than the rest together): the
    characters to quote found with ``bytes.translate`` and replaced one kind at a time (a
    few: "=", the bytes of an en dash...), the lines split and joined once, and only the
    lines that need it (too long, or ending in a space or tab) broken by `_qp_broken_line`
    (each line looked up in a cache first: most are the templates').
    Byte for byte the same (tests/unit/test_email_assembly.py compares them by hypothesis
    and at every length around the soft breaks)."""
    data = b"\n".join(text.encode("utf-8").splitlines())  # CR, LF and CRLF only, as bytes
    body = data.decode("latin-1")
    quoted = data.translate(None, _QP_KEPT)  # the bytes to quote, if any
    if quoted:
        # "=" first: the escapes put in after it hold "=" too.
        if b"=" in quoted:
            body = body.replace("=", "=3D")
        for character in set(quoted.decode("latin-1")) - {"="}:
            body = body.replace(character, _QP_CODES[character])
    lines = list(map(_qp_line, body.split("\n")))
    lines.append("")  # the text always ends with a line end
    return "\r\n".join(lines)


# Cached: most lines are the templates' own, the same in every message (a hit runs no Python).
@lru_cache(maxsize=1024)
def _qp_line(line: str) -> str:
    """A quoted line as body_encode writes it: as it is, or broken (`_qp_broken_line`)."""
    if len(line) > _MAX_LINE or line.endswith(_QP_SPACES):
        return _qp_broken_line(line)
    return line


def _qp_broken_line(line: str) -> str:
    """One quoted line as body_encode breaks it: pieces of at most 77 characters plus "=",
    never inside an =XX escape; a space or tab ending the line quoted, or moved past a soft
    break. The pieces joined by CRLF."""
    out: list[str] = []
    append = out.append
    limit = _MAX_LINE - 1  # body_encode's maxlinelen1
    start = 0
    last_start = len(line) - 1 - _MAX_LINE
    while start <= last_start:
        stop = start + limit
        if line[stop - 2] == "=":
            append(line[start : stop - 1])
            start = stop - 2
        elif line[stop - 1] == "=":
            append(line[start:stop])
            start = stop - 1
        else:
            append(line[start:stop] + "=")
            start = stop
    if line[-1] in _QP_SPACES:
        room = start - last_start
        if room >= 3:
            end = _QP_CODES[line[-1]]
        elif room == 2:
            end = line[-1] + "=\r\n"
        else:
            end = "=\r\n" + _QP_CODES[line[-1]]
        append(line[start:-1] + end)
    else:
        append(line[start:])
    return "\r\n".join(out)


@lru_cache(maxsize=32)
def _base64(data: bytes) -> str:
    """``data`` as `set_content(cte="base64")` encodes it, CRLF line ends; cached: the
    invitation is the same in both of its parts and in every message of its change."""
    # The encoder's lines are of 57 bytes, 76 characters: the same as the whole encoded at
    # once (57 is a multiple of 3: no padding but at the end) cut every 76 characters.
    lines = _BASE64_LINE.findall(binascii.b2a_base64(data, newline=False).decode("ascii"))
    return "\r\n".join(lines) + "\r\n" if lines else ""


_BASE64_LINE = re.compile(f".{{1,{_MAX_LINE // 4 * 4}}}")


def _boundary_line(kind: str, boundary: str) -> str:
    # What the package writes for each; the longer one is folded before its parameter.
    line = f'Content-Type: multipart/{kind}; boundary="{boundary}"\r\n'
    if len(line) - 2 > _MAX_LINE:
        line = f'Content-Type: multipart/{kind};\r\n boundary="{boundary}"\r\n'
    return line


_TEXT_PART = (
    'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
)


def render_email(
    mail: BookingMail,
    kind: MailKind,
    recipient: Party,
    *,
    sender: str,
    message_id: str,
    stamp: datetime | None = None,
    invitations: dict[ItipMethod, bytes] | None = None,
) -> RenderedEmail:
    """The whole message about ``mail`` for ``recipient``. ``message_id`` is used as given (with
    angle brackets added); ``stamp`` is the Date and the invitation's DTSTAMP (now by default).
    ``invitations``: shared by the emails of one change made with the same ``stamp``, so its
    invitation is built once, not once per recipient (it depends on the method alone)."""
    stamp = (stamp or datetime.now(UTC)).astimezone(UTC)
    context = _context(mail, kind, recipient)
    text = _template(f"{kind.value}.txt").render(context)
    html = _template(f"{kind.value}.html").render(context)
    subject = subject_for(mail, kind, recipient)

    head = [_sender_header(one_line(sender)), _address_header("To", recipient)]
    # Answers reach a person: the organiser for attendees, the booker for hosts.
    reply_to = mail.attendees[0] if kind.to_host and mail.attendees else None
    if not kind.to_host:
        reply_to = mail.organizer
    if reply_to is not None and reply_to.email.lower() != recipient.email.lower():
        head.append(_address_header("Reply-To", reply_to))
    head.append(_text_header("Subject", subject))
    head.append(_text_header("Date", format_datetime(stamp)))
    bare_id = one_line(message_id).strip("<>")
    message_id_value = f"<{bare_id}>"
    # A plain id stays on the line of its name whatever its length (the package does not
    # break a msg-id; one that only fits a line of its own is joined back, _FOLDED_AT_NAME).
    if "=?" not in message_id_value and _PLAIN_MESSAGE_ID.fullmatch(message_id_value):
        head.append(f"Message-ID: {message_id_value}\r\n")
    else:
        head.append(_folded("Message-ID", message_id_value))
    head.append(_text_header("Auto-Submitted", "auto-generated"))
    head.append("MIME-Version: 1.0\r\n")

    method = kind.method
    invitation = None
    if method is not None:
        invitation = invitations.get(method) if invitations is not None else None
        if invitation is None:
            invitation = build_invitation(mail, kind, stamp=stamp)
            if invitations is not None and invitation is not None:
                invitations[method] = invitation
    # Boundaries from the message id, not random: rendering the same facts again (a retry
    # after a crash) makes the same bytes. "=_" cannot occur in quoted-printable or base64
    # text, so no part can hold a boundary. Numbered as the parts are walked.
    digest = hashlib.sha256(bare_id.encode()).hexdigest()[:32]
    # Quoted-printable and base64 keep the message 7-bit, so it is sent byte for byte.
    # Outlook and Gmail read the invitation from the alternative whose method= matches
    # METHOD; Apple Mail and others from the attachment. Base64 keeps its CRLFs exact.
    if method is not None and invitation is not None:
        mixed, alternative = f"=_{digest}.0", f"=_{digest}.1"
        calendar = _base64(invitation)
        body = [
            _boundary_line("mixed", mixed),
            f"\r\n--{mixed}\r\n",
            _boundary_line("alternative", alternative),
            f"\r\n--{alternative}\r\n",
            _TEXT_PART.format("plain"),
            _quoted_printable(text),
            f"\r\n--{alternative}\r\n",
            _TEXT_PART.format("html"),
            _quoted_printable(html),
            f"\r\n--{alternative}\r\n",
            "Content-Transfer-Encoding: base64\r\n",
            f'Content-Type: text/calendar; method="{method.value}"; charset="UTF-8"\r\n\r\n',
            calendar,
            f"\r\n--{alternative}--\r\n",
            f"\r\n--{mixed}\r\n",
            "Content-Transfer-Encoding: base64\r\n",
            'Content-Disposition: attachment; filename="invite.ics"\r\n',
            'Content-Type: application/ics; name="invite.ics"\r\n\r\n',
            calendar,
            f"\r\n--{mixed}--\r\n",
        ]
    else:
        alternative = f"=_{digest}.0"
        body = [
            _boundary_line("alternative", alternative),
            f"\r\n--{alternative}\r\n",
            _TEXT_PART.format("plain"),
            _quoted_printable(text),
            f"\r\n--{alternative}\r\n",
            _TEXT_PART.format("html"),
            _quoted_printable(html),
            f"\r\n--{alternative}--\r\n",
        ]
    return RenderedEmail(subject=subject, message="".join(head) + "".join(body))


# --- stored facts: what the outbox row keeps, rendered by the dispatcher --------------------------


def _party_facts(party: Party) -> list[str]:
    return [party.name, party.email, party.time_zone]


def _party(facts: list[str]) -> Party:
    name, email, time_zone = facts
    return Party(name, email, time_zone)


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def mail_facts(mail: BookingMail) -> dict[str, Any]:
    """``mail`` as JSON (made once per change, shared by its emails' rows)."""
    return {
        "booking_id": mail.booking_id,
        "booking_uid": mail.booking_uid,
        "ical_uid": mail.ical_uid,
        "sequence": mail.sequence,
        "title": mail.title,
        "start": mail.start.isoformat(),
        "end": mail.end.isoformat(),
        "organizer": _party_facts(mail.organizer),
        "hosts": [_party_facts(p) for p in mail.hosts],
        "attendees": [_party_facts(p) for p in mail.attendees],
        "location": mail.location,
        "description": mail.description,
        "responses": [list(pair) for pair in mail.responses],
        "cancellation_reason": mail.cancellation_reason,
        "rejection_reason": mail.rejection_reason,
        "previous_start": mail.previous_start.isoformat() if mail.previous_start else None,
        "previous_end": mail.previous_end.isoformat() if mail.previous_end else None,
    }


def mail_from_facts(facts: dict[str, Any]) -> BookingMail:
    start, end = _instant(facts["start"]), _instant(facts["end"])
    assert start is not None and end is not None
    return BookingMail(
        booking_id=facts["booking_id"],
        booking_uid=facts["booking_uid"],
        ical_uid=facts["ical_uid"],
        sequence=facts["sequence"],
        title=facts["title"],
        start=start,
        end=end,
        organizer=_party(facts["organizer"]),
        hosts=tuple(_party(p) for p in facts["hosts"]),
        attendees=tuple(_party(p) for p in facts["attendees"]),
        location=facts["location"],
        description=facts["description"],
        responses=tuple((label, answer) for label, answer in facts["responses"]),
        cancellation_reason=facts["cancellation_reason"],
        rejection_reason=facts["rejection_reason"],
        previous_start=_instant(facts["previous_start"]),
        previous_end=_instant(facts["previous_end"]),
    )


def stored_facts(
    mail: dict[str, Any], recipient: Party, *, sender: str, stamp: datetime, change: str
) -> dict[str, Any]:
    """What an outbox row keeps to render its message later: ``mail`` (`mail_facts`, shared
    by the change's rows), the recipient, the From, the stamp (Date and DTSTAMP) and
    ``change``, a token the rows of one change share (their invitation is built once)."""
    return {
        "mail": mail,
        "recipient": _party_facts(recipient),
        "sender": sender,
        "stamp": stamp.astimezone(UTC).isoformat(),
        "change": change,
    }


@dataclass(slots=True)
class SharedByChange:
    """What the emails of one change (`stored_facts`' ``change``) share when one process
    renders them one after another (the dispatcher's batch): the change's facts read once
    into a `BookingMail`, and its invitation per method, built once. A row whose mail facts
    differ from the ones read (never seen: the change's rows are written from one dict) is
    read afresh and its invitations built anew."""

    invitations: dict[ItipMethod, bytes] = field(default_factory=dict)
    mail_facts: dict[str, Any] | None = None
    mail: BookingMail | None = None

    def mail_of(self, mail_facts: dict[str, Any]) -> BookingMail:
        if self.mail is None or mail_facts != self.mail_facts:
            if self.mail is not None:
                self.invitations = {}
            self.mail_facts, self.mail = mail_facts, mail_from_facts(mail_facts)
        return self.mail


def render_stored(
    facts: dict[str, Any],
    kind: str,
    message_id: str,
    *,
    invitations: dict[ItipMethod, bytes] | None = None,
    shared: SharedByChange | None = None,
) -> RenderedEmail:
    """The message an outbox row's ``facts`` (`stored_facts`) describe: the same bytes every
    time. ``message_id`` without angle brackets, as the row keeps it; ``invitations`` as for
    `render_email`, shared only by rows of the same change; or ``shared``, for the rows of one
    change: their mail read once and their invitations (``invitations`` is then ignored)."""
    if shared is not None:
        mail = shared.mail_of(facts["mail"])
        invitations = shared.invitations
    else:
        mail = mail_from_facts(facts["mail"])
    return render_email(
        mail,
        MailKind(kind),
        _party(facts["recipient"]),
        sender=facts["sender"],
        message_id=f"<{message_id}>",
        stamp=datetime.fromisoformat(facts["stamp"]),
        invitations=invitations,
    )
