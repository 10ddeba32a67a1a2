"""HTTP for GET /slots."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from bookable.core.auth import CurrentCaller
from bookable.core.clock import clock
from bookable.core.db import DbSession
from bookable.core.errors import BadRequest
from bookable.core.openapi import ok
from bookable.core.routing import CheckedRoute
from bookable.core.timeparse import parse_bound
from bookable.core.timezones import canonical_time_zone
from bookable.slots import service
from bookable.slots.schemas import SlotsResponse, slots_json

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


@router.get(
    "/slots",
    summary="Bookable slots of an event type, grouped by the booker's local date",
    responses=ok(SlotsResponse),
)
async def get_slots(
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
) -> dict[str, Any]:
    if eventTypeId is None and not (usernameList and eventTypeSlug):
        raise BadRequest(
            "You need to either pass an eventTypeId OR an usernameList/eventTypeSlug combination"
        )
    zone = booker_zone(timeZone)
    start, end = window_from_query(startTime or startDateTime, endTime or endDateTime, zone)
    slots = await service.available_slots(
        session,
        caller,
        event_type_id=eventTypeId,
        usernames=usernameList or [],
        slug=eventTypeSlug,
        query=service.SlotQuery(start, end, zone, duration, rescheduleUid),
        now=clock.now(),
    )
    return slots_json(slots, zone)
