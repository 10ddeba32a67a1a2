"""Use-cases on destination calendars: where a user's (or one event type's) bookings are written.

Cal.com's `/destination-calendars`, with the validation it promises and skips: the credential is
the owner's (given as ``credentialId`` or found), the calendar exists in it and is writable
(listed live), a non-admin's row is always theirs, one row per user and per event type (a second
is a 409).

Each request is checked twice by the same code (`plan_create`, `plan_update`): once in the route's
preflight, in a short session of its own, so nobody makes this server connect anywhere for a
calendar they may not use, and once more inside the request's transaction, where the row is
written. Between the two the preflight lists the calendars live (`calendars/preflights.py`); no
network call happens here.

Every read starts from `readable_destinations(caller)`: the caller's own row and the rows of the
event types they manage (their personal ones; their teams' when they are an accepted OWNER or
ADMIN); every row for a system-wide admin. A row outside it answers exactly as a missing one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.calendars.apps import APPS, CalendarApp, find_app
from bookable.calendars.providers.base import RemoteCalendar
from bookable.calendars.schemas import DestinationCalendarCreate, DestinationCalendarUpdate
from bookable.core.auth import Caller
from bookable.core.errors import BadRequest, Conflict, NotFound, Unauthorized
from bookable.core.schemas import is_db_id
from bookable.models import Credential, DestinationCalendar, EventType, Membership, User
from bookable.teams.service import MANAGERS

DESTINATION_NOT_FOUND = "Destination calendar not found"
ADMIN_REQUIRED_FOR_USER_ID = "ADMIN required for `userId`"
EXTERNAL_ID_REQUIRED = "External Id is required with integration value"
INTEGRATION_REQUIRED = "Integration value is required with external ID"
NOT_FOR_EVENT_TYPE = "The provided destination calendar can not be linked to an event type"
ONLY_FOR_EVENT_TYPE = "The provided destination calendar can only be linked to an event type"
CHANGED_MEANWHILE = (
    "The destination calendar or its credentials changed while this request was checked; "
    "send it again"
)


# --- who sees what -----------------------------------------------------------------------------


def managed_event_type_ids(caller: Caller) -> Select[tuple[int]]:
    """The event types whose destination a (non-admin) caller may read and set: their personal
    ones, and their teams' where they are an accepted OWNER or ADMIN."""
    managed_teams = select(Membership.team_id).where(
        Membership.user_id == caller.user_id,
        Membership.accepted.is_(True),
        Membership.role.in_(MANAGERS),
    )
    return select(EventType.id).where(
        (EventType.team_id.is_(None) & (EventType.user_id == caller.user_id))
        | EventType.team_id.in_(managed_teams)
    )


def readable_destinations(caller: Caller) -> Select[tuple[DestinationCalendar]]:
    query = select(DestinationCalendar)
    if caller.is_admin:
        return query
    return query.where(
        (DestinationCalendar.user_id == caller.user_id)
        | DestinationCalendar.event_type_id.in_(managed_event_type_ids(caller))
    )


async def list_destinations(
    session: AsyncSession, caller: Caller, user_ids: Sequence[int]
) -> list[DestinationCalendar]:
    """The caller's rows; an admin's span everyone, or the users named (their own rows and
    those of their personal event types). A non-admin naming someone else: 401, as Cal.com."""
    query = readable_destinations(caller)
    if user_ids:
        if not caller.is_admin and set(user_ids) != {caller.user_id}:
            raise Unauthorized("ADMIN required")
        wanted = sorted({i for i in user_ids if is_db_id(i)})
        their_event_types = select(EventType.id).where(EventType.user_id.in_(wanted))
        query = query.where(
            DestinationCalendar.user_id.in_(wanted)
            | DestinationCalendar.event_type_id.in_(their_event_types)
        )
    return list(await session.scalars(query.order_by(DestinationCalendar.id)))


