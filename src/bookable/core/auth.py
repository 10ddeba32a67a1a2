"""API keys and the caller of a request.

Keys look like ``<prefix><32 hex>``; only the SHA-256 hex of the secret part is stored. A verified
key is remembered in process for ``auth_cache_seconds`` so the hot path costs no hashing and no
database round trip. A revoked key must never be served from that cache, so every change that can
revoke access (key deleted, user deleted, locked or demoted) bumps the *auth epoch*: locally, and in
Redis when several processes share one database. A cached entry from another epoch is ignored.

With Redis, the revoking process INCRs the shared epoch and PUBLISHes it; every process follows
that channel (`SharedEpoch`) and, while its subscription is confirmed and answering, counts the
announcements it received instead of reading Redis on each request. Whenever the subscription is
not known to be healthy (not yet confirmed, failed, silent, resubscribing), every request reads
the shared epoch from Redis as before. So a revocation reaches another process within the
pub/sub delivery time, or at once while that process's subscription is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from cachetools import TTLCache
from fastapi import Depends, Request
from sqlalchemy import select

from bookable.core.clock import clock
from bookable.core.errors import ApiError, Forbidden, Unauthorized
from bookable.core.params import check_url_parameters
from bookable.models import ApiKey, User, UserRole

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bookable.core.ratelimit import RateLimiter

# Prefixes Cal.com deployments issue: self-hosted default and api.cal.com's live keys.
KNOWN_PREFIXES = ("cal_live_", "cal_")
EPOCH_KEY = "bookable:auth-epoch"
# Pub/sub channels are server-wide, not per database: the channel names the database, so two
# deployments sharing one Redis server never take each other's announcements.
EPOCH_CHANNEL = "bookable:auth-epoch:{db}"
EPOCH_CLIENT_NAME = "bookable:auth-epoch"
# While subscribed: a PING this often, and the subscription counts as broken when nothing (not
# even the PONG) came back for this long (a half-open connection raises no error).
HEARTBEAT_SECONDS = 1.0
SILENCE_LIMIT_SECONDS = 3.0
log = logging.getLogger("bookable.auth")


def generate_secret() -> str:
    return secrets.token_hex(16)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def strip_prefix(key: str, configured_prefix: str) -> str:
    """The secret part of a key: drop the deployment's prefix, or a Cal.com one."""
    for prefix in sorted({configured_prefix, *KNOWN_PREFIXES}, key=len, reverse=True):
        if prefix and key.startswith(prefix):
            return key[len(prefix) :]
    return key


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the key's owner, as seen when the key was verified.

    ``user`` is a detached, read-only snapshot (fresh: any change to a user bumps the auth epoch).
    Services that change a user load it again in their own session.
    """

    user_id: int
    role: UserRole
    key_id: str
    user: User
    # Renderings of this snapshot (e.g. the /me body), kept as long as the cache keeps the caller.
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN


@dataclass(frozen=True, slots=True)
class _Verified:
    caller: Caller
    locked: bool
    expires_at: datetime | None
    epoch: tuple[int, ...]


class SharedEpoch:
    """The auth epoch shared through Redis, followed through pub/sub.

    ``pushed`` is a counter of what the subscription delivered (each announcement, each
    (re)subscription), or None while the subscription is not known to be healthy. It never
    goes back, so a cache entry filled before an announcement can never match again.
    """

    def __init__(self, redis: Redis, subscriber: Redis, *, retry_seconds: float = 1.0) -> None:
        self._redis = redis
        # Its own client, without redis-py's silent reconnects: a lost connection must surface
        # here (announcements published meanwhile are lost), not be hidden by a retry.
        self._subscriber = subscriber
        self.client_name: str = subscriber.get_connection_kwargs().get("client_name") or ""
        self.channel = EPOCH_CHANNEL.format(db=redis.get_connection_kwargs().get("db", 0))
        self.retry_seconds = retry_seconds
        self.pushed: int | None = None
        self._deliveries = 0
        self._task: asyncio.Task[None] | None = None

    async def read(self) -> int:
        return int(await self._redis.get(EPOCH_KEY) or 0)

    async def bump(self) -> None:
        value = await self._redis.incr(EPOCH_KEY)
        await self._redis.publish(self.channel, value)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow_forever(), name="auth-epoch")

    async def stop(self) -> None:
        self.pushed = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._subscriber.aclose()

    def _delivered(self) -> None:
        self._deliveries += 1
        self.pushed = self._deliveries

    async def _follow_forever(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: fall back, and subscribe again
                if self.pushed is not None:  # it was healthy: one line per outage
                    log.warning(
                        "auth epoch subscription lost (%s): reading Redis on every request "
                        "until it is back",
                        type(error).__name__,
                    )
            finally:
                self.pushed = None
            await asyncio.sleep(self.retry_seconds)

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        pubsub = self._subscriber.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            heard = pinged = loop.time()
            while True:
                message = await pubsub.get_message(timeout=HEARTBEAT_SECONDS)
                now = loop.time()
                if message is not None:
                    heard = now
                    # "subscribe": from now on every announcement arrives; those published
                    # before are covered by moving on too. "message": an announcement.
                    if message["type"] in ("subscribe", "message"):
                        self._delivered()
                if now - heard > SILENCE_LIMIT_SECONDS:
                    raise ConnectionError("no answer on the auth epoch subscription")
                if now - pinged >= HEARTBEAT_SECONDS:
                    await pubsub.ping()
                    pinged = now
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


class Authenticator:
    """Verifies keys, with the revocation-safe cache described in the module docstring."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        api_key_prefix: str,
        cache_seconds: float,
        shared: SharedEpoch | None = None,
    ) -> None:
        self._sessions = sessions
        self._prefix = api_key_prefix
        self.shared = shared
        self._local_epoch = 0
        # One database lookup per key at a time: when an entry expires under load, the requests
        # in flight wait for that lookup instead of each running their own.
        self._inflight: dict[str, asyncio.Future[_Verified]] = {}
        self._cache: TTLCache[str, _Verified] | None = (
            TTLCache(maxsize=10_000, ttl=cache_seconds, timer=time.monotonic)
            if cache_seconds > 0
            else None
        )

    async def _epoch(self) -> tuple[int, ...]:
        shared = self.shared
        if shared is None:
            return (self._local_epoch,)
        pushed = shared.pushed
        if pushed is not None:
            return (self._local_epoch, 0, pushed)
        # Not following the announcements right now: ask Redis (a different shape: switching
        # between the two ways never matches an entry made the other way).
        return (self._local_epoch, 1, await shared.read())

    async def revoke_cached(self) -> None:
        """Forget every verified key here and, through Redis, in every other process.

        Called after the revoking transaction commits, so no process can re-cache the old state.
        """
        self._local_epoch += 1
        if self._cache is not None:
            self._cache.clear()
        if self.shared is not None:
            await self.shared.bump()

    async def verify(self, raw_key: str) -> Caller:
        epoch = await self._epoch() if self._cache is not None else (0,)
        verified = self._cache.get(raw_key) if self._cache is not None else None
        if verified is None or verified.epoch != epoch:
            verified = await self._lookup_once(raw_key, epoch)
            if self._cache is not None:
                self._cache[raw_key] = verified
        if verified.expires_at is not None and clock.now() >= verified.expires_at:
            raise Unauthorized("This API key is expired.", key="error")
        if verified.locked:
            raise Forbidden("You are not authorized to perform this request.", key="error")
        return verified.caller

    async def _lookup_once(self, raw_key: str, epoch: tuple[int, ...]) -> _Verified:
        pending = self._inflight.get(raw_key)
        if pending is not None:
            verified = await asyncio.shield(pending)
            if verified.epoch == epoch:
                return verified
        future: asyncio.Future[_Verified] = asyncio.get_running_loop().create_future()
        self._inflight[raw_key] = future
        try:
            verified = await self._lookup(raw_key, epoch)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved here: waiters get it too, nobody logs it as lost
            raise
        else:
            future.set_result(verified)
            return verified
        finally:
            if self._inflight.get(raw_key) is future:
                del self._inflight[raw_key]

    async def _lookup(self, raw_key: str, epoch: tuple[int, ...]) -> _Verified:
        hashed = hash_secret(strip_prefix(raw_key, self._prefix))
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiKey.id, ApiKey.expires_at, User)
                    .join(User, User.id == ApiKey.user_id)
                    .where(ApiKey.hashed_key == hashed)
                )
            ).first()
        if row is None:
            raise Unauthorized("Your API key is not valid.", key="error")
        key_id, expires_at, user = row
        caller = Caller(user.id, UserRole(user.role), key_id, user)
        return _Verified(caller, bool(user.locked), expires_at, epoch)


