"""/v1/credential-sync as Cal.com: the 403 → 501 → 401 order, Cal.com's AES-256-CBC
``hex(iv):hex(ct)`` keys (encrypted here as Cal.com's symmetricEncrypt does), CalDAV keys
connected against a real Radicale and stored with this server's own encryption."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi import FastAPI
from sqlalchemy import select

from bookable.app import create_app
from bookable.models import Credential, SelectedCalendar
from bookable.settings import Settings
from tests.calendar_servers import RadicaleAccount
from tests.conftest import Account, client_for

SYNC_KEY = "0123456789abcdef0123456789abcdef"  # 32 characters, as Cal.com's setting
SECRET = "sync-shared-secret"
HEADER = {"calcom-credential-sync-secret": SECRET}


def cal_com_encrypt(value: dict[str, Any], key: str = SYNC_KEY) -> str:
    """Cal.com's symmetricEncrypt: AES-256-CBC, random IV, PKCS#7, ``hex(iv):hex(ct)``."""
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(json.dumps(value).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode("latin-1")), modes.CBC(iv)).encryptor()
    return f"{iv.hex()}:{(encryptor.update(data) + encryptor.finalize()).hex()}"


@pytest.fixture
async def sync_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    application = create_app(
        make_settings(credential_sync_secret=SECRET, credential_sync_encryption_key=SYNC_KEY)
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def sync_client(sync_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sync_app) as http:
        yield http


async def _admin(app: FastAPI, name: str) -> Account:
    from bookable.api_keys.service import issue_key
    from bookable.models import User, UserRole

    async with app.state.sessions() as session, session.begin():
        user = User(email=f"{name}@example.com", username=name, role=UserRole.ADMIN)
        session.add(user)
        await session.flush()
        key, clear = await issue_key(session, user_id=user.id, prefix="cal_")
        return Account(user.id, user.email, name, clear, key.id)


async def _user(app: FastAPI, name: str) -> Account:
    from bookable.api_keys.service import issue_key
    from bookable.models import User

    async with app.state.sessions() as session, session.begin():
        user = User(email=f"{name}@example.com", username=name)
        session.add(user)
        await session.flush()
        key, clear = await issue_key(session, user_id=user.id, prefix="cal_")
        return Account(user.id, user.email, name, clear, key.id)


def caldav_key(account: RadicaleAccount) -> dict[str, str]:
    return {"url": account.url, "username": account.username, "password": account.password}


async def test_check_order_403_then_501_then_401(
    client: httpx.AsyncClient, alice: Account, admin: Account, sync_app: FastAPI,
    sync_client: httpx.AsyncClient,
) -> None:  # fmt: skip
    for method in ("GET", "POST", "PATCH", "DELETE"):
        # Not an admin: 403 first, whether the feature is on or not, header or not.
        for http, caller in ((client, alice), (sync_client, await _user(sync_app, f"u{method}"))):
            response = await http.request(
                method, "/v1/credential-sync", params=caller.params, headers=HEADER
            )
            assert response.status_code == 403
            assert response.json() == {
                "error": "Only admin API keys can access credential syncing endpoints"
            }
        # An admin, the feature off: 501 even with the right header.
        off = await client.request(
            method, "/v1/credential-sync", params=admin.params, headers=HEADER
        )
        assert off.status_code == 501
        assert off.json() == {"error": "Credential syncing is not enabled"}
        # On, but the secret is missing or wrong: 401.
        sync_admin = await _admin(sync_app, f"a{method}")
        for headers in ({}, {"calcom-credential-sync-secret": "wrong"}):
            response = await sync_client.request(
                method, "/v1/credential-sync", params=sync_admin.params, headers=headers
            )
            assert response.status_code == 401
            assert response.json() == {"message": "Invalid credential sync secret"}


async def test_post_can_make_the_destination_calendar_once(
    sync_app: FastAPI, sync_client: httpx.AsyncClient, radicale: RadicaleAccount
) -> None:
    admin = await _admin(sync_app, "root")
    user = await _user(sync_app, "platformuser")
    radicale.make_read_only_calendar("Holidays")  # listed, but it cannot take events
    calendar = radicale.make_calendar("Bookings")
    params = {**admin.params, "userId": str(user.id), "createDestinationCalendar": "true"}
    body = {"appSlug": "caldav-calendar", "encryptedKey": cal_com_encrypt(caldav_key(radicale))}
    created = await sync_client.post(
        "/v1/credential-sync", params=params, json=body, headers=HEADER
    )
    assert created.status_code == 200, created.text
    listed = await sync_client.get("/v1/destination-calendars", params=user.params)
    [row] = listed.json()["destinationCalendars"]
    assert (row["userId"], row["externalId"], row["integration"], row["credentialId"]) == (
        user.id,
        calendar,
        "caldav_calendar",
        created.json()["credential"]["id"],
    )
    # One per user: the same call again (the same account) is refused, nothing changes.
    again = await sync_client.post("/v1/credential-sync", params=params, json=body, headers=HEADER)
    assert again.status_code == 409, again.text
    listed = await sync_client.get("/v1/destination-calendars", params=user.params)
    assert len(listed.json()["destinationCalendars"]) == 1


async def test_post_get_patch_delete(
    sync_app: FastAPI, sync_client: httpx.AsyncClient, radicale: RadicaleAccount
) -> None:
    admin = await _admin(sync_app, "root")
    user = await _user(sync_app, "platformuser")
    calendar = radicale.make_calendar("Synced")
    params = {**admin.params, "userId": str(user.id), "createSelectedCalendar": "true"}
    body = {"appSlug": "caldav-calendar", "encryptedKey": cal_com_encrypt(caldav_key(radicale))}
    created = await sync_client.post(
        "/v1/credential-sync", params=params, json=body, headers=HEADER
    )
    assert created.status_code == 200, created.text
    credential = created.json()["credential"]
    assert credential == {"id": credential["id"], "type": "caldav_calendar"}
    async with sync_app.state.sessions() as session:
        stored = await session.scalar(select(Credential))
        assert stored is not None and stored.user_id == user.id
        assert radicale.password not in stored.encrypted_key
        assert sync_app.state.encryptor.decrypt_json(stored.encrypted_key) == caldav_key(radicale)
        selected = await session.scalar(select(SelectedCalendar))
        assert selected is not None and selected.external_id == calendar
        assert selected.credential_id == credential["id"]

    listed = await sync_client.get(
        "/v1/credential-sync", params={**admin.params, "userId": str(user.id)}, headers=HEADER
    )
    assert listed.json() == {
        "credentials": [{"id": credential["id"], "appId": "caldav-calendar",
                         "appSlug": "caldav-calendar"}]
    }  # fmt: skip
    other_app = await sync_client.get(
        "/v1/credential-sync",
        params={**admin.params, "userId": str(user.id), "appSlug": "ics-feed"},
        headers=HEADER,
    )
    assert other_app.json() == {"credentials": []}

    target = {**admin.params, "userId": str(user.id), "credentialId": str(credential["id"])}
    patched = await sync_client.patch(
        "/v1/credential-sync", params=target, headers=HEADER,
        json={"encryptedKey": cal_com_encrypt(caldav_key(radicale))},
    )  # fmt: skip
    assert patched.json() == {"credential": {"id": credential["id"], "appId": "caldav-calendar"}}
    wrong_user = {**target, "userId": str(admin.id)}
    missing = await sync_client.delete("/v1/credential-sync", params=wrong_user, headers=HEADER)
    assert missing.status_code == 404
    deleted = await sync_client.delete("/v1/credential-sync", params=target, headers=HEADER)
    assert deleted.json() == {
        "credentialDeleted": {"id": credential["id"], "appId": "caldav-calendar"}
    }
    async with sync_app.state.sessions() as session:
        assert await session.scalar(select(SelectedCalendar)) is None


@pytest.mark.parametrize(
    ("query", "body", "message"),
    [
        ({}, {"appSlug": "caldav-calendar", "encryptedKey": "x"}, "userId is not a valid number"),
        ({"userId": "abc"}, None, "userId is not a valid number"),
        ({"userId": "USER"}, None, "Request body is missing"),
        ({"userId": "USER"}, {"appSlug": "google-calendar", "encryptedKey": "x"},
         "caldav-calendar, apple-calendar, ics-feed"),
        ({"userId": "USER"}, {"appSlug": "caldav-calendar", "encryptedKey": "zz:zz"},
         "encryptedKey"),
        ({"userId": "USER"}, {"appSlug": "caldav-calendar",
                              "encryptedKey": cal_com_encrypt({"x": 1}, "f" * 32)},
         "encryptedKey"),
        ({"userId": "USER"}, {"appSlug": "caldav-calendar",
                              "encryptedKey": cal_com_encrypt({"access_token": "tok-value-77"})},
         "encryptedKey.url"),
        ({"userId": "USER"}, {"appSlug": "caldav-calendar", "encryptedKey": cal_com_encrypt(
            {"url": "http://169.254.169.254/", "username": "u", "password": "pw-9"})},
         "encryptedKey.url"),
    ],
)  # fmt: skip
async def test_post_errors(
    sync_app: FastAPI, sync_client: httpx.AsyncClient, query: dict[str, str],
    body: dict[str, Any] | None, message: str,
) -> None:  # fmt: skip
    admin = await _admin(sync_app, "root")
    params = {**admin.params, **{k: str(admin.id) if v == "USER" else v for k, v in query.items()}}
    response = await sync_client.post(
        "/v1/credential-sync", params=params, json=body, headers=HEADER
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]
    assert "pw-9" not in response.text and "tok-value-77" not in response.text


async def test_patch_and_delete_need_valid_ids(
    sync_app: FastAPI, sync_client: httpx.AsyncClient
) -> None:
    admin = await _admin(sync_app, "root")
    for method in ("PATCH", "DELETE"):
        response = await sync_client.request(
            method, "/v1/credential-sync",
            params={**admin.params, "userId": str(admin.id), "credentialId": "x"},
            json={"encryptedKey": "a:b"} if method == "PATCH" else None, headers=HEADER,
        )  # fmt: skip
        assert response.status_code == 400
        assert response.json()["message"] == "credentialId is not a valid number"
        absent = await sync_client.request(
            method, "/v1/credential-sync",
            params={**admin.params, "userId": str(admin.id), "credentialId": "4242"},
            json={"encryptedKey": cal_com_encrypt({})} if method == "PATCH" else None,
            headers=HEADER,
        )  # fmt: skip
        assert absent.status_code == 404, absent.text


def test_a_sync_key_of_the_wrong_size_stops_the_start() -> None:
    with pytest.raises(ValueError, match="32 latin-1 characters"):
        Settings(database_url="sqlite:///unused.db", credential_sync_encryption_key="short")