async def get_destination(
    session: AsyncSession, caller: Caller, destination_id: int
) -> DestinationCalendar:
    row = None
    if is_db_id(destination_id):
        row = await session.scalar(
            readable_destinations(caller).where(DestinationCalendar.id == destination_id)
        )
    if row is None:
        raise NotFound(DESTINATION_NOT_FOUND)
    return row


async def delete_destination(session: AsyncSession, caller: Caller, destination_id: int) -> None:
    row = await get_destination(session, caller, destination_id)
    await session.delete(row)
    await session.flush()


# --- checks shared by POST and PATCH -----------------------------------------------------------


def destination_app(name: str) -> CalendarApp:
    """The app ``integration`` names (credential type or app slug); it must take events."""
    app = find_app(name)
    if app is None:
        writable = ", ".join(f"{a.type} ({a.app_id})" for a in APPS if not a.read_only)
        raise BadRequest(f"invalid_enum_value in 'integration': expected one of {writable}")
    if app.read_only:
        raise BadRequest(
            f"custom in 'integration': {name} is an ICS feed, which is read-only: it can never "
            "be a destination calendar"
        )
    return app


async def _managed_event_type(
    session: AsyncSession, caller: Caller, event_type_id: int
) -> EventType:
    """An event type the caller may set a destination for; any other (someone else's, a team's
    they only belong to, a missing one) is the same 404."""
    query = select(EventType).where(EventType.id == event_type_id)
    if not caller.is_admin:
        query = query.where(EventType.id.in_(managed_event_type_ids(caller)))
    event_type = await session.scalar(query)
    if event_type is None:
        raise NotFound(f"Event type with ID {event_type_id} not found")
    return event_type


def _acting_user(caller: Caller, user_id: int | None) -> int | None:
    """Body ``userId``: admins may name anyone; anyone may name themselves."""
    if user_id is not None and user_id != caller.user_id and not caller.is_admin:
        raise Unauthorized(ADMIN_REQUIRED_FOR_USER_ID)
    return user_id


async def _require_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"User with id: {user_id} not found")
    return user


async def _no_row_for_user(session: AsyncSession, user_id: int, except_id: int = 0) -> None:
    found = await session.scalar(
        select(DestinationCalendar.id).where(
            DestinationCalendar.user_id == user_id, DestinationCalendar.id != except_id
        )
    )
    if found is not None:
        raise Conflict(
            f"User {user_id} already has a destination calendar (id {found}); change that one "
            "with PATCH"
        )


async def _no_row_for_event_type(
    session: AsyncSession, event_type_id: int, except_id: int = 0
) -> None:
    found = await session.scalar(
        select(DestinationCalendar.id).where(
            DestinationCalendar.event_type_id == event_type_id, DestinationCalendar.id != except_id
        )
    )
    if found is not None:
        raise Conflict(
            f"Event type {event_type_id} already has a destination calendar (id {found}); "
            "change that one with PATCH"
        )


async def _owner_credentials(
    session: AsyncSession, owner_id: int, app: CalendarApp, credential_id: int | None
) -> tuple[Credential, ...]:
    """The owner's credentials of the app (only ``credential_id`` when given). A credential
    that is someone else's, of another app or missing: one answer, naming the field."""
    query = select(Credential).where(Credential.user_id == owner_id, Credential.type == app.type)
    if credential_id is not None:
        query = query.where(Credential.id == credential_id)
    credentials = tuple(await session.scalars(query.order_by(Credential.id)))
    if credential_id is not None and not credentials:
        raise BadRequest(
            f"custom in 'credentialId': user {owner_id} has no {app.type} credential "
            f"with id {credential_id}"
        )
    if not credentials:
        raise BadRequest(
            f"custom in 'integration': user {owner_id} has no {app.type} credential; connect "
            "one with POST /v1/credentials first"
        )
    return credentials


# --- plans: what a request asks for, checked against the database ------------------------------


@dataclass(frozen=True, slots=True)
class CalendarCheck:
    """A calendar to find, live, among these credentials of its owner (network: preflight)."""

    owner_id: int
    integration: str  # the credential type
    external_id: str
    credentials: tuple[Credential, ...]


