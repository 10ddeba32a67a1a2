"""Webhook subscriptions, the outbox of events to deliver, and the log of delivery attempts.

The outbox row is written in the same transaction as the change it announces, so an event
exists exactly when its change committed; the dispatcher then delivers it at least once.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bookable.core.clock import utcnow
from bookable.models.base import Base, BigId, UTCDateTime


def new_webhook_id() -> str:
    return str(uuid.uuid4())


class Webhook(Base):
    __tablename__ = "webhooks"
    __table_args__ = (
        UniqueConstraint("user_id", "subscriber_url", name="uq_webhooks_user_id_subscriber_url"),
        # One URL once per event type too (user_id is null on event type webhooks; nulls never
        # collide in a unique constraint, so user webhooks are not affected).
        UniqueConstraint(
            "event_type_id", "subscriber_url", name="uq_webhooks_event_type_id_subscriber_url"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_webhook_id)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    event_type_id: Mapped[int | None] = mapped_column(
        ForeignKey("event_types.id", ondelete="CASCADE"), index=True
    )
    subscriber_url: Mapped[str] = mapped_column(Text)
    payload_template: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Trigger names as strings: Cal.com keeps adding triggers, and unknown-to-us ones are stored.
    event_triggers: Mapped[list[str]] = mapped_column(JSON, default=list)
    app_id: Mapped[str | None] = mapped_column(String(255))
    # Kept in clear: HMAC signing needs the secret itself. Never returned or logged.
    secret: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(16), default="2021-10-20")
    time: Mapped[int | None] = mapped_column(Integer)
    time_unit: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookEventStatus(enum.StrEnum):
    PENDING = "PENDING"  # waiting for its due time or its next retry
    DELIVERED = "DELIVERED"  # a 2xx answer was received
    FAILED = "FAILED"  # every attempt was used up
    DROPPED = "DROPPED"  # no longer wanted (a scheduled MEETING_* event whose booking moved)


class WebhookEvent(Base):
    """One event for one subscription: the outbox row the dispatcher works from."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    trigger: Mapped[str] = mapped_column(String(64))
    # The booking it is about, so scheduled MEETING_* events can be dropped when it moves.
    booking_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # The exact body that is signed and sent, rendered when the event is written.
    body: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(64), default="application/json")
    status: Mapped[WebhookEventStatus] = mapped_column(
        Enum(WebhookEventStatus, name="webhook_event_status", native_enum=False, length=16),
        default=WebhookEventStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the next attempt may start: the due time at first (MEETING_* at the booking's
    # start or end), then the retry schedule.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A claim by one dispatcher: others skip the row until this passes (crash-safe lease).
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One attempt to deliver one event: what came back and how long it took."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    webhook_id: Mapped[str] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    # The first bytes of the reply, or the transport error (timeout, refused, ...).
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
