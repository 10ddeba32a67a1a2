"""Wire shapes of teams (Cal.com v1 `validations/team.ts`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from bookable.core.schemas import (
    MAX_IMAGE_URI,
    DbId,
    JsonObject,
    StrictInput,
    WireDateTime,
    WireModel,
    refuse_null,
)
from bookable.event_types.schemas import IntervalLimits, Slug, Text, TimeZoneName, Title
from bookable.models import Team

Color = Annotated[str, Field(max_length=16)]
Short = Annotated[str, Field(max_length=32)]
WeekStart = Annotated[str, Field(max_length=16)]


class _TeamFields(StrictInput):
    slug: Slug | None = None
    logo_url: Annotated[Text, Field(max_length=MAX_IMAGE_URI)] | None = None
    bio: Text | None = None
    hide_branding: bool | None = None
    is_private: bool | None = None
    hide_book_a_team_member: bool | None = None
    meta: JsonObject | None = Field(default=None, alias="metadata")
    theme: Short | None = None
    brand_color: Color | None = None
    dark_brand_color: Color | None = None
    banner_url: Annotated[Text, Field(max_length=MAX_IMAGE_URI)] | None = None
    parent_id: DbId | None = None
    time_format: Literal[12, 24] | None = None
    time_zone: TimeZoneName | None = None
    week_start: WeekStart | None = None
    is_organization: bool | None = None
    pending_payment: bool | None = None
    is_platform: bool | None = None
    booking_limits: IntervalLimits | None = None

    # Columns that cannot be emptied: leave the key out instead of sending null.
    _not_null = refuse_null(
        "hide_branding",
        "is_private",
        "hide_book_a_team_member",
        "time_zone",
        "week_start",
        "is_organization",
        "pending_payment",
        "is_platform",
    )


class TeamCreate(_TeamFields):
    name: Title
    owner_id: DbId | None = None


class TeamUpdate(_TeamFields):
    name: Title | None = None

    _name_not_null = refuse_null("name")


class TeamOut(WireModel):
    id: int
    name: str
    slug: str | None
    logo_url: str | None
    bio: str | None
    hide_branding: bool
    is_private: bool
    hide_book_a_team_member: bool
    meta: dict[str, Any] | None = Field(serialization_alias="metadata")
    theme: str | None
    brand_color: str | None
    dark_brand_color: str | None
    banner_url: str | None
    parent_id: int | None
    time_format: int | None
    time_zone: str
    week_start: str
    is_organization: bool
    pending_payment: bool
    is_platform: bool
    booking_limits: dict[str, int] | None
    created_at: WireDateTime


def team_columns(body: _TeamFields) -> dict[str, Any]:
    """The sent keys as column values (booking limits stored without empty periods)."""
    values = body.model_dump(exclude_unset=True, exclude={"owner_id"})
    if body.booking_limits is not None:
        values["booking_limits"] = body.booking_limits.model_dump(exclude_none=True)
    return values


def team_json(team: Team) -> dict[str, Any]:
    """A team as the API answers it (also inside a membership, `?include=team`)."""
    return TeamOut.model_validate(team).model_dump(mode="json", by_alias=True)