@dataclass(frozen=True, slots=True)
class CalendarChoice:
    """The calendar as a credential listed it: writable, found live."""

    credential_id: int
    external_id: str
    email: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    """The row a request will write: the owner (user or event type) and, when the calendar or
    the credential changes, the live check it needs first."""

    user_id: int | None
    event_type_id: int | None
    check: CalendarCheck | None


async def plan_create(
    session: AsyncSession, caller: Caller, body: DestinationCalendarCreate
) -> Plan:
    """POST's rules, in Cal.com's order where it has one: `userId` (admins), the integration,
    the event type, one row per user / event type, then the owner's credentials."""
    requested_user = _acting_user(caller, body.user_id)
    app = destination_app(body.integration)
    if requested_user is not None and requested_user != caller.user_id:
        await _require_user(session, requested_user)
    if body.event_type_id is not None:
        event_type = await _managed_event_type(session, caller, body.event_type_id)
        await _no_row_for_event_type(session, event_type.id)
        # The calendar is the caller's; an admin's, the user named or the event type's owner.
        owner_id = requested_user or event_type.user_id or caller.user_id
        user_id, event_type_id = None, event_type.id
    else:
        # Never an orphan: a non-admin's row is theirs, and an admin's without `userId` too.
        owner_id = requested_user or caller.user_id
        await _no_row_for_user(session, owner_id)
        user_id, event_type_id = owner_id, None
    credentials = await _owner_credentials(session, owner_id, app, body.credential_id)
    check = CalendarCheck(owner_id, app.type, body.external_id, credentials)
    return Plan(user_id, event_type_id, check)


async def plan_update(
    session: AsyncSession, caller: Caller, destination_id: int, body: DestinationCalendarUpdate
) -> Plan:
    """PATCH's rules. A row stays at its level (user or event type); a user's row moves to
    another user only by an admin; the calendar is checked live again when it, its credential
    or the credential's owner changes."""
    if body.integration is not None and body.external_id is None:
        raise BadRequest(EXTERNAL_ID_REQUIRED)
    if body.integration is None and body.external_id is not None:
        raise BadRequest(INTEGRATION_REQUIRED)
    row = await get_destination(session, caller, destination_id)
    requested_user = _acting_user(caller, body.user_id)
    if requested_user is not None and requested_user != caller.user_id:
        await _require_user(session, requested_user)
    app = destination_app(body.integration) if body.integration is not None else None
    current_owner = await session.scalar(
        select(Credential.user_id).where(Credential.id == row.credential_id)
    )

    if row.event_type_id is None:
        if body.event_type_id is not None:
            raise BadRequest(NOT_FOR_EVENT_TYPE)
        assert row.user_id is not None  # the CHECK constraint: exactly one owner
        user_id: int | None = requested_user or row.user_id
        event_type_id: int | None = None
        if user_id != row.user_id:
            await _no_row_for_user(session, user_id, except_id=row.id)
        owner_id = user_id
    else:
        if "event_type_id" in body.model_fields_set and body.event_type_id is None:
            raise BadRequest(ONLY_FOR_EVENT_TYPE)
        event_type = await _managed_event_type(
            session, caller, body.event_type_id or row.event_type_id
        )
        if event_type.id != row.event_type_id:
            await _no_row_for_event_type(session, event_type.id, except_id=row.id)
        user_id, event_type_id = None, event_type.id
        # A new calendar is the caller's; an admin's, the user named, else the event type's
        # owner's or the current credential's owner's.
        if requested_user is not None or not caller.is_admin:
            owner_id = requested_user or caller.user_id
        else:
            owner_id = event_type.user_id or current_owner or caller.user_id

    changes_calendar = body.external_id is not None
    changes_credential = body.credential_id not in (None, row.credential_id)
    # Another user's row, or an event type's row given a `userId` that does not hold its
    # calendar: the calendar must be found among that user's credentials.
    changes_owner = owner_id != current_owner and (
        row.event_type_id is None or requested_user is not None
    )
    if not (changes_calendar or changes_credential or changes_owner):
        return Plan(user_id, event_type_id, None)
    if app is None:
        app = destination_app(row.integration)
    credentials = await _owner_credentials(session, owner_id, app, body.credential_id)
    external_id = body.external_id if body.external_id is not None else row.external_id
    return Plan(user_id, event_type_id, CalendarCheck(owner_id, app.type, external_id, credentials))


