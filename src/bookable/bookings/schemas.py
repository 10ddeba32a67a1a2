"""Wire shapes of bookings.

POST /bookings accepts three forms, as real clients send them:
- Cal.com's modern form: `start`, optional `end`, `responses {name, email, location, guests, ...}`;
- Cal.com's legacy form: top-level `name`, `email`, `location`, ... with a `customInputs` array
  (Pipedream's action also sends `title`, `end`, `recurringCount`, `location: ""`);
- the seed documentation's form: top-level `startTime`, `endTime`, `name`, `email`.
Unknown keys are dropped, as Cal.com's create schema does.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, EMAIL_MAX_LENGTH
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from bookable.core.schemas import MAX_TEXT, DbId, JsonObject, StrictInput, WireDateTime, WireModel
from bookable.core.timezones import TimeZoneName, canonical_time_zone
from bookable.models import BookingStatus
from bookable.models.bookings import MAX_BOOKING_DAYS

LEGACY_FIELDS = ("name", "email", "location", "guests", "notes", "smsReminderNumber")
# Instants a booking may have: far enough from the ends of Python's datetime range for every
# conversion, buffer and limit period computed around them (beyond them: 500s, not answers).
EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
OUT_OF_RANGE = "must lie between the years 1000 and 9000"
# The longest a booking may last (end minus start). Event types last at most a day; a PATCH may
# stretch a booking, but not over months or years. Busy reads rely on it (`MAX_BOOKING_DAYS`).
MAX_BOOKING_LENGTH = timedelta(days=MAX_BOOKING_DAYS)
TOO_LONG = f"a booking may last at most {MAX_BOOKING_DAYS} days"


def in_range(value: datetime) -> bool:
    try:
        return EARLIEST <= value.astimezone(UTC) <= LATEST
    except OverflowError:
        return False


class BookingCreate(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", str_max_length=MAX_TEXT
    )

    event_type_id: Any = None
    start: str | None = None
    end: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    responses: JsonObject | None = None
    name: Any = None
    email: Any = None
    location: Any = None
    guests: list[str] | None = None
    notes: str | None = None
    sms_reminder_number: str | None = None
    custom_inputs: list[dict[str, Any]] | None = None
    title: str | None = Field(default=None, max_length=255)
    description: str | None = None
    time_zone: TimeZoneName | None = None
    language: str | None = Field(default=None, max_length=16)
    metadata: JsonObject | None = None
    reschedule_uid: str | None = Field(default=None, max_length=64)
    rescheduled_by: EmailStr | None = None
    recurring_event_id: str | int | None = None
    recurring_count: int | None = Field(default=None, ge=1, le=730)
    seat_reference_uid: str | None = None
    no_email: bool | None = None
    user_id: DbId | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return canonical_time_zone(value) if value is not None else None

    @field_validator("metadata")
    @classmethod
    def _string_values(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Cal.com's booking metadata maps keys to strings.
        for key, item in (value or {}).items():
            if not isinstance(item, str):
                raise ValueError(f"value of '{key}' must be a string")
        return value


# A plain ASCII address: a dot-atom local part (email-validator's own `DOT_ATOM_TEXT`, ASCII)
# and a domain of letters, digits, dots and hyphens. Nothing here is a space, a quote, an angle
# bracket or a line break, so pydantic's `EmailStr` hands such a string to email-validator as
# it is (no display name, nothing stripped).
_PLAIN_ASCII_EMAIL = re.compile(
    r"([A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+)*)@([A-Za-z0-9.-]+)"
)
_CASE_INSENSITIVE_MAILBOXES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


@lru_cache(maxsize=1024)
def _normalized_domain(domain: str) -> str | None:
    """email-validator's normalised form of ``domain`` (None: it refuses it), asked of the
    validator itself: its verdict on a domain does not depend on the local part (bar the
    address's length, checked apart). Cached: bookers' domains repeat, their addresses do not."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def plain_ascii_email(value: str) -> str | None:
    """``value`` as `EmailStr` normalises it, for a plain ASCII address whose domain
    email-validator accepts; None for any other string (then `EmailStr` itself decides, with
    its own error). Validating every booker's address in full was ~50 µs of a booking; this
    is a match and a cached look-up. `tests/unit/test_booker_email.py` proves the two equal."""
    if len(value) > EMAIL_MAX_LENGTH:
        return None
    match = _PLAIN_ASCII_EMAIL.fullmatch(value)
    if match is None:
        return None
    local, domain = match.groups()
    if local.lower() in _CASE_INSENSITIVE_MAILBOXES:  # email-validator lowercases those
        return None
    normalized = _normalized_domain(domain)
    return None if normalized is None else f"{local}@{normalized}"


def _plain_or_full_email(value: Any, full: ValidatorFunctionWrapHandler) -> Any:
    if type(value) is str:
        plain = plain_ascii_email(value)
        if plain is not None:
            return plain
    return full(value)


# `EmailStr`, with its verdict on a plain ASCII address reached without email-validator's
# full pass (`plain_ascii_email`): the same addresses accepted, normalised alike, the same
# errors (every other input is `EmailStr`'s).
BookerEmail = Annotated[EmailStr, WrapValidator(_plain_or_full_email)]


class Booker(BaseModel):
    """The attendee data, whichever form it came in."""

    name: str = Field(min_length=1, max_length=255)
    email: BookerEmail
    location: str | None = None
    location_option: str | None = None
    guests: list[BookerEmail] = Field(default_factory=list, max_length=30)
    notes: str | None = None
    phone_number: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class BookingPatch(StrictInput):
    title: str | None = Field(default=None, max_length=255)
    description: str | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    status: BookingStatus | None = None
    event_type_id: DbId | None = None
    user_id: DbId | None = None
    cancelled_by: EmailStr | None = None
    rescheduled_by: EmailStr | None = None
    created_at: AwareDatetime | None = None

    @field_validator("start_time", "end_time", "created_at")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        if value is not None and not in_range(value):
            raise ValueError(OUT_OF_RANGE)
        return value


class BookingConfirm(StrictInput):
    confirmed: bool
    rejection_reason: str | None = Field(default=None, max_length=1000)
    recurring_event_id: str | None = None


class NoShowAttendee(StrictInput):
    email: EmailStr
    no_show: bool


class NoShowBody(StrictInput):
    booking_uid: str = Field(min_length=1, max_length=64)
    attendees: list[NoShowAttendee] | None = None
    no_show_host: bool | None = None


class AttendeeOut(WireModel):
    id: int
    email: str
    name: str
    time_zone: str
    locale: str | None


class FullAttendeeOut(AttendeeOut):
    booking_id: int
    phone_number: str | None
    no_show: bool | None


class BookingReferenceOut(WireModel):
    id: int
    type: str
    uid: str
    meeting_id: str | None
    meeting_password: str | None
    meeting_url: str | None
    booking_id: int
    external_calendar_id: str | None
    deleted: bool | None
    credential_id: int | None


class BookingRow(WireModel):
    """Every column Cal.com returns for a freshly created booking."""

    id: int
    uid: str
    user_id: int | None
    user_primary_email: str | None
    event_type_id: int | None
    title: str
    description: str | None
    custom_inputs: dict[str, Any] | None
    responses: dict[str, Any] | None
    start_time: WireDateTime
    end_time: WireDateTime
    location: str | None
    created_at: WireDateTime
    updated_at: WireDateTime | None
    status: BookingStatus
    paid: bool
    destination_calendar_id: int | None
    cancellation_reason: str | None
    rejection_reason: str | None
    dynamic_event_slug_ref: str | None
    dynamic_group_slug_ref: str | None
    rescheduled: bool | None
    from_reschedule: str | None
    recurring_event_id: str | None
    sms_reminder_number: str | None
    metadata: dict[str, Any] | None = Field(validation_alias="meta")
    is_recorded: bool
    i_cal_uid: str | None = Field(validation_alias="ical_uid", serialization_alias="iCalUID")
    i_cal_sequence: int = Field(
        validation_alias="ical_sequence", serialization_alias="iCalSequence"
    )
    rating: int | None
    rating_feedback: str | None
    no_show_host: bool | None
    cancelled_by: str | None
    rescheduled_by: str | None
    creation_source: str | None


class BookingRead(WireModel):
    """GET /bookings and /bookings/{id}: Cal.com's public read shape, plus a few useful columns."""

    id: int
    user_id: int | None
    description: str | None
    event_type_id: int | None
    uid: str
    title: str
    start_time: WireDateTime
    end_time: WireDateTime
    metadata: dict[str, Any] | None = Field(validation_alias="meta")
    status: BookingStatus
    responses: dict[str, Any] | None
    from_reschedule: str | None
    cancelled_by: str | None
    rescheduled_by: str | None
    created_at: WireDateTime
    location: str | None
    paid: bool
    cancellation_reason: str | None
    rejection_reason: str | None
    recurring_event_id: str | None
    updated_at: WireDateTime | None


def parse_instant(value: str, field: str) -> datetime:
    """An ISO date-time with an offset; ValueError naming the field otherwise."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except (AttributeError, ValueError):
        raise ValueError(f"custom in '{field}': must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"custom in '{field}': needs a UTC offset or Z, e.g. 2026-12-01T09:00:00Z")
    if not in_range(parsed):
        raise ValueError(f"custom in '{field}': {OUT_OF_RANGE}")
    return parsed


# --- Documented response shapes (the endpoints build these bodies themselves) ---------------


class BookingHostOut(WireModel):
    email: str | None
    name: str | None
    time_zone: str
    locale: str | None


class BookingPaymentOut(WireModel):
    id: int
    success: bool
    payment_option: str | None


class BookingEventTypeOut(WireModel):
    title: str
    slug: str
    team: dict[str, Any] | None


class BookingOut(BookingRead):
    """GET /bookings and /bookings/{id}: the row with its attendees, host and payments."""

    attendees: list[AttendeeOut]
    user: BookingHostOut | None
    payment: list[BookingPaymentOut]
    event_type: BookingEventTypeOut | SkipJsonSchema[None] = Field(
        default=None, description="Only with `expand=team` (null without an event type)"
    )


class CreatedHostOut(WireModel):
    email: None = Field(description="Always null, as Cal.com sends it")
    name: str | None
    time_zone: str
    username: str | None


class CreatedPaymentOut(WireModel):
    id: int
    uid: str
    amount: int
    currency: str
    success: bool
    refunded: bool
    fee: int
    payment_option: str | None
    booking_id: int


class PreviousBookingOut(WireModel):
    uid: str
    start_time: str = Field(json_schema_extra={"format": "date-time"})
    end_time: str = Field(json_schema_extra={"format": "date-time"})


class BookingCreatedOut(BookingRow):
    """POST /bookings: the bare booking (no envelope), as Cal.com answers."""

    attendees: list[FullAttendeeOut]
    user: CreatedHostOut
    payment: list[CreatedPaymentOut]
    references: list[dict[str, Any]]
    payment_required: bool
    lucky_users: list[int]
    is_dry_run: bool
    seat_reference_uid: str | None
    video_call_url: str | None
    organization_id: int | None
    previous_booking: PreviousBookingOut | None
    message: str | SkipJsonSchema[None] = Field(default=None, description="With a payment only")
    payment_uid: str | SkipJsonSchema[None] = None
    payment_id: int | SkipJsonSchema[None] = None


class BookingCancelledOut(WireModel):
    success: bool
    message: str
    only_removed_attendee: bool
    booking_id: int
    booking_uid: str


class BookingConfirmedOut(WireModel):
    message: str
    status: BookingStatus


class NoShowAttendeeOut(WireModel):
    email: str
    no_show: bool


class NoShowOut(WireModel):
    message: str
    attendees: list[NoShowAttendeeOut]
    no_show_host: bool


class CalendarEventOut(WireModel):
    """A booking's event in one destination calendar: what it should be (``action``) and how
    far the writes got. ``nextAttemptAt`` is set while a retry waits."""

    id: int
    uid: str
    booking_id: int
    user_id: int
    integration: str
    credential_id: int
    external_calendar_id: str
    action: str  # "write" (the event should be there, as the booking is now) or "delete"
    status: str  # PENDING, WRITTEN, DELETED, FAILED
    sequence: int
    attempts: int
    last_error: str | None
    last_attempt_at: WireDateTime | None
    next_attempt_at: WireDateTime | None
    done_at: WireDateTime | None
    event_url: str | None


class BookingEmailOut(WireModel):
    """One email about the booking to one recipient, and how far its sending got."""

    id: int
    kind: str  # e.g. "attendee.confirmed", "host.cancelled"
    recipient: str
    subject: str
    message_id: str
    status: str  # PENDING, SENT, FAILED, DROPPED
    attempts: int
    last_error: str | None
    next_attempt_at: WireDateTime | None
    sent_at: WireDateTime | None
    created_at: WireDateTime
