"""Per-user rate limits: budget, 429, headers; shared through Redis between app instances."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import func, select

from bookable.api_keys.service import issue_key
from bookable.app import create_app
from bookable.core.ratelimit import REDIS_CLIENT_NAME
from bookable.models import ApiKey
from bookable.settings import Settings
from tests.conftest import Account, client_for

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
EXCEEDED = {"message": "Rate limit exceeded"}
DELIVERY_BOUND_SECONDS = 5.0


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application), client_for(application) as http:
        yield application, http


async def second_key(app: FastAPI, account: Account) -> str:
    """Another key for the same user, written straight to the database (spends no budget)."""
    async with app.state.sessions() as session, session.begin():
        _key, clear = await issue_key(session, user_id=account.id, prefix="cal_")
    return clear


async def me(http: httpx.AsyncClient, key: str) -> httpx.Response:
    return await http.get("/v1/me", params={"apiKey": key})


def assert_rate_headers(response: httpx.Response, *, limit: int, remaining: int) -> int:
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == str(remaining)
    reset_ms = int(response.headers["x-ratelimit-reset"])
    now_ms = time.time() * 1000
    assert now_ms < reset_ms <= now_ms + 61_000, (reset_ms, now_ms)
    return reset_ms


@pytest.fixture
async def redis_db(redis_url: str) -> AsyncIterator[str]:
    """A clean Redis database: limiter keys are per user id, and ids repeat across tests."""
    client = Redis.from_url(redis_url)
    try:
        await client.flushdb()
        yield redis_url
        await client.flushdb()
    finally:
        await client.aclose()


# --- one process, in-memory counters -------------------------------------------------------------


async def test_exactly_limit_requests_pass(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    async with running(make_settings(rate_limit="3/minute")) as (_app, http):
        for remaining in (2, 1, 0):
            response = await me(http, alice.key)
            assert response.status_code == 200
            assert_rate_headers(response, limit=3, remaining=remaining)

        response = await me(http, alice.key)
        assert response.status_code == 429
        assert response.json() == EXCEEDED
        assert_rate_headers(response, limit=3, remaining=0)
        retry_after = int(response.headers["retry-after"])
        assert 1 <= retry_after <= 60

        # Every route shares the budget, and it stays spent.
        for path in ("/v1/users", "/v1/api-keys", f"/v1/users/{alice.id}", "/v2/me", "/me"):
            response = await http.get(path, params=alice.params)
            assert response.status_code == 429, path
            assert response.json() == EXCEEDED


async def test_rate_limited_writes_change_nothing(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    async with running(make_settings(rate_limit="1/minute")) as (app, http):
        assert (await me(http, alice.key)).status_code == 200
        response = await http.post("/v1/api-keys", params=alice.params, json={"note": "late"})
        assert response.status_code == 429
        response = await http.delete(f"/v1/api-keys/{alice.key_id}", params=alice.params)
        assert response.status_code == 429
        async with app.state.sessions() as session:
            count = await session.scalar(select(func.count()).select_from(ApiKey))
        assert count == 1


async def test_headers_on_every_authenticated_response(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    async with running(make_settings(rate_limit="10/minute")) as (_app, http):
        responses = [
            await me(http, alice.key),
            await http.get("/v1/api-keys/missing", params=alice.params),  # 404
            await http.get("/v1/users/abc", params=alice.params),  # 400
            await http.patch(f"/v1/users/{alice.id}", params=alice.params, json={"foo": 1}),  # 400
            await http.get("/v1/users/999", params=alice.params),  # 403
            await http.get("/v1/me", headers={"Authorization": f"Bearer {alice.key}"}),
        ]
        assert [r.status_code for r in responses] == [200, 404, 400, 400, 403, 200]
        resets = [
            assert_rate_headers(r, limit=10, remaining=9 - i) for i, r in enumerate(responses)
        ]
        assert resets == sorted(resets)


async def test_unauthenticated_requests_spend_nothing(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    async with running(make_settings(rate_limit="2/minute")) as (_app, http):
        for response in (
            await http.get("/v1/me"),
            await me(http, "cal_" + "0" * 32),
            await me(http, "cal_" + "1" * 32),
        ):
            assert response.status_code == 401
            for header in RATE_HEADERS:
                assert header not in response.headers
        assert (await me(http, alice.key)).status_code == 200
        assert (await me(http, alice.key)).status_code == 200
        assert (await me(http, alice.key)).status_code == 429


async def test_budget_is_per_user(
    app: FastAPI, make_settings: Callable[..., Settings], alice: Account, bob: Account
) -> None:
    alice_other = await second_key(app, alice)
    async with running(make_settings(rate_limit="3/minute")) as (_app, http):
        assert (await me(http, alice.key)).status_code == 200
        assert (await me(http, alice_other)).status_code == 200
        response = await http.get("/v1/me", headers={"Authorization": f"Bearer {alice_other}"})
        assert response.status_code == 200
        assert_rate_headers(response, limit=3, remaining=0)

        for key in (alice.key, alice_other):
            response = await me(http, key)
            assert response.status_code == 429
            assert response.json() == EXCEEDED

        # Bob has his own, untouched budget.
        response = await me(http, bob.key)
        assert response.status_code == 200
        assert_rate_headers(response, limit=3, remaining=2)


async def test_budget_comes_back_after_the_window(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    async with running(make_settings(rate_limit="2/second")) as (_app, http):
        assert (await me(http, alice.key)).status_code == 200
        assert (await me(http, alice.key)).status_code == 200
        limited = await me(http, alice.key)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"
        reset_ms = int(limited.headers["x-ratelimit-reset"])
        wait = reset_ms / 1000 - time.time()
        assert 0 < wait <= 1.0
        await asyncio.sleep(wait + 0.05)
        response = await me(http, alice.key)
        assert response.status_code == 200


async def test_zero_means_no_limit_and_no_headers(
    make_settings: Callable[..., Settings], alice: Account
) -> None:
    for off in ("0", "off"):
        async with running(make_settings(rate_limit=off)) as (_app, http):
            for _ in range(40):
                response = await me(http, alice.key)
                assert response.status_code == 200
                for header in RATE_HEADERS:
                    assert header not in response.headers


async def test_default_test_app_has_no_limit(client: httpx.AsyncClient, alice: Account) -> None:
    # conftest's `app` runs with rate_limit="0".
    response = await me(client, alice.key)
    assert response.status_code == 200
    assert "x-ratelimit-limit" not in response.headers


# --- several app instances through Redis ---------------------------------------------------------


@asynccontextmanager
async def two_instances(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with AsyncExitStack() as stack:
        _a, first = await stack.enter_async_context(running(settings))
        _b, second = await stack.enter_async_context(running(settings))
        yield first, second


async def until_status(http: httpx.AsyncClient, key: str, status: int) -> httpx.Response:
    """GET /v1/me until it answers ``status``: an instance learns of a revocation elsewhere
    within the pub/sub delivery time (a bound here, not a measurement)."""
    deadline = time.monotonic() + DELIVERY_BOUND_SECONDS
    while True:
        response = await me(http, key)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        await asyncio.sleep(0.01)


async def test_redis_instances_share_one_budget(
    make_settings: Callable[..., Settings], redis_db: str, alice: Account, bob: Account
) -> None:
    settings = make_settings(rate_limit="3/minute", redis_url=redis_db)
    async with two_instances(settings) as (first, second):
        response = await me(first, alice.key)
        assert response.status_code == 200
        assert_rate_headers(response, limit=3, remaining=2)
        response = await me(second, alice.key)
        assert response.status_code == 200
        assert_rate_headers(response, limit=3, remaining=1)
        response = await me(first, alice.key)
        assert response.status_code == 200
        assert_rate_headers(response, limit=3, remaining=0)

        for http in (second, first):
            response = await me(http, alice.key)
            assert response.status_code == 429
            assert response.json() == EXCEEDED
            assert "retry-after" in response.headers

        response = await me(second, bob.key)
        assert response.status_code == 200
        assert_rate_headers(response, limit=3, remaining=2)


async def test_redis_budget_is_per_user_across_keys_and_instances(
    app: FastAPI, make_settings: Callable[..., Settings], redis_db: str, alice: Account
) -> None:
    alice_other = await second_key(app, alice)
    settings = make_settings(rate_limit="2/minute", redis_url=redis_db)
    async with two_instances(settings) as (first, second):
        assert (await me(first, alice.key)).status_code == 200
        assert (await me(second, alice_other)).status_code == 200
        assert (await me(first, alice_other)).status_code == 429
        assert (await me(second, alice.key)).status_code == 429


async def test_redis_revocation_reaches_other_instance(
    make_settings: Callable[..., Settings], redis_db: str, alice: Account
) -> None:
    settings = make_settings(redis_url=redis_db)  # rate limit off, auth cache on (default)
    assert settings.auth_cache_seconds > 0
    async with two_instances(settings) as (first, second):
        created = await first.post("/v1/api-keys", params=alice.params, json={})
        extra = created.json()["api_key"]
        # Instance B verifies (and caches) the new key.
        assert (await me(second, extra["key"])).status_code == 200
        assert (await me(second, extra["key"])).status_code == 200

        deleted = await first.delete(f"/v1/api-keys/{extra['id']}", params=alice.params)
        assert deleted.status_code == 200

        assert (await me(first, extra["key"])).status_code == 401  # the revoking one: at once
        # The other one: once the announcement is delivered (pub/sub, core/auth.py).
        response = await until_status(second, extra["key"], 401)
        assert response.json() == {"error": "Your API key is not valid."}
        assert (await me(second, alice.key)).status_code == 200


async def test_redis_user_deletion_and_demotion_reach_other_instance(
    make_settings: Callable[..., Settings],
    redis_db: str,
    admin: Account,
    alice: Account,
    bob: Account,
) -> None:
    settings = make_settings(redis_url=redis_db)
    async with two_instances(settings) as (first, second):
        assert (await me(second, alice.key)).status_code == 200
        listed = await second.get("/v1/users", params=bob.params)
        assert listed.json()["total"] == 1

        # Promote bob and delete alice on instance A.
        promoted = await first.patch(
            f"/v1/users/{bob.id}", params=admin.params, json={"role": "ADMIN"}
        )
        assert promoted.status_code == 200
        deleted = await first.delete(f"/v1/users/{alice.id}", params=admin.params)
        assert deleted.status_code == 200

        # Instance B sees both once the announcement is delivered.
        await until_status(second, alice.key, 401)
        listed = await second.get("/v1/users", params=bob.params)
        assert listed.status_code == 200
        assert sorted(u["id"] for u in listed.json()["users"]) == sorted([admin.id, bob.id])


async def _limiter_connections(redis_url: str) -> set[str]:
    """The ids of the rate limiter's connections the Redis server has open now."""
    client = Redis.from_url(redis_url)
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return {str(c["id"]) for c in clients if c.get("name") == REDIS_CLIENT_NAME}


async def test_shutdown_closes_the_redis_connections_of_the_limiter(
    make_settings: Callable[..., Settings], redis_db: str, alice: Account
) -> None:
    before = await _limiter_connections(redis_db)
    async with running(make_settings(rate_limit="3/minute", redis_url=redis_db)) as (_app, http):
        assert (await me(http, alice.key)).status_code == 200
        ours = await _limiter_connections(redis_db) - before
        assert ours  # the request opened one
    deadline = time.monotonic() + 5
    while ours & await _limiter_connections(redis_db):
        assert time.monotonic() < deadline, "the limiter's connections stayed open"
        await asyncio.sleep(0.02)
