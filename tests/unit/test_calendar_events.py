"""The busy-time rules (providers/events.py): iCalendar text → busy periods in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bookable.calendars.providers.base import BusyRules
from bookable.calendars.providers.events import (
    MAX_OCCURRENCES_PER_READ,
    OccurrenceBudget,
    TooManyOccurrences,
    UnreadableCalendarData,
    busy_periods,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
RULES = BusyRules(zone=BERLIN, owner_emails=frozenset({"Owner@Example.com"}))


def calendar(*events: str) -> str:
    body = "".join(f"BEGIN:VEVENT\n{event.strip()}\nEND:VEVENT\n" for event in events)
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//test//EN\n{body}END:VCALENDAR\n"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def spans(text: str, start: datetime, end: datetime, rules: BusyRules = RULES) -> list[tuple]:
    return [(p.start, p.end) for p in busy_periods(text, start, end, rules)]


JAN = (utc(2030, 1, 1), utc(2030, 2, 1))


def test_single_event_in_utc_with_its_uid() -> None:
    text = calendar("UID:one\nDTSTART:20300110T090000Z\nDTEND:20300110T100000Z")
    periods = busy_periods(text, *JAN, RULES)
    assert [(p.start, p.end, p.uid) for p in periods] == [
        (utc(2030, 1, 10, 9), utc(2030, 1, 10, 10), "one")
    ]


def test_zoned_event_is_converted_to_utc() -> None:
    text = calendar(
        "UID:z\nDTSTART;TZID=America/New_York:20300110T090000\n"
        "DTEND;TZID=America/New_York:20300110T100000"
    )
    assert spans(text, *JAN) == [(utc(2030, 1, 10, 14), utc(2030, 1, 10, 15))]


def test_all_day_event_blocks_the_local_day_of_the_host() -> None:
    text = calendar("UID:a\nDTSTART;VALUE=DATE:20300110\nDTEND;VALUE=DATE:20300111")
    # Berlin is UTC+1 in January: the local day is 23:00 → 23:00 UTC.
    assert spans(text, *JAN) == [(utc(2030, 1, 9, 23), utc(2030, 1, 10, 23))]
    ny = BusyRules(zone=NEW_YORK)
    assert spans(text, *JAN, ny) == [(utc(2030, 1, 10, 5), utc(2030, 1, 11, 5))]


def test_all_day_event_without_dtend_lasts_one_day() -> None:
    text = calendar("UID:a\nDTSTART;VALUE=DATE:20300110")
    assert spans(text, *JAN) == [(utc(2030, 1, 9, 23), utc(2030, 1, 10, 23))]


def test_floating_time_is_read_in_the_hosts_zone() -> None:
    text = calendar("UID:f\nDTSTART:20300110T090000\nDTEND:20300110T100000")
    assert spans(text, *JAN) == [(utc(2030, 1, 10, 8), utc(2030, 1, 10, 9))]
    assert spans(text, *JAN, BusyRules(zone=NEW_YORK)) == [
        (utc(2030, 1, 10, 14), utc(2030, 1, 10, 15))
    ]


def test_duration_and_zero_length() -> None:
    text = calendar(
        "UID:d\nDTSTART:20300110T090000Z\nDURATION:PT90M",
        "UID:zero\nDTSTART:20300111T090000Z",
    )
    assert spans(text, *JAN) == [(utc(2030, 1, 10, 9), utc(2030, 1, 10, 10, 30))]


@pytest.mark.parametrize(
    "marker",
    [
        "TRANSP:TRANSPARENT",
        "X-MICROSOFT-CDO-INTENDEDSTATUS:FREE",
        "X-MICROSOFT-CDO-BUSYSTATUS:FREE",
    ],
)
def test_free_events_do_not_block_unless_transparent_is_busy(marker: str) -> None:
    text = calendar(f"UID:t\nDTSTART:20300110T090000Z\nDTEND:20300110T100000Z\n{marker}")
    assert spans(text, *JAN) == []
    busy_anyway = BusyRules(zone=BERLIN, transparent_is_busy=True)
    assert spans(text, *JAN, busy_anyway) == [(utc(2030, 1, 10, 9), utc(2030, 1, 10, 10))]


def test_opaque_event_blocks() -> None:
    text = calendar("UID:o\nDTSTART:20300110T090000Z\nDTEND:20300110T100000Z\nTRANSP:OPAQUE")
    assert len(spans(text, *JAN)) == 1


def test_cancelled_event_does_not_block() -> None:
    text = calendar("UID:c\nDTSTART:20300110T090000Z\nDTEND:20300110T100000Z\nSTATUS:CANCELLED")
    assert spans(text, *JAN) == []


INVITE = (
    "UID:i\nDTSTART:20300110T090000Z\nDTEND:20300110T100000Z\n"
    "ORGANIZER:mailto:boss@example.com\n"
    "ATTENDEE;PARTSTAT=ACCEPTED:mailto:boss@example.com\n"
    "ATTENDEE;PARTSTAT={answer}:MAILTO:owner@example.COM"
)


def test_declined_invitation_does_not_block() -> None:
    assert spans(calendar(INVITE.format(answer="DECLINED")), *JAN) == []
    assert len(spans(calendar(INVITE.format(answer="ACCEPTED")), *JAN)) == 1


def test_someone_elses_decline_still_blocks() -> None:
    text = calendar(
        INVITE.format(answer="ACCEPTED").replace("ACCEPTED:mailto:boss", "DECLINED:mailto:boss")
    )
    assert len(spans(text, *JAN)) == 1


@pytest.mark.parametrize("answer", ["NEEDS-ACTION", "TENTATIVE"])
def test_unanswered_and_tentative_follow_the_setting(answer: str) -> None:
    text = calendar(INVITE.format(answer=answer))
    assert len(spans(text, *JAN)) == 1  # the default: busy
    relaxed = BusyRules(zone=BERLIN, owner_emails=RULES.owner_emails, tentative_is_busy=False)
    assert spans(text, *JAN, relaxed) == []


def test_tentative_status_follows_the_setting() -> None:
    text = calendar("UID:t\nDTSTART:20300110T090000Z\nDTEND:20300110T100000Z\nSTATUS:TENTATIVE")
    assert len(spans(text, *JAN)) == 1
    assert spans(text, *JAN, BusyRules(zone=BERLIN, tentative_is_busy=False)) == []


def test_weekly_with_exdate_and_a_moved_occurrence() -> None:
    text = calendar(
        "UID:w\nDTSTART;TZID=Europe/Berlin:20300107T100000\n"
        "DTEND;TZID=Europe/Berlin:20300107T110000\nRRULE:FREQ=WEEKLY;COUNT=5\n"
        "EXDATE;TZID=Europe/Berlin:20300114T100000",
        "UID:w\nRECURRENCE-ID;TZID=Europe/Berlin:20300121T100000\n"
        "DTSTART;TZID=Europe/Berlin:20300122T150000\nDTEND;TZID=Europe/Berlin:20300122T160000",
    )
    assert spans(text, *JAN) == [
        (utc(2030, 1, 7, 9), utc(2030, 1, 7, 10)),
        # the 14th is excluded; the 21st moved to the 22nd at 15:00 and blocks only there
        (utc(2030, 1, 22, 14), utc(2030, 1, 22, 15)),
        (utc(2030, 1, 28, 9), utc(2030, 1, 28, 10)),
    ]


def test_a_cancelled_occurrence_of_a_series_does_not_block() -> None:
    text = calendar(
        "UID:w\nDTSTART:20300107T100000Z\nDTEND:20300107T110000Z\nRRULE:FREQ=WEEKLY;COUNT=2",
        "UID:w\nRECURRENCE-ID:20300114T100000Z\nDTSTART:20300114T100000Z\n"
        "DTEND:20300114T110000Z\nSTATUS:CANCELLED",
    )
    assert spans(text, *JAN) == [(utc(2030, 1, 7, 10), utc(2030, 1, 7, 11))]


def test_rdate_adds_an_occurrence() -> None:
    text = calendar(
        "UID:r\nDTSTART:20300107T100000Z\nDTEND:20300107T110000Z\nRDATE:20300109T120000Z"
    )
    assert spans(text, *JAN) == [
        (utc(2030, 1, 7, 10), utc(2030, 1, 7, 11)),
        (utc(2030, 1, 9, 12), utc(2030, 1, 9, 13)),
    ]


def test_daily_across_the_dst_change_keeps_local_time() -> None:
    text = calendar(
        "UID:dst\nDTSTART;TZID=Europe/Berlin:20300329T090000\n"
        "DTEND;TZID=Europe/Berlin:20300329T100000\nRRULE:FREQ=DAILY;COUNT=3"
    )
    # Berlin moves to summer time on 31 March 2030: 09:00 local is 08:00 UTC before, 07:00 after.
    assert spans(text, utc(2030, 3, 29), utc(2030, 4, 2)) == [
        (utc(2030, 3, 29, 8), utc(2030, 3, 29, 9)),
        (utc(2030, 3, 30, 8), utc(2030, 3, 30, 9)),
        (utc(2030, 3, 31, 7), utc(2030, 3, 31, 8)),
    ]


def test_all_day_on_the_dst_day_is_23_hours() -> None:
    text = calendar("UID:a\nDTSTART;VALUE=DATE:20300331\nDTEND;VALUE=DATE:20300401")
    assert spans(text, utc(2030, 3, 29), utc(2030, 4, 2)) == [
        (utc(2030, 3, 30, 23), utc(2030, 3, 31, 22))
    ]


def test_hourly_rule_is_expanded() -> None:
    text = calendar(
        "UID:h\nDTSTART:20300110T090000Z\nDTEND:20300110T091500Z\nRRULE:FREQ=HOURLY;COUNT=4"
    )
    assert [s for s, _ in spans(text, *JAN)] == [utc(2030, 1, 10, h) for h in (9, 10, 11, 12)]


def test_an_occurrence_that_began_before_the_window_counts() -> None:
    text = calendar(
        "UID:long\nDTSTART:20300109T220000Z\nDTEND:20300110T020000Z",
        "UID:weekly\nDTSTART:20291231T230000Z\nDTEND:20300101T010000Z\nRRULE:FREQ=WEEKLY",
    )
    window = (utc(2030, 1, 10), utc(2030, 1, 11))
    assert spans(text, *window) == [(utc(2030, 1, 9, 22), utc(2030, 1, 10, 2))]
    weekly = spans(text, utc(2030, 1, 8), utc(2030, 1, 8, 0, 30))
    assert weekly == [(utc(2030, 1, 7, 23), utc(2030, 1, 8, 1))]


def test_an_event_ending_at_the_window_start_does_not_count() -> None:
    text = calendar("UID:e\nDTSTART:20300109T220000Z\nDTEND:20300110T000000Z")
    assert spans(text, utc(2030, 1, 10), utc(2030, 1, 11)) == []


def test_the_occurrence_cap_fails_the_read_instead_of_exhausting_memory() -> None:
    every_minute = calendar(
        "UID:m\nDTSTART:20300101T000000Z\nDTEND:20300101T000030Z\nRRULE:FREQ=MINUTELY"
    )
    # A day of it is fine (1,440 + the widening) ...
    assert len(spans(every_minute, utc(2030, 1, 10), utc(2030, 1, 11))) == 1440
    # ... a month is more than the cap.
    with pytest.raises(TooManyOccurrences):
        busy_periods(every_minute, *JAN, RULES)
    # Counted before it is expanded: a per-second rule that began years ago fails at once, even
    # for a one-minute range (dateutil would walk every second since its start).
    every_second = calendar("UID:s\nDTSTART:20200101T000000Z\nRRULE:FREQ=SECONDLY\nDURATION:PT1S")
    with pytest.raises(TooManyOccurrences):
        busy_periods(every_second, utc(2030, 1, 10), utc(2030, 1, 10, 0, 1), RULES)
    # With a COUNT it is cheap wherever it lies.
    short = calendar("UID:c\nDTSTART:20300110T000000Z\nRRULE:FREQ=SECONDLY;COUNT=5\nDURATION:PT1S")
    assert len(spans(short, *JAN)) == 5


def test_the_budget_is_shared_between_objects() -> None:
    text = calendar("UID:h\nDTSTART:20300101T000000Z\nDURATION:PT1M\nRRULE:FREQ=HOURLY")
    budget = OccurrenceBudget()
    busy_periods(text, *JAN, RULES, budget=budget)
    assert budget.left < MAX_OCCURRENCES_PER_READ - 24 * 31
    budget = OccurrenceBudget(left=10)
    with pytest.raises(TooManyOccurrences):
        busy_periods(text, *JAN, RULES, budget=budget)


@pytest.mark.parametrize("text", ["not a calendar", "BEGIN:VEVENT\nEND:VEVENT\n", ""])
def test_unreadable_data_is_an_error(text: str) -> None:
    with pytest.raises(UnreadableCalendarData):
        busy_periods(text, *JAN, RULES)


def test_a_bad_rule_is_an_error() -> None:
    text = calendar("UID:b\nDTSTART:20300110T090000Z\nDURATION:PT1H\nRRULE:FREQ=SOMETIMES")
    with pytest.raises(UnreadableCalendarData):
        busy_periods(text, *JAN, RULES)


def test_a_short_per_minute_rule_is_expanded_in_order() -> None:
    text = calendar(
        "UID:m\nDTSTART:20300110T225800Z\nDTEND:20300110T230200Z\nRRULE:FREQ=MINUTELY;INTERVAL=30",
        "UID:x\nDTSTART:20300110T120000Z\nDTEND:20300110T130000Z",
    )
    periods = busy_periods(text, utc(2030, 1, 10, 22), utc(2030, 1, 11, 1), RULES)
    assert [p.start for p in periods] == [
        utc(2030, 1, 10, 22, 58),
        utc(2030, 1, 10, 23, 28),
        utc(2030, 1, 10, 23, 58),
        utc(2030, 1, 11, 0, 28),
        utc(2030, 1, 11, 0, 58),
    ]
