"""Use-cases on event types. Every list and every lookup starts from `readable(caller)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.auth import Caller
from bookable.core.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from bookable.core.permissions import readable_row
from bookable.core.schemas import is_db_id
from bookable.event_types.schemas import EventTypeCreate, EventTypeUpdate, HostIn
from bookable.models import EventType, Host, Membership, Schedule, Team, User
from bookable.teams import service as teams

MANAGED_NOT_AVAILABLE = "managed event types (parent and children) are not supported"

# Body fields that are not plain columns of the same name.
_RENAMED = {"metadata": "meta"}
# Body fields that are not stored as columns: the owner, the team, hosts, managed-type fields.
_NOT_COLUMNS = {
    "team_id", "parent_id", "hosts", "children", "user_id",
    "requires_confirmation_will_block_slot",
}  # fmt: skip
# Cal.com columns with one home here: offsetStart its column, requiresConfirmationWillBlockSlot
# the metadata key (no column of its own). Both are accepted at the top level and in metadata.
OFFSET_START_KEY = "offsetStart"
WILL_BLOCK_KEY = "requiresConfirmationWillBlockSlot"
# Nested objects are stored as the JSON a client would send back (camelCase keys).
_KEEP_NULLS = {"meta"}
# The columns the cross-field rules read, with the value a new row gets when they're omitted.
_RULE_DEFAULTS: dict[str, Any] = {
    "length": None,
    "period_type": "UNLIMITED",
    "period_start_date": None,
    "period_end_date": None,
    "period_days": None,
    "meta": None,
}


@dataclass(frozen=True, slots=True)
class OwnedEventType:
    """An event type with its owner or team (for `owner`, `team`, `link`, default schedule)."""

    event_type: EventType
    owner: User | None
    team: Team | None = None


def _accepted_team_ids(user_id: int) -> Select[tuple[int]]:
    return select(Membership.team_id).where(
        Membership.user_id == user_id, Membership.accepted.is_(True)
    )


def readable(caller: Caller) -> Select[tuple[EventType]]:
    """The event types a caller may see: their own and those of teams they are an accepted member
    of (any role); every one for a system-wide admin."""
    query = select(EventType)
    if caller.is_admin:
        return query
    return query.where(
        (EventType.user_id == caller.user_id)
        | EventType.team_id.in_(_accepted_team_ids(caller.user_id))
    )


def field_error(field: str, message: str) -> BadRequest:
    """A 400 naming a field, in Cal.com's `<code> in '<field>': <message>` form."""
    return BadRequest(f"custom in '{field}': {message}")


async def _owners(session: AsyncSession, event_types: list[EventType]) -> dict[int, User]:
    ids = {et.user_id for et in event_types if et.user_id is not None}
    if not ids:
        return {}
    users = await session.scalars(select(User).where(User.id.in_(ids)))
    return {user.id: user for user in users}


async def _teams(session: AsyncSession, event_types: list[EventType]) -> dict[int, Team]:
    ids = {et.team_id for et in event_types if et.team_id is not None}
    if not ids:
        return {}
    found = await session.scalars(select(Team).where(Team.id.in_(ids)))
    return {team.id: team for team in found}


async def _with_owners(session: AsyncSession, event_types: list[EventType]) -> list[OwnedEventType]:
    owners = await _owners(session, event_types)
    found = await _teams(session, event_types)
    return [
        OwnedEventType(et, owners.get(et.user_id or 0), found.get(et.team_id or 0))
        for et in event_types
    ]


async def list_event_types(
    session: AsyncSession, caller: Caller, *, user_ids: list[int], slug: str | None
) -> list[OwnedEventType]:
    """Personal event types: the caller's own; an admin's list spans every user (or `userId`s)."""
    if set(user_ids) - {caller.user_id} and not caller.is_admin:
        raise Unauthorized("ADMIN required")
    # Team event types are listed under /teams/{teamId}/event-types, as in Cal.com.
    query = readable(caller).where(EventType.team_id.is_(None))
    if user_ids:
        query = query.where(EventType.user_id.in_([u for u in user_ids if is_db_id(u)]))
    if slug is not None:
        query = query.where(EventType.slug == slug)
    event_types = list(await session.scalars(query.order_by(EventType.id)))
    return await _with_owners(session, event_types)


