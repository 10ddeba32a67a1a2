"""Wire shapes of users (Cal.com v1 `userSelect` fields)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, EmailStr, Field, field_validator

from bookable.core.schemas import (
    MAX_IMAGE_URI,
    StrictInput,
    WireDateTime,
    WireModel,
    format_instant,
    refuse_null,
)
from bookable.core.timezones import TimeZoneName
from bookable.models import UserRole

WEEK_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
LOCALES = (
    "en", "fr", "it", "ru", "es", "de", "pt", "ro", "nl", "pt-BR", "es-419", "ko", "ja", "pl",
    "ar", "iw", "zh-CN", "zh-TW", "cs", "sr", "sv", "vi", "bn",
)  # fmt: skip
_COLOR = re.compile(r"^#[0-9A-Za-z]{3,8}$")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,254}$")


def _week_day(value: Any) -> Any:
    # Cal.com's spec documents "MONDAY"; its handlers want "Monday". Accept both.
    if isinstance(value, str):
        for day in WEEK_DAYS:
            if value.casefold() == day.casefold():
                return day
    return value


def _lower_or_none(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _time_format(value: Any) -> Any:
    # The spec documents TWELVE / TWENTY_FOUR; the handler wants 12 / 24.
    return (
        {"TWELVE": 12, "TWENTY_FOUR": 24, "12": 12, "24": 24}.get(value, value)
        if isinstance(value, str)
        else value
    )


def _locale(value: Any) -> Any:
    if isinstance(value, str):
        for locale in LOCALES:
            if value.casefold() == locale.casefold():
                return locale
    return value


def _color(value: str | None) -> str | None:
    if value is not None and not _COLOR.match(value):
        raise ValueError("must be '#' followed by 3 to 8 characters, e.g. '#292929'")
    return value


def _username(value: str) -> str:
    value = value.strip().lower()
    if not _USERNAME.match(value):
        raise ValueError("may hold only a-z, 0-9, '.', '_' and '-'")
    return value


def _avatar(value: str | None) -> str | None:
    if value is None or value.startswith(("data:image/", "https://", "http://")):
        return value
    raise ValueError("must be a data:image/...;base64 URI or an http(s) URL")


WeekStart = Annotated[Literal[WEEK_DAYS], BeforeValidator(_week_day)]  # type: ignore[valid-type]
Theme = Annotated[Literal["dark", "light"] | None, BeforeValidator(_lower_or_none)]
TimeFormat = Annotated[Literal[12, 24] | None, BeforeValidator(_time_format)]
Locale = Annotated[Literal[LOCALES] | None, BeforeValidator(_locale)]  # type: ignore[valid-type]
Color = Annotated[
    str | None, Field(json_schema_extra={"pattern": _COLOR.pattern}), AfterValidator(_color)
]
Username = Annotated[
    str,
    Field(json_schema_extra={"pattern": r"^\s*[A-Za-z0-9][A-Za-z0-9._-]{0,254}\s*$"}),
    AfterValidator(_username),
]
Avatar = Annotated[
    str | None,
    Field(max_length=MAX_IMAGE_URI, json_schema_extra={"pattern": "^(data:image/|https?://)"}),
    AfterValidator(_avatar),
]


class UserOut(WireModel):
    id: int
    username: str | None
    name: str | None
    email: str
    email_verified: WireDateTime | None
    bio: str | None
    avatar_url: str | None
    time_zone: str
    week_start: str
    end_time: int
    buffer_time: int
    app_theme: str | None
    theme: str | None
    default_schedule_id: int | None
    locale: str | None
    time_format: int | None
    hide_branding: bool
    brand_color: str | None
    dark_brand_color: str | None
    allow_dynamic_booking: bool | None
    created_date: WireDateTime
    verified: bool | None
    invited_to: int | None
    role: UserRole


# (attribute, wire key) of every UserOut field, in the model's order.
_USER_WIRE_FIELDS = tuple(
    (name, field.serialization_alias or field.alias or name)
    for name, field in UserOut.model_fields.items()
)


def user_wire(user: Any) -> dict[str, Any]:
    """``UserOut.model_validate(user).model_dump(mode="json", by_alias=True)`` without the
    round trip through pydantic (the user object is on hot paths: /me, /users): the same keys
    in the same order, instants formatted as the model does, enums by value. The database's
    values need no validation; tests/unit/test_user_wire.py compares the two."""
    wire: dict[str, Any] = {}
    # A loaded ORM object holds its column values in __dict__: read there, not through each
    # attribute's descriptor (getattr covers what is not loaded, and non-ORM objects).
    loaded = getattr(user, "__dict__", {})
    for name, key in _USER_WIRE_FIELDS:
        value = loaded[name] if name in loaded else getattr(user, name)
        if isinstance(value, datetime):
            value = format_instant(value)
        elif isinstance(value, Enum):
            value = value.value
        wire[key] = value
    return wire


class _UserFields(StrictInput):
    name: str | None = Field(default=None, max_length=255)
    bio: str | None = None
    time_zone: TimeZoneName | None = None
    week_start: WeekStart | None = None
    theme: Theme = None
    app_theme: Theme = None
    time_format: TimeFormat = None
    locale: Locale = None
    brand_color: Color = None
    dark_brand_color: Color = None
    hide_branding: bool | None = None
    default_schedule_id: int | None = Field(default=None, gt=0)
    allow_dynamic_booking: bool | None = None
    role: UserRole | None = None
    avatar: Avatar = None


class UserCreate(_UserFields):
    email: EmailStr
    username: Username
    created_date: datetime | None = None

    @field_validator("email")
    @classmethod
    def _lower_email(cls, value: str) -> str:
        return value.lower()


class UserUpdate(_UserFields):
    email: EmailStr | None = None
    username: Username | None = None

    @field_validator("email")
    @classmethod
    def _lower_email(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    _not_null = refuse_null("email", "username", "time_zone", "week_start", "hide_branding", "role")
