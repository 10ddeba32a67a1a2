"""The network half of the calendar routes, run before the request's transaction
(`core/preflight.before_transaction`): connect an account, list calendars live.

Each preflight parses the raw request itself. When the body is malformed it returns None and the
endpoint's own validation answers the 400; checks that decide who may act (``userId`` for
admins, the credential is the caller's) run here first, so no one makes this server connect
anywhere for an account that is not theirs.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from bookable.calendars import destinations, service
from bookable.calendars.apps import INTEGRATIONS, find_app
from bookable.calendars.connections import (
    Connected,
    connect,
    list_live,
    require_app,
    validate_key,
)
from bookable.calendars.destinations import CalendarCheck, CalendarChoice
from bookable.calendars.providers.base import CalendarError, RemoteCalendar
from bookable.calendars.schemas import (
    CredentialCreate,
    CredentialUpdate,
    DestinationCalendarCreate,
    DestinationCalendarUpdate,
    SelectedCalendarCreate,
    SelectedCalendarUpdate,
)
from bookable.core.auth import Caller, acting_user_id
from bookable.core.encryption import DecryptionError, Encryptor
from bookable.core.errors import BadRequest, NotFound
from bookable.models import Credential, SelectedCalendar
from bookable.settings import Settings

UNREADABLE_KEY = "The stored key of this credential cannot be decrypted with this server's key"


M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, model: type[M]) -> M | None:
    try:
        return model.model_validate(await request.json())
    except (ValueError, ValidationError, json.JSONDecodeError):
        return None


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _encryptor(request: Request) -> Encryptor:
    encryptor: Encryptor = request.app.state.encryptor
    return encryptor


def _path_int(request: Request, name: str) -> int | None:
    raw = str(request.path_params.get(name, ""))
    return int(raw) if raw.isdigit() else None


async def _credential(request: Request, caller: Caller, credential_id: int) -> Credential:
    async with request.app.state.sessions() as session:
        return await service.get_credential(session, caller, credential_id)


# --- /credentials --------------------------------------------------------------------------------


async def connect_new_credential(request: Request, caller: Caller) -> Connected | None:
    body = await read_body(request, CredentialCreate)
    if body is None:
        return None
    owner_id = acting_user_id(caller, body.user_id)
    if owner_id != caller.user_id:
        async with request.app.state.sessions() as session:
            await service.require_user(session, owner_id)
    app = require_app(body.app_name)
    key = validate_key(app, body.key, _settings(request))
    return await connect(app, key, _settings(request))


async def reconnect_credential(request: Request, caller: Caller) -> Connected | None:
    """PATCH: a new key connects before it replaces the old one; ``invalid: false`` alone
    re-connects with the stored key."""
    body = await read_body(request, CredentialUpdate)
    credential_id = _path_int(request, "credentialId")
    if body is None or credential_id is None:
        return None
    if body.key is None and body.invalid is not False:
        return None
    credential = await _credential(request, caller, credential_id)
    app = require_app(credential.app_id)
    settings = _settings(request)
    if body.key is not None:
        key = validate_key(app, body.key, settings)
    else:
        try:
            key = _encryptor(request).decrypt_json(credential.encrypted_key)
        except DecryptionError:
            raise BadRequest(UNREADABLE_KEY) from None
    return await connect(app, key, settings)


# --- /connected-calendars ------------------------------------------------------------------------


async def _listing(
    credential: Credential, encryptor: Encryptor, settings: Settings
) -> tuple[list[RemoteCalendar], str | None]:
    try:
        return await list_live(credential, encryptor, settings), None
    except CalendarError as error:
        return [], error.message
    except DecryptionError:
        return [], UNREADABLE_KEY


async def connected_calendars(request: Request, caller: Caller) -> list[dict[str, Any]]:
    """Every calendar of every credential of the users asked for, listed live and concurrently;
    reads only (no row is written, whatever the servers answer)."""
    user_ids = [int(v) for v in request.query_params.getlist("userId") if v.isdigit()]
    if request.query_params.getlist("userId") and not user_ids:
        raise BadRequest("invalid_type in 'userId': Expected number, received nan")
    user_ids = service.check_user_filter(caller, user_ids) or [caller.user_id]
    async with request.app.state.sessions() as session:
        credentials = list(
            await session.scalars(
                select(Credential)
                .where(Credential.user_id.in_(user_ids))
                .order_by(Credential.user_id, Credential.id)
            )
        )
        selected = {
            (row.credential_id, row.external_id): row
            for row in await session.scalars(
                select(SelectedCalendar).where(
                    SelectedCalendar.user_id.in_(user_ids),
                    SelectedCalendar.event_type_id.is_(None),
                )
            )
        }
    settings, encryptor = _settings(request), _encryptor(request)
    listings = await asyncio.gather(*(_listing(c, encryptor, settings) for c in credentials))
    answer = []
    for credential, (calendars, error) in zip(credentials, listings, strict=True):
        app = find_app(credential.app_id)
        answer.append(
            {
                "name": app.name if app else credential.app_id,
                "appId": credential.app_id,
                "userId": credential.user_id,
                "integration": credential.type,
                "credentialId": credential.id,
                "error": error,
                "calendars": [_calendar_json(c, selected.get((credential.id, c.external_id)))
                              for c in calendars],
            }
        )  # fmt: skip
    return answer


def _calendar_json(calendar: RemoteCalendar, row: SelectedCalendar | None) -> dict[str, Any]:
    from bookable.core.schemas import format_instant

    return {
        "externalId": calendar.external_id,
        "name": calendar.name,
        "primary": calendar.primary,
        "readOnly": calendar.read_only,
        "isSelected": row is not None,
        "error": row.error if row else None,
        "lastErrorAt": format_instant(row.last_error_at) if row and row.last_error_at else None,
    }


# --- /selected-calendars -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalendarFound:
    """The credential of the owner that has the calendar, and the calendar as it lists it."""

    owner_id: int
    credential_id: int
    external_id: str


def _same_calendar(listed: str, asked: str) -> bool:
    from urllib.parse import unquote

    return listed == asked or unquote(listed).rstrip("/") == unquote(asked).rstrip("/")


async def _find_calendar(
    request: Request,
    owner_id: int,
    integration: str,
    external_id: str,
    credentials: list[Credential],
) -> CalendarFound:
    settings, encryptor = _settings(request), _encryptor(request)
    listings = await asyncio.gather(*(_listing(c, encryptor, settings) for c in credentials))
    errors = []
    for credential, (calendars, error) in zip(credentials, listings, strict=True):
        if error:
            errors.append(error)
        for calendar in calendars:
            if _same_calendar(calendar.external_id, external_id):
                return CalendarFound(owner_id, credential.id, calendar.external_id)
    if len(credentials) == 1 and errors:
        raise BadRequest(errors[0])
    if not credentials:
        raise BadRequest(
            f"custom in 'integration': user {owner_id} has no {integration} credential; "
            "connect one with POST /v1/credentials first"
        )
    reason = f" ({'; '.join(errors)})" if errors else ""
    raise BadRequest(
        f"custom in 'externalId': no calendar with this externalId in the {integration} "
        f"credentials of user {owner_id}{reason}"
    )


async def _owner_credentials(
    request: Request, owner_id: int, integration: str, credential_id: int | None
) -> list[Credential]:
    async with request.app.state.sessions() as session:
        query = select(Credential).where(
            Credential.user_id == owner_id, Credential.type == integration
        )
        if credential_id is not None:
            query = query.where(Credential.id == credential_id)
        credentials = list(await session.scalars(query.order_by(Credential.id)))
    if credential_id is not None and not credentials:
        # Someone else's, another integration's or missing: the same answer.
        raise NotFound(service.CREDENTIAL_NOT_FOUND)
    return credentials


def _require_integration(integration: str) -> None:
    if integration not in INTEGRATIONS:
        raise BadRequest(
            f"invalid_enum_value in 'integration': expected one of {', '.join(INTEGRATIONS)}"
        )


async def check_new_selected(request: Request, caller: Caller) -> CalendarFound | None:
    body = await read_body(request, SelectedCalendarCreate)
    if body is None:
        return None
    owner_id = acting_user_id(caller, body.user_id, "ADMIN required for userId")
    _require_integration(body.integration)
    async with request.app.state.sessions() as session:
        if owner_id != caller.user_id:
            await service.require_user(session, owner_id)
        if await service.find_selected(session, owner_id, body.integration, body.external_id):
            raise service.duplicate(owner_id, body.integration, body.external_id)
    credentials = await _owner_credentials(request, owner_id, body.integration, body.credential_id)
    return await _find_calendar(request, owner_id, body.integration, body.external_id, credentials)


async def check_selected_update(request: Request, caller: Caller) -> CalendarFound | None:
    body = await read_body(request, SelectedCalendarUpdate)
    if body is None or body.credential_id is None:
        return None
    raw_id = str(request.path_params.get("id", ""))
    async with request.app.state.sessions() as session:
        row = await service.get_selected(session, caller, raw_id)
        owner_id, integration, external_id = row.user_id, row.integration, row.external_id
    credentials = await _owner_credentials(request, owner_id, integration, body.credential_id)
    return await _find_calendar(request, owner_id, integration, external_id, credentials)


# --- /destination-calendars ----------------------------------------------------------------------


async def _find_writable(request: Request, check: CalendarCheck) -> CalendarChoice:
    """The calendar in the owner's credentials, listed live, and one that takes events.
    Unreachable servers and refused logins answer as for selected calendars (a 400 with the
    provider's sentence)."""
    settings, encryptor = _settings(request), _encryptor(request)
    listings = await asyncio.gather(*(_listing(c, encryptor, settings) for c in check.credentials))
    errors, read_only = [], None
    for credential, (calendars, error) in zip(check.credentials, listings, strict=True):
        if error:
            errors.append(error)
        for calendar in calendars:
            if not _same_calendar(calendar.external_id, check.external_id):
                continue
            if calendar.read_only:
                read_only = calendar
                continue
            return CalendarChoice(credential.id, calendar.external_id, calendar.email)
    if read_only is not None:
        raise BadRequest(
            f"custom in 'externalId': the calendar {read_only.external_id} is read-only for "
            f"user {check.owner_id}; a destination calendar must take events"
        )
    if len(check.credentials) == 1 and errors:
        raise BadRequest(errors[0])
    reason = f" ({'; '.join(errors)})" if errors else ""
    raise BadRequest(
        f"custom in 'externalId': no calendar with this externalId in the {check.integration} "
        f"credentials of user {check.owner_id}{reason}"
    )


async def check_new_destination(request: Request, caller: Caller) -> CalendarChoice | None:
    body = await read_body(request, DestinationCalendarCreate)
    if body is None:
        return None
    async with request.app.state.sessions() as session:
        plan = await destinations.plan_create(session, caller, body)
    assert plan.check is not None  # a new row always names its calendar
    return await _find_writable(request, plan.check)


async def check_destination_update(request: Request, caller: Caller) -> CalendarChoice | None:
    """PATCH: only when the calendar, its credential or its owner changes."""
    body = await read_body(request, DestinationCalendarUpdate)
    destination_id = _path_int(request, "id")
    if body is None or destination_id is None:
        return None
    async with request.app.state.sessions() as session:
        plan = await destinations.plan_update(session, caller, destination_id, body)
    return await _find_writable(request, plan.check) if plan.check else None
