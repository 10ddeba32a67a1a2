"""Client compatibility: unversioned routes, Pipedream's headers, GET /v2/me, the local docs."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.models import ApiKey, User
from tests.conftest import Account

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

JSON = {"Content-Type": "application/json"}


# --- routes without /v1 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path_of",
    [
        lambda a: "/me",
        lambda a: "/users",
        lambda a: f"/users/{a.id}",
        lambda a: "/api-keys",
        lambda a: f"/api-keys/{a.key_id}",
    ],
)
async def test_get_routes_answer_without_version(
    client: httpx.AsyncClient, alice: Account, path_of: Any
) -> None:
    path = path_of(alice)
    versioned = await client.get(f"/v1{path}", params=alice.params)
    bare = await client.get(path, params=alice.params)
    assert versioned.status_code == 200
    assert bare.status_code == 200
    assert bare.json() == versioned.json()


async def test_me_without_version(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/me", params=alice.params)
    assert response.status_code == 200
    assert response.json()["user"]["id"] == alice.id
    assert response.json()["user"]["email"] == alice.email


async def test_unversioned_routes_need_a_key(client: httpx.AsyncClient, alice: Account) -> None:
    for path in ("/me", "/users", "/api-keys", f"/users/{alice.id}"):
        response = await client.get(path)
        assert response.status_code == 401, path
        assert response.json() == {"message": "No apiKey provided"}
        response = await client.get(path, params={"apiKey": "cal_" + "0" * 32})
        assert response.status_code == 401, path
        assert response.json() == {"error": "Your API key is not valid."}


async def test_writes_without_version(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    created = await client.post("/api-keys", params=alice.params, json={"note": "bare"})
    assert created.status_code == 200
    api_key = created.json()["api_key"]
    assert api_key["key"].startswith("cal_")

    patched = await client.patch(
        f"/api-keys/{api_key['id']}", params=alice.params, json={"note": "renamed"}
    )
    assert patched.status_code == 200
    assert patched.json()["api_key"]["note"] == "renamed"

    deleted = await client.delete(f"/api-keys/{api_key['id']}", params=alice.params)
    assert deleted.status_code == 200
    assert deleted.json() == {"message": f"ApiKey with id: {api_key['id']} deleted"}

    user = await client.post(
        "/users", params=admin.params, json={"email": "bare@example.com", "username": "bare"}
    )
    assert user.status_code == 200
    user_id = user.json()["user"]["id"]
    renamed = await client.patch(f"/users/{user_id}", params=admin.params, json={"name": "Bare"})
    assert renamed.status_code == 200
    assert renamed.json()["user"]["name"] == "Bare"

    async with app.state.sessions() as session:
        assert await session.get(ApiKey, api_key["id"]) is None
        stored = await session.get(User, user_id)
    assert stored is not None and stored.name == "Bare"

    removed = await client.delete(f"/users/{user_id}", params=admin.params)
    assert removed.status_code == 200
    assert removed.json() == {"message": f"User with id: {user_id} deleted successfully"}


async def test_unversioned_errors_match_versioned(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    pairs = [
        ("GET", f"/users/{bob.id}", {}),
        ("GET", f"/api-keys/{bob.key_id}", {}),
        ("GET", "/users/abc", {}),
        ("PUT", "/users", {}),
        ("PUT", "/api-keys/x", {}),
        ("POST", "/api-keys", {"json": {"foo": 1}}),
    ]
    for method, path, kwargs in pairs:
        bare = await client.request(method, path, params=alice.params, **kwargs)
        versioned = await client.request(method, f"/v1{path}", params=alice.params, **kwargs)
        assert bare.status_code == versioned.status_code, path
        assert bare.status_code >= 400, path
        assert bare.json() == versioned.json(), path


# --- Pipedream: Content-Type: application/json with no body ---------------------------------------


@pytest.mark.parametrize("prefix", ["/v1", ""])
async def test_json_content_type_on_get_with_empty_body(
    client: httpx.AsyncClient, alice: Account, prefix: str
) -> None:
    for path in ("/me", "/users", f"/users/{alice.id}", "/api-keys", f"/api-keys/{alice.key_id}"):
        response = await client.get(f"{prefix}{path}", params=alice.params, headers=JSON)
        assert response.status_code == 200, (path, response.text)
        response = await client.request(
            "GET", f"{prefix}{path}", params=alice.params, headers=JSON, content=b""
        )
        assert response.status_code == 200, (path, response.text)


async def test_json_content_type_on_delete_with_empty_body(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    created = await client.post("/v1/api-keys", params=alice.params, json={})
    key_id = created.json()["api_key"]["id"]
    response = await client.request(
        "DELETE", f"/v1/api-keys/{key_id}", params=alice.params, headers=JSON, content=b""
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"message": f"ApiKey with id: {key_id} deleted"}

    response = await client.request(
        "DELETE", f"/v1/users/{alice.id}", params=admin.params, headers=JSON, content=b""
    )
    assert response.status_code == 200, response.text
    async with app.state.sessions() as session:
        assert await session.get(ApiKey, key_id) is None
        assert await session.get(User, alice.id) is None


async def test_json_content_type_with_charset(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get(
        "/v1/me",
        params=alice.params,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


# --- GET /v2/me ----------------------------------------------------------------------------------


async def test_v2_me_with_bearer(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v2/me", headers={"Authorization": f"Bearer {alice.key}"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "data"}
    assert body["status"] == "success"
    data = body["data"]
    assert data["id"] == alice.id
    assert data["email"] == alice.email
    assert data["username"] == alice.username
    assert data["timeZone"] == "Europe/London"
    for field in ("name", "weekStart", "timeFormat", "defaultScheduleId", "locale"):
        assert field in data


async def test_v2_me_reflects_changes(client: httpx.AsyncClient, alice: Account) -> None:
    bearer = {"Authorization": f"Bearer {alice.key}"}
    assert (await client.get("/v2/me", headers=bearer)).status_code == 200
    await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"timeZone": "Asia/Tokyo"}
    )
    response = await client.get("/v2/me", headers=bearer)
    assert response.json()["data"]["timeZone"] == "Asia/Tokyo"


async def test_v2_me_errors(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v2/me")
    assert response.status_code == 401
    assert "message" in response.json() or "error" in response.json()
    response = await client.get("/v2/me", headers={"Authorization": "Bearer cal_" + "0" * 32})
    assert response.status_code == 401


# --- OpenAPI and the docs -----------------------------------------------------------------------


async def test_openapi_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/me" in spec["paths"]
    assert "get" in spec["paths"]["/v1/me"]
    for path in ("/v1/users", "/v1/users/{userId}", "/v1/api-keys", "/v1/api-keys/{id}"):
        assert path in spec["paths"], path


async def test_docs_are_served_locally(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "swagger" in html.lower()
    assert not re.search(r"https?://", html), "the docs page must not pull from a CDN"
    assert "//cdn" not in html

    assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)
    scripts = [a for a in assets if a.endswith(".js")]
    styles = [a for a in assets if a.endswith(".css")]
    assert scripts and styles, assets
    for asset in assets:
        assert asset.startswith("/"), asset
        assert not asset.startswith("//"), asset
        loaded = await client.get(asset)
        assert loaded.status_code == 200, asset
        assert loaded.content, asset
    spec_url = re.search(r"url:\s*'([^']+)'", html)
    assert spec_url is not None and spec_url.group(1) == "/v1/openapi.json"


async def test_docs_static_missing_file_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/docs/static/nope.js")
    assert response.status_code == 404


async def test_openapi_documents_select_query_parameters(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/v1/openapi.json")).json()
    names = {p["name"] for p in spec["paths"]["/v1/users"]["get"].get("parameters", [])}
    assert {"take", "page", "email"} <= names
