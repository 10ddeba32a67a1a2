"""Authentication: every 401/403 variant, key formats, hashing at rest, revocation, expiry."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text, update

from bookable.app import create_app
from bookable.core.clock import clock
from bookable.models import ApiKey, User
from bookable.settings import Settings
from tests.conftest import Account, client_for
from tests.statements import recorded_statements

NOT_VALID = {"error": "Your API key is not valid."}
EXPIRED = {"error": "This API key is expired."}
NO_KEY = {"message": "No apiKey provided"}
LOCKED = {"error": "You are not authorized to perform this request."}


@pytest.fixture
def unfreeze_clock() -> Iterator[None]:
    """create_app(Settings(clock=...)) freezes the process-wide clock: thaw it afterwards."""
    yield
    clock.freeze(None)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application), client_for(application) as http:
        yield application, http


async def me(http: httpx.AsyncClient, key: str) -> httpx.Response:
    return await http.get("/v1/me", params={"apiKey": key})


# --- missing / invalid keys -------------------------------------------------------------------


async def test_no_key_is_401(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/me")
    assert response.status_code == 401
    assert response.json() == NO_KEY


async def test_empty_api_key_is_401(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/me", params={"apiKey": ""})
    assert response.status_code == 401
    assert response.json() == NO_KEY


async def test_empty_bearer_header_is_401(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/me", headers={"Authorization": "Bearer "})
    assert response.status_code == 401
    assert response.json() == NO_KEY


async def test_other_auth_scheme_is_not_a_key(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/me", headers={"Authorization": f"Basic {alice.key}"})
    assert response.status_code == 401
    assert response.json() == NO_KEY


@pytest.mark.parametrize(
    "key",
    [
        "cal_00000000000000000000000000000000",
        "cal_live_00000000000000000000000000000000",
        "nonsense",
        "cal_",
    ],
)
async def test_unknown_key_is_401(client: httpx.AsyncClient, alice: Account, key: str) -> None:
    response = await me(client, key)
    assert response.status_code == 401
    assert response.json() == NOT_VALID


async def test_unknown_bearer_key_is_401(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/me", headers={"Authorization": "Bearer cal_" + "f" * 32})
    assert response.status_code == 401
    assert response.json() == NOT_VALID


async def test_tampered_key_is_401(client: httpx.AsyncClient, alice: Account) -> None:
    last = alice.key[-1]
    tampered = alice.key[:-1] + ("0" if last != "0" else "1")
    response = await me(client, tampered)
    assert response.status_code == 401
    assert response.json() == NOT_VALID


async def test_every_v1_route_needs_a_key(client: httpx.AsyncClient, alice: Account) -> None:
    for method, path in [
        ("GET", "/v1/me"),
        ("GET", "/v1/users"),
        ("POST", "/v1/users"),
        ("GET", f"/v1/users/{alice.id}"),
        ("PATCH", f"/v1/users/{alice.id}"),
        ("DELETE", f"/v1/users/{alice.id}"),
        ("GET", "/v1/api-keys"),
        ("POST", "/v1/api-keys"),
        ("GET", f"/v1/api-keys/{alice.key_id}"),
        ("PATCH", f"/v1/api-keys/{alice.key_id}"),
        ("DELETE", f"/v1/api-keys/{alice.key_id}"),
        ("GET", "/v2/me"),
    ]:
        kwargs: dict[str, Any] = {"json": {}} if method in {"POST", "PATCH"} else {}
        response = await client.request(method, path, **kwargs)
        assert response.status_code == 401, (method, path)
        assert response.json() == NO_KEY, (method, path)
    # Nothing was deleted by the unauthenticated DELETEs.
    assert (await me(client, alice.key)).status_code == 200


# --- expired and locked -------------------------------------------------------------------------


async def test_expired_key_is_401(client: httpx.AsyncClient, make_account: Callable) -> None:
    carol = await make_account("carol", expires_at=datetime.now(UTC) - timedelta(days=1))
    response = await me(client, carol.key)
    assert response.status_code == 401
    assert response.json() == EXPIRED


async def test_key_expiring_later_works(client: httpx.AsyncClient, make_account: Callable) -> None:
    carol = await make_account("carol", expires_at=datetime.now(UTC) + timedelta(days=1))
    response = await me(client, carol.key)
    assert response.status_code == 200
    assert response.json()["user"]["id"] == carol.id


async def test_locked_user_is_403(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == alice.id).values(locked=True))
    response = await me(client, alice.key)
    assert response.status_code == 403
    assert response.json() == LOCKED
    # Same answer through every route, and with a bearer header.
    response = await client.get("/v1/api-keys", headers={"Authorization": f"Bearer {alice.key}"})
    assert response.status_code == 403
    assert response.json() == LOCKED


async def test_locked_user_with_expired_key_reports_expiry(
    app: FastAPI, client: httpx.AsyncClient, make_account: Callable
) -> None:
    carol = await make_account("carol", expires_at=datetime.now(UTC) - timedelta(hours=1))
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == carol.id).values(locked=True))
    response = await me(client, carol.key)
    assert response.status_code == 401
    assert response.json() == EXPIRED


# --- key formats -------------------------------------------------------------------------------


async def test_bearer_header_works(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {alice.key}"})
    assert response.status_code == 200
    assert response.json()["user"]["id"] == alice.id
    response = await client.get("/v1/me", headers={"Authorization": f"bearer {alice.key}"})
    assert response.status_code == 200


async def test_query_key_wins_over_header(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    response = await client.get(
        "/v1/me", params={"apiKey": alice.key}, headers={"Authorization": f"Bearer {bob.key}"}
    )
    assert response.status_code == 200
    assert response.json()["user"]["id"] == alice.id


async def test_cal_live_prefix_is_accepted(client: httpx.AsyncClient, alice: Account) -> None:
    assert alice.key.startswith("cal_")
    live = "cal_live_" + alice.key.removeprefix("cal_")
    response = await me(client, live)
    assert response.status_code == 200
    assert response.json()["user"]["id"] == alice.id
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {live}"})
    assert response.status_code == 200
    assert response.json()["user"]["id"] == alice.id


async def test_cal_live_prefix_on_a_wrong_secret_is_401(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await me(client, "cal_live_" + "a" * 32)
    assert response.status_code == 401
    assert response.json() == NOT_VALID


# --- hashing at rest ---------------------------------------------------------------------------


async def _all_cells(app: FastAPI) -> list[str]:
    cells: list[str] = []
    async with app.state.sessions() as session:
        for table in ("api_keys", "users"):
            rows = (await session.execute(text(f"SELECT * FROM {table}"))).all()
            assert rows, table
            cells.extend(str(value) for row in rows for value in row)
    return cells


async def test_keys_are_stored_only_as_sha256_of_the_secret(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    created = await client.post("/v1/api-keys", params=alice.params, json={"note": "second"})
    assert created.status_code == 200
    api_key = created.json()["api_key"]
    clear_keys = {alice.key_id: alice.key, api_key["id"]: api_key["key"]}

    cells = await _all_cells(app)
    async with app.state.sessions() as session:
        stored = dict((await session.execute(select(ApiKey.id, ApiKey.hashed_key))).all())

    for key_id, clear in clear_keys.items():
        assert re.fullmatch(r"cal_[0-9a-f]{32}", clear), clear
        secret = clear.removeprefix("cal_")
        for cell in cells:
            assert clear not in cell
            assert secret not in cell
        assert stored[key_id] == hashlib.sha256(secret.encode()).hexdigest()
        assert re.fullmatch(r"[0-9a-f]{64}", stored[key_id])
    # Both keys work.
    for clear in clear_keys.values():
        assert (await me(client, clear)).status_code == 200


# --- revocation ----------------------------------------------------------------------------------


async def _key_count(app: FastAPI, user_id: int) -> int:
    async with app.state.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id)
            )
            or 0
        )


async def test_deleted_key_stops_working_with_auth_cache(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    assert app.state.settings.auth_cache_seconds > 0  # default settings: cache on
    created = await client.post("/v1/api-keys", params=alice.params, json={})
    second = created.json()["api_key"]
    # Used once: now in the auth cache.
    assert (await me(client, second["key"])).status_code == 200
    assert (await me(client, second["key"])).status_code == 200

    deleted = await client.delete(f"/v1/api-keys/{second['id']}", params=alice.params)
    assert deleted.status_code == 200
    assert deleted.json() == {"message": f"ApiKey with id: {second['id']} deleted"}

    response = await me(client, second["key"])
    assert response.status_code == 401
    assert response.json() == NOT_VALID
    # The key that did the deleting still works; only the first key is left.
    assert (await me(client, alice.key)).status_code == 200
    assert await _key_count(app, alice.id) == 1


async def test_key_deleting_itself_stops_working(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    assert (await me(client, alice.key)).status_code == 200
    deleted = await client.delete(f"/v1/api-keys/{alice.key_id}", params=alice.params)
    assert deleted.status_code == 200
    response = await me(client, alice.key)
    assert response.status_code == 401
    assert response.json() == NOT_VALID
    assert await _key_count(app, alice.id) == 0


async def test_deleted_key_stops_working_without_cache(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    async with running(make_settings(auth_cache_seconds=0)) as (_app, http):
        assert (await me(http, alice.key)).status_code == 200
        deleted = await http.delete(f"/v1/api-keys/{alice.key_id}", params=alice.params)
        assert deleted.status_code == 200
        response = await me(http, alice.key)
        assert response.status_code == 401
        assert response.json() == NOT_VALID


async def test_deleted_user_keys_stop_working(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account, bob: Account
) -> None:
    # A second key for alice, and both used once (cached).
    created = await client.post("/v1/api-keys", params=alice.params, json={})
    second = created.json()["api_key"]["key"]
    for key in (alice.key, second, bob.key):
        assert (await me(client, key)).status_code == 200

    deleted = await client.delete(f"/v1/users/{alice.id}", params=admin.params)
    assert deleted.status_code == 200
    assert deleted.json() == {"message": f"User with id: {alice.id} deleted successfully"}

    for key in (alice.key, second):
        response = await me(client, key)
        assert response.status_code == 401
        assert response.json() == NOT_VALID
    assert await _key_count(app, alice.id) == 0
    assert (await me(client, bob.key)).status_code == 200


async def test_user_deleting_themself_loses_access(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    assert (await me(client, alice.key)).status_code == 200
    deleted = await client.delete(f"/v1/users/{alice.id}", params=alice.params)
    assert deleted.status_code == 200
    response = await me(client, alice.key)
    assert response.status_code == 401
    assert response.json() == NOT_VALID
    async with app.state.sessions() as session:
        assert await session.get(User, alice.id) is None


# --- frozen clock ------------------------------------------------------------------------------


EXPIRES_AT = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


async def test_key_expires_exactly_at_expires_at(
    make_settings: Callable[..., Settings], make_account: Callable, unfreeze_clock: None
) -> None:
    carol = await make_account("carol", expires_at=EXPIRES_AT)

    just_before = EXPIRES_AT - timedelta(milliseconds=1)
    async with running(make_settings(clock=just_before)) as (_app, http):
        response = await me(http, carol.key)
        assert response.status_code == 200
        assert response.json()["user"]["id"] == carol.id

    async with running(make_settings(clock=EXPIRES_AT)) as (_app, http):
        response = await me(http, carol.key)
        assert response.status_code == 401
        assert response.json() == EXPIRED


async def test_cached_key_still_expires_on_time(
    make_settings: Callable[..., Settings], make_account: Callable, unfreeze_clock: None
) -> None:
    carol = await make_account("carol", expires_at=EXPIRES_AT)
    settings = make_settings(clock=EXPIRES_AT - timedelta(seconds=1))
    assert settings.auth_cache_seconds > 0
    async with running(settings) as (_app, http):
        assert (await me(http, carol.key)).status_code == 200  # now cached
        clock.freeze(EXPIRES_AT)
        response = await me(http, carol.key)
        assert response.status_code == 401
        assert response.json() == EXPIRED


async def test_expiry_follows_the_server_clock(
    make_settings: Callable[..., Settings], make_account: Callable, unfreeze_clock: None
) -> None:
    # A key that is expired in real time works while the clock says it is not expired yet:
    # expiry follows the server's clock, not the wall clock.
    expires = datetime.now(UTC) - timedelta(days=2)
    carol = await make_account("carol", expires_at=expires)
    async with running(make_settings(clock=expires - timedelta(days=1))) as (_app, http):
        assert (await me(http, carol.key)).status_code == 200


async def test_concurrent_requests_with_a_cold_cache_look_the_key_up_once(app, client, alice):
    import asyncio

    with recorded_statements(app) as statements:
        responses = await asyncio.gather(
            *(client.get("/v1/me", params=alice.params) for _ in range(20))
        )
    assert {r.status_code for r in responses} == {200}
    assert sum("FROM api_keys" in statement for statement in statements) == 1
