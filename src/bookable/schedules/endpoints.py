"""HTTP for schedules: parse, authorise through the service, wrap in Cal.com's envelopes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.models import Schedule
from bookable.schedules import service
from bookable.schedules.schemas import ScheduleCreate, ScheduleOut, ScheduleUpdate

router = APIRouter(tags=["schedules"], route_class=IdempotentRoute)
SchedulesResponse = envelope("SchedulesResponse", schedules=list[ScheduleOut])
ScheduleResponse = envelope("ScheduleResponse", schedule=ScheduleOut)
ScheduleCreatedResponse = envelope("ScheduleCreatedResponse", schedule=ScheduleOut, message=str)


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    return ScheduleOut.model_validate(schedule).model_dump(mode="json", by_alias=True)


@router.get(
    "/schedules",
    summary="List schedules (your own, or anyone's for admins)",
    responses=ok(SchedulesResponse),
)
async def list_schedules(
    session: DbSession,
    caller: CurrentCaller,
    userId: Annotated[list[int] | None, Query()] = None,
) -> dict[str, Any]:
    schedules = await service.list_schedules(session, caller, userId or [])
    return {"schedules": [schedule_json(s) for s in schedules]}


@router.post(
    "/schedules",
    summary="Create a schedule with Mon-Fri 09:00-17:00 availability",
    responses=ok(ScheduleCreatedResponse),
)
async def create_schedule(
    session: DbSession, caller: CurrentCaller, body: ScheduleCreate
) -> dict[str, Any]:
    schedule = await service.create_schedule(session, caller, body)
    return {"schedule": schedule_json(schedule), "message": "Schedule created successfully"}


@router.get("/schedules/{id}", summary="Get a schedule", responses=ok(ScheduleResponse))
async def get_schedule(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    return {"schedule": schedule_json(await service.get_schedule(session, caller, id))}


@router.patch(
    "/schedules/{id}",
    summary="Edit a schedule's name, time zone or (admins) owner",
    responses=ok(ScheduleResponse),
)
async def update_schedule(
    session: DbSession, caller: CurrentCaller, id: int, body: ScheduleUpdate
) -> dict[str, Any]:
    return {"schedule": schedule_json(await service.update_schedule(session, caller, id, body))}


@router.delete(
    "/schedules/{id}",
    summary="Delete a schedule and its availability",
    responses=ok(MessageResponse),
)
async def delete_schedule(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    await service.delete_schedule(session, caller, id)
    return {"message": f"Schedule with id: {id} deleted successfully"}
