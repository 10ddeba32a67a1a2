"""The email outbox: one row per message about one booking change to one recipient.

The change's transaction stores the facts of the message (``facts``: what was true then), not
the message: rendering it (headers, text, HTML, invitation) is most of a booking's CPU, so the
email dispatcher does it before the first attempt; a failed attempt stores the result in
``message`` and a retry sends those bytes. ``message_id`` is stable per (booking, change,
recipient): a retry after a crash sends the same Message-ID, which mail software recognises.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bookable.core.clock import utcnow
from bookable.models.base import Base, BigId, UTCDateTime


class EmailStatus(enum.StrEnum):
    PENDING = "PENDING"  # waiting for its first try or a retry
    SENT = "SENT"  # the SMTP server took it (or the .eml file was written)
    FAILED = "FAILED"  # every attempt was used up, or the server refused it for good
    DROPPED = "DROPPED"  # never sent: over the host's hourly limit


class OutboundEmail(Base):
    __tablename__ = "outbound_emails"
    __table_args__ = (
        Index("ix_outbound_emails_status_next_attempt_at", "status", "next_attempt_at"),
        # Each booking counts its host's emails of the last hour that were not dropped (the
        # hourly limit): answered from the index alone (migration 0013).
        Index("ix_outbound_emails_user_id_created_at_status", "user_id", "created_at", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    booking_id: Mapped[int] = mapped_column(Integer, index=True)
    # The booking's organiser when it was written: whose hourly limit it counts against.
    user_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))  # e.g. "attendee.confirmed", "host.cancelled"
    recipient: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    # What the message says (`notifications.messages.stored_facts`); None for a row written
    # with its message.
    facts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The message a failed attempt rendered, which a retry sends (RFC 5322, CRLF line ends,
    # 7-bit: encoded parts); rows written before migration 0012 hold theirs from the start.
    # None while no attempt failed: a message sent at once is not kept (its facts render the
    # same bytes).
    message: Mapped[str | None] = mapped_column(Text)
    status: Mapped[EmailStatus] = mapped_column(
        Enum(EmailStatus, name="email_status", native_enum=False, length=16),
        default=EmailStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
