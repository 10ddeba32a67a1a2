"""Rows for scheduling tests, written straight to the database (no endpoint in the way)."""

from __future__ import annotations

import secrets
from datetime import datetime, time
from typing import Any

from fastapi import FastAPI

from bookable.models import Attendee, Availability, Booking, BookingStatus, EventType, Schedule


async def add_schedule(
    app: FastAPI,
    user_id: int,
    zone: str,
    rules: list[tuple[list[int], time, time]] | None = None,
    *,
    overrides: list[tuple[Any, time, time]] | None = None,
    make_default: bool = True,
) -> int:
    from bookable.models import User

    async with app.state.sessions() as session, session.begin():
        schedule = Schedule(user_id=user_id, name="Hours", time_zone=zone)
        for days, start, end in (
            rules if rules is not None else [([1, 2, 3, 4, 5], time(9), time(17))]
        ):
            schedule.availability.append(Availability(days=days, start_time=start, end_time=end))
        for day, start, end in overrides or []:
            schedule.availability.append(
                Availability(days=[], start_time=start, end_time=end, date=day)
            )
        session.add(schedule)
        await session.flush()
        if make_default:
            user = await session.get(User, user_id)
            assert user is not None
            user.default_schedule_id = schedule.id
        return schedule.id


async def add_event_type(app: FastAPI, user_id: int, slug: str = "meet", **fields: Any) -> int:
    values: dict[str, Any] = {
        "title": slug.title(),
        "length": 30,
        "minimum_booking_notice": 0,
        "locations": [],
    }
    values.update(fields)
    async with app.state.sessions() as session, session.begin():
        event_type = EventType(user_id=user_id, slug=slug, **values)
        session.add(event_type)
        await session.flush()
        return event_type.id


async def add_booking(
    app: FastAPI,
    user_id: int,
    start: datetime,
    end: datetime,
    *,
    event_type_id: int | None = None,
    status: BookingStatus = BookingStatus.ACCEPTED,
    attendees: list[str] | None = None,
) -> str:
    uid = secrets.token_hex(8)
    async with app.state.sessions() as session, session.begin():
        booking = Booking(
            uid=uid,
            user_id=user_id,
            event_type_id=event_type_id,
            title="Busy",
            start_time=start,
            end_time=end,
            status=status,
        )
        for email in attendees or ["guest@example.com"]:
            booking.attendees.append(Attendee(email=email, name=email, time_zone="UTC"))
        session.add(booking)
    return uid
