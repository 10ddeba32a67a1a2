"""HTTP for availabilities: parse, authorise through the service, wrap in Cal.com's envelopes.

Only POST is routed on the collection: `GET /availabilities` is Cal.com's 405."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bookable.availabilities import service
from bookable.availabilities.schemas import (
    AvailabilityCreate,
    AvailabilityOut,
    AvailabilityUpdate,
)
from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.models import Availability

router = APIRouter(tags=["availabilities"], route_class=IdempotentRoute)
AvailabilityResponse = envelope("AvailabilityResponse", availability=AvailabilityOut)
AvailabilityCreatedResponse = envelope(
    "AvailabilityCreatedResponse", availability=AvailabilityOut, message=str
)


def availability_json(availability: Availability) -> dict[str, Any]:
    return AvailabilityOut.model_validate(availability).model_dump(mode="json", by_alias=True)


@router.post(
    "/availabilities",
    summary="Add an availability rule to one of your schedules",
    responses=ok(AvailabilityCreatedResponse),
)
async def create_availability(
    session: DbSession, caller: CurrentCaller, body: AvailabilityCreate
) -> dict[str, Any]:
    availability = await service.create_availability(session, caller, body)
    return {
        "availability": availability_json(availability),
        "message": "Availability created successfully",
    }


@router.get(
    "/availabilities/{id}", summary="Get an availability rule", responses=ok(AvailabilityResponse)
)
async def get_availability(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    availability = await service.get_availability(session, caller, id)
    return {"availability": availability_json(availability)}


@router.patch(
    "/availabilities/{id}",
    summary="Edit an availability rule's times, days or date",
    responses=ok(AvailabilityResponse),
)
async def update_availability(
    session: DbSession, caller: CurrentCaller, id: int, body: AvailabilityUpdate
) -> dict[str, Any]:
    availability = await service.update_availability(session, caller, id, body)
    return {"availability": availability_json(availability)}


@router.delete(
    "/availabilities/{id}", summary="Delete an availability rule", responses=ok(MessageResponse)
)
async def delete_availability(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    await service.delete_availability(session, caller, id)
    return {"message": f"Availability with id: {id} deleted successfully"}
