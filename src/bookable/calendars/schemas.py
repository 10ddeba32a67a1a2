"""Wire shapes of credentials, connected calendars, selected and destination calendars.

A credential's key goes in (POST/PATCH) and never comes out: no response model has a field for it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from bookable.calendars.apps import INTEGRATIONS
from bookable.core.schemas import (
    DbId,
    JsonObject,
    StrictInput,
    WireDateTime,
    WireModel,
    refuse_null,
)

# --- credentials -------------------------------------------------------------------------------


class CredentialSettings(StrictInput):
    """Per-credential busy rules: tentative / not-yet-answered invitations block by default,
    events marked free (TRANSPARENT) do not."""

    tentative_is_busy: bool = True
    transparent_is_busy: bool = False


class CredentialSettingsOut(WireModel):
    tentative_is_busy: bool = True
    transparent_is_busy: bool = False


class CredentialOut(WireModel):
    id: int
    type: str
    app_id: str
    user_id: int
    team_id: None = None
    invalid: bool
    settings: CredentialSettingsOut


class CredentialCreate(StrictInput):
    # Cal.com names an app three ways; any one of them will do.
    app_id: str | None = Field(default=None, max_length=64)
    app_slug: str | None = Field(default=None, max_length=64)
    type: str | None = Field(default=None, max_length=64)
    key: JsonObject
    settings: CredentialSettings | None = None
    user_id: DbId | None = None

    @property
    def app_name(self) -> str | None:
        return self.app_id or self.app_slug or self.type


class CredentialUpdate(StrictInput):
    key: JsonObject | None = None
    settings: CredentialSettings | None = None
    # Only false, and only with a re-connect that works (the key given, or the stored one).
    invalid: bool | None = None


# --- credential sync (Cal.com's shapes) --------------------------------------------------------


class SyncCredentialOut(BaseModel):
    id: int
    appId: str
    appSlug: str


class SyncCreated(BaseModel):
    id: int
    type: str


class SyncChanged(BaseModel):
    id: int
    appId: str


class SyncOffResponse(BaseModel):
    error: str


class SyncCreate(StrictInput):
    app_slug: str = Field(min_length=1, max_length=64)
    encrypted_key: str = Field(min_length=1, max_length=65_536)


class SyncUpdate(StrictInput):
    encrypted_key: str = Field(min_length=1, max_length=65_536)


# --- connected calendars -----------------------------------------------------------------------


class ConnectedCalendarOut(WireModel):
    external_id: str
    name: str
    primary: bool
    read_only: bool
    is_selected: bool
    error: str | None
    last_error_at: WireDateTime | None


class ConnectionOut(WireModel):
    name: str
    app_id: str
    user_id: int
    integration: str
    credential_id: int
    error: str | None = Field(description="Why the calendars could not be listed (extension)")
    calendars: list[ConnectedCalendarOut]


# --- selected calendars ------------------------------------------------------------------------


class SelectedCalendarCreate(BaseModel):
    """Cal.com's body is not strict: other row fields are ignored (v1 rows are user-level)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    integration: str = Field(
        min_length=1, max_length=64, json_schema_extra={"enum": list(INTEGRATIONS)}
    )
    external_id: str = Field(min_length=1, max_length=2048)
    credential_id: DbId | None = None
    user_id: DbId | None = None


class SelectedCalendarUpdate(StrictInput):
    # Moving the row to another user, integration or calendar would change its id: only the
    # credential that reads it can change (checked live, like POST).
    credential_id: DbId | None = None


