"""Schedules and their availability rows (weekly working hours and date overrides)."""

from __future__ import annotations

from datetime import date, time

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, Time
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bookable.models.base import Base


class Schedule(Base):
    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    time_zone: Mapped[str | None] = mapped_column(String(64))

    availability: Mapped[list[Availability]] = relationship(
        back_populates="schedule",
        cascade="all, delete-orphan",
        order_by="Availability.id",
        lazy="selectin",
    )


class Availability(Base):
    """One rule: on ``days`` (0 = Sunday … 6 = Saturday) from ``start_time`` to ``end_time``,
    wall-clock in the schedule's zone; with ``date`` set it overrides that one date instead.
    An end of 00:00 after a later start, or 23:59, means midnight at the end of the day."""

    __tablename__ = "availabilities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_type_id: Mapped[int | None] = mapped_column(Integer)
    days: Mapped[list[int]] = mapped_column(JSON, default=list)
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)
    date: Mapped[date | None] = mapped_column(Date)

    schedule: Mapped[Schedule] = relationship(back_populates="availability")
