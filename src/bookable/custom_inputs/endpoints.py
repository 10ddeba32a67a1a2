"""HTTP for event-type custom inputs: parse, authorise through the service, wrap in envelopes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.custom_inputs import service
from bookable.custom_inputs.schemas import CustomInputCreate, CustomInputOut, CustomInputUpdate
from bookable.models import EventTypeCustomInput

router = APIRouter(tags=["custom-inputs"], route_class=IdempotentRoute)
CustomInputsResponse = envelope(
    "CustomInputsResponse", event_type_custom_inputs=list[CustomInputOut]
)
CustomInputResponse = envelope("CustomInputResponse", event_type_custom_input=CustomInputOut)
CustomInputCreatedResponse = envelope(
    "CustomInputCreatedResponse", event_type_custom_input=CustomInputOut, message=str
)


def custom_input_json(custom_input: EventTypeCustomInput) -> dict[str, Any]:
    return CustomInputOut.model_validate(custom_input).model_dump(mode="json", by_alias=True)


@router.get(
    "/custom-inputs",
    summary="List custom inputs of your event types (admins: all)",
    responses=ok(CustomInputsResponse),
)
async def list_custom_inputs(session: DbSession, caller: CurrentCaller) -> dict[str, Any]:
    inputs = await service.list_custom_inputs(session, caller)
    return {"event_type_custom_inputs": [custom_input_json(i) for i in inputs]}


@router.post(
    "/custom-inputs",
    summary="Add a custom input to one of your event types",
    responses=ok(CustomInputCreatedResponse),
)
async def create_custom_input(
    session: DbSession, caller: CurrentCaller, body: CustomInputCreate
) -> dict[str, Any]:
    custom_input = await service.create_custom_input(session, caller, body)
    return {
        "event_type_custom_input": custom_input_json(custom_input),
        "message": "EventTypeCustomInput created successfully",
    }


@router.get("/custom-inputs/{id}", summary="Get a custom input", responses=ok(CustomInputResponse))
async def get_custom_input(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    custom_input = await service.get_custom_input(session, caller, id)
    return {"event_type_custom_input": custom_input_json(custom_input)}


@router.patch(
    "/custom-inputs/{id}", summary="Edit a custom input", responses=ok(CustomInputResponse)
)
async def update_custom_input(
    session: DbSession, caller: CurrentCaller, id: int, body: CustomInputUpdate
) -> dict[str, Any]:
    custom_input = await service.update_custom_input(session, caller, id, body)
    return {"event_type_custom_input": custom_input_json(custom_input)}


@router.delete(
    "/custom-inputs/{id}", summary="Delete a custom input", responses=ok(MessageResponse)
)
async def delete_custom_input(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    await service.delete_custom_input(session, caller, id)
    return {"message": f"CustomInputEventType with id: {id} deleted successfully"}