async def list_team_event_types(
    session: AsyncSession, caller: Caller, team_id: int
) -> list[OwnedEventType]:
    """A team's event types, for its accepted members (any role) and system admins."""
    team = await teams.get_team(session, caller, team_id)
    query = select(EventType).where(EventType.team_id == team.id).order_by(EventType.id)
    return await _with_owners(session, list(await session.scalars(query)))


async def get_event_type(session: AsyncSession, caller: Caller, event_type_id: int) -> EventType:
    """One readable event type. A non-admin learns nothing about ids that aren't theirs."""
    return await readable_row(
        session,
        caller,
        readable(caller).where(EventType.id == event_type_id),
        event_type_id,
        missing="Event type not found",
    )


async def get_owned_event_type(
    session: AsyncSession, caller: Caller, event_type_id: int
) -> OwnedEventType:
    event_type = await get_event_type(session, caller, event_type_id)
    return (await _with_owners(session, [event_type]))[0]


async def _can_manage_team(session: AsyncSession, caller: Caller, team_id: int) -> bool:
    if caller.is_admin:
        return True
    return await teams.accepted_role(session, caller.user_id, team_id) in teams.MANAGERS


async def editable_event_type(
    session: AsyncSession, caller: Caller, event_type_id: int
) -> EventType:
    """A readable event type the caller may change: their own personal one, a team one when they
    are the team's OWNER/ADMIN (system admins: any). Plain members get 403 `Forbidden`."""
    event_type = await get_event_type(session, caller, event_type_id)
    if event_type.team_id is not None and not await _can_manage_team(
        session, caller, event_type.team_id
    ):
        raise Forbidden()
    return event_type


def _stored_json(value: Any, *, keep_nulls: bool) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(
            mode="json", by_alias=True, exclude_unset=True, exclude_none=not keep_nulls
        )
    if isinstance(value, list):
        return [_stored_json(item, keep_nulls=keep_nulls) for item in value]
    return value


def _column_values(body: EventTypeCreate | EventTypeUpdate) -> dict[str, Any]:
    """The columns a body sets (only keys the client sent), nested objects as plain JSON."""
    values: dict[str, Any] = {}
    for field in body.model_fields_set - _NOT_COLUMNS:
        column = _RENAMED.get(field, field)
        values[column] = _stored_json(getattr(body, field), keep_nulls=column in _KEEP_NULLS)
    return values


def _fold_scheduling_flags(
    body: EventTypeCreate | EventTypeUpdate,
    values: dict[str, Any],
    stored_meta: dict[str, Any] | None,
) -> None:
    """Put offsetStart and requiresConfirmationWillBlockSlot where they live, whichever place
    the client sent them: `metadata.offsetStart` moves to the `offset_start` column, a top-level
    `requiresConfirmationWillBlockSlot` into metadata (merged with the metadata sent, else the
    stored one). The same field sent in both places with different values is a 400."""
    meta_sent = "meta" in values
    sent_meta = values.get("meta") if isinstance(values.get("meta"), dict) else None
    if sent_meta is not None and OFFSET_START_KEY in sent_meta:
        sent_meta = dict(sent_meta)
        offset = sent_meta.pop(OFFSET_START_KEY)
        if offset is not None:
            if "offset_start" in values and values["offset_start"] != offset:
                raise field_error(
                    f"metadata,{OFFSET_START_KEY}", "differs from the top-level offsetStart"
                )
            values["offset_start"] = offset
        values["meta"] = sent_meta
    will_block = body.requires_confirmation_will_block_slot
    if will_block is None:
        return
    if sent_meta is not None and sent_meta.get(WILL_BLOCK_KEY) not in (None, will_block):
        raise field_error(
            f"metadata,{WILL_BLOCK_KEY}", f"differs from the top-level {WILL_BLOCK_KEY}"
        )
    base = sent_meta if meta_sent else stored_meta
    values["meta"] = {**(base or {}), WILL_BLOCK_KEY: will_block}


