"""Use-cases on event-type custom inputs. Every list and lookup starts from `readable(caller)`.

Whoever may see an event type may see its inputs (`event_types.service.readable`); whoever may
change it may change them (`event_types.service.editable_event_type`: for a team event type, the
team's OWNER/ADMIN, not a plain member). Both rules live once, in event_types, and are reused here.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.auth import Caller
from bookable.core.permissions import readable_row
from bookable.custom_inputs.schemas import CustomInputCreate, CustomInputUpdate
from bookable.event_types import service as event_types
from bookable.models import EventType, EventTypeCustomInput


def readable(caller: Caller) -> Select[tuple[EventTypeCustomInput]]:
    """The inputs of the event types a caller may see (every input for a system-wide admin)."""
    query = select(EventTypeCustomInput)
    if caller.is_admin:
        return query
    visible_event_types = event_types.readable(caller).with_only_columns(EventType.id)
    return query.where(EventTypeCustomInput.event_type_id.in_(visible_event_types))


async def list_custom_inputs(session: AsyncSession, caller: Caller) -> list[EventTypeCustomInput]:
    return list(await session.scalars(readable(caller).order_by(EventTypeCustomInput.id)))


async def get_custom_input(
    session: AsyncSession, caller: Caller, custom_input_id: int
) -> EventTypeCustomInput:
    """One readable input; a non-admin gets 403 whether the id is someone else's or missing."""
    return await readable_row(
        session,
        caller,
        readable(caller).where(EventTypeCustomInput.id == custom_input_id),
        custom_input_id,
        missing="Custom input not found",
    )


async def create_custom_input(
    session: AsyncSession, caller: Caller, body: CustomInputCreate
) -> EventTypeCustomInput:
    # Someone else's (or a missing) event type: 403 for users, 404 for admins.
    event_type = await event_types.editable_event_type(session, caller, body.event_type_id)
    custom_input = EventTypeCustomInput(
        event_type_id=event_type.id,
        label=body.label,
        type=body.type,
        required=body.required,
        options=_options_json(body),
        placeholder=body.placeholder,
    )
    session.add(custom_input)
    await session.flush()
    return custom_input


async def update_custom_input(
    session: AsyncSession, caller: Caller, custom_input_id: int, body: CustomInputUpdate
) -> EventTypeCustomInput:
    custom_input = await get_custom_input(session, caller, custom_input_id)
    await event_types.editable_event_type(session, caller, custom_input.event_type_id)
    values = body.model_dump(exclude_unset=True)
    if "options" in values:
        values["options"] = _options_json(body)
    if "event_type_id" in values:
        # Moving an input onto an event type needs the same right as creating one there.
        await event_types.editable_event_type(session, caller, values["event_type_id"])
    for column, value in values.items():
        setattr(custom_input, column, value)
    await session.flush()
    return custom_input


async def delete_custom_input(session: AsyncSession, caller: Caller, custom_input_id: int) -> None:
    custom_input = await get_custom_input(session, caller, custom_input_id)
    await event_types.editable_event_type(session, caller, custom_input.event_type_id)
    await session.delete(custom_input)
    await session.flush()


def _options_json(body: CustomInputCreate | CustomInputUpdate) -> list[dict[str, str]] | None:
    if body.options is None:
        return None
    return [option.model_dump() for option in body.options]
