"""Wire shapes of webhook subscriptions (Cal.com v1 `validations/webhook.ts`, plus what real
clients send: n8n's `appId`, Pipedream's `triggers`) and of their delivery log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from bookable.core.schemas import (
    MAX_JSON_BYTES,
    DbId,
    StrictInput,
    WireDateTime,
    WireModel,
    refuse_null,
)
from bookable.webhooks.triggers import WebhookTrigger

WEBHOOK_VERSION = "2021-10-20"


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Trigger = Annotated[WebhookTrigger, BeforeValidator(_upper)]
TimeUnit = Annotated[Literal["MINUTE", "HOUR", "DAY"], BeforeValidator(_upper)]
# Browsers and most servers stop at a few thousand characters; the column itself is unbounded.
SubscriberUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2048,
        json_schema_extra={"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
    ),
]
AppId = Annotated[str, Field(max_length=255)]


def _unique(triggers: list[WebhookTrigger] | None) -> list[WebhookTrigger] | None:
    """Duplicates dropped, first occurrence kept (Cal.com stored duplicates until #13079)."""
    return None if triggers is None else list(dict.fromkeys(triggers))


class _WebhookFields(StrictInput):
    event_triggers: list[Trigger] | None = None
    # Pipedream's Cal.com source sends `triggers` instead of `eventTriggers`.
    triggers: list[Trigger] | None = None
    payload_template: str | None = Field(default=None, max_length=MAX_JSON_BYTES)
    event_type_id: DbId | None = None
    secret: str | None = None
    user_id: DbId | None = None
    app_id: AppId | None = None
    version: Literal["2021-10-20"] | None = None
    time: DbId | None = None
    time_unit: TimeUnit | None = None

    _not_null = refuse_null("event_triggers", "triggers", "version")

    @field_validator("event_triggers", "triggers")
    @classmethod
    def _dedup(cls, value: list[WebhookTrigger] | None) -> list[WebhookTrigger] | None:
        return _unique(value)


class WebhookCreate(_WebhookFields):
    subscriber_url: SubscriberUrl
    # Cal.com requires `active`; clients that leave it out mean a working hook.
    active: bool = True


class WebhookUpdate(_WebhookFields):
    subscriber_url: SubscriberUrl | None = None
    active: bool | None = None

    # A webhook always has a URL, a state and an owner (user or event type); it can't be emptied.
    _update_not_null = refuse_null("subscriber_url", "active", "event_type_id", "user_id")


class WebhookOut(WireModel):
    """Cal.com's public fields, then harmless extras. Never the secret."""

    id: str
    user_id: int | None
    event_type_id: int | None
    payload_template: str | None
    event_triggers: list[str]
    app_id: str | None
    subscriber_url: str
    version: str
    active: bool
    created_at: WireDateTime
    time: int | None
    time_unit: str | None


class DeliveryOut(WireModel):
    """One delivery attempt, with the state of the event it tried to deliver."""

    id: int
    event_id: int
    trigger: str
    attempt: int
    started_at: WireDateTime
    duration_ms: int
    status_code: int | None
    ok: bool
    response_excerpt: str | None
    error: str | None
    event_status: str