def _reject_managed_fields(body: EventTypeCreate | EventTypeUpdate) -> None:
    # Empty lists and nulls are what a plain event type has: clients echoing a GET send them.
    if body.parent_id is not None:
        raise field_error("parentId", MANAGED_NOT_AVAILABLE)
    if body.children:
        raise field_error("children", MANAGED_NOT_AVAILABLE)


def _reject_team_only_fields(body: EventTypeCreate | EventTypeUpdate) -> None:
    """On a personal event type: hosts and team scheduling mean nothing."""
    refused = (
        ("schedulingType", body.scheduling_type is not None),
        ("hosts", bool(body.hosts)),
        ("assignAllTeamMembers", bool(body.assign_all_team_members)),
    )
    for field, present in refused:
        if present:
            raise field_error(field, "is only for team event types (give `teamId`)")


def _check_rules(state: dict[str, Any]) -> None:
    """Rules that tie several fields together, checked on the row as it would be stored."""
    period_type = state["period_type"]
    if period_type == "RANGE":
        start, end = state["period_start_date"], state["period_end_date"]
        if start is None:
            raise field_error("periodStartDate", "is required when periodType is RANGE")
        if end is None:
            raise field_error("periodEndDate", "is required when periodType is RANGE")
        if start > end:
            raise field_error("periodEndDate", "must not be before periodStartDate")
    elif period_type in {"ROLLING", "ROLLING_WINDOW"} and (state["period_days"] or 0) < 1:
        raise field_error("periodDays", f"must be at least 1 when periodType is {period_type}")
    metadata = state["meta"] or {}
    durations = metadata.get("multipleDuration") if isinstance(metadata, dict) else None
    if durations is not None and state["length"] not in durations:
        raise field_error(
            "metadata,multipleDuration", f"must include the event length ({state['length']})"
        )


async def _check_schedule(session: AsyncSession, owner_id: int, schedule_id: int | None) -> None:
    if schedule_id is None:
        return
    owned = await session.scalar(
        select(Schedule.id).where(Schedule.id == schedule_id, Schedule.user_id == owner_id)
    )
    if owned is None:
        raise field_error(
            "scheduleId", f"no schedule with id {schedule_id} belongs to the event type's owner"
        )


async def _check_team_schedule(
    session: AsyncSession, team_id: int, schedule_id: int | None
) -> None:
    if schedule_id is None:
        return
    found = await session.scalar(
        select(Schedule.id).where(
            Schedule.id == schedule_id,
            Schedule.user_id.in_(
                select(Membership.user_id).where(
                    Membership.team_id == team_id, Membership.accepted.is_(True)
                )
            ),
        )
    )
    if found is None:
        raise field_error(
            "scheduleId", f"no schedule with id {schedule_id} belongs to a member of the team"
        )


def _slug_taken(slug: str, *, team: bool) -> Conflict:
    whose = "this team" if team else "this user"
    return Conflict(f"slug '{slug}' is already used by another event type of {whose}")


async def _check_slug_free(
    session: AsyncSession,
    slug: str,
    *,
    owner_id: int | None,
    team_id: int | None,
    exclude_id: int | None,
) -> None:
    if team_id is not None:
        query = select(EventType.id).where(EventType.team_id == team_id, EventType.slug == slug)
    else:
        query = select(EventType.id).where(EventType.user_id == owner_id, EventType.slug == slug)
    if exclude_id is not None:
        query = query.where(EventType.id != exclude_id)
    if await session.scalar(query.limit(1)) is not None:
        raise _slug_taken(slug, team=team_id is not None)


