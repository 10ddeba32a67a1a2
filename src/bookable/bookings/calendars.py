"""The hosts' calendars, read before a booking write's transaction (`core.preflight`).

A booking must not land on a time a host's selected calendar marks busy, and the calendar
servers must not be asked while the booking's transaction and day locks are held. So the
endpoints of POST /bookings and POST /bookings/{id}/confirm read the calendars first, here, with
the same access rules and the same window (`slots.service.calendar_window`) the transaction will
use, and always revalidated (a cached read is used only if the server says the calendar did not
change). A body or booking that cannot be read reads nothing: the transaction then answers the
4xx, and a host with selected calendars that were not read is unavailable (fail closed).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bookable.bookings.access import booking_host_ids, get_booking
from bookable.bookings.create import booking_times, event_type_id_of
from bookable.bookings.schemas import BookingCreate
from bookable.calendars.busy import CalendarBusyReader, ExternalBusy
from bookable.core.auth import Caller
from bookable.core.errors import ApiError
from bookable.models import EventType
from bookable.slots.service import (
    calendar_host_ids,
    calendar_window,
    find_event_type_for_calendars,
)


@contextlib.asynccontextmanager
async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for the preflight's reads. PostgreSQL: on an AUTOCOMMIT connection, so they
    are not wrapped in BEGIN and ROLLBACK (two round trips fewer per booking; a statement reads
    one snapshot anyway, and the transaction checks again what it uses, `ExternalBusy.covers`).
    SQLite opens its transactions itself (`core.db`): its sessions are used as they are."""
    engine: AsyncEngine = request.app.state.engine
    if engine.dialect.name != "postgresql":
        async with request.app.state.sessions() as session:
            yield session
        return
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        async with AsyncSession(bind=connection) as session:
            yield session


async def calendars_for_new_booking(request: Request, caller: Caller) -> ExternalBusy | None:
    """POST /bookings: every host the event type may occupy, around the time asked."""
    try:
        body = BookingCreate.model_validate(await request.json())
    except (ValueError, ValidationError, ApiError):
        return None
    async with _read_session(request) as session:
        try:
            # The event type the caller may book (`bookable_event_type`'s rule), and whether
            # any of its hosts selected a calendar, in one query.
            event_type, selected = await find_event_type_for_calendars(
                session,
                caller,
                event_type_id=event_type_id_of(body.event_type_id),
                usernames=(),
                slug=None,
            )
            start, end = booking_times(body, event_type.length)
        except ApiError:
            return None
        host_ids = await calendar_host_ids(session, event_type)
        window = calendar_window(event_type, start, end)
    reader: CalendarBusyReader = request.app.state.calendar_busy
    if not selected:
        # Nothing to read: no reader session, no query for calendars that are not there.
        return reader.none_selected(host_ids, *window)
    return await reader.read(host_ids, *window, revalidate=True)


async def calendars_for_confirmation(request: Request, caller: Caller) -> ExternalBusy | None:
    """POST /bookings/{id}/confirm: the hosts the pending booking occupies, around its time."""
    async with request.app.state.sessions() as session:
        try:
            booking = await get_booking(session, caller, str(request.path_params["id"]))
        except (ApiError, KeyError):
            return None
        event_type = (
            await session.get(EventType, booking.event_type_id) if booking.event_type_id else None
        )
        if event_type is None:
            return None
        host_ids = await booking_host_ids(session, booking)
        window = calendar_window(event_type, booking.start_time, booking.end_time)
    reader: CalendarBusyReader = request.app.state.calendar_busy
    return await reader.read(host_ids, *window, revalidate=True)
