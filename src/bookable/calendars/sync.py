"""/v1/credential-sync as Cal.com: platforms push their users' credentials, encrypted with a
shared key (AES-256-CBC, ``hex(iv):hex(ciphertext)``), behind a shared secret header.

The checks run in Cal.com's order: not a system admin → 403; feature off (no secret or no key)
→ 501; wrong or missing secret header → 401. This server has no OAuth apps, so the decrypted key
must fit one of its apps (``{url, username, password}`` for ``caldav-calendar``); it is
re-encrypted with this server's own key before it is stored (Cal.com stores it in clear).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from sqlalchemy import select

from bookable.calendars import service
from bookable.calendars.apps import CalendarApp, find_app, supported_apps
from bookable.calendars.connections import Connected, connect, validate_key
from bookable.calendars.preflights import read_body
from bookable.calendars.providers.base import RemoteCalendar
from bookable.calendars.schemas import SyncCreate, SyncUpdate
from bookable.core.auth import Caller, CurrentCaller
from bookable.core.errors import ApiError, BadRequest, NotFound
from bookable.models import Credential
from bookable.settings import Settings


def symmetric_decrypt(text: str, key: str) -> str:
    """Cal.com's ``symmetricDecrypt``: ``hex(iv):hex(ct)``, AES-256-CBC, PKCS#7 padding, the
    key's characters as latin-1 bytes. ValueError when it does not decrypt."""
    iv_hex, sep, data_hex = text.partition(":")
    if not sep:
        raise ValueError("expected hex(iv):hex(ciphertext)")
    iv, data = bytes.fromhex(iv_hex), bytes.fromhex(data_hex)
    if len(iv) != 16 or not data or len(data) % 16:
        raise ValueError("expected a 16-byte IV and whole 16-byte blocks")
    decryptor = Cipher(algorithms.AES(key.encode("latin-1")), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode()


def symmetric_encrypt(text: str, key: str, iv: bytes) -> str:
    """The inverse (tests, and platforms written in Python)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode("latin-1")), modes.CBC(iv)).encryptor()
    return f"{iv.hex()}:{(encryptor.update(padded) + encryptor.finalize()).hex()}"


async def _check_sync_access(request: Request, caller: CurrentCaller) -> None:
    if not caller.is_admin:
        raise ApiError(
            403, "Only admin API keys can access credential syncing endpoints", key="error"
        )
    settings: Settings = request.app.state.settings
    if not (settings.credential_sync_secret and settings.credential_sync_encryption_key):
        raise ApiError(501, "Credential syncing is not enabled", key="error")
    sent = request.headers.get(settings.credential_sync_header_name, "")
    if not hmac.compare_digest(sent.encode(), settings.credential_sync_secret.encode()):
        raise ApiError(401, "Invalid credential sync secret")


def sync_access() -> DependsParam:
    """The route dependency that runs Cal.com's three checks, before anything else."""
    return Depends(_check_sync_access)


def query_user_id(request: Request) -> int:
    raw = request.query_params.get("userId")
    if raw is None or not raw.strip().isdigit() or not 0 < int(raw) <= 2**31 - 1:
        raise BadRequest("userId is not a valid number")
    return int(raw)


def query_credential_id(request: Request) -> int:
    raw = request.query_params.get("credentialId")
    if raw is None or not raw.strip().isdigit() or not 0 < int(raw) <= 2**31 - 1:
        raise BadRequest("credentialId is not a valid number")
    return int(raw)


def query_flag(request: Request, name: str) -> bool:
    return request.query_params.get(name) == "true"


def decrypted_key(request: Request, app: CalendarApp, encrypted: str) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    assert settings.credential_sync_encryption_key  # the access check made sure
    try:
        plain = symmetric_decrypt(encrypted.strip(), settings.credential_sync_encryption_key)
        key = json.loads(plain)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(
            "custom in 'encryptedKey': cannot be decrypted with the credential sync key "
            "(expected hex(iv):hex(ciphertext), AES-256-CBC, holding a JSON object)"
        ) from None
    return validate_key(app, key, settings, field="encryptedKey")


def sync_app(name: str) -> CalendarApp:
    app = find_app(name)
    if app is None:
        raise BadRequest(
            f"custom in 'appSlug': {name!r} is not supported on this server, which has no "
            f"OAuth apps; supported apps: {supported_apps()}"
        )
    return app


@dataclass(frozen=True, slots=True)
class SyncPrepared:
    connected: Connected
    owner_id: int
    select_external_id: str | None  # createSelectedCalendar: the calendar to select
    # createDestinationCalendar: the calendar bookings are written to
    destination: RemoteCalendar | None = None


async def connect_synced(request: Request, caller: Caller) -> SyncPrepared | None:
    owner_id = query_user_id(request)
    body = await read_body(request, SyncCreate)
    if body is None:
        return None
    app = sync_app(body.app_slug)
    key = decrypted_key(request, app, body.encrypted_key)
    async with request.app.state.sessions() as session:
        await service.require_user(session, owner_id)
    settings: Settings = request.app.state.settings
    connected = await connect(app, key, settings)
    chosen = None
    if query_flag(request, "createSelectedCalendar"):
        if not connected.calendars:
            raise BadRequest("Calendar missing for credential")
        primary = [c for c in connected.calendars if c.primary]
        chosen = (primary or connected.calendars)[0].external_id
    destination = None
    if query_flag(request, "createDestinationCalendar"):
        # Cal.com takes the primary calendar, else the first; only one that takes events
        # can be written to (an ICS feed never can).
        writable = [c for c in connected.calendars if not c.read_only] if not app.read_only else []
        if not writable:
            raise BadRequest(
                "custom in 'createDestinationCalendar': this account has no calendar Bookable "
                "can write to"
            )
        destination = next((c for c in writable if c.primary), writable[0])
    return SyncPrepared(connected, owner_id, chosen, destination)


async def synced_credential(request: Request, owner_id: int, credential_id: int) -> Credential:
    async with request.app.state.sessions() as session:
        credential = await session.scalar(
            select(Credential).where(Credential.id == credential_id, Credential.user_id == owner_id)
        )
    if credential is None:
        raise NotFound(service.CREDENTIAL_NOT_FOUND)
    return credential


async def reconnect_synced(request: Request, caller: Caller) -> SyncPrepared | None:
    owner_id = query_user_id(request)
    credential_id = query_credential_id(request)
    body = await read_body(request, SyncUpdate)
    if body is None:
        return None
    credential = await synced_credential(request, owner_id, credential_id)
    app = sync_app(credential.app_id)
    key = decrypted_key(request, app, body.encrypted_key)
    settings: Settings = request.app.state.settings
    return SyncPrepared(await connect(app, key, settings), owner_id, None)
