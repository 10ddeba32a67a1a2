"""HTTP for event types: parse, authorise through the service, wrap in Cal.com's envelopes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.event_types import service
from bookable.event_types.schemas import (
    EventTypeCreate,
    EventTypeOut,
    EventTypeUpdate,
    event_type_out,
)

router = APIRouter(tags=["event-types"], route_class=IdempotentRoute)
EventTypesResponse = envelope("EventTypesResponse", event_types=list[EventTypeOut])
EventTypeResponse = envelope("EventTypeResponse", event_type=EventTypeOut)
EventTypeCreatedResponse = envelope(
    "EventTypeCreatedResponse", event_type=EventTypeOut, message=str
)


def event_type_json(
    request: Request, owned: service.OwnedEventType, *, fill_default_schedule: bool
) -> dict[str, Any]:
    return event_type_out(
        owned.event_type,
        owned.owner,
        team=owned.team,
        website_url=request.app.state.settings.website_url,
        fill_default_schedule=fill_default_schedule,
    ).model_dump(mode="json", by_alias=True)


@router.get(
    "/event-types",
    summary="List personal event types (yours, or anyone's for admins)",
    responses=ok(EventTypesResponse),
)
async def list_event_types(
    request: Request,
    session: DbSession,
    caller: CurrentCaller,
    slug: str | None = None,
    userId: Annotated[list[int] | None, Query()] = None,
) -> dict[str, Any]:
    owned = await service.list_event_types(session, caller, user_ids=userId or [], slug=slug)
    return {"event_types": [event_type_json(request, o, fill_default_schedule=True) for o in owned]}


@router.get(
    "/teams/{teamId}/event-types",
    summary="List a team's event types (its members)",
    responses=ok(EventTypesResponse),
)
async def list_team_event_types(
    request: Request, session: DbSession, caller: CurrentCaller, teamId: int
) -> dict[str, Any]:
    owned = await service.list_team_event_types(session, caller, teamId)
    return {"event_types": [event_type_json(request, o, fill_default_schedule=True) for o in owned]}


# Registered before /event-types/{id}, which would otherwise take "team" as an id.
@router.get(
    "/event-types/team/{teamId}",
    summary="List a team's event types (alias)",
    responses=ok(EventTypesResponse),
)
async def list_team_event_types_alias(
    request: Request, session: DbSession, caller: CurrentCaller, teamId: int
) -> dict[str, Any]:
    return await list_team_event_types(request, session, caller, teamId)


@router.post(
    "/event-types",
    summary="Create an event type (admins may pass `userId`)",
    responses=ok(EventTypeCreatedResponse),
)
async def create_event_type(
    request: Request, session: DbSession, caller: CurrentCaller, body: EventTypeCreate
) -> dict[str, Any]:
    owned = await service.create_event_type(session, caller, body)
    return {
        "event_type": event_type_json(request, owned, fill_default_schedule=False),
        "message": "Event type created successfully",
    }


@router.get("/event-types/{id}", summary="Get an event type", responses=ok(EventTypeResponse))
async def get_event_type(
    request: Request, session: DbSession, caller: CurrentCaller, id: int
) -> dict[str, Any]:
    owned = await service.get_owned_event_type(session, caller, id)
    return {"event_type": event_type_json(request, owned, fill_default_schedule=True)}


@router.patch(
    "/event-types/{id}",
    summary="Edit an event type; omitted fields stay as they are",
    responses=ok(EventTypeResponse),
)
async def update_event_type(
    request: Request,
    session: DbSession,
    caller: CurrentCaller,
    id: int,
    body: EventTypeUpdate,
) -> dict[str, Any]:
    owned = await service.update_event_type(session, caller, id, body)
    return {"event_type": event_type_json(request, owned, fill_default_schedule=False)}


@router.delete(
    "/event-types/{id}",
    summary="Delete an event type and its custom inputs",
    responses=ok(MessageResponse),
)
async def delete_event_type(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    await service.delete_event_type(session, caller, id)
    return {"message": f"Event Type with id: {id} deleted successfully"}
