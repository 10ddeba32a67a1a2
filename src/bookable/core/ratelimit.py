"""Per-user rate limits on a moving window (the `limits` package).

In memory for one process; in Redis when ``BOOKABLE_REDIS_URL`` is set, so that every server
process spends from one budget. Exactly ``limit`` requests pass per window (Cal.com lets only
``limit - 1`` through; see docs/compatibility.md).
"""

from __future__ import annotations

import math
import time

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import ConnectionPool

from bookable.core.errors import ApiError
from bookable.core.metrics import RATE_LIMITED

HEADERS_STATE_KEY = "rate_limit_headers"
REDIS_CLIENT_NAME = "bookable:ratelimit"  # how the limiter's connections show in CLIENT LIST


def redis_storage_uri(redis_url: str) -> str:
    return "async+" + redis_url if not redis_url.startswith("async+") else redis_url


class RateLimiter:
    def __init__(self, limit: str, redis_url: str | None = None) -> None:
        enabled = limit.strip() not in {"", "0", "off", "none"}
        self.item: RateLimitItem | None = parse(limit) if enabled else None
        self.storage: Storage | None = None
        # Redis: a connection pool of our own, given to the storage, because `limits` has no
        # way to close its client; `aclose` disconnects it at shutdown.
        self.redis_pool: ConnectionPool | None = None
        self._strategy: MovingWindowRateLimiter | None = None
        if self.item is not None:
            if redis_url:
                self.redis_pool = ConnectionPool.from_url(redis_url, client_name=REDIS_CLIENT_NAME)
                self.storage = RedisStorage(
                    redis_storage_uri(redis_url),
                    implementation="redispy",
                    key_prefix="bookable",
                    connection_pool=self.redis_pool,  # type: ignore[arg-type]
                )
            else:
                self.storage = MemoryStorage()
            self._strategy = MovingWindowRateLimiter(self.storage)

    async def aclose(self) -> None:
        """Close the Redis connections (the app's lifespan does, at shutdown)."""
        if self.redis_pool is not None:
            await self.redis_pool.aclose()

    async def spend(self, request: Request, identifier: str) -> None:
        """Count one request; 429 when the budget is gone. Headers go on every response."""
        if self._strategy is None or self.item is None:
            return
        allowed = await self._strategy.hit(self.item, "user", identifier)
        stats = await self._strategy.get_window_stats(self.item, "user", identifier)
        reset_ms = math.ceil(stats.reset_time * 1000)
        headers = {
            "X-RateLimit-Limit": str(self.item.amount),
            "X-RateLimit-Remaining": str(max(stats.remaining, 0)),
            "X-RateLimit-Reset": str(reset_ms),
        }
        request.state.rate_limit_headers = headers
        if not allowed:
            # Wall-clock time, not the business clock: BOOKABLE_CLOCK must not freeze limits.
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            RATE_LIMITED.inc()
            raise ApiError(429, "Rate limit exceeded", headers={"Retry-After": str(retry_after)})
