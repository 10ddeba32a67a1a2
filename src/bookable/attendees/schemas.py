"""Wire shapes of attendees (Cal.com v1 `validations/attendee.ts`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import EmailStr, Field

from bookable.core.schemas import DbId, StrictInput, WireModel, refuse_null
from bookable.users.schemas import TimeZoneName

# The column is 255 characters; an empty name would show as a blank line in every listing.
AttendeeName = Annotated[str, Field(min_length=1, max_length=255)]


class AttendeeCreate(StrictInput):
    booking_id: DbId
    email: EmailStr
    name: AttendeeName
    time_zone: TimeZoneName


class AttendeeUpdate(StrictInput):
    name: AttendeeName | None = None
    email: EmailStr | None = None
    time_zone: TimeZoneName | None = None
    booking_id: DbId | None = None

    _not_null = refuse_null("name", "email", "time_zone", "booking_id")


class AttendeeOut(WireModel):
    """Cal.com's `schemaAttendeeReadPublic`, plus the attendee's locale, phone and no-show flag."""

    id: int
    booking_id: int
    name: str
    email: str
    time_zone: str
    locale: str | None
    phone_number: str | None
    no_show: bool | None
