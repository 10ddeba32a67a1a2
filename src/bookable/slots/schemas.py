"""Wire shape of GET /slots: `{"slots": {"YYYY-MM-DD": [{"time": ...}]}}`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
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


def slots_json(
    slots: list[Slot], zone: ZoneInfo | None, calendar_errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    grouping_zone = zone or UTC
    days: dict[str, list[dict[str, Any]]] = {}
    # Slots come sorted: a day's list is looked up once, not once per slot.
    day_key: Any = None
    entries: list[dict[str, Any]] = []
    for slot in slots:
        # One conversion serves both the text (in the booker's zone) and the day it groups by.
        local = slot.start.astimezone(grouping_zone)
        if zone is None:
            text = _utc_text(local)
        else:
            text = (local.replace(microsecond=0) if local.microsecond else local).isoformat()
        entry: dict[str, Any] = {"time": text}
        if slot.booking_uid is not None:
            entry["attendees"] = slot.attendees
            entry["bookingUid"] = slot.booking_uid
        day = local.date()
        if day != day_key:
            day_key = day
            entries = days.setdefault(day.isoformat(), [])
        entries.append(entry)
    if calendar_errors:
        # Why a host offers nothing: a selected calendar could not be read (fail closed).
        return {"slots": days, "calendarErrors": calendar_errors}
    return {"slots": days}


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
