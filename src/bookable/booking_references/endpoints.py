"""HTTP for booking references: parse, authorise through the service, wrap in envelopes.

Cal.com names this resource's envelopes in snake_case (`booking_reference`, `booking_references`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bookable.booking_references import service
from bookable.booking_references.schemas import (
    BookingReferenceCreate,
    BookingReferenceOut,
    BookingReferenceUpdate,
)
from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.models import BookingReference

router = APIRouter(tags=["booking-references"], route_class=IdempotentRoute)
BookingReferencesResponse = envelope(
    "BookingReferencesResponse", booking_references=list[BookingReferenceOut]
)
BookingReferenceResponse = envelope(
    "BookingReferenceResponse", booking_reference=BookingReferenceOut
)
BookingReferenceCreatedResponse = envelope(
    "BookingReferenceCreatedResponse", booking_reference=BookingReferenceOut, message=str
)


def booking_reference_json(reference: BookingReference) -> dict[str, Any]:
    return BookingReferenceOut.model_validate(reference).model_dump(mode="json", by_alias=True)


@router.get(
    "/booking-references",
    summary="List references of the bookings you host, without deleted ones (admins: all)",
    responses=ok(BookingReferencesResponse),
)
async def list_booking_references(session: DbSession, caller: CurrentCaller) -> dict[str, Any]:
    references = await service.list_booking_references(session, caller)
    return {"booking_references": [booking_reference_json(r) for r in references]}


@router.post(
    "/booking-references",
    summary="Add a reference to a booking you host",
    responses=ok(BookingReferenceCreatedResponse),
)
async def create_booking_reference(
    session: DbSession, caller: CurrentCaller, body: BookingReferenceCreate
) -> dict[str, Any]:
    reference = await service.create_booking_reference(session, caller, body)
    return {
        "booking_reference": booking_reference_json(reference),
        "message": "Booking reference created successfully",
    }


@router.get(
    "/booking-references/{id}",
    summary="Get a booking reference",
    responses=ok(BookingReferenceResponse),
)
async def get_booking_reference(
    session: DbSession, caller: CurrentCaller, id: int
) -> dict[str, Any]:
    reference = await service.get_booking_reference(session, caller, id)
    return {"booking_reference": booking_reference_json(reference)}


@router.patch(
    "/booking-references/{id}",
    summary="Edit a booking reference not marked deleted",
    responses=ok(BookingReferenceResponse),
)
async def update_booking_reference(
    session: DbSession, caller: CurrentCaller, id: int, body: BookingReferenceUpdate
) -> dict[str, Any]:
    reference = await service.update_booking_reference(session, caller, id, body)
    return {"booking_reference": booking_reference_json(reference)}


@router.delete(
    "/booking-references/{id}", summary="Delete a booking reference", responses=ok(MessageResponse)
)
async def delete_booking_reference(
    session: DbSession, caller: CurrentCaller, id: int
) -> dict[str, Any]:
    await service.delete_booking_reference(session, caller, id)
    return {"message": f"BookingReference with id: {id} deleted"}
