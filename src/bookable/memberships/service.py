"""Use-cases on memberships and invites. Every read starts from `readable(caller)`.

A caller sees their own memberships (accepted or not) and every membership of the teams they
are an accepted OWNER or ADMIN of; system-wide admins see all. A team always keeps at least one
accepted OWNER: the change that would leave it without one is refused (409).
"""

from __future__ import annotations

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bookable.core.auth import Caller
from bookable.core.errors import BadRequest, Conflict, Forbidden, NotFound
from bookable.core.permissions import readable_row
from bookable.core.schemas import is_db_id
from bookable.memberships.schemas import InviteCreate, MembershipCreate, MembershipUpdate
from bookable.models import Membership, MembershipRole, Team, User
from bookable.teams.service import MANAGERS, accepted_role

LAST_OWNER = (
    "A team must keep at least one accepted OWNER: make another member OWNER first, "
    "or delete the team"
)


def readable(caller: Caller) -> Select[tuple[Membership]]:
    query = select(Membership)
    if caller.is_admin:
        return query
    managed = select(Membership.team_id).where(
        Membership.user_id == caller.user_id,
        Membership.accepted.is_(True),
        Membership.role.in_(MANAGERS),
    )
    return query.where(or_(Membership.user_id == caller.user_id, Membership.team_id.in_(managed)))


def parse_id(raw: str) -> tuple[int, int]:
    """`{userId}_{teamId}` → (userId, teamId)."""
    user_part, _, team_part = raw.partition("_")
    if not user_part.isascii() or not user_part.isdigit():
        raise BadRequest("userId is not a number")
    if not team_part.isascii() or not team_part.isdigit():
        raise BadRequest("teamId is not a number")
    return int(user_part), int(team_part)


async def list_memberships(
    session: AsyncSession,
    caller: Caller,
    user_ids: list[int],
    team_ids: list[int],
    include_team: bool,
) -> list[Membership]:
    query = readable(caller)
    if user_ids:
        if not caller.is_admin and set(user_ids) != {caller.user_id}:
            raise Forbidden("ADMIN required")
        query = query.where(Membership.user_id.in_([i for i in user_ids if is_db_id(i)]))
    if team_ids:
        # Narrows within what the caller may see anyway, so it needs no admin role.
        query = query.where(Membership.team_id.in_([i for i in team_ids if is_db_id(i)]))
    if include_team:
        query = query.options(selectinload(Membership.team))
    return list(await session.scalars(query.order_by(Membership.id)))


async def get_membership(
    session: AsyncSession, caller: Caller, user_id: int, team_id: int, include_team: bool = False
) -> Membership:
    query = readable(caller).where(Membership.user_id == user_id, Membership.team_id == team_id)
    if include_team:
        query = query.options(selectinload(Membership.team))
    return await readable_row(
        session,
        caller,
        query,
        user_id if is_db_id(team_id) else 0,
        missing="Membership not found",
    )


async def _other_owners(session: AsyncSession, membership: Membership) -> int:
    return (
        await session.scalar(
            select(func.count(Membership.id)).where(
                Membership.team_id == membership.team_id,
                Membership.id != membership.id,
                Membership.role == MembershipRole.OWNER,
                Membership.accepted.is_(True),
            )
        )
        or 0
    )


async def _keep_an_owner(session: AsyncSession, membership: Membership) -> None:
    """Refuse to take away the team's last accepted OWNER (called before the change)."""
    is_owner = membership.role == MembershipRole.OWNER and membership.accepted
    if is_owner and await _other_owners(session, membership) == 0:
        raise Conflict(LAST_OWNER)


async def _can_grant(
    session: AsyncSession, caller: Caller, team_id: int, role: MembershipRole
) -> None:
    """Only team OWNER/ADMIN hand out roles, and only an OWNER hands out OWNER."""
    if caller.is_admin:
        return
    mine = await accepted_role(session, caller.user_id, team_id)
    if mine not in MANAGERS or (role == MembershipRole.OWNER and mine != MembershipRole.OWNER):
        raise Forbidden()


async def create_membership(
    session: AsyncSession, caller: Caller, body: MembershipCreate
) -> Membership:
    # A team the caller does not manage and a missing team look alike to non-admins (403).
    await _can_grant(session, caller, body.team_id, body.role)
    if not caller.is_admin and body.accepted:
        # Adding someone is inviting them: only they (or an admin) can accept.
        raise Forbidden("ADMIN needed for `accepted`")
    if caller.is_admin and await session.get(Team, body.team_id) is None:
        raise NotFound("Team not found")
    if await session.scalar(select(User.id).where(User.id == body.user_id)) is None:
        raise NotFound(f"User with id: {body.user_id} not found")
    if await _find(session, body.user_id, body.team_id) is not None:
        raise Conflict("Membership already exists")
    membership = Membership(**body.model_dump())
    session.add(membership)
    await session.flush()
    return membership


