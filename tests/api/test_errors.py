"""Errors on the wire: 405/404/400/413 bodies, and the request-id headers on every response."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.app import create_app
from bookable.models import ApiKey, User
from bookable.settings import Settings
from tests.conftest import Account, client_for

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

GENERATED_ID = re.compile(r"^[0-9a-f]{24}$")


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application), client_for(application) as http:
        yield application, http


async def counts(app: FastAPI) -> tuple[int, int]:
    async with app.state.sessions() as session:
        users = await session.scalar(select(func.count()).select_from(User))
        keys = await session.scalar(select(func.count()).select_from(ApiKey))
    return int(users or 0), int(keys or 0)


def assert_request_ids(response: httpx.Response) -> str:
    request_id = response.headers.get("x-request-id")
    assert request_id, response
    assert response.headers.get("calcom-response-id") == request_id
    return request_id


# --- 405 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/users", "GET,POST"),
        ("DELETE", "/v1/users", "GET,POST"),
        ("PUT", "/v1/users/1", "GET,PATCH,DELETE"),
        ("POST", "/v1/users/1", "GET,PATCH,DELETE"),
        ("PUT", "/v1/api-keys", "GET,POST"),
        ("PUT", "/v1/api-keys/some-id", "GET,PATCH,DELETE"),
        ("POST", "/v1/me", "GET"),
        ("PUT", "/users", "GET,POST"),
        ("PUT", "/users/1", "GET,PATCH,DELETE"),
    ],
)
async def test_method_not_allowed(
    client: httpx.AsyncClient, alice: Account, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path, params=alice.params)
    assert response.status_code == 405
    assert response.json() == {"message": f"Method Not Allowed (Allow: {allow})"}
    assert response.headers["content-type"].startswith("application/json")


async def test_405_changes_nothing(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    before = await counts(app)
    response = await client.put(
        f"/v1/users/{alice.id}", params=alice.params, json={"name": "Changed"}
    )
    assert response.status_code == 405
    assert await counts(app) == before
    async with app.state.sessions() as session:
        user = await session.get(User, alice.id)
    assert user is not None and user.name is None


# --- 404 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/users/1/nope", "/nothing/here", "/v3/me"])
async def test_unknown_route_is_json_404(
    client: httpx.AsyncClient, alice: Account, path: str
) -> None:
    for params in (alice.params, {}):
        response = await client.get(path, params=params)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert isinstance(body.get("message"), str) and body["message"]
        assert_request_ids(response)


# --- 400: bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"{bad", b'{"note": }', b"{'note': 'x'}", b"\xff\xfe"])
async def test_malformed_json_is_400(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, content: bytes
) -> None:
    before = await counts(app)
    response = await client.post(
        "/v1/api-keys",
        params=alice.params,
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"message"}
    assert body["message"]
    assert await counts(app) == before


@pytest.mark.parametrize(
    ("method", "path_of", "content"),
    [
        ("POST", lambda a: "/v1/users", b"[]"),
        ("POST", lambda a: "/v1/users", b'[{"email": "x@example.com", "username": "x"}]'),
        ("POST", lambda a: "/v1/api-keys", b'["note"]'),
        ("PATCH", lambda a: f"/v1/users/{a.id}", b'[{"name": "x"}]'),
        ("PATCH", lambda a: f"/v1/api-keys/{a.key_id}", b'"note"'),
        ("POST", lambda a: "/v1/api-keys", b"42"),
    ],
)
async def test_non_object_body_is_400(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    method: str,
    path_of: Callable[[Account], str],
    content: bytes,
) -> None:
    before = await counts(app)
    response = await client.request(
        method,
        path_of(admin),
        params=admin.params,
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("Expected object, received "), message
    assert await counts(app) == before


async def test_array_body_message(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post("/v1/users", params=admin.params, json=[1, 2])
    assert response.status_code == 400
    assert response.json() == {"message": "Expected object, received array"}


@pytest.mark.parametrize(
    ("method", "path_of", "body", "message"),
    [
        (
            "PATCH",
            lambda a: f"/v1/users/{a.id}",
            {"name": 5},
            "invalid_type in 'name': Expected string, received number",
        ),
        (
            "PATCH",
            lambda a: f"/v1/users/{a.id}",
            {"hideBranding": "maybe"},
            "invalid_type in 'hideBranding': Expected boolean, received string",
        ),
        (
            "PATCH",
            lambda a: f"/v1/users/{a.id}",
            {"defaultScheduleId": "first"},
            "invalid_type in 'defaultScheduleId': Expected number, received string",
        ),
        (
            "POST",
            lambda a: "/v1/api-keys",
            {"note": ["a"]},
            "invalid_type in 'note': Expected string, received array",
        ),
        (
            "POST",
            lambda a: "/v1/api-keys",
            {"neverExpires": {"yes": True}},
            "invalid_type in 'neverExpires': Expected boolean, received object",
        ),
    ],
)
async def test_wrong_types_name_the_field(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    method: str,
    path_of: Callable[[Account], str],
    body: dict[str, Any],
    message: str,
) -> None:
    before = await counts(app)
    response = await client.request(method, path_of(alice), params=alice.params, json=body)
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert await counts(app) == before


async def test_several_bad_fields_are_all_named(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        "/v1/users",
        params=admin.params,
        json={"email": 5, "username": "ok", "timeFormat": "x", "extra": 1},
    )
    assert response.status_code == 400
    message = response.json()["message"]
    for field in ("'email'", "'timeFormat'", "'extra'"):
        assert field in message
    assert "; " in message


# --- 413 -----------------------------------------------------------------------------------------

LIMIT = 200
TOO_LARGE = {"message": f"Request body too large: the limit is {LIMIT} bytes."}


def note_body(size: int) -> bytes:
    """A valid POST /v1/api-keys body of exactly ``size`` bytes."""
    frame = b'{"note": ""}'
    return b'{"note": "' + b"x" * (size - len(frame)) + b'"}'


async def chunks(data: bytes, size: int = 64) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_body_over_limit_is_413(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    async with running(make_settings(max_body_bytes=LIMIT)) as (app, http):
        before = await counts(app)
        response = await http.post(
            "/v1/api-keys",
            params=alice.params,
            content=note_body(LIMIT + 1),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == TOO_LARGE
        assert_request_ids(response)
        assert await counts(app) == before

        at_limit = await http.post(
            "/v1/api-keys",
            params=alice.params,
            content=note_body(LIMIT),
            headers={"content-type": "application/json"},
        )
        assert at_limit.status_code == 200, at_limit.text
        assert at_limit.json()["api_key"]["note"] == "x" * (LIMIT - 12)


async def test_chunked_body_over_limit_is_413(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    async with running(make_settings(max_body_bytes=LIMIT)) as (app, http):
        before = await counts(app)
        response = await http.post(
            "/v1/api-keys",
            params=alice.params,
            content=chunks(note_body(LIMIT + 50)),
            headers={"content-type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert response.request.headers.get("transfer-encoding") == "chunked"
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == TOO_LARGE
        assert_request_ids(response)
        assert await counts(app) == before

        at_limit = await http.post(
            "/v1/api-keys",
            params=alice.params,
            content=chunks(note_body(LIMIT)),
            headers={"content-type": "application/json"},
        )
        assert at_limit.status_code == 200, at_limit.text


async def test_chunked_body_over_limit_on_user_patch(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    async with running(make_settings(max_body_bytes=LIMIT)) as (app, http):
        body = b'{"bio": "' + b"y" * LIMIT + b'"}'
        response = await http.patch(
            f"/v1/users/{alice.id}",
            params=alice.params,
            content=chunks(body, 16),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413, response.text
        assert response.json() == TOO_LARGE
        async with app.state.sessions() as session:
            user = await session.get(User, alice.id)
        assert user is not None and user.bio is None


# --- request ids on every response ----------------------------------------------------------------


async def test_every_response_carries_request_ids(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    settings = make_settings(max_body_bytes=LIMIT, rate_limit="2/minute")
    async with running(settings) as (_app, http):
        responses = {
            200: await http.get("/v1/me", params=alice.params),
            401: await http.get("/v1/me"),
            404: await http.get("/v1/nope", params=alice.params),
            405: await http.put("/v1/users", params=alice.params),
            413: await http.post(
                "/v1/api-keys",
                params=alice.params,
                content=b"{" + b" " * LIMIT + b"}",
                headers={"content-type": "application/json"},
            ),
            400: await http.get("/v1/users/abc", params=alice.params),
            429: await http.get("/v1/me", params=alice.params),
        }
        ids = set()
        for status, response in responses.items():
            assert response.status_code == status, (status, response.text)
            request_id = assert_request_ids(response)
            assert GENERATED_ID.match(request_id), request_id
            ids.add(request_id)
        assert len(ids) == len(responses)  # a fresh id per request


@pytest.mark.parametrize("request_id", ["abc-123", "req_01HXYZ.7:9", "a" * 128])
async def test_sane_client_request_id_is_echoed(
    client: httpx.AsyncClient, alice: Account, request_id: str
) -> None:
    for response in (
        await client.get("/v1/me", params=alice.params, headers={"X-Request-ID": request_id}),
        await client.get("/v1/me", headers={"X-Request-ID": request_id}),
        await client.get("/v1/nope", headers={"X-Request-ID": request_id}),
    ):
        assert response.headers["x-request-id"] == request_id
        assert response.headers["calcom-response-id"] == request_id


@pytest.mark.parametrize(
    "request_id", ["has space", "a" * 129, "<script>", "new\u00e9", "semi;colon", ""]
)
async def test_unsafe_client_request_id_is_replaced(
    client: httpx.AsyncClient, alice: Account, request_id: str
) -> None:
    response = await client.get(
        "/v1/me",
        params=alice.params,
        headers=[(b"X-Request-ID", request_id.encode())],
    )
    assert response.status_code == 200
    replaced = assert_request_ids(response)
    assert replaced != request_id
    assert GENERATED_ID.match(replaced)


async def test_a_row_deleted_by_another_request_meanwhile_is_a_409(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    """Found by the fuzzer on PostgreSQL: a PATCH of a user whom a concurrent DELETE removed
    between the PATCH's read and its UPDATE was a 500 (StaleDataError). The route below does the
    same steps on the real database, deterministically: read, another transaction deletes and
    commits, then write."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite: a writing request holds the write lock from its first read on")
    async with running(make_settings()) as (app, http):
        async with app.state.sessions() as session, session.begin():
            session.add(User(email="gone@example.com", username="gone"))

        async def patch_vanished_user() -> dict[str, Any]:
            async with app.state.sessions() as session, session.begin():
                user = await session.scalar(select(User).where(User.username == "gone"))
                assert user is not None
                async with app.state.sessions() as other, other.begin():
                    await other.delete(await other.get(User, user.id))
                user.name = "Too late"
                await session.flush()
            return {}

        app.add_api_route("/v1/test-only/stale", patch_vanished_user, methods=["PATCH"])
        r = await http.patch("/v1/test-only/stale")
        assert r.status_code == 409, r.text
        assert r.json() == {
            "message": "The object was changed or deleted by another request meanwhile; "
            "nothing was written."
        }
