"""HTTP for GET /availability and GET /users/{userId}/availability."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from bookable.availability import service
from bookable.calendars.busy import CalendarBusyReader, ExternalBusy
from bookable.calendars.schemas import CalendarErrorOut
from bookable.core.auth import Caller, CurrentCaller
from bookable.core.clock import clock
from bookable.core.db import DbSession
from bookable.core.errors import ApiError
from bookable.core.openapi import ok
from bookable.core.preflight import Prepared, before_transaction
from bookable.core.routing import CheckedRoute
from bookable.core.timeparse import parse_bound
from bookable.models import EventType
from bookable.slots.service import calendar_window

# Any zone's offset from UTC fits in a day.
ZONE_SLACK = timedelta(days=1)

router = APIRouter(tags=["availability"], route_class=CheckedRoute)
# A date or an ISO instant (documented: it starts with the date).
_DATE: dict[str, Any] = {"pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}"}


class TimeRange(BaseModel):
    start: str = Field(json_schema_extra={"format": "date-time"})
    end: str = Field(json_schema_extra={"format": "date-time"})


class WorkingHoursOut(BaseModel):
    days: list[int]
    startTime: int = Field(description="Minutes after midnight, in `timeZone`")
    endTime: int
    userId: int


class BusyOut(BaseModel):
    start: str = Field(json_schema_extra={"format": "date-time"})
    end: str = Field(json_schema_extra={"format": "date-time"})
    source: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Calendar events only: the app they come from (`caldav-calendar`, "
        "`ics-feed`); `unreadable-calendar` when a selected calendar could not be read.",
    )


class UserAvailabilityOut(BaseModel):
    """A user's availability (`teamId`: one per member, in a bare array)."""

    model_config = ConfigDict(extra="forbid")

    busy: list[BusyOut]
    timeZone: str
    dateRanges: list[TimeRange]
    oooExcludedDateRanges: list[TimeRange]
    workingHours: list[WorkingHoursOut]
    dateOverrides: list[TimeRange]
    currentSeats: None
    datesOutOfOffice: dict[str, Any]
    calendarErrors: list[CalendarErrorOut] | SkipJsonSchema[None] = Field(
        default=None,
        description="Only when a selected calendar could not be read (Bookable extension): "
        "the user is unavailable for the window meanwhile.",
    )


class MemberAvailabilityOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    userId: int
    availability: UserAvailabilityOut


async def read_calendars_for_availability(request: Request, caller: Caller) -> ExternalBusy | None:
    """Preflight: the calendars of the user (or the team's members) asked about, read before the
    request's transaction. The window is widened by a day on each side: the bounds are read in
    the schedule's zone later, which any zone's offset fits in."""
    params = request.query_params
    try:
        start = parse_bound(params["dateFrom"], UTC, end_of_day=False).instant - ZONE_SLACK
        end = parse_bound(params["dateTo"], UTC, end_of_day=True).instant + ZONE_SLACK
        path_team = request.path_params.get("teamId")
        team_id = int(path_team or params.get("teamId") or 0) or None
        path_user = request.path_params.get("userId")
        user_id = int(path_user or params.get("userId") or 0) or None
        raw_event_type = params.get("eventTypeId")
        event_type_id = int(raw_event_type) if raw_event_type else None
    except (KeyError, ValueError):
        return None
    async with request.app.state.sessions() as session:
        try:
            if team_id is not None:
                members, event_type, _ = await service.team_members(
                    session, caller, team_id=team_id, event_type_id=event_type_id
                )
            else:
                user, event_type = await service.user_and_event_type(
                    session,
                    caller,
                    user_id=user_id,
                    username=params.get("username") if path_user is None else None,
                    event_type_id=event_type_id,
                )
                members = [user]
        except ApiError:
            return None
        window = calendar_window(event_type or EventType(length=1), start, end)
    reader: CalendarBusyReader = request.app.state.calendar_busy
    return await reader.read([m.id for m in members], *window, revalidate=False)


@router.get(
    "/availability",
    summary="A user's working hours, busy times and free ranges",
    responses=ok(UserAvailabilityOut | list[MemberAvailabilityOut]),
    dependencies=[before_transaction(read_calendars_for_availability)],
)
async def get_availability(
    session: DbSession,
    caller: CurrentCaller,
    external: Prepared,
    dateFrom: Annotated[str, Query(min_length=1, json_schema_extra=_DATE)],
    dateTo: Annotated[str, Query(min_length=1, json_schema_extra=_DATE)],
    userId: int | None = None,
    username: str | None = None,
    eventTypeId: int | None = None,
    teamId: int | None = None,
) -> dict[str, Any] | list[dict[str, Any]]:
    if teamId is not None:
        # Cal.com answers the team form as a bare array of {userId, availability}.
        return await service.team_availability(
            session,
            caller,
            team_id=teamId,
            date_from=dateFrom,
            date_to=dateTo,
            event_type_id=eventTypeId,
            now=clock.now(),
            external=external,
        )
    return await service.user_availability(
        session,
        caller,
        user_id=userId,
        username=username,
        date_from=dateFrom,
        date_to=dateTo,
        event_type_id=eventTypeId,
        now=clock.now(),
        external=external,
    )


@router.get(
    "/users/{userId}/availability",
    summary="Same as /availability for one user",
    responses=ok(UserAvailabilityOut),
    dependencies=[before_transaction(read_calendars_for_availability)],
)
async def get_user_availability(
    session: DbSession,
    caller: CurrentCaller,
    external: Prepared,
    userId: int,
    dateFrom: Annotated[str, Query(min_length=1, json_schema_extra=_DATE)],
    dateTo: Annotated[str, Query(min_length=1, json_schema_extra=_DATE)],
    eventTypeId: int | None = None,
) -> dict[str, Any]:
    return await service.user_availability(
        session,
        caller,
        user_id=userId,
        username=None,
        date_from=dateFrom,
        date_to=dateTo,
        event_type_id=eventTypeId,
        now=clock.now(),
        external=external,
    )


@router.get(
    "/teams/{teamId}/availability",
    summary="Each accepted member's availability (team OWNER/ADMIN); as /availability?teamId=",
    responses=ok(list[MemberAvailabilityOut]),
    dependencies=[before_transaction(read_calendars_for_availability)],
)
async def get_team_availability(
    session: DbSession,
    caller: CurrentCaller,
    external: Prepared,
    teamId: int,
    dateFrom: Annotated[str, Query(min_length=1, json_schema_extra=_DATE)],
    dateTo: Annotated[str, Query(min_length=1, json_schema_extra=_DATE)],
    eventTypeId: int | None = None,
) -> list[dict[str, Any]]:
    return await service.team_availability(
        session,
        caller,
        team_id=teamId,
        date_from=dateFrom,
        date_to=dateTo,
        event_type_id=eventTypeId,
        now=clock.now(),
        external=external,
    )
