"""Calendar accounts a user connected (credentials) and the calendars whose busy times count.

A credential's ``key`` (server URL, login, password, feed URLs) is only ever stored encrypted
(`bookable.core.encryption`); ``identity`` is a hash of what makes two logins the same account,
so connecting the same account twice finds the first credential without decrypting every key.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bookable.core.clock import utcnow
from bookable.models.base import Base, UTCDateTime


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
