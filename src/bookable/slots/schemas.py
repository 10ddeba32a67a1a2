"""Wire shape of GET /slots: `{"slots": {"YYYY-MM-DD": [{"time": ...}]}}`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.json_schema import SkipJsonSchema

from bookable.calendars.schemas import CalendarErrorOut
from bookable.core.schemas import format_instant
from bookable.scheduling import Slot


def _utc_text(utc: datetime) -> str:
    """`format_instant`'s text (2023-05-25T09:30:00.000Z) of a UTC instant by `isoformat`:
    strftime costs several times as much, once per slot. Years before 1000 keep
    `format_instant`, whose strftime does not pad them."""
    if utc.year < 1000:
        return format_instant(utc)
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


# The JSON of values whose text `slots_body` does not write itself (calendar errors, seat uids):
# pydantic's, as FastAPI's response serialization wrote the whole body before.
_ANY_JSON: TypeAdapter[Any] = TypeAdapter(Any)


def slots_body(
    slots: list[Slot], zone: ZoneInfo | None, calendar_errors: list[dict[str, Any]] | None = None
) -> bytes:
    """GET /slots' body, `{"slots": {"YYYY-MM-DD": [{"time": ...}, ...]}}`, as JSON bytes.

    Written as text, not as a dict per slot serialized afterwards: the times and the day keys
    are ISO strings that need no escaping, and a dict per slot plus pydantic's validation and
    serialization of the whole were ~0.5 ms of a request at 351 slots. The bytes are exactly
    those FastAPI wrote for the dict (compact, keys in this order, UTF-8):
    `tests/unit/test_slots_rendering.py` compares the two over generated slots."""
    grouping_zone = zone or UTC
    days: dict[str, list[str]] = {}
    # Slots come sorted: a day's list is looked up once per day, not once per slot (a day can
    # come back where a zone falls back across midnight; `setdefault` keeps its first place).
    day_key: Any = None
    day_text = ""
    entries: list[str] = []
    # A time's text is its day's ISO date and what follows it ("T09:30:00+01:00"), which
    # depends only on the local time of day and the offset: written once per pair, not once
    # per slot (`isoformat` on a zone-aware datetime was half of this function).
    tails: dict[tuple[Any, Any], str] = {}
    for slot in slots:
        # One conversion serves both the text (in the booker's zone) and the day it groups by.
        local = slot.start.astimezone(grouping_zone)
        day = local.date()
        if day != day_key:
            day_key = day
            day_text = day.isoformat()
            entries = days.setdefault(day_text, [])
        if zone is None:
            if local.year < 1000:  # `format_instant` does not pad the year: no common prefix
                text = _utc_text(local)
            else:
                key = (local.time(), None)
                tail = tails.get(key)
                if tail is None:
                    tail = tails[key] = _utc_text(local)[10:]
                text = day_text + tail
        else:
            if local.microsecond:
                local = local.replace(microsecond=0)
            key = (local.time(), local.utcoffset())
            tail = tails.get(key)
            if tail is None:
                tail = tails[key] = local.isoformat()[10:]
            text = day_text + tail
        if slot.booking_uid is None:
            entries.append('{"time":"' + text + '"}')
        else:
            attendees = _ANY_JSON.dump_json(slot.attendees).decode()
            uid = _ANY_JSON.dump_json(slot.booking_uid).decode()
            entries.append(f'{{"time":"{text}","attendees":{attendees},"bookingUid":{uid}}}')
    body = '{"slots":{' + ",".join(f'"{d}":[{",".join(e)}]' for d, e in days.items()) + "}"
    if calendar_errors:
        # Why a host offers nothing: a selected calendar could not be read (fail closed).
        body += ',"calendarErrors":' + _ANY_JSON.dump_json(calendar_errors).decode()
    return (body + "}").encode()


class SlotOut(BaseModel):
    """One start time; seated slots that already have a booking also say how full they are."""

    model_config = ConfigDict(extra="forbid")

    time: str = Field(json_schema_extra={"format": "date-time"})
    attendees: int | SkipJsonSchema[None] = Field(default=None, description="Seated slots only")
    bookingUid: str | SkipJsonSchema[None] = Field(default=None, description="Seated slots only")


class SlotsResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slots: dict[str, list[SlotOut]] = Field(description="Start times by local date (YYYY-MM-DD)")
    calendarErrors: list[CalendarErrorOut] | SkipJsonSchema[None] = Field(
        default=None,
        description="Only when a host's selected calendar could not be read (Bookable "
        "extension): that host offers no slot in the window until it can be read again.",
    )
