"""HTTP for GET /availability and GET /users/{userId}/availability."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from bookable.availability import service
from bookable.core.auth import CurrentCaller
from bookable.core.clock import clock
from bookable.core.db import DbSession
from bookable.core.openapi import ok
from bookable.core.routing import CheckedRoute

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


class UserAvailabilityOut(BaseModel):
    """A user's availability (`teamId`: one per member, in a bare array)."""

    model_config = ConfigDict(extra="forbid")

    busy: list[TimeRange]
    timeZone: str
    dateRanges: list[TimeRange]
    oooExcludedDateRanges: list[TimeRange]
    workingHours: list[WorkingHoursOut]
    dateOverrides: list[TimeRange]
    currentSeats: None
    datesOutOfOffice: dict[str, Any]


class MemberAvailabilityOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    userId: int
    availability: UserAvailabilityOut


@router.get(
    "/availability",
    summary="A user's working hours, busy times and free ranges",
    responses=ok(UserAvailabilityOut | list[MemberAvailabilityOut]),
)
async def get_availability(
    session: DbSession,
    caller: CurrentCaller,
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
    )


@router.get(
    "/users/{userId}/availability",
    summary="Same as /availability for one user",
    responses=ok(UserAvailabilityOut),
)
async def get_user_availability(
    session: DbSession,
    caller: CurrentCaller,
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
    )


@router.get(
    "/teams/{teamId}/availability",
    summary="Each accepted member's availability (team OWNER/ADMIN); as /availability?teamId=",
    responses=ok(list[MemberAvailabilityOut]),
)
async def get_team_availability(
    session: DbSession,
    caller: CurrentCaller,
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
    )
