"""The hosts' calendars, read outside a booking write's transaction.

A booking must not land on a time a host's selected calendar marks busy, and the calendar
servers must not be asked while the booking's transaction, day locks or SQLite's write turn are
held. POST /bookings/{id}/confirm reads them first, in a preflight (`core.preflight`), with the
same access rules and the same window (`slots.service.calendar_window`) the transaction will use.
POST /bookings reads them only when someone selected one: its transaction's first query says so
(most event types have none, and then nothing more is asked), and the transaction is left,
before it has written anything, to read them (`with_host_calendars`), as GET /slots does. Reads
are always revalidated (a cached read is used only if the server says the calendar did not
change), and a host with selected calendars that were not read is unavailable (fail closed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.bookings.access import booking_host_ids, get_booking
from bookable.calendars.busy import CalendarBusyReader, ExternalBusy
from bookable.core.auth import Caller
from bookable.core.db import WriteGate
from bookable.core.errors import ApiError
from bookable.core.retry import begin_again, retry_transaction
from bookable.models import EventType
from bookable.slots.service import calendar_window

T = TypeVar("T")


class CalendarsToRead(Exception):
    """Raised by a booking's transaction before it writes anything: these hosts' selected
    calendars must be read for [start, end), outside the transaction."""

    def __init__(self, host_ids: list[int], start: datetime, end: datetime) -> None:
        super().__init__(host_ids)
        self.host_ids, self.start, self.end = host_ids, start, end


async def with_host_calendars(
    request: Request,
    session: AsyncSession,
    work: Callable[[ExternalBusy | None], Awaitable[T]],
) -> T:
    """Run ``work(None)`` in the request's transaction (`retry_transaction`). Should it raise
    `CalendarsToRead`, roll back (nothing was written), let SQLite's next writer go while the
    calendars are read, then begin again and run ``work`` with what they said."""
    try:
        return await retry_transaction(session, lambda: work(None))
    except CalendarsToRead as needed:
        await session.rollback()
        gate: WriteGate = request.app.state.write_gate
        reader: CalendarBusyReader = request.app.state.calendar_busy
        async with gate.stepped_out():
            external = await reader.read(needed.host_ids, needed.start, needed.end, revalidate=True)
        await begin_again(session)
        return await retry_transaction(session, lambda: work(external))


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
