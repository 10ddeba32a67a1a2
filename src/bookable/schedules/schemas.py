"""Wire shapes of schedules (Cal.com v1 `schemaSchedulePublic`)."""

from __future__ import annotations

from datetime import date, time
from typing import Annotated

from pydantic import Field, PlainSerializer

from bookable.core.schemas import MAX_DB_INT, StrictInput, WireModel, refuse_null
from bookable.users.schemas import TimeZoneName

# Ids are 32-bit integer columns: a bigger number can only be a missing row (and would make
# PostgreSQL raise instead of answering).


def format_wall_time(value: time) -> str:
    """Cal.com's schedule shape: "09:00:00"."""
    return value.strftime("%H:%M:%S")


def format_date_as_instant(value: date) -> str:
    """A date override as Cal.com serialises it: midnight UTC of that date."""
    return f"{value.isoformat()}T00:00:00.000Z"


WireWallTime = Annotated[time, PlainSerializer(format_wall_time, return_type=str)]
WireDate = Annotated[date, PlainSerializer(format_date_as_instant, return_type=str)]
ScheduleName = Annotated[str, Field(min_length=1, max_length=255)]
UserId = Annotated[int, Field(gt=0, le=MAX_DB_INT)]


class ScheduleAvailabilityOut(WireModel):
    id: int
    event_type_id: int | None
    date: WireDate | None
    days: list[int]
    start_time: WireWallTime
    end_time: WireWallTime


class ScheduleOut(WireModel):
    id: int
    user_id: int
    name: str
    time_zone: str | None
    availability: list[ScheduleAvailabilityOut]


class ScheduleCreate(StrictInput):
    name: ScheduleName
    time_zone: TimeZoneName
    user_id: UserId | None = None


class ScheduleUpdate(StrictInput):
    name: ScheduleName | None = None
    time_zone: TimeZoneName | None = None
    user_id: UserId | None = None

    _not_null = refuse_null("name", "time_zone", "user_id")
