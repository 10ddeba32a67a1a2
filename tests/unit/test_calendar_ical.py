"""The booking's iCalendar object: parsed back with icalendar and read as a calendar app would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar, Component

from bookable.calendars.ical import EventDraft, EventStatus, Person, build_ics

NEW_YORK = ZoneInfo("America/New_York")


def draft(**changes: object) -> EventDraft:
    values: dict[str, object] = {
        "uid": "booking-1@bookable.test",
        "sequence": 0,
        "start": datetime(2030, 1, 15, 14, 0, tzinfo=UTC),
        "end": datetime(2030, 1, 15, 14, 30, tzinfo=UTC),
        "organizer_zone": "America/New_York",
        "summary": "Intro call",
        "organizer": Person("Olga Organizer", "olga@example.com"),
        "attendees": (Person("Ada Attendee", "ada@example.com"),),
        "description": "First talk",
        "location": "https://meet.example.com/x",
    }
    values.update(changes)
    return EventDraft(**values)  # type: ignore[arg-type]


def parsed(event_draft: EventDraft) -> Calendar:
    return Calendar.from_ical(build_ics(event_draft))


def only_event(calendar: Calendar) -> Component:
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return events[0]


def test_round_trip_keeps_every_field() -> None:
    stamp = datetime(2029, 12, 1, 8, 0, tzinfo=UTC)
    text = build_ics(draft(sequence=3, status=EventStatus.TENTATIVE), stamp=stamp)
    calendar = Calendar.from_ical(text)
    assert "METHOD" not in calendar
    assert str(calendar["VERSION"]) == "2.0"
    event = only_event(calendar)
    assert str(event["UID"]) == "booking-1@bookable.test"
    assert int(event["SEQUENCE"]) == 3
    assert str(event["STATUS"]) == "TENTATIVE"
    assert str(event["SUMMARY"]) == "Intro call"
    assert str(event["DESCRIPTION"]) == "First talk"
    assert str(event["LOCATION"]) == "https://meet.example.com/x"
    assert event.decoded("DTSTAMP") == stamp
    assert event.decoded("DTSTART") == datetime(2030, 1, 15, 14, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2030, 1, 15, 14, 30, tzinfo=UTC)
    # Lines end with CRLF, as RFC 5545 requires.
    assert b"\r\n" in text and b"\n" not in text.replace(b"\r\n", b"")


def test_times_carry_the_organisers_zone_and_its_vtimezone() -> None:
    calendar = parsed(draft())
    event = only_event(calendar)
    assert event["DTSTART"].params["TZID"] == "America/New_York"
    assert event["DTEND"].params["TZID"] == "America/New_York"
    assert event.decoded("DTSTART").replace(tzinfo=None) == datetime(2030, 1, 15, 9, 0)
    zones = calendar.walk("VTIMEZONE")
    assert [str(zone["TZID"]) for zone in zones] == ["America/New_York"]


def test_times_are_right_across_the_march_dst_change() -> None:
    # 2030-03-10 02:00 New York clocks jump to 03:00: 06:30Z is 01:30 EST, 07:30Z is 03:30 EDT.
    start = datetime(2030, 3, 10, 6, 30, tzinfo=UTC)
    end = datetime(2030, 3, 10, 7, 30, tzinfo=UTC)
    text = build_ics(draft(start=start, end=end)).decode()
    assert "DTSTART;TZID=America/New_York:20300310T013000" in text
    assert "DTEND;TZID=America/New_York:20300310T033000" in text
    # Read back with only the VTIMEZONE the object carries (not the reader's zoneinfo), the
    # wall times map to the same instants: the embedded zone describes the change.
    calendar = Calendar.from_ical(text)
    zone = calendar.walk("VTIMEZONE")[0].to_tz()
    event = only_event(calendar)
    wall_start = event.decoded("DTSTART").replace(tzinfo=None)
    wall_end = event.decoded("DTEND").replace(tzinfo=None)
    assert wall_start.replace(tzinfo=zone).astimezone(UTC) == start
    assert wall_end.replace(tzinfo=zone).astimezone(UTC) == end
    # One hour of real time, though the wall clock shows two.
    real_start = event.decoded("DTSTART").astimezone(UTC)
    assert event.decoded("DTEND").astimezone(UTC) - real_start == timedelta(hours=1)


def test_a_start_in_another_zone_is_written_in_the_organisers_zone() -> None:
    start = datetime(2030, 7, 1, 18, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 16:00Z, 12:00 EDT
    event = only_event(parsed(draft(start=start, end=start + timedelta(hours=1))))
    assert event.decoded("DTSTART").replace(tzinfo=None) == datetime(2030, 7, 1, 12, 0)
    assert event.decoded("DTSTART") == start


def test_a_utc_organiser_gets_utc_times_without_a_vtimezone() -> None:
    text = build_ics(draft(organizer_zone="UTC")).decode()
    assert "DTSTART:20300115T140000Z" in text
    assert "BEGIN:VTIMEZONE" not in text


def test_organizer_and_attendees_have_the_scheduling_params() -> None:
    attendees = (Person("Ada Attendee", "ada@example.com"), Person("Bo", "bo@example.com"))
    event = only_event(parsed(draft(attendees=attendees)))
    organizer = event["ORGANIZER"]
    assert str(organizer) == "mailto:olga@example.com"
    assert organizer.params["CN"] == "Olga Organizer"
    assert organizer.params["SCHEDULE-AGENT"] == "CLIENT"
    found = event["ATTENDEE"]
    assert [str(a) for a in found] == ["mailto:ada@example.com", "mailto:bo@example.com"]
    for attendee in found:
        assert attendee.params["SCHEDULE-AGENT"] == "CLIENT"
        assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
        assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    assert [a.params["CN"] for a in found] == ["Ada Attendee", "Bo"]


def test_text_with_commas_semicolons_and_newlines_is_escaped() -> None:
    summary = "Call, then lunch; bring notes\nand slides"
    description = "Agenda:\n1) budget, Q3; Q4\n2) back\\slash"
    location = "Room 4, Floor 2; Main St"
    text = build_ics(
        draft(
            summary=summary,
            description=description,
            location=location,
            organizer=Person('Olga "O", Organizer; Jr', "olga@example.com"),
        )
    ).decode()
    unfolded = text.replace("\r\n ", "")
    assert "SUMMARY:Call\\, then lunch\\; bring notes\\nand slides\r\n" in unfolded
    assert "LOCATION:Room 4\\, Floor 2\\; Main St\r\n" in unfolded
    assert "DESCRIPTION:Agenda:\\n1) budget\\, Q3\\; Q4\\n2) back\\\\slash\r\n" in unfolded
    event = only_event(Calendar.from_ical(text))
    assert str(event["SUMMARY"]) == summary
    assert str(event["DESCRIPTION"]) == description
    assert str(event["LOCATION"]) == location
    assert event["ORGANIZER"].params["CN"] == 'Olga "O", Organizer; Jr'
    # Each content line is at most 75 octets (folded).
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))


def test_cancelled_status_is_written() -> None:
    event = only_event(parsed(draft(status=EventStatus.CANCELLED, sequence=2)))
    assert str(event["STATUS"]) == "CANCELLED"
    assert int(event["SEQUENCE"]) == 2


def test_missing_description_and_location_are_left_out() -> None:
    event = only_event(parsed(draft(description=None, location=None, attendees=())))
    assert "DESCRIPTION" not in event and "LOCATION" not in event and "ATTENDEE" not in event


@pytest.mark.parametrize(
    "changes",
    [
        {"start": datetime(2030, 1, 15, 14, 0)},  # naive
        {"end": datetime(2030, 1, 15, 13, 0, tzinfo=UTC)},  # before the start
        {"sequence": -1},
        {"uid": ""},
    ],
)
def test_impossible_drafts_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        draft(**changes)


def test_an_itip_request_asks_attendees_to_answer_without_scheduling_params() -> None:
    text = build_ics(draft(sequence=4), method="REQUEST")
    calendar = Calendar.from_ical(text)
    assert str(calendar["METHOD"]) == "REQUEST"
    event = only_event(calendar)
    assert int(event["SEQUENCE"]) == 4
    assert str(event["STATUS"]) == "CONFIRMED"
    assert "SCHEDULE-AGENT" not in event["ORGANIZER"].params
    attendee = event["ATTENDEE"]
    assert attendee.params["RSVP"] == "TRUE"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert "SCHEDULE-AGENT" not in attendee.params
    assert b"SCHEDULE-AGENT" not in text


def test_an_itip_cancel_is_cancelled_whatever_the_draft_says() -> None:
    calendar = Calendar.from_ical(build_ics(draft(sequence=2), method="CANCEL"))
    assert str(calendar["METHOD"]) == "CANCEL"
    event = only_event(calendar)
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["TRANSP"]) == "TRANSPARENT"
    # The caller chooses the SEQUENCE; the builder does not move it.
    assert int(event["SEQUENCE"]) == 2


def test_an_unknown_itip_method_is_refused() -> None:
    with pytest.raises(ValueError):
        build_ics(draft(), method="PUBLISH")
