"""From a stored credential (or a key a client sent) to a provider that talks to its server.

Everything here is network work or pure checks: call it from a preflight or a background task,
never inside a transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from bookable.calendars.apps import CalendarApp, find_app, supported_apps
from bookable.calendars.providers.base import (
    CalendarError,
    CalendarProvider,
    Connection,
    RemoteCalendar,
)
from bookable.core.encryption import Encryptor
from bookable.core.errors import BadRequest, format_validation_errors
from bookable.core.outbound import url_problem
from bookable.models import Credential
from bookable.settings import Settings


def connection_for(key: dict[str, Any], settings: Settings) -> Connection:
    return Connection(
        key=key,
        timeout=settings.calendar_timeout,
        max_bytes=settings.calendar_max_bytes,
        allow_private=settings.calendar_allow_private_targets,
        allowed_hosts=settings.calendar_allowed_host_names,
    )


def provider_for(
    credential: Credential, encryptor: Encryptor, settings: Settings
) -> CalendarProvider:
    """The provider for a stored credential (its key decrypted for this use only)."""
    app = find_app(credential.app_id) or find_app(credential.type)
    if app is None:
        raise CalendarError(f"The calendar app {credential.app_id!r} is not supported here")
    key = encryptor.decrypt_json(credential.encrypted_key)
    return app.provider(connection_for(key, settings))


def require_app(name: str | None, field: str = "appId") -> CalendarApp:
    """The app a client named, or a 400 naming the field and the supported apps."""
    app = find_app(name)
    if app is None:
        if not name:
            raise BadRequest(f"invalid_type in '{field}': Required")
        raise BadRequest(
            f"custom in '{field}': unsupported app {name!r}; this server supports "
            f"{supported_apps()}"
        )
    return app


def validate_key(
    app: CalendarApp, raw_key: Any, settings: Settings, field: str = "key"
) -> dict[str, Any]:
    """``raw_key`` checked by the app's key model and its URLs by the outbound rules (no DNS):
    the key as stored, or a 400 naming the field (``key.url``)."""
    if raw_key is None:
        raise BadRequest(f"invalid_type in '{field}': Required")
    if not isinstance(raw_key, dict):
        raise BadRequest(f"invalid_type in '{field}': Expected object")
    try:
        model: BaseModel = app.key_model.model_validate(raw_key)
    except ValidationError as error:
        # One dotted name ("key.url"), and never the input's text: it may be the password.
        errors = [
            {
                **e,
                "loc": (".".join([field, *map(str, e["loc"])]),),
                "input": "" if isinstance(e.get("input"), str) else e.get("input"),
            }
            for e in error.errors()
        ]
        raise BadRequest(format_validation_errors(errors)) from None
    key = model.model_dump()
    urls: list[tuple[str, str]] = []
    if isinstance(key.get("url"), str):
        urls.append((f"{field}.url", key["url"]))
    for index, url in enumerate(key.get("urls") or []):
        urls.append((f"{field}.urls.{index}", url))
    for name, url in urls:
        # webcal:// is https:// by convention (Apple, Google, Outlook publish feeds that way).
        checked = url
        if url.lower().startswith("webcal://"):
            checked = "https://" + url[len("webcal://") :]
        problem = url_problem(checked, allow_private=settings.calendar_allow_private_targets)
        if problem and problem.startswith("credentials in the URL"):
            # Never kept in a URL (URLs reach logs and error messages): in the key's own fields.
            problem = "credentials in the URL are not allowed (use username and password)"
        if problem:
            raise BadRequest(f"custom in '{name}': {problem}")
    return key


@dataclass(frozen=True, slots=True)
class Connected:
    """A key that connected: what to store, and the calendars the server listed."""

    app: CalendarApp
    key: dict[str, Any]
    identity: str
    calendars: list[RemoteCalendar]


# Listing is a few requests in a row (CalDAV discovery: principal, home, calendars), each bounded
# by the calendar timeout; the whole listing by this many timeouts.
LISTING_TIMEOUTS = 3


async def connect(app: CalendarApp, key: dict[str, Any], settings: Settings) -> Connected:
    """Log in with ``key`` and list its calendars (bounded, see LISTING_TIMEOUTS); a refusal
    is a 400 carrying the provider's message."""
    provider = app.provider(connection_for(key, settings))
    try:
        calendars = await asyncio.wait_for(
            provider.list_calendars(), timeout=settings.calendar_timeout * LISTING_TIMEOUTS
        )
    except CalendarError as error:
        raise BadRequest(error.message) from None
    except TimeoutError:
        raise BadRequest("The calendar server did not answer in time") from None
    return Connected(app, key, app.identity(key), calendars)


async def list_live(
    credential: Credential, encryptor: Encryptor, settings: Settings
) -> list[RemoteCalendar]:
    """The credential's calendars, listed now. Raises CalendarError (a timeout included)."""
    provider = provider_for(credential, encryptor, settings)
    try:
        return await asyncio.wait_for(
            provider.list_calendars(), timeout=settings.calendar_timeout * LISTING_TIMEOUTS
        )
    except TimeoutError:
        raise CalendarError("The calendar server did not answer in time") from None
