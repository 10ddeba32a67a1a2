"""Wire shapes of booking references (Cal.com v1 `validations/booking-reference.ts`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool

from bookable.core.schemas import DbId, StrictInput, WireModel, refuse_null

# Lengths of the columns: a longer value would be refused by PostgreSQL, not by SQLite.
RequiredText = Annotated[str, Field(min_length=1, max_length=255)]
OptionalText = Annotated[str, Field(max_length=255)]


class BookingReferenceCreate(StrictInput):
    type: RequiredText
    uid: RequiredText
    booking_id: DbId
    meeting_id: OptionalText | None = None
    third_party_recurring_event_id: OptionalText | None = None
    meeting_password: OptionalText | None = None
    meeting_url: str | None = None
    external_calendar_id: OptionalText | None = None
    deleted: StrictBool | None = None  # "yes" is a client mistake, not a true
    credential_id: DbId | None = None


class BookingReferenceUpdate(StrictInput):
    type: RequiredText | None = None
    uid: RequiredText | None = None
    booking_id: DbId | None = None
    meeting_id: OptionalText | None = None
    third_party_recurring_event_id: OptionalText | None = None
    meeting_password: OptionalText | None = None
    meeting_url: str | None = None
    external_calendar_id: OptionalText | None = None
    deleted: StrictBool | None = None  # "yes" is a client mistake, not a true
    credential_id: DbId | None = None

    _not_null = refuse_null("type", "uid", "booking_id")


class BookingReferenceOut(WireModel):
    """Cal.com's `schemaBookingReferenceReadPublic`, plus the columns it leaves out."""

    id: int
    type: str
    booking_id: int
    uid: str
    meeting_id: str | None
    meeting_password: str | None
    meeting_url: str | None
    deleted: bool | None
    external_calendar_id: str | None
    credential_id: int | None
    third_party_recurring_event_id: str | None
