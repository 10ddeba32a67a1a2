"""One booking as an iCalendar object (RFC 5545), ready to PUT into a CalDAV calendar.

Pure: no I/O. Built with ``icalendar`` so escaping, folding and the VTIMEZONE are the library's.
The times carry the organiser's TZID with its VTIMEZONE, so calendar apps show the booking in the
organiser's zone and move it correctly across DST. ``SCHEDULE-AGENT=CLIENT`` on the organiser and
every attendee tells servers with scheduling (Fastmail, iCloud...) not to send invitations of
their own (Cal.com #9485: duplicate invitations in UTC). No METHOD: a calendar object stored with
PUT is not an iTIP message (RFC 4791 4.1).

With ``method`` the same event becomes an iTIP message for email (RFC 5546, iMIP RFC 6047):
METHOD on the VCALENDAR, attendees asked to answer (``RSVP=TRUE``), no ``SCHEDULE-AGENT`` (a
parameter for CalDAV storage that mail clients need not know), and ``STATUS:CANCELLED`` for CANCEL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress, vText

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
    """The calendar object's bytes (CRLF line ends, folded at 75 octets)."""
    return build_calendar(draft, stamp=stamp, method=method).to_ical()
