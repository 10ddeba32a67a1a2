"""HTTP for attendees: parse, authorise through the service, wrap in Cal.com's envelopes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bookable.attendees import service
from bookable.attendees.schemas import AttendeeCreate, AttendeeOut, AttendeeUpdate
from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.models import Attendee

router = APIRouter(tags=["attendees"], route_class=IdempotentRoute)
AttendeesResponse = envelope("AttendeesResponse", attendees=list[AttendeeOut])
AttendeeResponse = envelope("AttendeeResponse", attendee=AttendeeOut)
AttendeeCreatedResponse = envelope("AttendeeCreatedResponse", attendee=AttendeeOut, message=str)


def attendee_json(attendee: Attendee) -> dict[str, Any]:
    return AttendeeOut.model_validate(attendee).model_dump(mode="json", by_alias=True)


@router.get(
    "/attendees",
    summary="List attendees of the bookings you host (admins: all)",
    responses=ok(AttendeesResponse),
)
async def list_attendees(session: DbSession, caller: CurrentCaller) -> dict[str, Any]:
    attendees = await service.list_attendees(session, caller)
    return {"attendees": [attendee_json(a) for a in attendees]}


@router.post(
    "/attendees",
    summary="Add an attendee to a booking you host",
    responses=ok(AttendeeCreatedResponse),
)
async def create_attendee(
    session: DbSession, caller: CurrentCaller, body: AttendeeCreate
) -> dict[str, Any]:
    attendee = await service.create_attendee(session, caller, body)
    return {"attendee": attendee_json(attendee), "message": "Attendee created successfully"}


@router.get("/attendees/{id}", summary="Get an attendee", responses=ok(AttendeeResponse))
async def get_attendee(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    return {"attendee": attendee_json(await service.get_attendee(session, caller, id))}


@router.patch(
    "/attendees/{id}",
    summary="Edit an attendee or move them to another booking",
    responses=ok(AttendeeResponse),
)
async def update_attendee(
    session: DbSession, caller: CurrentCaller, id: int, body: AttendeeUpdate
) -> dict[str, Any]:
    return {"attendee": attendee_json(await service.update_attendee(session, caller, id, body))}


@router.delete(
    "/attendees/{id}",
    summary="Remove an attendee from their booking",
    responses=ok(MessageResponse),
)
async def delete_attendee(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    await service.delete_attendee(session, caller, id)
    return {"message": f"Attendee with id: {id} deleted successfully"}
