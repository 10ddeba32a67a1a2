"""Use-cases on event types. Every list and every lookup starts from `readable(caller)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.auth import Caller
from bookable.core.errors import BadRequest, Conflict, NotFound, Unauthorized
from bookable.core.permissions import readable_row
from bookable.core.schemas import is_db_id
from bookable.event_types.schemas import EventTypeCreate, EventTypeUpdate
from bookable.models import EventType, Schedule, User

TEAMS_NOT_AVAILABLE = "team event types are not supported yet"

# Body fields that are not plain columns of the same name.
_RENAMED = {"metadata": "meta"}
# Body fields that are not stored as columns: team fields (refused for now) and the owner.
_NOT_COLUMNS = {"team_id", "scheduling_type", "parent_id", "hosts", "children", "user_id"}
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
    """An event type with its owner (for `owner`, `link` and the default schedule)."""

    event_type: EventType
    owner: User | None


def readable(caller: Caller) -> Select[tuple[EventType]]:
    """The event types a caller may see: their own, or every one for a system-wide admin."""
    query = select(EventType)
    return query if caller.is_admin else query.where(EventType.user_id == caller.user_id)


def field_error(field: str, message: str) -> BadRequest:
    """A 400 naming a field, in Cal.com's `<code> in '<field>': <message>` form."""
    return BadRequest(f"custom in '{field}': {message}")


async def _owners(session: AsyncSession, event_types: list[EventType]) -> dict[int, User]:
    ids = {et.user_id for et in event_types if et.user_id is not None}
    if not ids:
        return {}
    users = await session.scalars(select(User).where(User.id.in_(ids)))
    return {user.id: user for user in users}


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
    owners = await _owners(session, event_types)
    return [OwnedEventType(et, owners.get(et.user_id or 0)) for et in event_types]


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
    owners = await _owners(session, [event_type])
    return OwnedEventType(event_type, owners.get(event_type.user_id or 0))


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


def _reject_team_fields(body: EventTypeCreate | EventTypeUpdate) -> None:
    # Empty lists and nulls are what a personal event type has: clients echoing a GET send them.
    refused = (
        ("teamId", body.team_id is not None),
        ("schedulingType", body.scheduling_type is not None),
        ("parentId", body.parent_id is not None),
        ("hosts", bool(body.hosts)),
        ("children", bool(body.children)),
        ("assignAllTeamMembers", bool(body.assign_all_team_members)),
    )
    for field, present in refused:
        if present:
            raise field_error(field, TEAMS_NOT_AVAILABLE)


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


def _slug_taken(slug: str) -> Conflict:
    return Conflict(f"slug '{slug}' is already used by another event type of this user")


async def _check_slug_free(
    session: AsyncSession, owner_id: int, slug: str, *, exclude_id: int | None
) -> None:
    query = select(EventType.id).where(EventType.user_id == owner_id, EventType.slug == slug)
    if exclude_id is not None:
        query = query.where(EventType.id != exclude_id)
    if await session.scalar(query) is not None:
        raise _slug_taken(slug)


async def _flush(session: AsyncSession, slug: str) -> None:
    try:
        await session.flush()
    except IntegrityError as error:
        # A concurrent request took the slug between our check and this write.
        if "slug" in str(error.orig):
            raise _slug_taken(slug) from error
        raise


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
    owner = await _owner_for_create(session, caller, body.user_id)
    _reject_team_fields(body)
    values = _column_values(body)
    _check_rules({**_RULE_DEFAULTS, **values})
    await _check_schedule(session, owner.id, values.get("schedule_id"))
    await _check_slug_free(session, owner.id, body.slug, exclude_id=None)
    event_type = EventType(user_id=owner.id, hosts=[], custom_inputs=[], **values)
    session.add(event_type)
    await _flush(session, body.slug)
    return OwnedEventType(event_type, owner)


async def update_event_type(
    session: AsyncSession, caller: Caller, event_type_id: int, body: EventTypeUpdate
) -> OwnedEventType:
    event_type = await get_event_type(session, caller, event_type_id)
    _reject_team_fields(body)
    values = _column_values(body)
    _check_rules({column: getattr(event_type, column) for column in _RULE_DEFAULTS} | values)
    owner_id = event_type.user_id
    if owner_id is not None:
        await _check_schedule(session, owner_id, values.get("schedule_id"))
        if values.get("slug", event_type.slug) != event_type.slug:
            await _check_slug_free(session, owner_id, values["slug"], exclude_id=event_type.id)
    # Omitted hosts stay as they are (Cal.com deletes them); an explicit [] clears them.
    if "hosts" in body.model_fields_set:
        event_type.hosts = []
    for column, value in values.items():
        setattr(event_type, column, value)
    await _flush(session, event_type.slug)
    owners = await _owners(session, [event_type])
    return OwnedEventType(event_type, owners.get(owner_id or 0))


async def delete_event_type(session: AsyncSession, caller: Caller, event_type_id: int) -> None:
    event_type = await get_event_type(session, caller, event_type_id)
    # Custom inputs and hosts go with it (ORM cascade and ON DELETE CASCADE).
    await session.delete(event_type)
    await session.flush()
