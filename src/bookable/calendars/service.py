"""Use-cases on credentials and selected calendars, inside the request's transaction (no network:
the connecting and listing happened in the route's preflight, see `calendars/preflights.py`).

Every read starts from `readable_credentials(caller)` / `readable_selected(caller)`: own rows, or
everyone's for a system-wide admin. Someone else's credential answers exactly as a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.calendars.apps import INTEGRATIONS
from bookable.calendars.connections import Connected
from bookable.calendars.writes import retry_failed_writes
from bookable.core.auth import Caller
from bookable.core.encryption import Encryptor
from bookable.core.errors import BadRequest, Conflict, Forbidden, NotFound
from bookable.core.schemas import is_db_id
from bookable.models import Credential, SelectedCalendar, User

CREDENTIAL_NOT_FOUND = "Credential not found"


def readable_credentials(caller: Caller) -> Select[tuple[Credential]]:
    query = select(Credential)
    return query if caller.is_admin else query.where(Credential.user_id == caller.user_id)


def readable_selected(caller: Caller) -> Select[tuple[SelectedCalendar]]:
    query = select(SelectedCalendar)
    if caller.is_admin:
        return query
    return query.where(SelectedCalendar.user_id == caller.user_id)


def check_user_filter(caller: Caller, user_ids: Sequence[int]) -> list[int]:
    """The ``userId`` filter of a list: admins only (a user may name themselves)."""
    if user_ids and not caller.is_admin and set(user_ids) != {caller.user_id}:
        raise Forbidden("ADMIN required")
    return sorted({i for i in user_ids if is_db_id(i)})


async def require_user(session: AsyncSession, user_id: int) -> None:
    if await session.get(User, user_id) is None:
        raise NotFound(f"User with id: {user_id} not found")


# --- credentials -------------------------------------------------------------------------------


async def list_credentials(
    session: AsyncSession, caller: Caller, user_ids: Sequence[int]
) -> list[Credential]:
    query = readable_credentials(caller)
    if user_ids:
        query = query.where(Credential.user_id.in_(check_user_filter(caller, user_ids)))
    return list(await session.scalars(query.order_by(Credential.id)))


async def get_credential(session: AsyncSession, caller: Caller, credential_id: int) -> Credential:
    credential = None
    if is_db_id(credential_id):
        credential = await session.scalar(
            readable_credentials(caller).where(Credential.id == credential_id)
        )
    if credential is None:
        raise NotFound(CREDENTIAL_NOT_FOUND)
    return credential


async def save_connected(
    session: AsyncSession,
    owner_id: int,
    connected: Connected,
    encryptor: Encryptor,
    settings: dict[str, Any] | None,
) -> Credential:
    """Store a key that connected. The same account (identity) twice is the first credential,
    with the new key (a changed password) and valid again."""
    await require_user(session, owner_id)
    credential = await session.scalar(
        select(Credential).where(
            Credential.user_id == owner_id, Credential.identity == connected.identity
        )
    )
    encrypted = encryptor.encrypt_json(connected.key)
    if credential is None:
        credential = Credential(
            user_id=owner_id,
            type=connected.app.type,
            app_id=connected.app.app_id,
            encrypted_key=encrypted,
            identity=connected.identity,
            invalid=False,
            settings=settings or {"tentativeIsBusy": True, "transparentIsBusy": False},
        )
        try:
            # Added inside the savepoint: opening it flushes what is pending, so a row added
            # before would be inserted outside it, and a clash would end the transaction.
            async with session.begin_nested():
                session.add(credential)
        except IntegrityError:
            # Another request stored the same account a moment ago.
            raise Conflict("This calendar account is being connected by another request") from None
    else:
        credential.encrypted_key = encrypted
        credential.invalid = False
        if settings is not None:
            credential.settings = {**(credential.settings or {}), **settings}
        await session.flush()
        # A new key (a changed password): writes that failed on the old one go again.
        await retry_failed_writes(session, credential.id)
    return credential


async def update_credential(
    session: AsyncSession,
    caller: Caller,
    credential_id: int,
    *,
    connected: Connected | None,
    encryptor: Encryptor,
    settings: dict[str, Any] | None,
) -> Credential:
    credential = await get_credential(session, caller, credential_id)
    if connected is not None:
        if connected.identity != credential.identity:
            clash = await session.scalar(
                select(Credential.id).where(
                    Credential.user_id == credential.user_id,
                    Credential.identity == connected.identity,
                    Credential.id != credential.id,
                )
            )
            if clash is not None:
                raise Conflict(f"This account is already connected as credential {clash}")
        credential.encrypted_key = encryptor.encrypt_json(connected.key)
        credential.identity = connected.identity
        credential.invalid = False
    if settings is not None:
        credential.settings = {**(credential.settings or {}), **settings}
    await session.flush()
    if connected is not None:
        # A new key (a changed password): writes that failed on the old one go again.
        await retry_failed_writes(session, credential.id)
    return credential


async def delete_credential(session: AsyncSession, caller: Caller, credential_id: int) -> None:
    credential = await get_credential(session, caller, credential_id)
    # Its selected calendars go with it: ON DELETE CASCADE (SQLite runs with foreign_keys=ON).
    await session.delete(credential)
    await session.flush()


# --- selected calendars ------------------------------------------------------------------------


def parse_selected_id(raw: str) -> tuple[int, str, str]:
    """``{userId}_{integration}_{externalId}``, the integration matched against the known ones
    (longest first), so the externalId may itself contain ``_`` or ``_calendar_``."""
    user_part, sep, rest = raw.partition("_")
    if not sep or not user_part.isdigit() or not is_db_id(int(user_part)):
        raise BadRequest("userId is not a number")
    for integration in sorted(INTEGRATIONS, key=len, reverse=True):
        if rest.startswith(integration + "_"):
            external_id = rest[len(integration) + 1 :]
            if not external_id:
                raise BadRequest("Missing externalId")
            return int(user_part), integration, external_id
    raise BadRequest(
        f"Missing integration: the id must read {{userId}}_{{integration}}_{{externalId}} with "
        f"an integration of {', '.join(INTEGRATIONS)}"
    )


async def list_selected(
    session: AsyncSession, caller: Caller, user_ids: Sequence[int]
) -> list[SelectedCalendar]:
    query = readable_selected(caller).where(SelectedCalendar.event_type_id.is_(None))
    if user_ids:
        query = query.where(SelectedCalendar.user_id.in_(check_user_filter(caller, user_ids)))
    order = (SelectedCalendar.user_id, SelectedCalendar.created_at, SelectedCalendar.id)
    return list(await session.scalars(query.order_by(*order)))


async def find_selected(
    session: AsyncSession, user_id: int, integration: str, external_id: str
) -> SelectedCalendar | None:
    """The row, whether the externalId came percent-encoded or not (CalDAV hrefs often hold
    escapes such as ``%20``, which the path decoding removes)."""
    rows = await session.scalars(
        select(SelectedCalendar).where(
            SelectedCalendar.user_id == user_id,
            SelectedCalendar.integration == integration,
            SelectedCalendar.event_type_id.is_(None),
        )
    )
    wanted = unquote(external_id)
    candidates = list(rows)
    for row in candidates:
        if row.external_id == external_id:
            return row
    for row in candidates:
        if unquote(row.external_id) == wanted:
            return row
    return None


async def get_selected(session: AsyncSession, caller: Caller, raw_id: str) -> SelectedCalendar:
    user_id, integration, external_id = parse_selected_id(raw_id)
    if not caller.is_admin and user_id != caller.user_id:
        raise Forbidden()
    row = await find_selected(session, user_id, integration, external_id)
    if row is None:
        raise NotFound("Selected calendar not found")
    return row


async def create_selected(
    session: AsyncSession, owner_id: int, integration: str, external_id: str, credential_id: int
) -> SelectedCalendar:
    if await find_selected(session, owner_id, integration, external_id) is not None:
        raise duplicate(owner_id, integration, external_id)
    row = SelectedCalendar(
        user_id=owner_id,
        integration=integration,
        external_id=external_id,
        credential_id=credential_id,
    )
    try:
        # Added inside the savepoint (see `save_connected`).
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise duplicate(owner_id, integration, external_id) from None
    return row


def duplicate(owner_id: int, integration: str, external_id: str) -> Conflict:
    return Conflict(
        f"Selected calendar already exists for userId: {owner_id}, integration: "
        f"{integration}, externalId: {external_id}"
    )


async def update_selected(
    session: AsyncSession, caller: Caller, raw_id: str, credential_id: int | None
) -> SelectedCalendar:
    row = await get_selected(session, caller, raw_id)
    if credential_id is not None:
        row.credential_id = credential_id
    await session.flush()
    return row


async def delete_selected(session: AsyncSession, caller: Caller, raw_id: str) -> None:
    row = await get_selected(session, caller, raw_id)
    await session.delete(row)
    await session.flush()
