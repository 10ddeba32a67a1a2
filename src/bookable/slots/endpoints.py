"""HTTP for GET /slots."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.calendars.busy import CalendarBusyReader, ExternalBusy, calendar_problems
from bookable.core.auth import CurrentCaller
from bookable.core.clock import clock
from bookable.core.db import DbSession, read_statement_by_statement
from bookable.core.errors import BadRequest
from bookable.core.openapi import ok
from bookable.core.routing import CheckedRoute
from bookable.core.timeparse import parse_bound
from bookable.core.timezones import canonical_time_zone
from bookable.slots import service
from bookable.slots.schemas import SlotsResponse, slots_body

router = APIRouter(tags=["slots"], route_class=CheckedRoute)


def booker_zone(name: str | None) -> ZoneInfo | None:
    if name is None or name == "":
        return None
    if name.strip() in {"+00:00", "Z", "z"}:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(canonical_time_zone(name))
    except ValueError:
        raise BadRequest(
            f"custom in 'timeZone': Invalid timezone '{name}'. Must be a valid IANA timezone "
            "string, e.g. 'Europe/London'."
        ) from None


def window_from_query(
    start_text: str | None, end_text: str | None, zone: ZoneInfo | None
) -> tuple[Any, Any]:
    bounds = []
    for field, text, end_of_day in (("startTime", start_text, False), ("endTime", end_text, True)):
        if not text:
            raise BadRequest(f"invalid_type in '{field}': Required")
        try:
            bounds.append(parse_bound(text, zone or ZoneInfo("UTC"), end_of_day=end_of_day).instant)
        except ValueError:
            raise BadRequest(
                f"custom in '{field}': {field} must be a valid ISO date or date-time string"
            ) from None
    return bounds[0], bounds[1]


async def read_host_calendars(
    request: Request,
    session: AsyncSession,
    found: service.SlotsEventType,
    start: datetime,
    end: datetime,
) -> ExternalBusy:
    """The busy times of the event type's hosts' calendars for the window asked.

    Read in the request's session, not in a preflight of its own: the first query already said
    whether anyone selected a calendar, and usually nobody did (nothing to read, no second
    session, no second lookup of the event type). When someone did, the transaction those reads
    began ends before any calendar server is asked, and the next query begins another."""
    host_ids = await service.calendar_host_ids(session, found.event_type)
    window = service.calendar_window(found.event_type, start, end)
    reader: CalendarBusyReader = request.app.state.calendar_busy
    if not found.calendars_selected:
        return reader.none_selected(host_ids, *window)
    # Commit, not roll back: a rollback would expire the rows read, and they are used after.
    await session.commit()
    return await reader.read(host_ids, *window, revalidate=False)


@router.get(
    "/slots",
    summary="Bookable slots of an event type, grouped by the booker's local date",
    responses=ok(SlotsResponse),
)
async def get_slots(
    request: Request,
    session: DbSession,
    caller: CurrentCaller,
    startTime: str | None = None,
    endTime: str | None = None,
    startDateTime: Annotated[
        str | None, Query(description="Alias of startTime (Cal.com's documentation).")
    ] = None,
    endDateTime: Annotated[
        str | None, Query(description="Alias of endTime (Cal.com's documentation).")
    ] = None,
    eventTypeId: int | None = None,
    usernameList: Annotated[list[str] | None, Query()] = None,
    eventTypeSlug: str | None = None,
    timeZone: str | None = None,
    duration: Annotated[int | None, Query(ge=1, le=1440)] = None,
    rescheduleUid: str | None = None,
) -> Response:
    if eventTypeId is None and not (usernameList and eventTypeSlug):
        raise BadRequest(
            "You need to either pass an eventTypeId OR an usernameList/eventTypeSlug combination"
        )
    zone = booker_zone(timeZone)
    start, end = window_from_query(startTime or startDateTime, endTime or endDateTime, zone)
    service.check_window(start, end)
    # Only reads (a calendar read happens after the commit, outside this session's work).
    await read_statement_by_statement(session)
    found = await service.find_slots_event_type(
        session,
        caller,
        event_type_id=eventTypeId,
        usernames=usernameList or [],
        slug=eventTypeSlug,
        window=(start, end),
        ignore_booking_uid=rescheduleUid,
    )
    external = await read_host_calendars(request, session, found, start, end)
    slots = await service.available_slots(
        session,
        found,
        query=service.SlotQuery(start, end, zone, duration, rescheduleUid),
        now=clock.now(),
        external=external,
    )
    # Written as JSON text (`slots_body`): FastAPI and the fast lane send a Response as it is.
    return Response(
        slots_body(slots, zone, calendar_problems(external)), media_type="application/json"
    )
