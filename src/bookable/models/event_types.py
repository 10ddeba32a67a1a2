"""Event types: what can be booked, for how long, and under which rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bookable.models.base import Base, UTCDateTime


class EventType(Base):
    __tablename__ = "event_types"
    __table_args__ = (
        UniqueConstraint("user_id", "slug", name="uq_event_types_user_id_slug"),
        UniqueConstraint("team_id", "slug", name="uq_event_types_team_id_slug"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    length: Mapped[int] = mapped_column(Integer)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    event_name: Mapped[str | None] = mapped_column(String(255))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    scheduling_type: Mapped[str | None] = mapped_column(String(16))
    period_type: Mapped[str] = mapped_column(String(16), default="UNLIMITED")
    period_start_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    period_end_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    period_days: Mapped[int | None] = mapped_column(Integer)
    period_count_calendar_days: Mapped[bool | None] = mapped_column(Boolean)
    requires_confirmation: Mapped[bool] = mapped_column(Boolean, default=False)
    disable_guests: Mapped[bool] = mapped_column(Boolean, default=False)
    hide_calendar_notes: Mapped[bool] = mapped_column(Boolean, default=False)
    minimum_booking_notice: Mapped[int] = mapped_column(Integer, default=120)
    before_event_buffer: Mapped[int] = mapped_column(Integer, default=0)
    after_event_buffer: Mapped[int] = mapped_column(Integer, default=0)
    offset_start: Mapped[int] = mapped_column(Integer, default=0)
    price: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(8), default="usd")
    slot_interval: Mapped[int | None] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(Integer)
    success_redirect_url: Mapped[str | None] = mapped_column(Text)
    locations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # `metadata` is reserved on declarative classes; the wire name stays "metadata".
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    booking_limits: Mapped[dict[str, int] | None] = mapped_column(JSON)
    duration_limits: Mapped[dict[str, int] | None] = mapped_column(JSON)
    recurring_event: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    seats_per_time_slot: Mapped[int | None] = mapped_column(Integer)
    seats_show_attendees: Mapped[bool | None] = mapped_column(Boolean, default=False)
    seats_show_availability_count: Mapped[bool | None] = mapped_column(Boolean, default=True)
    booking_fields: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="SET NULL"), index=True
    )
    only_show_first_available_slot: Mapped[bool] = mapped_column(Boolean, default=False)
    assign_all_team_members: Mapped[bool] = mapped_column(Boolean, default=False)

    custom_inputs: Mapped[list[EventTypeCustomInput]] = relationship(
        back_populates="event_type",
        cascade="all, delete-orphan",
        order_by="EventTypeCustomInput.id",
        lazy="selectin",
    )
    hosts: Mapped[list[Host]] = relationship(
        back_populates="event_type",
        cascade="all, delete-orphan",
        order_by="Host.user_id",
        lazy="selectin",
    )


class Host(Base):
    """A user who hosts a (team) event type."""

    __tablename__ = "hosts"

    event_type_id: Mapped[int] = mapped_column(
        ForeignKey("event_types.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    is_fixed: Mapped[bool] = mapped_column(Boolean, default=False)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))

    event_type: Mapped[EventType] = relationship(back_populates="hosts")


class EventTypeCustomInput(Base):
    __tablename__ = "event_type_custom_inputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_type_id: Mapped[int] = mapped_column(
        ForeignKey("event_types.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16))
    options: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    placeholder: Mapped[str] = mapped_column(Text, default="")

    event_type: Mapped[EventType] = relationship(back_populates="custom_inputs")
