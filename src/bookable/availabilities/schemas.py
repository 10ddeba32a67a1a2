"""Wire shapes of availabilities (Cal.com v1 `schemaAvailabilityReadPublic`).

Times of day travel as ISO instants on 1970-01-01 (``"1970-01-01T09:00:00.000Z"``), as Cal.com
stores them in a DB ``time`` column; plain ``"09:00"`` / ``"09:00:00"`` are accepted too. They are
wall-clock times in the schedule's zone: the "Z" is Cal.com's convention, not a conversion.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    Strict,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from bookable.core.schemas import MAX_DB_INT, StrictInput, WireModel, refuse_null
from bookable.schedules.schemas import WireDate

_PLAIN_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?$")
_PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        # Rendered as Cal.com's "invalid_type ... Expected string, received number".
        raise PydanticCustomError("string_type", "Input should be a valid string")
    return value.strip()


def parse_time_of_day(value: Any) -> time:
    """ "09:00", "09:00:00" or an ISO date-time (its UTC time of day, as Cal.com reads it)."""
    text = _text(value)
    plain = _PLAIN_TIME.match(text)
    try:
        if plain:
            hour, minute, second = (int(part or 0) for part in plain.groups())
            return time(hour, minute, second)
        if "T" in text:
            instant = datetime.fromisoformat(text)
            if instant.tzinfo is not None:
                instant = instant.astimezone(UTC)
            return instant.time().replace(microsecond=0, tzinfo=None)
    except ValueError:
        pass
    raise ValueError("must be a time such as '09:00', '09:00:00' or '1970-01-01T09:00:00.000Z'")


def parse_override_date(value: Any) -> date:
    """ "2024-05-01", or an ISO date-time at midnight UTC (what this API sends back)."""
    text = _text(value)
    try:
        if _PLAIN_DATE.match(text):
            return date.fromisoformat(text)
        if "T" in text:
            instant = datetime.fromisoformat(text)
            if instant.tzinfo is not None:
                instant = instant.astimezone(UTC)
            return instant.date()
    except ValueError:
        pass
    raise ValueError("must be a date such as '2024-05-01'")


def format_time_as_instant(value: time) -> str:
    return f"1970-01-01T{value.strftime('%H:%M:%S')}.000Z"


TimeOfDay = Annotated[
    time,
    BeforeValidator(parse_time_of_day),
    WithJsonSchema({"type": "string", "examples": ["1970-01-01T09:00:00.000Z", "09:00"]}),
]
OverrideDate = Annotated[
    date,
    BeforeValidator(parse_override_date),
    WithJsonSchema({"type": "string", "examples": ["2024-05-01"]}),
]
# 0 = Sunday ... 6 = Saturday; a JSON number, as Cal.com's z.number() wants.
WeekDay = Annotated[int, Strict(), Field(ge=0, le=6)]
WireTimeOfDay = Annotated[time, PlainSerializer(format_time_as_instant, return_type=str)]


class ScheduleOwnerOut(WireModel):
    user_id: int


class AvailabilityOut(WireModel):
    id: int
    start_time: WireTimeOfDay
    end_time: WireTimeOfDay
    date: WireDate | None
    schedule_id: int
    days: list[int]
    schedule: ScheduleOwnerOut = Field(alias="Schedule")


def _sorted_days(value: list[int] | None) -> list[int] | None:
    return sorted(set(value)) if value is not None else None


class AvailabilityCreate(StrictInput):
    schedule_id: int = Field(gt=0, le=MAX_DB_INT)
    start_time: TimeOfDay
    end_time: TimeOfDay
    days: list[WeekDay] = Field(default_factory=list)
    date: OverrideDate | None = None

    _days = field_validator("days")(_sorted_days)


class AvailabilityUpdate(StrictInput):
    start_time: TimeOfDay | None = None
    end_time: TimeOfDay | None = None
    days: list[WeekDay] | None = None
    date: OverrideDate | None = None  # null turns a date override back into a weekly rule

    _days = field_validator("days")(_sorted_days)

    _not_null = refuse_null("start_time", "end_time", "days")
