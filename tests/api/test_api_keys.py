"""API keys: create (clear key shown once), list, get, edit the note, delete; scoping by owner."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.models import ApiKey
from tests.conftest import Account

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

CREATED_MESSAGE = (
    "API key created successfully. Save the `key` value as it won't be displayed again."
)
KEY_FIELDS = {"id", "userId", "note", "createdAt", "expiresAt", "lastUsedAt"}
NOT_FOUND = {"message": "API key not found"}
WIRE_INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def keys_of(app: FastAPI, user_id: int) -> list[ApiKey]:
    async with app.state.sessions() as session:
        rows = await session.scalars(select(ApiKey).where(ApiKey.user_id == user_id))
        return list(rows)


async def key_count(app: FastAPI) -> int:
    async with app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)


async def me_id(client: httpx.AsyncClient, key: str) -> int | None:
    response = await client.get("/v1/me", params={"apiKey": key})
    return response.json()["user"]["id"] if response.status_code == 200 else None


# --- POST ----------------------------------------------------------------------------------------


async def test_create_key(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.post("/v1/api-keys", params=alice.params, json={"note": "zapier"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"api_key", "message"}
    assert body["message"] == CREATED_MESSAGE
    api_key = body["api_key"]
    assert set(api_key) == KEY_FIELDS | {"key"}
    assert re.fullmatch(r"cal_[0-9a-f]{32}", api_key["key"])
    assert uuid.UUID(api_key["id"]).version == 4
    assert api_key["userId"] == alice.id
    assert api_key["note"] == "zapier"
    assert api_key["expiresAt"] is None
    assert api_key["lastUsedAt"] is None
    assert WIRE_INSTANT.match(api_key["createdAt"])

    assert await me_id(client, api_key["key"]) == alice.id

    stored = {k.id: k for k in await keys_of(app, alice.id)}
    assert set(stored) == {alice.key_id, api_key["id"]}
    secret = api_key["key"].removeprefix("cal_")
    assert stored[api_key["id"]].hashed_key == hashlib.sha256(secret.encode()).hexdigest()
    assert stored[api_key["id"]].note == "zapier"


async def test_create_key_without_body_or_with_empty_body(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    before = await key_count(app)
    # Every field is optional: a bare POST and an empty object both create a key.
    for body in ({}, None):
        response = await client.post("/v1/api-keys", params=alice.params, json=body)
        assert response.status_code == 200, response.text
        api_key = response.json()["api_key"]
        assert api_key["note"] is None
        assert api_key["expiresAt"] is None
        assert await me_id(client, api_key["key"]) == alice.id
    assert await key_count(app) == before + 2


async def test_each_key_is_different(client: httpx.AsyncClient, alice: Account) -> None:
    keys = set()
    for _ in range(3):
        response = await client.post("/v1/api-keys", params=alice.params, json={})
        keys.add(response.json()["api_key"]["key"])
    assert len(keys) == 3
    assert alice.key not in keys


async def test_create_with_future_expiry(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    response = await client.post(
        "/v1/api-keys",
        params=alice.params,
        json={"expiresAt": expires.isoformat().replace("+00:00", "Z")},
    )
    assert response.status_code == 200
    api_key = response.json()["api_key"]
    assert api_key["expiresAt"] == expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert await me_id(client, api_key["key"]) == alice.id
    stored = {k.id: k for k in await keys_of(app, alice.id)}
    assert stored[api_key["id"]].expires_at == expires


async def test_create_with_expiry_in_another_zone(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.post(
        "/v1/api-keys", params=alice.params, json={"expiresAt": "2099-01-01T10:00:00+02:00"}
    )
    assert response.status_code == 200
    assert response.json()["api_key"]["expiresAt"] == "2099-01-01T08:00:00.000Z"


@pytest.mark.parametrize(
    "body",
    [{"neverExpires": True}, {"neverExpires": True, "expiresAt": "2099-01-01T00:00:00Z"}],
)
async def test_never_expires(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, body: dict[str, Any]
) -> None:
    response = await client.post("/v1/api-keys", params=alice.params, json=body)
    assert response.status_code == 200
    api_key = response.json()["api_key"]
    assert api_key["expiresAt"] is None
    stored = {k.id: k for k in await keys_of(app, alice.id)}
    assert stored[api_key["id"]].expires_at is None
    assert await me_id(client, api_key["key"]) == alice.id


@pytest.mark.parametrize(
    "expires_at", ["2020-01-01T00:00:00Z", "2020-01-01T00:00:00.000+00:00", "garbage", 12]
)
async def test_bad_or_past_expiry_is_400(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, expires_at: Any
) -> None:
    before = await key_count(app)
    response = await client.post(
        "/v1/api-keys", params=alice.params, json={"expiresAt": expires_at}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"message"}
    assert "'expiresAt'" in response.json()["message"]
    assert await key_count(app) == before


async def test_create_unknown_field_is_400(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    before = await key_count(app)
    response = await client.post("/v1/api-keys", params=alice.params, json={"hashedKey": "abc"})
    assert response.status_code == 400
    assert response.json() == {"message": "Unrecognized key(s) in object: 'hashedKey'"}
    assert await key_count(app) == before


async def test_non_admin_cannot_create_for_another_user(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    response = await client.post("/v1/api-keys", params=alice.params, json={"userId": bob.id})
    assert response.status_code == 403
    assert response.json() == {"message": "ADMIN required for userId"}
    assert [k.id for k in await keys_of(app, bob.id)] == [bob.key_id]
    assert [k.id for k in await keys_of(app, alice.id)] == [alice.key_id]


async def test_non_admin_may_name_themself(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.post("/v1/api-keys", params=alice.params, json={"userId": alice.id})
    assert response.status_code == 200
    assert response.json()["api_key"]["userId"] == alice.id


async def test_admin_creates_for_another_user(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    response = await client.post(
        "/v1/api-keys", params=admin.params, json={"userId": alice.id, "note": "for alice"}
    )
    assert response.status_code == 200
    api_key = response.json()["api_key"]
    assert api_key["userId"] == alice.id
    assert await me_id(client, api_key["key"]) == alice.id
    assert {k.id for k in await keys_of(app, alice.id)} == {alice.key_id, api_key["id"]}
    assert [k.id for k in await keys_of(app, admin.id)] == [admin.key_id]


async def test_admin_creates_for_missing_user_is_404(
    app: FastAPI, client: httpx.AsyncClient, admin: Account
) -> None:
    before = await key_count(app)
    response = await client.post("/v1/api-keys", params=admin.params, json={"userId": 999999})
    assert response.status_code == 404
    assert "message" in response.json()
    assert await key_count(app) == before


# --- GET list / item -----------------------------------------------------------------------------


async def test_list_never_shows_key_or_hash(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    created = (await client.post("/v1/api-keys", params=alice.params, json={"note": "n"})).json()
    response = await client.get("/v1/api-keys", params=alice.params)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"api_keys"}
    assert [k["id"] for k in body["api_keys"]] == [alice.key_id, created["api_key"]["id"]]
    for api_key in body["api_keys"]:
        assert set(api_key) == KEY_FIELDS
        assert api_key["userId"] == alice.id
    assert "hashedKey" not in response.text
    assert 'key"' not in response.text.replace('api_keys"', "")
    assert created["api_key"]["key"] not in response.text
    assert alice.key.removeprefix("cal_") not in response.text


async def test_get_own_key(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get(f"/v1/api-keys/{alice.key_id}", params=alice.params)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"api_key"}
    assert set(body["api_key"]) == KEY_FIELDS
    assert body["api_key"]["id"] == alice.key_id
    assert body["api_key"]["userId"] == alice.id


async def test_get_missing_key_is_404(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get(f"/v1/api-keys/{uuid.uuid4()}", params=alice.params)
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    response = await client.get("/v1/api-keys/not-a-uuid", params=alice.params)
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


async def test_admin_lists_all_and_filters_by_user(
    client: httpx.AsyncClient, admin: Account, alice: Account, bob: Account
) -> None:
    everything = await client.get("/v1/api-keys", params=admin.params)
    assert everything.status_code == 200
    assert {k["id"] for k in everything.json()["api_keys"]} == {
        admin.key_id,
        alice.key_id,
        bob.key_id,
    }

    only_alice = await client.get("/v1/api-keys", params={**admin.params, "userId": alice.id})
    assert only_alice.status_code == 200
    assert [k["id"] for k in only_alice.json()["api_keys"]] == [alice.key_id]

    both = await client.get(
        "/v1/api-keys",
        params=[("apiKey", admin.key), ("userId", alice.id), ("userId", bob.id)],
    )
    assert {k["id"] for k in both.json()["api_keys"]} == {alice.key_id, bob.key_id}

    admin_sees_alices = await client.get(f"/v1/api-keys/{alice.key_id}", params=admin.params)
    assert admin_sees_alices.status_code == 200
    assert admin_sees_alices.json()["api_key"]["userId"] == alice.id


async def test_user_cannot_filter_by_another_user(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    response = await client.get("/v1/api-keys", params={**alice.params, "userId": bob.id})
    assert response.status_code == 403
    assert "message" in response.json()
    assert bob.key_id not in response.text
    own = await client.get("/v1/api-keys", params={**alice.params, "userId": alice.id})
    assert [k["id"] for k in own.json()["api_keys"]] == [alice.key_id]


async def test_user_id_filter_must_be_a_number(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get("/v1/api-keys", params={**admin.params, "userId": "abc"})
    assert response.status_code == 400
    # A repeatable parameter: Cal.com joins the issue path with commas ('userId,0').
    assert response.json() == {
        "message": "invalid_type in 'userId,0': Expected number, received nan"
    }


# --- another user's key --------------------------------------------------------------------------


async def test_user_cannot_reach_another_users_key(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    await client.patch(f"/v1/api-keys/{bob.key_id}", params=bob.params, json={"note": "bob's"})
    path = f"/v1/api-keys/{bob.key_id}"

    for method, kwargs in [("GET", {}), ("PATCH", {"json": {"note": "mine now"}}), ("DELETE", {})]:
        response = await client.request(method, path, params=alice.params, **kwargs)
        assert response.status_code == 404, method
        assert response.json() == NOT_FOUND, method

    listed = await client.get("/v1/api-keys", params=alice.params)
    assert bob.key_id not in listed.text

    [stored] = await keys_of(app, bob.id)
    assert stored.id == bob.key_id
    assert stored.note == "bob's"
    assert await me_id(client, bob.key) == bob.id


# --- PATCH ---------------------------------------------------------------------------------------


async def test_patch_note(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.patch(
        f"/v1/api-keys/{alice.key_id}", params=alice.params, json={"note": "renamed"}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"api_key"}
    assert set(body["api_key"]) == KEY_FIELDS
    assert body["api_key"]["note"] == "renamed"
    [stored] = await keys_of(app, alice.id)
    assert stored.note == "renamed"

    cleared = await client.patch(
        f"/v1/api-keys/{alice.key_id}", params=alice.params, json={"note": None}
    )
    assert cleared.status_code == 200
    assert cleared.json()["api_key"]["note"] is None
    # The key itself is unchanged and keeps working.
    assert await me_id(client, alice.key) == alice.id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expiresAt": None}, "expiresAt"),
        ({"note": "x", "userId": 1}, "userId"),
        ({"neverExpires": True}, "neverExpires"),
        ({"hashedKey": "0" * 64}, "hashedKey"),
    ],
)
async def test_patch_accepts_only_note(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, body: dict[str, Any], field: str
) -> None:
    response = await client.patch(f"/v1/api-keys/{alice.key_id}", params=alice.params, json=body)
    assert response.status_code == 400
    assert response.json() == {"message": f"Unrecognized key(s) in object: '{field}'"}
    [stored] = await keys_of(app, alice.id)
    assert stored.note is None
    assert await me_id(client, alice.key) == alice.id


async def test_patch_note_wrong_type(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.patch(
        f"/v1/api-keys/{alice.key_id}", params=alice.params, json={"note": 5}
    )
    assert response.status_code == 400
    assert "'note'" in response.json()["message"]


# --- DELETE --------------------------------------------------------------------------------------


async def test_delete_key(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    created = (await client.post("/v1/api-keys", params=alice.params, json={})).json()["api_key"]
    response = await client.delete(f"/v1/api-keys/{created['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"message": f"ApiKey with id: {created['id']} deleted"}
    assert [k.id for k in await keys_of(app, alice.id)] == [alice.key_id]
    assert await me_id(client, created["key"]) is None

    again = await client.delete(f"/v1/api-keys/{created['id']}", params=alice.params)
    assert again.status_code == 404
    assert again.json() == NOT_FOUND


async def test_admin_deletes_another_users_key(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    assert await me_id(client, alice.key) == alice.id
    response = await client.delete(f"/v1/api-keys/{alice.key_id}", params=admin.params)
    assert response.status_code == 200
    assert response.json() == {"message": f"ApiKey with id: {alice.key_id} deleted"}
    assert await keys_of(app, alice.id) == []
    assert await me_id(client, alice.key) is None


async def test_key_count_unchanged_by_failed_creates(
    app: FastAPI, client: httpx.AsyncClient, make_account: Callable, alice: Account
) -> None:
    before = await key_count(app)
    for body in ({"note": "x" * 1001}, {"userId": 0}, {"userId": "me"}, {"neverExpires": "x"}):
        response = await client.post("/v1/api-keys", params=alice.params, json=body)
        assert response.status_code == 400, body
    assert await key_count(app) == before
