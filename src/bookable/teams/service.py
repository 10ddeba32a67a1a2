"""Use-cases on teams. Every read starts from `readable(caller)`.

A caller sees the teams they are an accepted member of (system-wide admins: every team). Roles
come from accepted memberships only: an invitation grants nothing until it is accepted.
"""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.auth import Caller
from bookable.core.errors import BadRequest, Conflict, NotFound, Unauthorized
from bookable.core.permissions import readable_row
from bookable.core.schemas import is_db_id
from bookable.models import Membership, MembershipRole, Team, User
from bookable.teams.schemas import TeamCreate, TeamUpdate, team_columns

MANAGERS = (MembershipRole.OWNER, MembershipRole.ADMIN)


def readable(caller: Caller) -> Select[tuple[Team]]:
    query = select(Team)
    if caller.is_admin:
        return query
    mine = select(Membership.team_id).where(
        Membership.user_id == caller.user_id, Membership.accepted.is_(True)
    )
    return query.where(Team.id.in_(mine))


async def accepted_role(session: AsyncSession, user_id: int, team_id: int) -> MembershipRole | None:
    """The role of ``user_id`` in ``team_id`` once they accepted, else None."""
    if not is_db_id(team_id):
        return None
    return await session.scalar(
        select(Membership.role).where(
            Membership.user_id == user_id,
            Membership.team_id == team_id,
            Membership.accepted.is_(True),
        )
    )


async def list_teams(session: AsyncSession, caller: Caller) -> list[Team]:
    return list(await session.scalars(readable(caller).order_by(Team.id)))


async def get_team(session: AsyncSession, caller: Caller, team_id: int) -> Team:
    return await readable_row(
        session,
        caller,
        readable(caller).where(Team.id == team_id),
        team_id,
        missing="Team not found",
    )


async def _check_slug(session: AsyncSession, slug: str | None, team_id: int | None) -> None:
    if slug is None:
        return
    query = select(Team.id).where(func.lower(Team.slug) == slug.lower())
    if team_id is not None:
        query = query.where(Team.id != team_id)
    if await session.scalar(query.limit(1)) is not None:
        raise Conflict("Team slug already exists")


async def _check_parent(session: AsyncSession, caller: Caller, parent_id: int | None) -> None:
    """A team may only be placed under a team the caller owns or administers."""
    if parent_id is None:
        return
    if caller.is_admin:
        if await session.scalar(select(Team.id).where(Team.id == parent_id)) is None:
            raise NotFound("Parent team not found")
        return
    if await accepted_role(session, caller.user_id, parent_id) not in MANAGERS:
        raise Unauthorized("Unauthorized: OWNER or ADMIN role required in the parent team")


def _check_admin_only_flags(caller: Caller, body: TeamCreate | TeamUpdate) -> None:
    # Organisations and platform teams widen what their admins may do; only system admins say so.
    for field, key in (("is_organization", "isOrganization"), ("is_platform", "isPlatform")):
        if not caller.is_admin and getattr(body, field):
            raise Unauthorized(f"ADMIN required for `{key}`")


async def create_team(
    session: AsyncSession, caller: Caller, body: TeamCreate
) -> tuple[Team, Membership]:
    owner_id = caller.user_id
    if body.owner_id is not None and body.owner_id != caller.user_id:
        if not caller.is_admin:
            raise Unauthorized("ADMIN required for `ownerId`")
        if await session.scalar(select(User.id).where(User.id == body.owner_id)) is None:
            raise NotFound(f"User with id: {body.owner_id} not found")
        owner_id = body.owner_id
    _check_admin_only_flags(caller, body)
    await _check_slug(session, body.slug, None)
    await _check_parent(session, caller, body.parent_id)
    team = Team(**team_columns(body))
    session.add(team)
    await session.flush()
    owner = Membership(team_id=team.id, user_id=owner_id, role=MembershipRole.OWNER, accepted=True)
    session.add(owner)
    await session.flush()
    return team, owner


async def update_team(
    session: AsyncSession, caller: Caller, team_id: int, body: TeamUpdate
) -> Team:
    team = await get_team(session, caller, team_id)
    if (
        not caller.is_admin
        and await accepted_role(session, caller.user_id, team.id) not in MANAGERS
    ):
        raise Unauthorized("Unauthorized: OWNER or ADMIN required")
    values = team_columns(body)
    if values.get("parent_id") == team.id:
        raise BadRequest("Bad request: Parent id cannot be the same as the team id.")
    _check_admin_only_flags(caller, body)
    await _check_slug(session, values.get("slug"), team.id)
    if values.get("parent_id") != team.parent_id:
        await _check_parent(session, caller, values.get("parent_id"))
    for key, value in values.items():
        setattr(team, key, value)
    await session.flush()
    return team


async def delete_team(session: AsyncSession, caller: Caller, team_id: int) -> None:
    team = await get_team(session, caller, team_id)
    if not caller.is_admin and await accepted_role(session, caller.user_id, team.id) != (
        MembershipRole.OWNER
    ):
        raise Unauthorized("Unauthorized: OWNER or ADMIN role required")
    await session.delete(team)  # memberships and team event types go with it (ON DELETE CASCADE)
    await session.flush()
