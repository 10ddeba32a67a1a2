"""Busy times read from calendars, kept for a short while.

Reading a remote calendar on every GET /slots is what made Cal.com slow. A read is kept per
calendar and per block of days (`BLOCK`), with the calendar's version (CalDAV ctag / sync-token,
the feed's ETag) at the time it was read:

- younger than ``calendar_cache_seconds``: used as it is;
- older: one cheap request asks the server for the version; unchanged → used again (and marked
  checked now), changed or unknown → read again;
- a booking always asks for the version before it commits (``revalidate``).

With Redis configured the entries are shared by every process (a key per block, JSON, expiring
after `ENTRY_LIFETIME`); otherwise they live in this process (an LRU of `MEMORY_ENTRIES`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import LRUCache
from redis.asyncio import Redis

from bookable.calendars.providers.base import BusyPeriod

# Blocks of days that busy times are read and kept in: a 31-day /slots window spans 2 or 3.
BLOCK = timedelta(days=16)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ENTRY_LIFETIME = timedelta(days=1)
MEMORY_ENTRIES = 20_000
_PREFIX = "bookable:calbusy:"


def block_starts(start: datetime, end: datetime) -> list[datetime]:
    """The starts of the blocks that together cover [start, end)."""
    first = _EPOCH + ((start - _EPOCH) // BLOCK) * BLOCK
    starts = []
    block = first
    while block < end:
        starts.append(block)
        block += BLOCK
    return starts


@dataclass(frozen=True, slots=True)
class CachedBlock:
    busy: tuple[BusyPeriod, ...]
    version: str | None
    checked_at: float  # epoch seconds of the last read or revalidation

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": self.version,
                "c": self.checked_at,
                "b": [[p.start.timestamp(), p.end.timestamp(), p.uid] for p in self.busy],
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> CachedBlock:
        data: dict[str, Any] = json.loads(text)
        busy = tuple(
            BusyPeriod(datetime.fromtimestamp(s, UTC), datetime.fromtimestamp(e, UTC), uid)
            for s, e, uid in data["b"]
        )
        return cls(busy, data["v"], float(data["c"]))


class BusyCache:
    """Blocks of busy times by ``(calendar key, block start)``, in Redis or in this process."""

    def __init__(self, redis: Redis | None = None) -> None:
        self._redis = redis
        self._memory: LRUCache[str, str] = LRUCache(MEMORY_ENTRIES)

    @staticmethod
    def _key(calendar: str, block: datetime) -> str:
        return f"{_PREFIX}{calendar}:{int(block.timestamp())}"

    async def get_many(self, calendar: str, blocks: list[datetime]) -> list[CachedBlock | None]:
        keys = [self._key(calendar, b) for b in blocks]
        if self._redis is not None:
            raw: list[Any] = await self._redis.mget(keys)
        else:
            raw = [self._memory.get(k) for k in keys]
        return [None if item is None else CachedBlock.from_json(item) for item in raw]

    async def put_many(self, calendar: str, entries: dict[datetime, CachedBlock]) -> None:
        values = {self._key(calendar, b): e.to_json() for b, e in entries.items()}
        if self._redis is not None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value in values.items():
                    pipe.set(key, value, ex=int(ENTRY_LIFETIME.total_seconds()))
                await pipe.execute()
        else:
            self._memory.update(values)

    async def clear(self) -> None:
        """Forget every cached read (the next read of each calendar is a first one)."""
        if self._redis is not None:
            async for key in self._redis.scan_iter(match=f"{_PREFIX}*", count=1000):
                await self._redis.delete(key)
        else:
            self._memory.clear()
