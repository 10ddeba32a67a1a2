"""The busy-time cache: blocks cover a window, entries survive the JSON round trip, and Redis
shares them between processes (two caches on one Redis)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from bookable.calendars.cache import BLOCK, BusyCache, CachedBlock, block_starts
from bookable.calendars.providers.base import BusyPeriod

T0 = datetime(2027, 3, 1, 9, tzinfo=UTC)


def test_blocks_cover_the_window_and_do_not_depend_on_it() -> None:
    start, end = T0, T0 + timedelta(days=31)
    blocks = block_starts(start, end)
    assert blocks[0] <= start < blocks[0] + BLOCK
    assert blocks[-1] < end <= blocks[-1] + BLOCK
    assert all(b2 - b1 == BLOCK for b1, b2 in itertools.pairwise(blocks))
    # A window inside the first one falls on the same blocks: reads are shared.
    assert set(block_starts(start + timedelta(days=2), end - timedelta(days=3))) <= set(blocks)


def test_entry_round_trip() -> None:
    entry = CachedBlock(
        (BusyPeriod(T0, T0 + timedelta(hours=1), "a@x"), BusyPeriod(T0, T0, None)), '"etag"', 5.0
    )
    assert CachedBlock.from_json(entry.to_json()) == entry


async def test_memory_cache_get_and_put() -> None:
    cache = BusyCache()
    blocks = block_starts(T0, T0 + timedelta(days=20))
    assert await cache.get_many("cal", blocks) == [None] * len(blocks)
    entry = CachedBlock((BusyPeriod(T0, T0 + timedelta(hours=1)),), "v1", 1.0)
    await cache.put_many("cal", {blocks[0]: entry})
    assert await cache.get_many("cal", blocks) == [entry] + [None] * (len(blocks) - 1)
    assert await cache.get_many("other", blocks[:1]) == [None]


@pytest.mark.redis
async def test_redis_cache_is_shared(redis_url: str) -> None:
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        blocks = block_starts(T0, T0 + timedelta(days=3))
        entry = CachedBlock((BusyPeriod(T0, T0 + timedelta(hours=2), "uid"),), "ctag-1", 2.0)
        await BusyCache(first).put_many("shared", dict.fromkeys(blocks, entry))
        assert await BusyCache(second).get_many("shared", blocks) == [entry] * len(blocks)
    finally:
        await first.aclose()
        await second.aclose()