_IDENTITY_CHANGED = "bookable.identity_changed"


def mark_identity_changed(session: AsyncSession) -> None:
    """Note that this transaction revokes or changes what a key grants.

    The request's session dependency calls `Authenticator.revoke_cached` once it has committed.
    """
    session.info[_IDENTITY_CHANGED] = True


def identity_changed(session: AsyncSession) -> bool:
    return bool(session.info.pop(_IDENTITY_CHANGED, False))


def presented_key(request: Request) -> str | None:
    """The key from ``?apiKey=`` (Cal.com v1) or ``Authorization: Bearer`` (API v2 clients)."""
    key = request.query_params.get("apiKey")
    if key:
        return key
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def authenticate(request: Request) -> Caller:
    """Verify the key, then spend one request of the owner's rate-limit budget; then, on the
    routes the app lists in ``url_checked_routes`` (v1), check the URL parameters strictly."""
    key = presented_key(request)
    if not key:
        raise Unauthorized("No apiKey provided")
    state = request.app.state
    authenticator: Authenticator = state.authenticator
    caller = await authenticator.verify(key)
    limiter: RateLimiter = state.rate_limiter
    await limiter.spend(request, str(caller.user_id))
    request.state.caller = caller
    if id(request.scope.get("route")) in getattr(state, "url_checked_routes", ()):
        await check_url_parameters(request)
    return caller


CurrentCaller = Annotated[Caller, Depends(authenticate)]


def require_admin(caller: Caller, message: str = "You are not authorized") -> None:
    if not caller.is_admin:
        raise ApiError(403, message)


def acting_user_id(
    caller: Caller, requested: Any, message: str = "ADMIN required for userId"
) -> int:
    """The user a call acts for: the caller, or (admins only) the ``userId`` they name."""
    if requested is None or requested == caller.user_id:
        return caller.user_id
    if not caller.is_admin:
        raise Forbidden(message)
    return int(requested)
