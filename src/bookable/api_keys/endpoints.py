"""HTTP for API keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import Field

from bookable.api_keys import service
from bookable.api_keys.schemas import ApiKeyCreate, ApiKeyOut, ApiKeyUpdate
from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.models import ApiKey

router = APIRouter(tags=["api-keys"], route_class=IdempotentRoute)
# Documented only: the service answers a malformed id itself.
ApiKeyId = Annotated[str, Path(json_schema_extra={"format": "uuid"})]


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The clear key, shown this once")


ApiKeysResponse = envelope("ApiKeysResponse", api_keys=list[ApiKeyOut])
ApiKeyResponse = envelope("ApiKeyResponse", api_key=ApiKeyOut)
ApiKeyCreatedResponse = envelope("ApiKeyCreatedResponse", api_key=ApiKeyCreatedOut, message=str)

CREATED_MESSAGE = (
    "API key created successfully. Save the `key` value as it won't be displayed again."
)


def key_json(key: ApiKey) -> dict[str, Any]:
    return ApiKeyOut.model_validate(key).model_dump(mode="json", by_alias=True)


@router.get(
    "/api-keys",
    summary="List API keys (your own, or anyone's for admins)",
    responses=ok(ApiKeysResponse),
)
async def list_keys(
    session: DbSession,
    caller: CurrentCaller,
    userId: Annotated[list[int] | None, Query()] = None,
) -> dict[str, Any]:
    keys = await service.list_keys(session, caller, userId or [])
    return {"api_keys": [key_json(k) for k in keys]}


@router.post(
    "/api-keys",
    summary="Create an API key; the clear key is returned once",
    responses=ok(ApiKeyCreatedResponse),
)
async def create_key(
    request: Request,
    session: DbSession,
    caller: CurrentCaller,
    body: ApiKeyCreate | None = None,
) -> dict[str, Any]:
    # Every field is optional, so a bare POST (no body at all) creates a key too.
    body = body or ApiKeyCreate()
    key, clear = await service.create_key(
        session,
        caller,
        prefix=request.app.state.settings.api_key_prefix,
        note=body.note,
        expires_at=body.expires_at,
        never_expires=body.never_expires,
        user_id=body.user_id,
    )
    return {"api_key": {**key_json(key), "key": clear}, "message": CREATED_MESSAGE}


@router.get("/api-keys/{id}", summary="Get an API key", responses=ok(ApiKeyResponse))
async def get_key(session: DbSession, caller: CurrentCaller, id: ApiKeyId) -> dict[str, Any]:
    return {"api_key": key_json(await service.get_key(session, caller, id))}


@router.patch("/api-keys/{id}", summary="Edit an API key's note", responses=ok(ApiKeyResponse))
async def update_key(
    session: DbSession,
    caller: CurrentCaller,
    id: ApiKeyId,
    body: ApiKeyUpdate,
) -> dict[str, Any]:
    return {"api_key": key_json(await service.update_key(session, caller, id, body.note))}


@router.delete(
    "/api-keys/{id}", summary="Delete (revoke) an API key", responses=ok(MessageResponse)
)
async def delete_key(session: DbSession, caller: CurrentCaller, id: ApiKeyId) -> dict[str, Any]:
    await service.delete_key(session, caller, id)
    return {"message": f"ApiKey with id: {id} deleted"}