async def _flush(session: AsyncSession, slug: str, *, team: bool = False) -> None:
    try:
        await session.flush()
    except IntegrityError as error:
        # A concurrent request took the slug between our check and this write.
        if "slug" in str(error.orig):
            raise _slug_taken(slug, team=team) from error
        raise


async def _team_for_create(session: AsyncSession, caller: Caller, team_id: int) -> Team:
    if not await _can_manage_team(session, caller, team_id):
        raise Unauthorized("ADMIN required for `teamId`")
    team = await session.get(Team, team_id)
    if team is None:  # only a system admin gets here with a missing team
        raise NotFound(f"Team with id: {team_id} not found")
    return team


async def _team_hosts(
    session: AsyncSession,
    team_id: int,
    hosts: list[HostIn],
    *,
    assign_all: bool,
    collective: bool,
) -> list[Host]:
    """The host rows for a team event type: every listed user must be an accepted member of the
    team, each `scheduleId` one of that host's schedules; `assignAllTeamMembers` adds every
    accepted member; COLLECTIVE makes every host fixed."""
    seen: set[int] = set()
    for host in hosts:
        if host.user_id in seen:
            raise field_error("hosts", f"user {host.user_id} is listed more than once")
        seen.add(host.user_id)
    members = set(
        await session.scalars(
            select(Membership.user_id).where(
                Membership.team_id == team_id, Membership.accepted.is_(True)
            )
        )
    )
    outsiders = [h.user_id for h in hosts if h.user_id not in members]
    if outsiders:
        names = ", ".join(str(u) for u in outsiders)
        raise field_error("hosts", f"users {names} are not accepted members of team {team_id}")
    for index, host in enumerate(hosts):
        if host.schedule_id is None:
            continue
        owned = await session.scalar(
            select(Schedule.id).where(
                Schedule.id == host.schedule_id, Schedule.user_id == host.user_id
            )
        )
        if owned is None:
            raise field_error(
                f"hosts,{index},scheduleId",
                f"no schedule with id {host.schedule_id} belongs to user {host.user_id}",
            )
    rows = [
        Host(user_id=h.user_id, is_fixed=bool(h.is_fixed), schedule_id=h.schedule_id) for h in hosts
    ]
    if assign_all:
        rows += [Host(user_id=u, is_fixed=False) for u in sorted(members - seen)]
    if collective:
        for row in rows:
            row.is_fixed = True
    return sorted(rows, key=lambda row: row.user_id)


async def _owner_for_create(session: AsyncSession, caller: Caller, user_id: int | None) -> User:
    if user_id is not None and user_id != caller.user_id and not caller.is_admin:
        raise Unauthorized("ADMIN required for `userId`")
    # An admin without `userId` creates for themself (Cal.com answers 400 instead).
    owner_id = user_id if user_id is not None else caller.user_id
    owner = await session.get(User, owner_id)
    if owner is None:
        raise NotFound(f"User with id: {owner_id} not found")
    return owner


async def create_event_type(
    session: AsyncSession, caller: Caller, body: EventTypeCreate
) -> OwnedEventType:
    _reject_managed_fields(body)
    if body.team_id is not None:
        return await _create_team_event_type(session, caller, body, body.team_id)
    owner = await _owner_for_create(session, caller, body.user_id)
    _reject_team_only_fields(body)
    values = _column_values(body)
    _fold_scheduling_flags(body, values, None)
    _check_rules({**_RULE_DEFAULTS, **values})
    await _check_schedule(session, owner.id, values.get("schedule_id"))
    await _check_slug_free(session, body.slug, owner_id=owner.id, team_id=None, exclude_id=None)
    event_type = EventType(user_id=owner.id, hosts=[], custom_inputs=[], **values)
    session.add(event_type)
    await _flush(session, body.slug)
    return OwnedEventType(event_type, owner)