class SelectedCalendarOut(WireModel):
    id: str
    user_id: int
    integration: str
    external_id: str
    credential_id: int | None
    event_type_id: int | None
    delegation_credential_id: None = None
    domain_wide_delegation_credential_id: None = None
    google_channel_id: None = None
    google_channel_kind: None = None
    google_channel_resource_id: None = None
    google_channel_resource_uri: None = None
    google_channel_expiration: None = None
    channel_id: None = None
    channel_kind: None = None
    channel_resource_id: None = None
    channel_resource_uri: None = None
    channel_expiration: None = None
    error: str | None
    last_error_at: WireDateTime | None
    watch_attempts: int = 0
    max_attempts: int = 0
    unwatch_attempts: int = 0
    sync_subscribed_at: None = None
    sync_token: None = None
    synced_at: WireDateTime | None
    sync_error_at: None = None
    sync_error_count: int = 0
    created_at: WireDateTime
    updated_at: WireDateTime


# --- destination calendars ---------------------------------------------------------------------


class DestinationCalendarCreate(StrictInput):
    """Cal.com's strict body, plus ``credentialId`` (Cal.com refuses it, though its spec lists
    it). ``bookingId`` is accepted as Cal.com accepts it, and ignored: no column keeps it."""

    integration: str = Field(
        min_length=1,
        max_length=64,
        description="The calendar app: a credential type (`caldav_calendar`) or app slug "
        "(`caldav-calendar`); ICS feeds are read-only and refused",
    )
    external_id: str = Field(
        min_length=1, max_length=2048, description="The calendar, as /connected-calendars lists it"
    )
    event_type_id: DbId | None = Field(
        default=None, description="An event type you manage: the row is that event type's"
    )
    credential_id: DbId | None = Field(
        default=None, description="The credential holding the calendar (found when left out)"
    )
    user_id: DbId | None = Field(default=None, description="Admins only; default: the caller")
    booking_id: DbId | None = Field(default=None, description="Accepted and ignored (Cal.com)")


class DestinationCalendarUpdate(StrictInput):
    """Every field optional; ``integration`` and ``externalId`` go together."""

    integration: str | None = Field(default=None, min_length=1, max_length=64)
    external_id: str | None = Field(default=None, min_length=1, max_length=2048)
    # null asks for a user-level row: refused for an event type's row, with Cal.com's message.
    event_type_id: DbId | None = None
    credential_id: DbId | None = None
    user_id: DbId | None = None
    booking_id: DbId | None = None

    _not_null = refuse_null("integration", "external_id", "credential_id", "user_id")


class DestinationCalendarOut(WireModel):
    """Cal.com's read shape (id, integration, externalId, eventTypeId, userId) plus
    ``credentialId`` and ``primaryEmail``."""

    id: int
    integration: str
    external_id: str
    event_type_id: int | None
    user_id: int | None
    credential_id: int
    primary_email: str | None


def credential_json(credential: Any) -> dict[str, Any]:
    settings = {**CredentialSettingsOut().model_dump(), **_snake(credential.settings or {})}
    out = CredentialOut(
        id=credential.id,
        type=credential.type,
        app_id=credential.app_id,
        user_id=credential.user_id,
        invalid=bool(credential.invalid),
        settings=CredentialSettingsOut(**settings),
    )
    return out.model_dump(mode="json", by_alias=True)


def _snake(stored: dict[str, Any]) -> dict[str, Any]:
    names = {"tentativeIsBusy": "tentative_is_busy", "transparentIsBusy": "transparent_is_busy"}
    return {names[k]: bool(v) for k, v in stored.items() if k in names}


def selected_json(row: Any) -> dict[str, Any]:
    return SelectedCalendarOut.model_validate(row).model_dump(mode="json", by_alias=True)


def destination_json(row: Any) -> dict[str, Any]:
    return DestinationCalendarOut.model_validate(row).model_dump(mode="json", by_alias=True)


# --- calendars that could not be read (GET /slots, GET /availability) ------------------------


class CalendarErrorOut(BaseModel):
    """A host's selected calendar that could not be read: that host is unavailable meanwhile."""

    model_config = ConfigDict(extra="forbid")

    userId: int
    integration: str
    externalId: str
    error: str
    lastErrorAt: str = Field(json_schema_extra={"format": "date-time"})
