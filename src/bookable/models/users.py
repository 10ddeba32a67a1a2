"""Users: the people who own schedules, event types and bookings."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bookable.core.clock import utcnow
from bookable.models.base import Base, UTCDateTime


class UserRole(enum.StrEnum):
    USER = "USER"
    ADMIN = "ADMIN"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str | None] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    email_verified: Mapped[datetime | None] = mapped_column(UTCDateTime())
    bio: Mapped[str | None] = mapped_column(Text)
    avatar_url: Mapped[str | None] = mapped_column(Text)
    time_zone: Mapped[str] = mapped_column(String(64), default="Europe/London")
    week_start: Mapped[str] = mapped_column(String(16), default="Sunday")
    # Minutes of the day; kept for wire compatibility (Cal.com's legacy working-hours fields).
    start_time: Mapped[int] = mapped_column(Integer, default=0)
    end_time: Mapped[int] = mapped_column(Integer, default=1440)
    buffer_time: Mapped[int] = mapped_column(Integer, default=0)
    app_theme: Mapped[str | None] = mapped_column(String(16))
    theme: Mapped[str | None] = mapped_column(String(16))
    default_schedule_id: Mapped[int | None] = mapped_column(Integer)
    locale: Mapped[str | None] = mapped_column(String(16))
    time_format: Mapped[int | None] = mapped_column(Integer, default=12)
    hide_branding: Mapped[bool] = mapped_column(Boolean, default=False)
    brand_color: Mapped[str | None] = mapped_column(String(16), default="#292929")
    dark_brand_color: Mapped[str | None] = mapped_column(String(16), default="#fafafa")
    allow_dynamic_booking: Mapped[bool | None] = mapped_column(Boolean, default=True)
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    verified: Mapped[bool | None] = mapped_column(Boolean, default=False)
    invited_to: Mapped[int | None] = mapped_column(Integer)
    role: Mapped[UserRole] = mapped_column(
        Enum(UserRole, name="user_role", native_enum=False, length=16), default=UserRole.USER
    )
    locked: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN
