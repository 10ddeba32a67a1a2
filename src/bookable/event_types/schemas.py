"""Wire shapes of event types (Cal.com v1 `validations/event-type.ts`, `selects/event-type.ts`)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from bookable.core.schemas import MAX_DB_INT, StrictInput, WireDateTime, WireModel, refuse_null
from bookable.custom_inputs.schemas import CustomInputOut

if TYPE_CHECKING:
    from bookable.models import EventType, Team, User
from bookable.core.timezones import TimeZoneName

# Integer columns are 32-bit on PostgreSQL: a bigger number must be a 400, not a database error.
MAX_EVENT_LENGTH = 1440  # one day, in minutes
MAX_SEATS_PER_TIME_SLOT = 1000  # Cal.com's MAX_SEATS_PER_TIME_SLOT

PERIOD_TYPES = ("UNLIMITED", "ROLLING", "ROLLING_WINDOW", "RANGE")
PeriodType = Literal["UNLIMITED", "ROLLING", "ROLLING_WINDOW", "RANGE"]


def slugify(value: str) -> str:
    """Cal.com's slug: lower-case, accents dropped, each run of other characters becomes '-'."""
    decomposed = unicodedata.normalize("NFKD", value.strip().lower())
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")


def _slug(value: str) -> str:
    slug = slugify(value)
    if not slug:
        raise ValueError("must contain at least one letter or digit")
    return slug


def _redirect_url(value: str) -> str:
    if value == "":
        return value
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http(s) URL or an empty string")
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.path):
        raise ValueError("Invalid url")
    return value


def _upper(value: Any) -> Any:
    # The spec's prose says 'range' / 'rolling'; the enum is upper-case. Accept both.
    return value.upper() if isinstance(value, str) else value


