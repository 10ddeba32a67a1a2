"""The auth epoch across instances on one Redis: announcements while subscribed, a read of Redis
on every request while the subscription is down (core/auth.py `SharedEpoch`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from bookable.core.auth import SharedEpoch
from bookable.settings import Settings
from tests.api.test_ratelimit import me, redis_db, running, until_status
from tests.conftest import Account, client_for

__all__ = ["redis_db"]  # the fixture, used by name

WAIT_SECONDS = 5.0


def shared_of(app: FastAPI) -> SharedEpoch:
    shared = app.state.authenticator.shared
    assert isinstance(shared, SharedEpoch)
    return shared


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def kill_subscriber(redis_url: str, shared: SharedEpoch) -> None:
    """CLIENT KILL the instance's subscription connection (found by its own client name),
    once it is subscribed and its connection is on the server. Once, under load, the lookup
    found no connection (cause not pinned down; one that fits: the subscription had dropped by
    itself, no pong within the silence limit, and was about to subscribe again), so the kill
    waits for both instead of looking once."""
    await wait_until(lambda: shared.pushed is not None, "not subscribed")
    client = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not (
            ids := [
                c["id"] for c in await client.client_list() if c.get("name") == shared.client_name
            ]
        ):
            assert time.monotonic() < deadline, "the subscriber's connection is not on the server"
            await asyncio.sleep(0.01)
        for client_id in ids:
            await client.client_kill_filter(_id=client_id)
    finally:
        await client.aclose()


@pytest.fixture
async def pair(
    make_settings: Callable[..., Settings], redis_db: str
) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    settings = make_settings(redis_url=redis_db)
    async with AsyncExitStack() as stack:
        first, _ = await stack.enter_async_context(running(settings))
        second, _ = await stack.enter_async_context(running(settings))
        for app in (first, second):
            await wait_until(lambda app=app: shared_of(app).pushed is not None, "not subscribed")
        yield first, second


async def test_a_revocation_reaches_a_subscribed_instance_by_announcement(
    pair: tuple[FastAPI, FastAPI], alice: Account
) -> None:
    first, second = pair
    async with client_for(first) as a, client_for(second) as b:
        assert (await me(b, alice.key)).status_code == 200
        before = shared_of(second).pushed
        deleted = await a.delete(f"/v1/users/{alice.id}", params=alice.params)
        assert deleted.status_code == 200
        await until_status(b, alice.key, 401)
        pushed = shared_of(second).pushed
        assert pushed is not None and before is not None and pushed > before


async def test_an_instance_whose_subscription_is_down_reads_redis_on_every_request(
    pair: tuple[FastAPI, FastAPI], redis_db: str, alice: Account
) -> None:
    first, second = pair
    shared = shared_of(second)
    shared.retry_seconds = 60  # stays down for this test: only the fallback can see the change
    async with client_for(first) as a, client_for(second) as b:
        assert (await me(b, alice.key)).status_code == 200
        await kill_subscriber(redis_db, shared)
        await wait_until(lambda: shared.pushed is None, "the lost subscription went unnoticed")
        assert (await me(b, alice.key)).status_code == 200  # cached again, under Redis's epoch

        deleted = await a.delete(f"/v1/users/{alice.id}", params=alice.params)
        assert deleted.status_code == 200
        # No announcement can reach B now; its next request reads the epoch and sees it.
        assert shared.pushed is None
        response = await me(b, alice.key)
        assert response.status_code == 401, response.text


async def test_a_killed_subscription_comes_back_and_follows_again(
    pair: tuple[FastAPI, FastAPI], redis_db: str, alice: Account, bob: Account
) -> None:
    first, second = pair
    shared = shared_of(second)
    shared.retry_seconds = 0.05
    async with client_for(first) as a, client_for(second) as b:
        await kill_subscriber(redis_db, shared)
        await wait_until(lambda: shared.pushed is None, "the lost subscription went unnoticed")
        await wait_until(lambda: shared.pushed is not None, "never subscribed again")
        assert (await me(b, alice.key)).status_code == 200
        deleted = await a.delete(f"/v1/users/{alice.id}", params=alice.params)
        assert deleted.status_code == 200
        await until_status(b, alice.key, 401)
        assert (await me(b, bob.key)).status_code == 200
