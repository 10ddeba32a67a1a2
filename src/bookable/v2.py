"""The sliver of Cal.com API v2 that v1 clients touch: n8n's credential test calls GET /v2/me."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from bookable.core.auth import CurrentCaller
from bookable.core.openapi import ok
from bookable.core.routing import CheckedRoute

router = APIRouter(tags=["v2"], route_class=CheckedRoute)


class V2User(BaseModel):
    id: int
    username: str | None
    email: str
    name: str | None
    avatarUrl: str | None
    bio: str | None
    timeFormat: int | None
    defaultScheduleId: int | None
    weekStart: str
    timeZone: str
    locale: str | None
    organizationId: None
    organization: None


class V2MeResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["success"]
    data: V2User


@router.get(
    "/v2/me",
    summary="The caller, in API v2's envelope (for n8n's credential check)",
    responses=ok(V2MeResponse),
)
async def get_me_v2(caller: CurrentCaller) -> dict[str, Any]:
    user = caller.user
    return {
        "status": "success",
        "data": {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "name": user.name,
            "avatarUrl": user.avatar_url,
            "bio": user.bio,
            "timeFormat": user.time_format,
            "defaultScheduleId": user.default_schedule_id,
            "weekStart": user.week_start,
            "timeZone": user.time_zone,
            "locale": user.locale,
            "organizationId": None,
            "organization": None,
        },
    }
