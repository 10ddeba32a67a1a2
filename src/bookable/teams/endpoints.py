"""HTTP for teams: parse, authorise through the service, wrap in Cal.com's envelopes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.memberships.schemas import MembershipOut, membership_json
from bookable.teams import service
from bookable.teams.schemas import TeamCreate, TeamOut, TeamUpdate, team_json

router = APIRouter(tags=["teams"], route_class=IdempotentRoute)
TeamsResponse = envelope("TeamsResponse", teams=list[TeamOut])
TeamResponse = envelope("TeamResponse", team=TeamOut)
TeamCreatedResponse = envelope(
    "TeamCreatedResponse", team=TeamOut, owner=MembershipOut, message=str
)


@router.get(
    "/teams",
    summary="List the teams you belong to (every team for admins)",
    responses=ok(TeamsResponse),
)
async def list_teams(session: DbSession, caller: CurrentCaller) -> dict[str, Any]:
    return {"teams": [team_json(t) for t in await service.list_teams(session, caller)]}


@router.post(
    "/teams",
    summary="Create a team; its creator (or an admin's `ownerId`) is OWNER",
    responses=ok(TeamCreatedResponse),
)
async def create_team(
    session: DbSession, caller: CurrentCaller, body: TeamCreate
) -> dict[str, Any]:
    team, owner = await service.create_team(session, caller, body)
    return {
        "team": team_json(team),
        "owner": membership_json(owner),
        "message": "Team created successfully. We also made user with ID="
        f"{owner.user_id} the owner of this team.",
    }


@router.get("/teams/{teamId}", summary="Get a team you belong to", responses=ok(TeamResponse))
async def get_team(session: DbSession, caller: CurrentCaller, teamId: int) -> dict[str, Any]:
    return {"team": team_json(await service.get_team(session, caller, teamId))}


@router.patch("/teams/{teamId}", summary="Edit a team (OWNER or ADMIN)", responses=ok(TeamResponse))
async def update_team(
    session: DbSession, caller: CurrentCaller, teamId: int, body: TeamUpdate
) -> dict[str, Any]:
    return {"team": team_json(await service.update_team(session, caller, teamId, body))}


@router.delete(
    "/teams/{teamId}",
    summary="Delete a team with its memberships (OWNER)",
    responses=ok(MessageResponse),
)
async def delete_team(session: DbSession, caller: CurrentCaller, teamId: int) -> dict[str, Any]:
    await service.delete_team(session, caller, teamId)
    return {"message": f"Team with id: {teamId} deleted successfully"}
