"""GET /slots' rendering: `slots_body` writes the JSON text itself; its bytes must be exactly
those of the dict GET /slots returned before (one dict per slot, serialized as FastAPI
serialized a `dict[str, Any]` response), whatever the slots, zone, seats and calendar errors."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from bookable.core.schemas import format_instant
from bookable.scheduling import Slot
from bookable.slots.endpoints import booker_zone
from bookable.slots.schemas import _utc_text, slots_body

# How FastAPI wrote the body from the endpoint's `dict[str, Any]`: validated, then dumped.
_RESPONSE = TypeAdapter(dict[str, Any])


def dict_rendering(
    slots: list[Slot], zone: ZoneInfo | None, calendar_errors: list[dict[str, Any]] | None
) -> bytes:
    """The former `slots_json` (a dict per slot) and FastAPI's serialization of its result."""
    grouping_zone = zone or UTC
    days: dict[str, list[dict[str, Any]]] = {}
    for slot in slots:
        local = slot.start.astimezone(grouping_zone)
        if zone is None:
            text = _utc_text(local)
        else:
            text = (local.replace(microsecond=0) if local.microsecond else local).isoformat()
        entry: dict[str, Any] = {"time": text}
        if slot.booking_uid is not None:
            entry["attendees"] = slot.attendees
            entry["bookingUid"] = slot.booking_uid
        days.setdefault(local.date().isoformat(), []).append(entry)
    body: dict[str, Any] = {"slots": days}
    if calendar_errors:
        body["calendarErrors"] = calendar_errors
    return _RESPONSE.dump_json(_RESPONSE.validate_python(body))


def test_utc_times_are_format_instants_text_grouped_by_their_utc_date() -> None:
    starts = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 30, 0, 1500, tzinfo=UTC),
        datetime(1000, 1, 1, 0, 0, 0, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, 5, 123456, tzinfo=UTC),
        datetime(2026, 10, 25, 23, 59, 59, 999, tzinfo=UTC),
        datetime(9999, 12, 31, 22, tzinfo=UTC),
    ]
    body = slots_body([Slot(s, s + timedelta(minutes=30)) for s in starts], None)
    assert body == (
        b'{"slots":{'
        + b",".join(
            f'"{s.date().isoformat()}":[{{"time":"{format_instant(s)}"}}]'.encode() for s in starts
        )
        + b"}}"
    )
    assert b'"2026-03-29":[{"time":"2026-03-29T01:30:05.123Z"}]' in body


# Every zone the server knows (with the booker's UTC spellings), and no zone at all.
ZONES = st.one_of(
    st.none(),
    st.sampled_from(["+00:00", "Z", "UTC", *sorted(available_timezones())]).map(booker_zone),
)
# Instants in years whose conversion to any zone stays within datetime's range.
INSTANTS = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
# Seated slots that already have a booking carry its uid and attendee count.
SEATS = st.one_of(
    st.none(), st.tuples(st.one_of(st.none(), st.integers(0, 10**6)), st.text(max_size=30))
)
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
CALENDAR_ERRORS = st.one_of(
    st.none(),
    st.lists(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4), max_size=3),
)


def slots_from(starts: list[datetime], seats: list[Any]) -> list[Slot]:
    out = []
    for start, seat in zip(starts, seats + [None] * len(starts), strict=False):
        attendees, uid = seat if seat is not None else (None, None)
        out.append(Slot(start, start + timedelta(minutes=30), attendees, uid))
    return out


@settings(max_examples=400, deadline=None)
@given(
    starts=st.lists(INSTANTS, max_size=40),
    seats=st.lists(SEATS, max_size=40),
    zone=ZONES,
    errors=CALENDAR_ERRORS,
    ordered=st.booleans(),
)
def test_the_text_is_the_dict_renderings_bytes(
    starts: list[datetime],
    seats: list[Any],
    zone: ZoneInfo | None,
    errors: list[dict[str, Any]] | None,
    ordered: bool,
) -> None:
    # The engine gives slots in order; any order is rendered as the dict did (first day first).
    slots = slots_from(sorted(starts) if ordered else starts, seats)
    assert slots_body(slots, zone, errors) == dict_rendering(slots, zone, errors)


@settings(max_examples=150, deadline=None)
@given(
    first=INSTANTS.filter(lambda d: d.year < 9990),
    step=st.integers(1, 24 * 60),
    count=st.integers(0, 400),
    zone=ZONES,
)
def test_a_grid_of_slots_across_days_and_transitions(
    first: datetime, step: int, count: int, zone: ZoneInfo | None
) -> None:
    # What the engine gives: a regular grid, many per day, crossing local midnights and DST.
    slots = slots_from([first + timedelta(minutes=step * i) for i in range(count)], [])
    assert slots_body(slots, zone) == dict_rendering(slots, zone, None)


def test_the_days_where_a_zone_falls_back_across_midnight() -> None:
    # America/Goose_Bay's clocks went from 00:01 (-03:00) back to 23:01 (-04:00) on
    # 2000-10-29: the day before comes back after midnight, and the dict kept it in its place.
    zone = ZoneInfo("America/Goose_Bay")
    first = datetime(2000, 10, 29, 2, 30, tzinfo=UTC)
    slots = slots_from([first + timedelta(minutes=30 * i) for i in range(6)], [])
    body = slots_body(slots, zone)
    assert body == dict_rendering(slots, zone, None)
    assert body.startswith(
        b'{"slots":{"2000-10-28":[{"time":"2000-10-28T23:30:00-03:00"},'
        b'{"time":"2000-10-28T23:30:00-04:00"}],"2000-10-29":[{"time":"2000-10-29T00:00:00-03:00"}'
    )