async def _create_team_event_type(
    session: AsyncSession, caller: Caller, body: EventTypeCreate, team_id: int
) -> OwnedEventType:
    """A team event type: `teamId` set, `userId` null; the caller is the team's OWNER/ADMIN."""
    if body.user_id is not None:
        raise field_error("userId", "a team event type has no owner: give `teamId` or `userId`")
    team = await _team_for_create(session, caller, team_id)
    values = _column_values(body)
    _fold_scheduling_flags(body, values, None)
    _check_rules({**_RULE_DEFAULTS, **values})
    await _check_team_schedule(session, team.id, values.get("schedule_id"))
    await _check_slug_free(session, body.slug, owner_id=None, team_id=team.id, exclude_id=None)
    hosts = await _team_hosts(
        session,
        team.id,
        body.hosts or [],
        assign_all=bool(body.assign_all_team_members),
        collective=body.scheduling_type == "COLLECTIVE",
    )
    event_type = EventType(team_id=team.id, user_id=None, hosts=hosts, custom_inputs=[], **values)
    session.add(event_type)
    await _flush(session, body.slug, team=True)
    return OwnedEventType(event_type, None, team)


async def update_event_type(
    session: AsyncSession, caller: Caller, event_type_id: int, body: EventTypeUpdate
) -> OwnedEventType:
    event_type = await editable_event_type(session, caller, event_type_id)
    _reject_managed_fields(body)
    team_id = event_type.team_id
    if "team_id" in body.model_fields_set and body.team_id != team_id:
        raise field_error("teamId", "an event type cannot move to another team or owner")
    if team_id is None:
        _reject_team_only_fields(body)
    values = _column_values(body)
    _fold_scheduling_flags(body, values, event_type.meta)
    _check_rules({column: getattr(event_type, column) for column in _RULE_DEFAULTS} | values)
    owner_id = event_type.user_id
    new_slug = values.get("slug", event_type.slug)
    if team_id is not None:
        await _check_team_schedule(session, team_id, values.get("schedule_id"))
        if new_slug != event_type.slug:
            await _check_slug_free(
                session, new_slug, owner_id=None, team_id=team_id, exclude_id=event_type.id
            )
    elif owner_id is not None:
        await _check_schedule(session, owner_id, values.get("schedule_id"))
        if new_slug != event_type.slug:
            await _check_slug_free(
                session, new_slug, owner_id=owner_id, team_id=None, exclude_id=event_type.id
            )
    scheduling_type = values.get("scheduling_type", event_type.scheduling_type)
    collective = scheduling_type == "COLLECTIVE"
    # Omitted hosts stay as they are (Cal.com deletes them); an explicit [] clears them.
    if team_id is not None and ("hosts" in body.model_fields_set or body.assign_all_team_members):
        if "hosts" in body.model_fields_set:
            wanted = body.hosts or []
        else:
            wanted = [
                HostIn(user_id=h.user_id, is_fixed=h.is_fixed, schedule_id=h.schedule_id)
                for h in event_type.hosts
            ]
        hosts = await _team_hosts(
            session,
            team_id,
            wanted,
            assign_all=bool(body.assign_all_team_members),
            collective=collective,
        )
        event_type.hosts = []
        await session.flush()
        event_type.hosts = hosts
    elif "hosts" in body.model_fields_set:
        event_type.hosts = []
    elif collective:
        for host in event_type.hosts:
            host.is_fixed = True
    for column, value in values.items():
        setattr(event_type, column, value)
    await _flush(session, event_type.slug, team=team_id is not None)
    return (await _with_owners(session, [event_type]))[0]


async def delete_event_type(session: AsyncSession, caller: Caller, event_type_id: int) -> None:
    event_type = await editable_event_type(session, caller, event_type_id)
    # Custom inputs and hosts go with it (ORM cascade and ON DELETE CASCADE).
    await session.delete(event_type)
    await session.flush()
