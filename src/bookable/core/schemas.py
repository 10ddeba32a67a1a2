"""The wire base models: camelCase JSON, Cal.com's datetime format, strict request bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator
from pydantic.alias_generators import to_camel


def format_instant(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds, as Cal.com sends: 2023-05-25T09:30:00.000Z."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


WireDateTime = Annotated[datetime, PlainSerializer(format_instant, return_type=str)]


class WireModel(BaseModel):
    """A response shape: camelCase keys, built from ORM objects."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class StrictInput(BaseModel):
    """A request body: camelCase keys; an unknown key is a 400, as in Cal.com's strict schemas.
    (NUL characters and lone surrogates never get here: `core.routing` refuses them.)"""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", str_strip_whitespace=False
    )


# Ids and counts live in 32-bit integer columns on PostgreSQL; a bigger number can name nothing,
# and passing it to the database would fail there instead of answering "not found".
MAX_DB_INT = 2**31 - 1
DbId = Annotated[int, Field(gt=0, le=MAX_DB_INT)]


def is_db_id(value: int) -> bool:
    return 0 < value <= MAX_DB_INT


def refuse_null(*fields: str) -> Any:
    """A validator for bodies whose keys are optional but whose columns can't be emptied: a key
    may be left out, not sent as null. (Validators run only for keys the client sent.)"""

    def _check(cls: type[BaseModel], value: Any) -> Any:
        if value is None:
            raise ValueError("Expected a value, received null")
        return value

    return field_validator(*fields)(classmethod(_check))  # type: ignore[arg-type]
