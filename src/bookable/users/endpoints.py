"""HTTP for users: parse, authorise through the service, wrap in Cal.com's envelopes."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from bookable.core.auth import Caller, CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.core.pagination import Pagination
from bookable.users import service
from bookable.users.schemas import UserCreate, UserOut, UserUpdate, user_wire

router = APIRouter(tags=["users"], route_class=IdempotentRoute)
UserResponse = envelope("UserResponse", user=UserOut)
UsersResponse = envelope("UsersResponse", users=list[UserOut], total=int)


def user_json(user: Any) -> dict[str, Any]:
    return user_wire(user)


@router.get("/me", summary="The caller's own user", response_model=None, responses=ok(UserResponse))
async def get_me(request: Request) -> Response:
    # The hottest route. The caller is the one the v1 routes' `authenticate` put in the request
    # state (a `CurrentCaller` parameter would be one more dependency for FastAPI to solve on
    # each request). Rendered once per cached identity (any change to the user drops it).
    caller: Caller = request.state.caller
    body = caller.memo.get("me")
    if body is None:
        body = caller.memo["me"] = json.dumps(
            {"user": user_json(caller.user)}, separators=(",", ":")
        ).encode()
    return Response(content=body, media_type="application/json")


@router.get(
    "/users", summary="List users (yourself, or everyone for admins)", responses=ok(UsersResponse)
)
async def list_users(
    session: DbSession,
    caller: CurrentCaller,
    page: Pagination,
    email: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    users, total = await service.list_users(
        session, caller, emails=email or [], take=page.take, page=page.number
    )
    return {"users": [user_json(u) for u in users], "total": total}


@router.post(
    "/users", summary="Create a user (system-wide admins only)", responses=ok(UserResponse)
)
async def create_user(
    session: DbSession, caller: CurrentCaller, body: UserCreate
) -> dict[str, Any]:
    return {"user": user_json(await service.create_user(session, caller, body))}


@router.get("/users/{userId}", summary="Get a user", responses=ok(UserResponse))
async def get_user(session: DbSession, caller: CurrentCaller, userId: int) -> dict[str, Any]:
    return {"user": user_json(await service.get_user(session, caller, userId))}


@router.patch(
    "/users/{userId}",
    summary="Edit a user (yourself, or anyone for admins)",
    responses=ok(UserResponse),
)
async def update_user(
    session: DbSession,
    caller: CurrentCaller,
    userId: int,
    body: UserUpdate,
) -> dict[str, Any]:
    return {"user": user_json(await service.update_user(session, caller, userId, body))}


@router.delete(
    "/users/{userId}",
    summary="Delete a user (yourself, or anyone for admins)",
    responses=ok(MessageResponse),
)
async def delete_user(session: DbSession, caller: CurrentCaller, userId: int) -> dict[str, Any]:
    await service.delete_user(session, caller, userId)
    return {"message": f"User with id: {userId} deleted successfully"}