async def _find(session: AsyncSession, user_id: int, team_id: int) -> Membership | None:
    return await session.scalar(
        select(Membership).where(Membership.user_id == user_id, Membership.team_id == team_id)
    )


async def update_membership(
    session: AsyncSession, caller: Caller, user_id: int, team_id: int, body: MembershipUpdate
) -> Membership:
    membership = await get_membership(session, caller, user_id, team_id)
    values = body.model_dump(exclude_unset=True)
    is_member = membership.user_id == caller.user_id
    if "accepted" in values and values["accepted"] != membership.accepted:
        if not is_member and not caller.is_admin:
            raise Forbidden("Only the invited user can accept the invite")
    if "role" in values and values["role"] != membership.role:
        await _can_grant(session, caller, team_id, values["role"])
        if membership.role == MembershipRole.OWNER:
            # Demoting an OWNER takes an OWNER, as granting OWNER does.
            await _can_grant(session, caller, team_id, MembershipRole.OWNER)
    if "disable_impersonation" in values and values["disable_impersonation"] != (
        membership.disable_impersonation
    ):
        if not is_member and not caller.is_admin:
            raise Forbidden("Only the member can change `disableImpersonation`")
    stays_owner = values.get("role", membership.role) == MembershipRole.OWNER and values.get(
        "accepted", membership.accepted
    )
    if not stays_owner:
        await _keep_an_owner(session, membership)
    for key, value in values.items():
        setattr(membership, key, value)
    await session.flush()
    await session.refresh(membership)
    return membership


async def delete_membership(
    session: AsyncSession, caller: Caller, user_id: int, team_id: int
) -> None:
    ids_fit = is_db_id(user_id) and is_db_id(team_id)  # bigger ones name no row
    if caller.is_admin:
        target = await _find(session, user_id, team_id) if ids_fit else None
        if target is None:
            raise NotFound("Membership not found")
    else:
        # Who the caller is in the team comes first, so strangers learn nothing about it.
        mine = await _find(session, caller.user_id, team_id) if ids_fit else None
        if mine is None or (not mine.accepted and user_id != caller.user_id):
            raise Forbidden("You are not a member of the team")
        target = mine if user_id == caller.user_id else await _find(session, user_id, team_id)
        if target is None:
            raise NotFound("Membership not found")
        if target is not mine:
            allowed = {
                MembershipRole.OWNER: {MembershipRole.ADMIN, MembershipRole.MEMBER},
                MembershipRole.ADMIN: {MembershipRole.MEMBER},
            }.get(mine.role, set())
            if target.role not in allowed:
                raise Forbidden("You don't have the appropriate role to delete this membership")
    await _keep_an_owner(session, target)
    await session.delete(target)
    await session.flush()


async def invite(session: AsyncSession, caller: Caller, body: InviteCreate) -> str:
    """Give each named existing user a pending membership; returns the names as sent."""
    if not caller.is_admin:
        mine = await accepted_role(session, caller.user_id, body.team_id)
        if mine not in MANAGERS:
            raise Forbidden("You can't add members to this team")
        if body.role == MembershipRole.OWNER and mine != MembershipRole.OWNER:
            raise Forbidden()
    elif await session.get(Team, body.team_id) is None:
        raise NotFound("Team not found")
    names = body.username_or_email
    wanted = [names] if isinstance(names, str) else names
    users: list[int] = []
    for name in wanted:
        user_id = await session.scalar(
            select(User.id).where(
                or_(User.username == name, func.lower(User.email) == name.strip().lower())
            )
        )
        if user_id is None:
            raise BadRequest(
                f"{name} is not a user of this server; Bookable sends no invitation emails, "
                "so only existing users can be invited"
            )
        users.append(user_id)
    for user_id in dict.fromkeys(users):
        if await _find(session, user_id, body.team_id) is None:  # members stay as they are
            session.add(
                Membership(team_id=body.team_id, user_id=user_id, role=body.role, accepted=False)
            )
    await session.flush()
    # Cal.com interpolates the value as sent; a JavaScript array renders as "a,b".
    return names if isinstance(names, str) else ",".join(names)