def _iso_instant(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("Invalid ISO Date") from None
    return value


def _as_utc(value: datetime) -> datetime:
    # A date or a zone-less time is read as UTC, as Cal.com's server (running in UTC) reads it.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Text = str
Title = Annotated[str, Field(min_length=1, max_length=255)]
# Documented: some letter or digit (the rest is slugified: "My Call!" is stored as "my-call").
Slug = Annotated[
    str, Field(max_length=255, json_schema_extra={"pattern": "[A-Za-z0-9]"}), AfterValidator(_slug)
]
Length = Annotated[int, Field(ge=1, le=MAX_EVENT_LENGTH)]
NonNegativeInt32 = Annotated[int, Field(ge=0, le=MAX_DB_INT)]
PositiveInt32 = Annotated[int, Field(ge=1, le=MAX_DB_INT)]
Int32 = Annotated[int, Field(ge=-MAX_DB_INT, le=MAX_DB_INT)]
Instant = Annotated[datetime, AfterValidator(_as_utc)]
IsoString = Annotated[str, AfterValidator(_iso_instant)]
Url = Annotated[str, AfterValidator(_url)]
RedirectUrl = Annotated[str, AfterValidator(_redirect_url)]
Period = Annotated[PeriodType, BeforeValidator(_upper)]


class _NestedInput(BaseModel):
    """A nested object Cal.com validates without `.strict()`: unknown keys are dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class LocationIn(_NestedInput):
    type: Annotated[str, Field(min_length=1, max_length=255)]
    address: Text | None = None
    link: Url | None = None
    display_location_publicly: bool | None = None
    host_phone_number: Text | None = None
    credential_id: Int32 | None = None
    team_name: Text | None = None
    custom_label: Text | None = None


class IntervalLimits(BaseModel):
    """bookingLimits / durationLimits: at most N bookings (or minutes) per calendar period."""

    model_config = ConfigDict(extra="forbid")

    PER_DAY: PositiveInt32 | None = None
    PER_WEEK: PositiveInt32 | None = None
    PER_MONTH: PositiveInt32 | None = None
    PER_YEAR: PositiveInt32 | None = None


class RecurringEventIn(StrictInput):
    dtstart: IsoString | None = None
    interval: PositiveInt32 | None = None
    count: PositiveInt32 | None = None
    # rrule's Frequency: 0 YEARLY, 1 MONTHLY, 2 WEEKLY, 3 DAILY, 4 HOURLY, 5 MINUTELY, 6 SECONDLY.
    freq: Annotated[int, Field(ge=0, le=6)] | None = None
    until: IsoString | None = None
    tzid: TimeZoneName | None = None


class ConfirmationThreshold(StrictInput):
    time: NonNegativeInt32
    unit: Literal["hours", "minutes"]


class EventTypeMetadata(BaseModel):
    """Free-form JSON; the keys the scheduler reads are checked, every other key is kept as sent."""

    # Only the camelCase spelling is the known key; `multiple_duration` would be kept as sent.
    model_config = ConfigDict(alias_generator=to_camel, extra="allow")

    multiple_duration: list[Length] | None = None
    requires_confirmation_threshold: ConfirmationThreshold | None = None
    # Cal.com columns also accepted here; the service keeps each in one place (see
    # `event_types.service._fold_scheduling_flags`).
    offset_start: NonNegativeInt32 | None = None
    requires_confirmation_will_block_slot: bool | None = None


class HostIn(StrictInput):
    user_id: PositiveInt32
    is_fixed: bool | None = None
    schedule_id: PositiveInt32 | None = None


class ChildIn(StrictInput):
    id: PositiveInt32
    user_id: PositiveInt32


# Columns that hold a value on every row: an explicit null is a client error, not "unset".
_NOT_NULL = (
    "title", "slug", "length", "hidden", "position", "period_type", "requires_confirmation",
    "disable_guests", "hide_calendar_notes", "minimum_booking_notice", "before_event_buffer",
    "after_event_buffer", "offset_start", "price", "currency", "locations",
    "only_show_first_available_slot", "assign_all_team_members", "hosts", "children",
)  # fmt: skip


class _EventTypeFields(StrictInput):
    """Every field create and edit share; all optional here, required ones are narrowed below."""

    title: Title | None = None
    slug: Slug | None = None
    length: Length | None = None
    description: Text | None = None
    hidden: bool | None = None
    position: Int32 | None = None
    event_name: Annotated[Text, Field(max_length=255)] | None = None
    time_zone: TimeZoneName | None = None
    period_type: Period | None = None
    period_start_date: Instant | None = None
    period_end_date: Instant | None = None
    period_days: NonNegativeInt32 | None = None
    period_count_calendar_days: bool | None = None
    requires_confirmation: bool | None = None
    disable_guests: bool | None = None
    hide_calendar_notes: bool | None = None
    minimum_booking_notice: NonNegativeInt32 | None = None
    before_event_buffer: NonNegativeInt32 | None = None
    after_event_buffer: NonNegativeInt32 | None = None
    offset_start: NonNegativeInt32 | None = None
    # Stored in metadata (no column of its own); null means "leave as it is".
    requires_confirmation_will_block_slot: bool | None = None
    price: NonNegativeInt32 | None = None
    currency: Annotated[Text, Field(min_length=1, max_length=8)] | None = None
    slot_interval: PositiveInt32 | None = None
    success_redirect_url: RedirectUrl | None = None
    locations: list[LocationIn] | None = None
    booking_limits: IntervalLimits | None = None
    duration_limits: IntervalLimits | None = None
    only_show_first_available_slot: bool | None = None
    metadata: EventTypeMetadata | None = None
    recurring_event: RecurringEventIn | None = None
    seats_per_time_slot: Annotated[int, Field(ge=1, le=MAX_SEATS_PER_TIME_SLOT)] | None = None
    seats_show_attendees: bool | None = None
    seats_show_availability_count: bool | None = None
    booking_fields: list[dict[str, Any]] | None = None
    schedule_id: PositiveInt32 | None = None
    # Team fields. `parentId` and `children` (managed event types) are refused by the service.
    team_id: PositiveInt32 | None = None
    scheduling_type: Literal["ROUND_ROBIN", "COLLECTIVE", "MANAGED"] | None = None
    parent_id: Annotated[
        PositiveInt32 | None, WithJsonSchema({"type": "null", "description": "Always null"})
    ] = None
    assign_all_team_members: bool | None = None
    hosts: list[HostIn] | None = None
    children: Annotated[
        list[ChildIn] | None,
        WithJsonSchema({"anyOf": [{"type": "array", "maxItems": 0}, {"type": "null"}]}),
    ] = None

    _not_null = refuse_null(*_NOT_NULL)


class EventTypeCreate(_EventTypeFields):
    title: Title
    slug: Slug
    length: Length
    user_id: PositiveInt32 | None = None


class EventTypeUpdate(_EventTypeFields):
    pass


# --- responses ----------------------------------------------------------------------------------


class HostOut(WireModel):
    user_id: int
    is_fixed: bool
    schedule_id: int | None


class OwnerOut(WireModel):
    username: str | None
    id: int
    time_zone: str


class TeamRef(WireModel):
    slug: str | None


class EventTypeOut(WireModel):
    id: int
    title: str
    slug: str
    length: int
    hidden: bool
    position: int
    user_id: int | None
    team_id: int | None
    schedule_id: int | None
    event_name: str | None
    time_zone: str | None
    period_type: str
    period_start_date: WireDateTime | None
    period_end_date: WireDateTime | None
    period_days: int | None
    period_count_calendar_days: bool | None
    requires_confirmation: bool
    recurring_event: dict[str, Any] | None
    disable_guests: bool
    hide_calendar_notes: bool
    minimum_booking_notice: int
    before_event_buffer: int
    after_event_buffer: int
    scheduling_type: str | None
    price: int
    currency: str
    slot_interval: int | None
    parent_id: int | None
    success_redirect_url: str | None
    description: str | None
    locations: list[dict[str, Any]]
    metadata: dict[str, Any] | None
    seats_per_time_slot: int | None
    seats_show_attendees: bool | None
    seats_show_availability_count: bool | None
    booking_fields: list[dict[str, Any]] | None
    booking_limits: dict[str, int] | None
    only_show_first_available_slot: bool
    duration_limits: dict[str, int] | None
    children: list[dict[str, int]]
    hosts: list[HostOut]
    custom_inputs: list[CustomInputOut]
    link: str
    owner: OwnerOut | None
    team: TeamRef | None


# Response fields that are not plain columns of the same name.
_COMPUTED = {
    "schedule_id", "metadata", "children", "hosts", "custom_inputs", "link", "owner", "team",
}  # fmt: skip


def event_type_out(
    event_type: EventType,
    owner: User | None,
    *,
    team: Team | None = None,
    website_url: str,
    fill_default_schedule: bool,
) -> EventTypeOut:
    """The wire shape. ``fill_default_schedule``: Cal.com's GETs show the owner's default schedule
    where a personal event type has none of its own (create and edit show the stored value)."""
    schedule_id = event_type.schedule_id
    if schedule_id is None and fill_default_schedule and owner and event_type.team_id is None:
        schedule_id = owner.default_schedule_id
    if team is not None:
        owner_path = f"team/{team.slug or team.id}"
    else:
        owner_path = (owner.username or str(owner.id)) if owner else ""
    columns = [name for name in EventTypeOut.model_fields if name not in _COMPUTED]
    return EventTypeOut.model_validate(
        {
            **{name: getattr(event_type, name) for name in columns},
            "schedule_id": schedule_id,
            "metadata": event_type.meta,
            "children": [],  # managed children can't be created through v1
            "hosts": event_type.hosts,
            "custom_inputs": event_type.custom_inputs,
            "link": f"{website_url.rstrip('/')}/{owner_path}/{event_type.slug}",
            "owner": owner,
            "team": team,
        }
    )
