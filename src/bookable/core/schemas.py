"""The wire base models: camelCase JSON, Cal.com's datetime format, strict request bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


def format_instant(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds, as Cal.com sends: 2023-05-25T09:30:00.000Z."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


WireDateTime = Annotated[
    datetime,
    PlainSerializer(format_instant, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


# Caps on what a body may hold, far above what Cal.com's own UI lets anyone write (README.md):
MAX_TEXT = 10_000  # characters of any free-text field (bio, description, notes, label...)
MAX_JSON_BYTES = 65_536  # a metadata object as compact JSON; a payload template
MAX_IMAGE_URI = 1_048_576  # an avatar or logo, which may be a base64 data: URI


def _json_size(value: Any) -> Any:
    if value is not None:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_JSON_BYTES:
            raise ValueError(f"must be at most {MAX_JSON_BYTES} bytes as JSON, got {size}")
    return value


JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(_json_size),
    Field(description=f"A JSON object of at most {MAX_JSON_BYTES} bytes"),
]


class WireModel(BaseModel):
    """A response shape: camelCase keys, built from ORM objects."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


_REFUSES_NULL = "__bookable_refuses_null__"


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    members = schema.get("anyOf")
    if not members:
        return schema
    kept = [m for m in members if m.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k not in {"anyOf", "default"}}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


@cache
def _bool_fields(model: type[BaseModel]) -> frozenset[str]:
    def is_bool(annotation: Any) -> bool:
        if annotation is bool:
            return True
        return get_origin(annotation) in (Union, UnionType) and bool in get_args(annotation)

    return frozenset(n for n, f in model.model_fields.items() if is_bool(f.annotation))


class StrictInput(BaseModel):
    """A request body: camelCase keys; an unknown key is a 400, as in Cal.com's strict schemas.
    (NUL characters and lone surrogates never get here: `core.routing` refuses them.)"""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
        str_max_length=MAX_TEXT,
    )

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # Fields guarded by `refuse_null` are optional keys, but never null: say so.
        schema: dict[str, Any] = handler.resolve_ref_schema(handler(core_schema))
        properties = schema.get("properties", {})
        for decorator in cls.__pydantic_decorators__.field_validators.values():
            if not getattr(decorator.func, _REFUSES_NULL, False):
                continue
            for name in decorator.info.fields:
                field = cls.model_fields.get(name)
                key = (field.alias or name) if field else name
                if key in properties:
                    properties[key] = _without_null(properties[key])
        return schema

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        # Cal.com's zod takes only true/false for a boolean; pydantic's lax mode would also take
        # 0, 1, "yes" or "true". (null is each field's own business.)
        if (
            value is not None
            and not isinstance(value, bool)
            and info.field_name in _bool_fields(cls)
        ):
            raise PydanticCustomError("bool_type", "Input should be a valid boolean")
        return value


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

    setattr(_check, _REFUSES_NULL, True)
    return field_validator(*fields)(classmethod(_check))  # type: ignore[arg-type]
