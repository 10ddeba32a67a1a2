"""Bookings, their attendees, references to external calendar/video records, and payments."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
    func,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.types import NullType

from bookable.core.clock import utcnow
from bookable.models.base import Base, UTCDateTime


class BookingStatus(enum.StrEnum):
    ACCEPTED = "ACCEPTED"
    PENDING = "PENDING"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    AWAITING_HOST = "AWAITING_HOST"


# The longest a booking may last (every write since 0.1.0 refuses longer ones). A busy read
# bounds a host's bookings below by it: one overlapping a span starts at most this long before it.
MAX_BOOKING_DAYS = 31
# Bookings longer than that (written before the limit existed), for the partial index that keeps
# them findable; SQLite stores instants as text, hence julianday (deterministic: no 'now').
# ``{t}``: the table's name and a dot in a query, nothing in the index.
_LONGER_THAN_ALLOWED = {
    "postgresql": f"{{t}}end_time - {{t}}start_time > interval '{MAX_BOOKING_DAYS} days'",
    "sqlite": f"julianday({{t}}end_time) - julianday({{t}}start_time) > {MAX_BOOKING_DAYS}",
}


class LongerThanAllowed(ColumnElement[bool]):
    """A booking longer than MAX_BOOKING_DAYS, in the words of the partial index
    ``ix_bookings_user_id_longer_than_allowed``: a query must say it this way (literals, no
    parameters), or neither database proves that the index holds the rows asked for."""

    # No state: the class is the whole cache key. Without this (ColumnElement has no traversal
    # of its own) SQLAlchemy finds no cache key, and every statement holding it (each busy
    # read) is compiled afresh on every execution: ~9-12 ms a GET /slots.
    _traverse_internals: list[Any] = []
    inherit_cache = True
    # Not Boolean: SQLite's dialect would append "= 1", and the words would no longer match.
    type = NullType()


@compiles(LongerThanAllowed)
def _compile_longer_than_allowed(_element: Any, compiler: SQLCompiler, **_kw: Any) -> str:
    return _LONGER_THAN_ALLOWED[compiler.dialect.name].format(t="bookings.")


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        # Lists page through a host's bookings in (start_time, id) order.
        Index("ix_bookings_user_id_start_time", "user_id", "start_time", "id"),
        Index("ix_bookings_start_time_id", "start_time", "id"),
        Index("ix_bookings_recurring_event_id", "recurring_event_id"),
        # Nearly always empty: the busy reads' second branch (slots/service.py `_busy_branches`).
        Index(
            "ix_bookings_user_id_longer_than_allowed",
            "user_id",
            "start_time",
            postgresql_where=text(_LONGER_THAN_ALLOWED["postgresql"].format(t="")),
            sqlite_where=text(_LONGER_THAN_ALLOWED["sqlite"].format(t="")),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    user_primary_email: Mapped[str | None] = mapped_column(String(320))
    event_type_id: Mapped[int | None] = mapped_column(
        ForeignKey("event_types.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    custom_inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    responses: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime] = mapped_column(UTCDateTime())
    # The time the host is taken: start - before buffer .. end + after buffer of its event type.
    # PostgreSQL's exclusion constraint forbids two accepted bookings of one host overlapping here.
    blocked_start: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_end: Mapped[datetime] = mapped_column(UTCDateTime())
    location: Mapped[str | None] = mapped_column(Text)
    status: Mapped[BookingStatus] = mapped_column(
        Enum(BookingStatus, name="booking_status", native_enum=False, length=16),
        default=BookingStatus.ACCEPTED,
    )
    paid: Mapped[bool] = mapped_column(Boolean, default=False)
    destination_calendar_id: Mapped[int | None] = mapped_column(Integer)
    cancellation_reason: Mapped[str | None] = mapped_column(Text)
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    dynamic_event_slug_ref: Mapped[str | None] = mapped_column(String(255))
    dynamic_group_slug_ref: Mapped[str | None] = mapped_column(String(255))
    rescheduled: Mapped[bool | None] = mapped_column(Boolean)
    from_reschedule: Mapped[str | None] = mapped_column(String(64))
    recurring_event_id: Mapped[str | None] = mapped_column(String(255))
    sms_reminder_number: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    is_recorded: Mapped[bool] = mapped_column(Boolean, default=False)
    ical_uid: Mapped[str | None] = mapped_column(String(255))
    ical_sequence: Mapped[int] = mapped_column(Integer, default=0)
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_feedback: Mapped[str | None] = mapped_column(Text)
    no_show_host: Mapped[bool | None] = mapped_column(Boolean, default=False)
    cancelled_by: Mapped[str | None] = mapped_column(String(320))
    rescheduled_by: Mapped[str | None] = mapped_column(String(320))
    creation_source: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), onupdate=utcnow)

    attendees: Mapped[list[Attendee]] = relationship(
        back_populates="booking", cascade="all, delete-orphan", order_by="Attendee.id"
    )
    references: Mapped[list[BookingReference]] = relationship(
        back_populates="booking", cascade="all, delete-orphan", order_by="BookingReference.id"
    )
    payments: Mapped[list[Payment]] = relationship(
        back_populates="booking", cascade="all, delete-orphan", order_by="Payment.id"
    )


@event.listens_for(Booking, "before_insert")
@event.listens_for(Booking, "before_update")
def _blocked_time_defaults_to_the_booking(_mapper: Any, _connection: Any, booking: Booking) -> None:
    # Services set the buffered range; rows written without one block exactly their own time.
    if booking.blocked_start is None:
        booking.blocked_start = booking.start_time
    if booking.blocked_end is None:
        booking.blocked_end = booking.end_time


class Attendee(Base):
    __tablename__ = "attendees"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[int] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True
    )
    # Indexed as lower(email) (below): every lookup matches attendees case-insensitively.
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(255))
    time_zone: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(16), default="en")
    phone_number: Mapped[str | None] = mapped_column(String(64))
    no_show: Mapped[bool | None] = mapped_column(Boolean, default=False)

    booking: Mapped[Booking] = relationship(back_populates="attendees")


# Slots, booking checks and booking access all ask "does this email attend?" as
# lower(email) = ...: an index on the plain column cannot answer that, and each of them scanned
# every attendee.
Index("ix_attendees_lower_email", func.lower(Attendee.email))


class BookingReference(Base):
    """A record of the booking somewhere else: a calendar event, a video room."""

    __tablename__ = "booking_references"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[int] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(255))
    uid: Mapped[str] = mapped_column(String(255))
    meeting_id: Mapped[str | None] = mapped_column(String(255))
    third_party_recurring_event_id: Mapped[str | None] = mapped_column(String(255))
    meeting_password: Mapped[str | None] = mapped_column(String(255))
    meeting_url: Mapped[str | None] = mapped_column(Text)
    external_calendar_id: Mapped[str | None] = mapped_column(String(255))
    deleted: Mapped[bool | None] = mapped_column(Boolean)
    credential_id: Mapped[int | None] = mapped_column(Integer)

    booking: Mapped[Booking] = relationship(back_populates="references")


class Payment(Base):
    """Money owed for a booking of a priced event type. Bookable ships no payment provider: a
    payment is created unpaid and the booking waits (PENDING) until it is marked paid."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[str | None] = mapped_column(String(64))
    booking_id: Mapped[int] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(Integer)
    fee: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(8))
    success: Mapped[bool] = mapped_column(Boolean, default=False)
    refunded: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    external_id: Mapped[str | None] = mapped_column(String(255))
    payment_option: Mapped[str] = mapped_column(String(16), default="ON_BOOKING")

    booking: Mapped[Booking] = relationship(back_populates="payments")


class BookingHost(Base):
    """A host a booking occupies: one row per host, so a collective booking blocks them all.

    The database keeps these rows in step with their booking: a trigger adds the organiser's
    row when a booking is inserted and copies ``status`` and the blocked range on every change
    (migration 0006), so no code path can leave them stale. Services add only the extra hosts
    of team bookings. On PostgreSQL the exclusion constraint ``ex_booking_hosts_overlap``
    forbids two accepted rows of one host overlapping.
    """

    __tablename__ = "booking_hosts"
    __table_args__ = (
        Index("ix_booking_hosts_user_id_blocked_start", "user_id", "blocked_start"),
        Index(
            "ix_booking_hosts_co_hosts",
            "user_id",
            postgresql_where=text("NOT organizer"),
            sqlite_where=text("organizer = 0"),
        ),
    )

    booking_id: Mapped[int] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # True on the booking's own host (bookings.user_id); False on the other hosts of a team booking.
    organizer: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[BookingStatus] = mapped_column(
        Enum(BookingStatus, name="booking_status", native_enum=False, length=16)
    )
    blocked_start: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_end: Mapped[datetime] = mapped_column(UTCDateTime())
