"""`build_ics` writes by hand what ``icalendar`` writes for `build_calendar`'s object: the same
bytes for hostile texts (commas, semicolons, backslashes, carets, quotes, newlines, non-ASCII,
values long enough to fold, a multi-byte character at the fold), every zone this machine knows,
every method and status, dates near transitions and far from now."""

from __future__ import annotations

import zoneinfo
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from icalendar.parser import _foldline

from bookable.calendars import ical
from bookable.calendars.ical import (
    EventDraft,
    EventStatus,
    ItipMethod,
    Person,
    _fold,
    build_calendar,
    build_ics,
)

DETERMINISTIC = settings(
    derandomize=True,
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
ZONES = sorted(zoneinfo.available_timezones())
HOSTILE = st.sampled_from(
    [",", ";", ":", "\\", "\\N", "\\n", "^", '"', "'", "\u2019", "\n", "\r", "\r\n", " ", "é",
     "€", "😀", "漢", "\u00a0", "a" * 70, "mailto:", "=", "\t"]
)  # fmt: skip
TEXTS = st.one_of(
    st.lists(
        st.one_of(HOSTILE, st.text(st.characters(codec="utf-8"), max_size=20)), max_size=12
    ).map("".join),
    st.integers(60, 160).map(lambda size: "x" * size + "é€😀"),
)
ONE_LINE = TEXTS.map(lambda text: text.replace("\r", " ").replace("\n", " "))
PEOPLE = st.builds(
    Person,
    name=st.one_of(st.just(""), ONE_LINE),
    email=st.sampled_from(["ann@example.com", "o'neil+x@sub.example.co.uk", "e" * 70 + "@x.io"]),
)
INSTANTS = st.one_of(
    st.datetimes(
        min_value=datetime(1902, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    # Around this decade's DST changes (the last Sunday of March and of October in Europe...).
    st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2032, 1, 1), timezones=st.just(UTC)
    ),
)


def by_icalendar(draft: EventDraft, stamp: datetime, method: str | None) -> bytes:
    return build_calendar(draft, stamp=stamp, method=method).to_ical()


@DETERMINISTIC
@given(
    uid=st.one_of(st.just("bk7Qx2@bookable"), TEXTS.filter(bool)),
    sequence=st.integers(0, 10_000),
    start=INSTANTS,
    minutes=st.integers(1, 60 * 24 * 3),
    zone=st.sampled_from(["UTC", "Etc/UTC", "Europe/London", *ZONES]),
    summary=TEXTS,
    organizer=PEOPLE,
    attendees=st.lists(PEOPLE, max_size=3),
    description=st.one_of(st.none(), TEXTS),
    location=st.one_of(st.none(), TEXTS),
    status=st.sampled_from(list(EventStatus)),
    method=st.sampled_from([None, *ItipMethod]),
    stamp=INSTANTS,
)
@example(  # a CN whose quote turns into ^' and a fold falling right after a backslash
    uid="u",
    sequence=0,
    start=datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
    minutes=30,
    zone="Europe/London",
    summary="a" * 64 + "\\,\\;é" * 10,
    organizer=Person('Ann "A" O\'Neil, PhD', "ann@example.com"),
    attendees=[Person("x" * 80, "b@example.com")],
    description="line\nline\r\nline\\N",
    location="https://x.test/a?b=c,d;e",
    status=EventStatus.TENTATIVE,
    method=ItipMethod.REQUEST,
    stamp=datetime(2026, 1, 5, 12, tzinfo=UTC),
)
def test_the_hand_writer_writes_what_icalendar_writes(
    uid: str,
    sequence: int,
    start: datetime,
    minutes: int,
    zone: str,
    summary: str,
    organizer: Person,
    attendees: list[Person],
    description: str | None,
    location: str | None,
    status: EventStatus,
    method: str | None,
    stamp: datetime,
) -> None:
    draft = EventDraft(
        uid=uid,
        sequence=sequence,
        start=start,
        end=start + timedelta(minutes=minutes),
        organizer_zone=zone,
        summary=summary,
        organizer=organizer,
        attendees=tuple(attendees),
        description=description,
        location=location,
        status=status,
    )
    assert build_ics(draft, stamp=stamp, method=method) == by_icalendar(draft, stamp, method)


def test_every_zone_is_written_as_icalendar_writes_it() -> None:
    """Each zone's VTIMEZONE (the hypothesis test above samples the zones)."""
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    stamp = datetime(2026, 1, 5, 12, tzinfo=UTC)
    for zone in ZONES:
        draft = EventDraft(
            uid="bk1@bookable",
            sequence=1,
            start=start,
            end=start + timedelta(minutes=45),
            organizer_zone=zone,
            summary="Intro call",
            organizer=Person("Olga Organizer", "olga@example.com"),
            attendees=(Person("Ann Attendee", "ann@example.com"),),
        )
        written = build_ics(draft, stamp=stamp, method="REQUEST")
        assert written == by_icalendar(draft, stamp, "REQUEST"), zone


def test_unknown_zones_and_methods_are_refused_as_before() -> None:
    draft = EventDraft(
        uid="u",
        sequence=0,
        start=datetime(2026, 1, 5, 9, tzinfo=UTC),
        end=datetime(2026, 1, 5, 10, tzinfo=UTC),
        organizer_zone="No/Where",
        summary="s",
        organizer=Person("", "o@example.com"),
    )
    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        build_ics(draft)
    with pytest.raises(ValueError, match="PUBLISH"):
        build_ics(replace(draft, organizer_zone="UTC"), method="PUBLISH")


# Lines made of what folding treats apart: the backslash and caret it never leaves at a piece's
# end, multi-byte characters (ASCII lines are cut by position, the rest walked).
_FOLD_PIECES = st.sampled_from(["a", "\\", "^", "\\n", "é", "€", "😀", " ", ";", "x" * 70])


@DETERMINISTIC
@given(line=st.one_of(st.lists(_FOLD_PIECES, max_size=60).map("".join), st.text(max_size=300)))
def test_lines_fold_as_icalendar_folds_them(line: str) -> None:
    line = line.replace("\r", " ").replace("\n", " ")
    assert _fold(line) == _foldline(line)


def test_ascii_lines_fold_as_icalendar_folds_them_at_every_length() -> None:
    """Every length up to four lines' worth, a backslash or caret at every position near
    the cuts: the fast path's cut at 74 characters, or 73 before an escape's start."""
    for length in range(0, 300):
        for fill in ("x", "\\", "^", "x\\", "xx^"):
            line = (fill * length)[:length]
            assert _fold(line) == _foldline(line), (fill, length)
            for at in range(max(0, length - 3), length):
                marked = line[:at] + "\\" + line[at + 1 :]
                assert _fold(marked) == _foldline(marked), (fill, length, at)


@pytest.mark.parametrize(
    "zone",
    ["Europe/London", "America/Santiago", "Africa/Casablanca", "Australia/Lord_Howe",
     "Asia/Gaza", "America/Sao_Paulo"],
)  # fmt: skip
def test_vtimezones_of_day_after_day_are_icalendars(zone: str) -> None:
    """The offset searches are cached across VTIMEZONEs (`_zone_span`): each day's is
    written from the searches of the days before it, as icalendar writes it from scratch.
    Zones with changes months apart, twice a year, a Ramadan pause, half an hour, none
    since 2019."""
    ical._zone_span.cache_clear()
    ical._vtimezone_text.cache_clear()
    stamp = datetime(2026, 1, 5, 12, tzinfo=UTC)
    first = datetime(2025, 9, 1, 10, tzinfo=UTC)
    for days in [*range(0, 40), *range(40, 800, 9)]:
        start = first + timedelta(days=days)
        draft = EventDraft(
            uid="bk1@bookable",
            sequence=0,
            start=start,
            end=start + timedelta(minutes=30),
            organizer_zone=zone,
            summary="Intro call",
            organizer=Person("Olga Organizer", "olga@example.com"),
        )
        written = build_ics(draft, stamp=stamp, method="REQUEST")
        assert written == by_icalendar(draft, stamp, "REQUEST"), (zone, start)
    if zone != "America/Sao_Paulo":  # no change to search from: nothing shared
        assert ical._zone_span.cache_info().hits > 0
