"""Calendar accounts a user connected (credentials) and the calendars whose busy times count.

A credential's ``key`` (server URL, login, password, feed URLs) is only ever stored encrypted
(`bookable.core.encryption`); ``identity`` is a hash of what makes two logins the same account,
so connecting the same account twice finds the first credential without decrypting every key.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
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


def new_selected_calendar_id() -> str:
    return str(uuid.uuid4())


class Credential(Base):
    __tablename__ = "credentials"
    __table_args__ = (
        UniqueConstraint("user_id", "identity", name="uq_credentials_user_id_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Cal.com's names: type "caldav_calendar", app id (slug) "caldav-calendar".
    type: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[str] = mapped_column(String(64))
    # The encrypted JSON key (a Fernet token); never returned, never logged.
    encrypted_key: Mapped[str] = mapped_column(Text)
    # sha256 of the account's identity (app, server URL, login): one credential per account.
    identity: Mapped[str] = mapped_column(String(64))
    invalid: Mapped[bool] = mapped_column(Boolean, default=False)
    # Per-credential busy rules, e.g. {"tentativeIsBusy": true}.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class SelectedCalendar(Base):
    """A calendar whose busy times block its user's slots (Cal.com's user-level rows)."""

    __tablename__ = "selected_calendars"
    __table_args__ = (
        UniqueConstraint(
            "user_id",
            "integration",
            "external_id",
            name="uq_selected_calendars_user_id_integration_external_id",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_selected_calendar_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    integration: Mapped[str] = mapped_column(String(64))
    # The calendar's URL, as /connected-calendars lists it.
    external_id: Mapped[str] = mapped_column(Text)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), index=True
    )
    # Always null here (v1 selects calendars per user); kept for Cal.com's row shape.
    event_type_id: Mapped[int | None] = mapped_column(Integer)
    # The last read that failed (fail closed: the host was unavailable), and the last good one.
    error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class DestinationCalendar(Base):
    """Where a user's (or one event type's) bookings are written: one calendar of one credential.

    A row belongs either to a user (their default) or to an event type (overriding the
    organiser's), never both and never neither: Cal.com's orphan rows cannot exist here."""

    __tablename__ = "destination_calendars"
    __table_args__ = (
        CheckConstraint(
            "(user_id IS NULL) <> (event_type_id IS NULL)",
            name="one_owner",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    integration: Mapped[str] = mapped_column(String(64))
    # The calendar's URL, as /connected-calendars lists it.
    external_id: Mapped[str] = mapped_column(Text)
    primary_email: Mapped[str | None] = mapped_column(String(320))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    event_type_id: Mapped[int | None] = mapped_column(
        ForeignKey("event_types.id", ondelete="CASCADE"), unique=True
    )
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class CalendarEventStatus(enum.StrEnum):
    PENDING = "PENDING"  # the calendar does not show the wanted state yet (retries pending)
    WRITTEN = "WRITTEN"  # the event is in the calendar as the booking is now
    DELETED = "DELETED"  # the event was removed (or was never there)
    FAILED = "FAILED"  # every attempt was used up, or the server refused the login


class CalendarEvent(Base):
    """One booking's event in one calendar: what it should be and how far the writes got.

    The calendar outbox. A booking change sets the wanted state (``wanted`` with its ``ics``,
    or removed) and bumps ``revision`` in the change's transaction; the dispatcher makes the
    calendar match, retrying with backoff. One row per (event UID, calendar): a later change
    overwrites an earlier one that was not carried out yet, so a create, move and cancel
    queued during an outage end as one delete, and nothing is ever applied out of order."""

    __tablename__ = "calendar_events"
    __table_args__ = (
        UniqueConstraint(
            "uid", "credential_id", "calendar_url", name="uq_calendar_events_uid_calendar"
        ),
        Index("ix_calendar_events_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The event's UID: the booking's iCal UID, kept across reschedules.
    uid: Mapped[str] = mapped_column(String(255))
    # The booking the event shows now (a reschedule moves the row to the new booking).
    booking_id: Mapped[int] = mapped_column(Integer, index=True)
    # The host whose calendar it is.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), index=True
    )
    integration: Mapped[str] = mapped_column(String(64))
    calendar_url: Mapped[str] = mapped_column(Text)
    # True: the event should be in the calendar, as ``ics`` says; False: it should be gone.
    wanted: Mapped[bool] = mapped_column(Boolean)
    ics: Mapped[str | None] = mapped_column(Text)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped by every change; a write finished for an older revision leaves the row PENDING.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[CalendarEventStatus] = mapped_column(
        Enum(CalendarEventStatus, name="calendar_event_status", native_enum=False, length=16),
        default=CalendarEventStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A claim by one dispatcher (crash-safe lease), as for webhook events.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Where the server keeps the event, and its version after our last write (for If-Match).
    event_url: Mapped[str | None] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(255))
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
