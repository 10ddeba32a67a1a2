"""One booking as an iCalendar object (RFC 5545), ready to PUT into a CalDAV calendar.

Pure: no I/O. `build_ics` writes the text by hand, byte for byte as ``icalendar`` writes
`build_calendar`'s object (its ``to_ical`` was ~65 % of rendering a booking email):
``tests/unit/test_calendar_ical_writer.py`` compares the two by hypothesis (hostile texts, every
zone, method and status), and ``icalendar`` stays for everything we parse. The times carry the
organiser's TZID with its VTIMEZONE, so calendar apps show the booking in the organiser's zone
and move it correctly across DST. ``SCHEDULE-AGENT=CLIENT`` on the organiser and every attendee
tells servers with scheduling (Fastmail, iCloud...) not to send invitations of their own
(Cal.com #9485: duplicate invitations in UTC). No METHOD: a calendar object stored with
PUT is not an iTIP message (RFC 4791 4.1).

With ``method`` the same event becomes an iTIP message for email (RFC 5546, iMIP RFC 6047):
METHOD on the VCALENDAR, attendees asked to answer (``RSVP=TRUE``), no ``SCHEDULE-AGENT`` (a
parameter for CalDAV storage that mail clients need not know), and ``STATUS:CANCELLED`` for CANCEL.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vCalAddress, vText
from icalendar.timezone.tzid import tzid_from_tzinfo

PRODID = "-//Bookable//Bookable scheduling server//EN"

# The VTIMEZONE describes the zone this long before and after the event: enough for any
# calendar app to place it, without every transition since 1970.
ZONE_MARGIN = timedelta(days=366)


class ItipMethod(StrEnum):
    """The iTIP methods an organiser sends by email (RFC 5546 3.2)."""

    REQUEST = "REQUEST"  # a new event, or a new version of one (a higher SEQUENCE)
    CANCEL = "CANCEL"  # the event is off


class EventStatus(StrEnum):
    CONFIRMED = "CONFIRMED"
    TENTATIVE = "TENTATIVE"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class EventDraft:
    """What one booking's calendar event says. ``start``/``end`` are aware datetimes (any zone;
    they are written in ``organizer_zone``). ``sequence`` goes up with every change (RFC 5545
    3.8.7.4), so apps replace their copy."""

    uid: str
    sequence: int
    start: datetime
    end: datetime
    organizer_zone: str
    summary: str
    organizer: Person
    attendees: tuple[Person, ...] = ()
    description: str | None = None
    location: str | None = None
    status: EventStatus = EventStatus.CONFIRMED

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.sequence < 0:
            raise ValueError("sequence must not be negative")
        if not self.uid:
            raise ValueError("uid must not be empty")


def _address(person: Person, role: str | None, *, itip: bool = False) -> vCalAddress:
    address = vCalAddress(f"mailto:{person.email}")
    if person.name:
        address.params["CN"] = vText(person.name)
    if role is not None:
        address.params["ROLE"] = role
        address.params["PARTSTAT"] = "NEEDS-ACTION"
        if itip:
            address.params["RSVP"] = "TRUE"
    if not itip:
        address.params["SCHEDULE-AGENT"] = "CLIENT"
    return address


def _in_zone(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone)


def build_calendar(
    draft: EventDraft, *, stamp: datetime | None = None, method: str | None = None
) -> Calendar:
    """The VCALENDAR with one VEVENT (and the organiser's VTIMEZONE). ``stamp`` is DTSTAMP
    (now when not given). ``method`` (REQUEST or CANCEL) makes it an iTIP message for email;
    SEQUENCE stays ``draft.sequence``, so the caller decides how far it goes up."""
    zone = ZoneInfo(draft.organizer_zone)  # ZoneInfoNotFoundError for an unknown name
    itip = ItipMethod(method) if method is not None else None  # ValueError for another method
    status = EventStatus.CANCELLED if itip is ItipMethod.CANCEL else draft.status
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    if itip is not None:
        calendar.add("method", itip.value)

    event = Event()
    event.add("uid", draft.uid)
    event.add("dtstamp", (stamp or datetime.now(UTC)).astimezone(UTC))
    utc_zone = draft.organizer_zone.upper() in {"UTC", "ETC/UTC", "Z"}
    # UTC is written with Z (no VTIMEZONE needed); any other zone with its TZID.
    event.add("dtstart", draft.start.astimezone(UTC) if utc_zone else _in_zone(draft.start, zone))
    event.add("dtend", draft.end.astimezone(UTC) if utc_zone else _in_zone(draft.end, zone))
    event.add("sequence", draft.sequence)
    event.add("status", status.value)
    event.add("summary", draft.summary)
    if draft.description:
        event.add("description", draft.description)
    if draft.location:
        event.add("location", draft.location)
    event.add("transp", "TRANSPARENT" if status is EventStatus.CANCELLED else "OPAQUE")
    event.add("organizer", _address(draft.organizer, None, itip=itip is not None))
    for attendee in draft.attendees:
        event.add("attendee", _address(attendee, "REQ-PARTICIPANT", itip=itip is not None))
    calendar.add_component(event)

    if not utc_zone:
        first: date = (draft.start - ZONE_MARGIN).date()
        last: date = (draft.end + ZONE_MARGIN).date()
        calendar.add_missing_timezones(first_date=first, last_date=last)
    return calendar


def build_ics(
    draft: EventDraft, *, stamp: datetime | None = None, method: str | None = None
) -> bytes:
    """The calendar object's bytes (CRLF line ends, folded at 75 octets): what
    ``build_calendar(draft, stamp=stamp, method=method).to_ical()`` returns, written directly."""
    zone = ZoneInfo(draft.organizer_zone)  # ZoneInfoNotFoundError for an unknown name
    itip = ItipMethod(method) if method is not None else None  # ValueError for another method
    status = EventStatus.CANCELLED if itip is ItipMethod.CANCEL else draft.status
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{_text(PRODID)}", "CALSCALE:GREGORIAN"]
    if itip is not None:
        lines.append(f"METHOD:{itip.value}")

    utc_zone = draft.organizer_zone.upper() in {"UTC", "ETC/UTC", "Z"}
    tzid = None if utc_zone else _tzid(zone)
    vtimezone = None
    if tzid is None:  # written in UTC, with Z
        start = _moment(draft.start.astimezone(UTC), "Z")
        end = _moment(draft.end.astimezone(UTC), "Z")
        when = ":"
    else:
        start = _moment(draft.start.astimezone(zone), "")
        end = _moment(draft.end.astimezone(zone), "")
        when = f";TZID={_param(tzid)}:"
        first: date = (draft.start - ZONE_MARGIN).date()
        last: date = (draft.end + ZONE_MARGIN).date()
        # Written and folded already (cached): kept apart, not folded again.
        vtimezone = _vtimezone_text(tzid, first, last)

    calendar = "\r\n".join(map(_fold, lines))
    # The library's order: SUMMARY, DTSTART, DTEND, DTSTAMP, UID, SEQUENCE, then by name.
    lines = ["BEGIN:VEVENT"]
    lines.append(f"SUMMARY:{_text(draft.summary)}")
    lines.append(f"DTSTART{when}{start}")
    lines.append(f"DTEND{when}{end}")
    lines.append(f"DTSTAMP:{_moment((stamp or datetime.now(UTC)).astimezone(UTC), 'Z')}")
    lines.append(f"UID:{_text(draft.uid)}")
    lines.append(f"SEQUENCE:{draft.sequence}")
    for attendee in draft.attendees:
        lines.append(_address_line("ATTENDEE", attendee, "REQ-PARTICIPANT", itip=itip is not None))
    if draft.description:
        lines.append(f"DESCRIPTION:{_text(draft.description)}")
    if draft.location:
        lines.append(f"LOCATION:{_text(draft.location)}")
    lines.append(_address_line("ORGANIZER", draft.organizer, None, itip=itip is not None))
    lines.append(f"STATUS:{status.value}")
    lines.append(f"TRANSP:{'TRANSPARENT' if status is EventStatus.CANCELLED else 'OPAQUE'}")
    lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    event = "\r\n".join(map(_fold, lines))
    if vtimezone is not None:
        return f"{calendar}\r\n{vtimezone}\r\n{event}\r\n".encode()
    return f"{calendar}\r\n{event}\r\n".encode()


# --- writing it as icalendar 7 does ---------------------------------------------------------------


def _text(value: str) -> str:
    """A TEXT value escaped (RFC 5545 3.3.11), replacements in icalendar's order."""
    return (
        value.replace(r"\N", "\n")
        .replace("\\", "\\\\")
        .replace(";", r"\;")
        .replace(",", r"\,")
        .replace("\r\n", r"\n")
        .replace("\n", r"\n")
        .replace("\r", r"\n")
    )


_RFC_6868 = re.compile(r'\^|\r\n|\r|\n|"')
_RFC_6868_CODES = {"^": "^^", "\n": "^n", "\r": "^n", "\r\n": "^n", '"': "^'"}
_QUOTABLE = re.compile("[,;:\u2019]")  # what icalendar quotes (a right single quote too)
_CN_QUOTED = " '"  # what else makes icalendar quote a CN


def _param(value: str, *, also: str = "") -> str:
    """A parameter value: RFC 6868 escapes, quoted when it holds , ; : or U+2019, or one of
    ``also`` (icalendar quotes CN holding a space or ')."""
    quote = any(character in value for character in also)
    value = _RFC_6868.sub(lambda found: _RFC_6868_CODES[found.group(0)], value)
    value = value.replace('"', "'")
    return f'"{value}"' if quote or _QUOTABLE.search(value) else value


def _address_line(name: str, person: Person, role: str | None, *, itip: bool) -> str:
    """As `_address`'s vCalAddress: parameters sorted by name, the address as it is."""
    params = []
    if person.name:
        params.append(f"CN={_param(person.name, also=_CN_QUOTED)}")
    if role is not None:
        params.append("PARTSTAT=NEEDS-ACTION")
        params.append(f"ROLE={role}")
        if itip:
            params.append("RSVP=TRUE")
    if not itip:
        params.append("SCHEDULE-AGENT=CLIENT")
    prefix = f"{name};{';'.join(params)}" if params else name
    return f"{prefix}:mailto:{person.email}"


def _moment(moment: datetime, suffix: str) -> str:
    return (
        f"{moment.year:04}{moment.month:02}{moment.day:02}"
        f"T{moment.hour:02}{moment.minute:02}{moment.second:02}{suffix}"
    )


def _fold(line: str) -> str:
    """icalendar's folding: a break before the character that would make a line reach 75
    octets (never inside a UTF-8 sequence), and never right after a backslash or caret."""
    if line.isascii():
        # One octet a character: pieces of 74 (73 when the 74th is a backslash or caret,
        # which then starts the next piece), cut by position instead of walked.
        if len(line) < 75:
            return line
        pieces: list[str] = []
        start = 0
        while len(line) - start > 74:
            stop = start + 74
            if line[stop - 1] in "\\^":
                stop -= 1
            pieces.append(line[start:stop])
            start = stop
        pieces.append(line[start:])
        return "\r\n ".join(pieces)
    if len(line) < 19 or len(line.encode("utf-8")) < 75:
        return line
    folded: list[str] = []
    current: list[str] = []
    count = 0
    for character in line:
        size = 1 if character < "\x80" else len(character.encode("utf-8"))
        if current and count + size >= 75:
            if len(current) > 1 and current[-1] in "\\^":
                kept = current.pop()
                folded.append("".join(current))
                current = [kept]
                count = len(kept.encode("utf-8"))
            else:
                folded.append("".join(current))
                current = []
                count = 0
        current.append(character)
        count += size
    folded.append("".join(current))
    return "\r\n ".join(folded)


@functools.cache
def _tzid(zone: ZoneInfo) -> str | None:
    """The TZID icalendar writes for ``zone``, None when it writes the times in UTC (Z)."""
    tzid = tzid_from_tzinfo(zone)
    return None if tzid in (None, "UTC") else tzid


@functools.lru_cache(maxsize=512)
def _vtimezone_text(tzid: str, first_date: date, last_date: date) -> str:
    """`_vtimezone`'s lines folded and joined by CRLF (no CRLF after the last)."""
    return "\r\n".join(map(_fold, _vtimezone(tzid, first_date, last_date)))


# The steps of icalendar's search for a zone's transitions (`Timezone.from_tzinfo`).
_SEARCH_STEPS: tuple[timedelta, ...] = tuple(Timezone._from_tzinfo_skip_search)


def _vtimezone(tzid: str, first_date: date, last_date: date) -> tuple[str, ...]:
    """The VTIMEZONE's lines, as ``Timezone.from_tzid(tzid, first_date=..., last_date=...)``
    makes them: the same search for the offsets' changes (plain ``zoneinfo`` arithmetic, as
    the library does for it), written directly. Not cached itself: its one caller,
    `_vtimezone_text`, keeps the folded text for the bookings of the same day."""
    first_moment = datetime(first_date.year, first_date.month, first_date.day)
    last_moment = datetime(last_date.year, last_date.month, last_date.day)
    # (offset from, offset to, name, standard) -> the local times it starts at
    offsets: dict[tuple[timedelta | None, timedelta, str, bool], list[datetime]] = defaultdict(list)
    start = first_moment
    offset_to: timedelta | None = None
    while start < last_moment:  # local times, naive: as the zone's own times compare
        offset_from = offset_to
        offset_to, name, standard, following = _zone_span(tzid, start)
        offsets[(offset_from, offset_to, name, standard)].append(start)
        start = following
    lines = [
        "BEGIN:VTIMEZONE",
        f"TZID:{_text(tzid)}",
        f"COMMENT:{_text(f'This timezone only works from {first_date} to {last_date}.')}",
    ]
    for (offset_from, offset_to, name, standard), starts in offsets.items():
        first_start = min(starts)
        starts.remove(first_start)
        if first_start.date() == last_date:
            first_start = datetime(last_date.year, last_date.month, last_date.day)
        kind = "STANDARD" if standard else "DAYLIGHT"
        lines.append(f"BEGIN:{kind}")
        lines.append(f"DTSTART:{_moment(first_start, '')}")
        if starts:
            lines.append(f"RDATE:{','.join(_moment(moment, '') for moment in starts)}")
        lines.append(f"TZNAME:{_text(name)}")
        lines.append(
            f"TZOFFSETFROM:{_offset(offset_from if offset_from is not None else offset_to)}"
        )
        lines.append(f"TZOFFSETTO:{_offset(offset_to)}")
        lines.append(f"END:{kind}")
    lines.append("END:VTIMEZONE")
    return tuple(lines)


# Cached: a search from a change of offset finds the next one whatever day the VTIMEZONE
# began on, so only each VTIMEZONE's first search (from its first day) is new.
@functools.lru_cache(maxsize=4096)
def _zone_span(tzid: str, start: datetime) -> tuple[timedelta, str, bool, datetime]:
    """From the local time ``start`` (naive) in ``tzid``, as icalendar's search walks it: the
    offset, its name (the offset's text when the zone has none), whether it is standard
    time, and where the next offset begins (local, naive): the last time still at this
    offset in steps from 64 days down to a second, plus the last step."""
    end = start.replace(tzinfo=ZoneInfo(tzid))
    name = end.tzname()
    standard = end.dst() == timedelta()
    offset_to = end.utcoffset()
    assert offset_to is not None
    for step in _SEARCH_STEPS:
        last_end = end
        end = end + step
        try:
            while end.utcoffset() == offset_to:
                last_end = end
                end = end + step
        except OverflowError:  # zoneinfo does not go all the way
            break
        end = last_end
    following = (end + _SEARCH_STEPS[-1]).replace(tzinfo=None)
    return offset_to, name if name is not None else str(offset_to), standard, following


@functools.lru_cache(maxsize=256)  # a zone has few offsets
def _offset(offset: timedelta) -> str:
    """As icalendar's vUTCOffset: +HHMM, or +HHMMSS when there are seconds."""
    sign = "-" if offset < timedelta(0) else "+"
    total = abs(int(offset.total_seconds()))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return (
        f"{sign}{hours:02}{minutes:02}{seconds:02}" if seconds else f"{sign}{hours:02}{minutes:02}"
    )
