"""HTTP for memberships (`/memberships/{userId}_{teamId}`) and invites."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.memberships import service
from bookable.memberships.schemas import (
    InviteCreate,
    MembershipCreate,
    MembershipOut,
    MembershipUpdate,
    membership_json,
)
from bookable.teams.schemas import TeamOut

router = APIRouter(tags=["memberships"], route_class=IdempotentRoute)
# Documented only: the service answers a malformed id itself.
MembershipId = Annotated[
    str,
    Path(
        description="`{userId}_{teamId}`",
        json_schema_extra={"pattern": "^[0-9]+_[0-9]+$", "examples": ["4_2"]},
    ),
]


class MembershipWithTeamOut(MembershipOut):
    team: TeamOut | None = Field(default=None, description="Only with `include=team`")


MembershipsResponse = envelope("MembershipsResponse", memberships=list[MembershipWithTeamOut])
MembershipResponse = envelope("MembershipResponse", membership=MembershipOut)
MembershipWithTeamResponse = envelope(
    "MembershipWithTeamResponse", membership=MembershipWithTeamOut
)
MembershipCreatedResponse = envelope(
    "MembershipCreatedResponse", membership=MembershipOut, message=str
)
InviteResponse = envelope("InviteResponse", success=bool, message=str)


def _includes_team(include: str | None) -> bool:
    return include is not None and "team" in include.split(",")


@router.get(
    "/memberships",
    summary="List your memberships and those of teams you manage",
    responses=ok(MembershipsResponse),
)
async def list_memberships(
    session: DbSession,
    caller: CurrentCaller,
    userId: Annotated[list[int] | None, Query()] = None,
    teamId: Annotated[list[int] | None, Query()] = None,
    include: str | None = None,
) -> dict[str, Any]:
    with_team = _includes_team(include)
    rows = await service.list_memberships(session, caller, userId or [], teamId or [], with_team)
    return {"memberships": [membership_json(m, with_team) for m in rows]}


@router.post(
    "/memberships",
    summary="Add a user to a team (an invitation unless admin)",
    responses=ok(MembershipCreatedResponse),
)
async def create_membership(
    session: DbSession, caller: CurrentCaller, body: MembershipCreate
) -> dict[str, Any]:
    membership = await service.create_membership(session, caller, body)
    return {"membership": membership_json(membership), "message": "Membership created successfully"}


@router.get(
    "/memberships/{id}",
    summary="Get a membership by `{userId}_{teamId}`",
    responses=ok(MembershipWithTeamResponse),
)
async def get_membership(
    session: DbSession, caller: CurrentCaller, id: MembershipId, include: str | None = None
) -> dict[str, Any]:
    user_id, team_id = service.parse_id(id)
    with_team = _includes_team(include)
    membership = await service.get_membership(session, caller, user_id, team_id, with_team)
    return {"membership": membership_json(membership, with_team)}


@router.patch(
    "/memberships/{id}",
    summary="Accept an invite, change a role or impersonation",
    responses=ok(MembershipResponse),
)
async def update_membership(
    session: DbSession, caller: CurrentCaller, id: MembershipId, body: MembershipUpdate
) -> dict[str, Any]:
    user_id, team_id = service.parse_id(id)
    membership = await service.update_membership(session, caller, user_id, team_id, body)
    return {"membership": membership_json(membership)}


@router.delete(
    "/memberships/{id}", summary="Leave a team or remove a member", responses=ok(MessageResponse)
)
async def delete_membership(
    session: DbSession, caller: CurrentCaller, id: MembershipId
) -> dict[str, Any]:
    user_id, team_id = service.parse_id(id)
    await service.delete_membership(session, caller, user_id, team_id)
    return {"message": f"Membership with id: {id} deleted successfully"}


@router.post(
    "/invites",
    summary="Invite existing users to a team (no email is sent)",
    responses=ok(InviteResponse),
)
async def create_invite(
    session: DbSession, caller: CurrentCaller, body: InviteCreate
) -> dict[str, Any]:
    names = await service.invite(session, caller, body)
    return {"success": True, "message": f"{names} has been invited."}