# --- writes (inside the request's transaction) -------------------------------------------------


def _confirmed(plan: Plan, choice: CalendarChoice | None) -> CalendarChoice | None:
    """The preflight's live answer, if it still fits the plan made in this transaction."""
    if plan.check is None:
        return None
    if choice is None or choice.credential_id not in {c.id for c in plan.check.credentials}:
        raise Conflict(CHANGED_MEANWHILE)
    return choice


async def _primary_email(session: AsyncSession, owner_id: int, choice: CalendarChoice) -> str:
    """The calendar's address, else its owner's (as Cal.com)."""
    if choice.email:
        return choice.email
    return (await _require_user(session, owner_id)).email


async def _write(
    session: AsyncSession, plan: Plan, change: Callable[[], None], row_id: int = 0
) -> None:
    """Make ``change`` and flush it in a savepoint; a unique violation (a concurrent request won
    the race) is the same 409 as the check before it. The change is made inside the savepoint:
    opening one flushes what is pending, which would put the write outside it."""
    try:
        async with session.begin_nested():
            change()
            await session.flush()
    except IntegrityError:
        if plan.event_type_id is not None:
            await _no_row_for_event_type(session, plan.event_type_id, except_id=row_id)
        elif plan.user_id is not None:
            await _no_row_for_user(session, plan.user_id, except_id=row_id)
        raise Conflict(CHANGED_MEANWHILE) from None


async def create_destination(
    session: AsyncSession,
    caller: Caller,
    body: DestinationCalendarCreate,
    choice: CalendarChoice | None,
) -> DestinationCalendar:
    plan = await plan_create(session, caller, body)
    found = _confirmed(plan, choice)
    assert found is not None and plan.check is not None  # a create always checks live
    row = DestinationCalendar(
        integration=plan.check.integration,
        external_id=found.external_id,
        primary_email=await _primary_email(session, plan.check.owner_id, found),
        user_id=plan.user_id,
        event_type_id=plan.event_type_id,
        credential_id=found.credential_id,
    )
    await _write(session, plan, lambda: session.add(row))
    return row


async def update_destination(
    session: AsyncSession,
    caller: Caller,
    destination_id: int,
    body: DestinationCalendarUpdate,
    choice: CalendarChoice | None,
) -> DestinationCalendar:
    plan = await plan_update(session, caller, destination_id, body)
    found = _confirmed(plan, choice)
    row = await get_destination(session, caller, destination_id)
    email = None
    if found is not None and plan.check is not None:
        email = await _primary_email(session, plan.check.owner_id, found)

    def change() -> None:
        row.user_id = plan.user_id
        row.event_type_id = plan.event_type_id
        if found is not None and plan.check is not None:
            row.integration = plan.check.integration
            row.external_id = found.external_id
            row.credential_id = found.credential_id
            row.primary_email = email

    await _write(session, plan, change, row.id)
    return row


async def create_user_destination(
    session: AsyncSession,
    owner_id: int,
    integration: str,
    calendar: RemoteCalendar,
    credential_id: int,
) -> DestinationCalendar:
    """credential-sync's ``createDestinationCalendar``: ``owner_id``'s destination, in a
    calendar the preflight just listed. One per user: a second one is a 409 (Cal.com fails
    on the unique index)."""
    await _no_row_for_user(session, owner_id)
    row = DestinationCalendar(
        integration=integration,
        external_id=calendar.external_id,
        primary_email=calendar.email or (await _require_user(session, owner_id)).email,
        user_id=owner_id,
        credential_id=credential_id,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        await _no_row_for_user(session, owner_id)
        raise Conflict(CHANGED_MEANWHILE) from None
    return row
