"""HTTP for GET /availability and GET /users/{userId}/availability."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bookable.availability import service
from bookable.core.auth import CurrentCaller
from bookable.core.clock import clock
from bookable.core.db import DbSession
from bookable.core.errors import BadRequest
from bookable.core.routing import CheckedRoute

router = APIRouter(tags=["availability"], route_class=CheckedRoute)


def _required(name: str, value: str | None) -> str:
    if not value:
        raise BadRequest(f"invalid_type in '{name}': Required")
    return value


@router.get("/availability", summary="A user's working hours, busy times and free ranges")
async def get_availability(
    session: DbSession,
    caller: CurrentCaller,
    dateFrom: str | None = None,
    dateTo: str | None = None,
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
            date_from=_required("dateFrom", dateFrom),
            date_to=_required("dateTo", dateTo),
            event_type_id=eventTypeId,
            now=clock.now(),
        )
    return await service.user_availability(
        session,
        caller,
        user_id=userId,
        username=username,
        date_from=_required("dateFrom", dateFrom),
        date_to=_required("dateTo", dateTo),
        event_type_id=eventTypeId,
        now=clock.now(),
    )


@router.get("/users/{userId}/availability", summary="Same as /availability for one user")
async def get_user_availability(
    session: DbSession,
    caller: CurrentCaller,
    userId: int,
    dateFrom: str | None = None,
    dateTo: str | None = None,
    eventTypeId: int | None = None,
) -> dict[str, Any]:
    return await service.user_availability(
        session,
        caller,
        user_id=userId,
        username=None,
        date_from=_required("dateFrom", dateFrom),
        date_to=_required("dateTo", dateTo),
        event_type_id=eventTypeId,
        now=clock.now(),
    )


@router.get(
    "/teams/{teamId}/availability",
    summary="Each accepted member's availability (team OWNER/ADMIN); as /availability?teamId=",
)
async def get_team_availability(
    session: DbSession,
    caller: CurrentCaller,
    teamId: int,
    dateFrom: str | None = None,
    dateTo: str | None = None,
    eventTypeId: int | None = None,
) -> list[dict[str, Any]]:
    return await service.team_availability(
        session,
        caller,
        team_id=teamId,
        date_from=_required("dateFrom", dateFrom),
        date_to=_required("dateTo", dateTo),
        event_type_id=eventTypeId,
        now=clock.now(),
    )
