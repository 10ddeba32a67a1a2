"""``Idempotency-Key`` on POST: a client that retries after a timeout gets the first answer again
instead of a second booking (README, "Idempotent requests").

The key row is written in the request's own transaction, so it is committed together with what
the request created, or not at all:

1. `claim_idempotency_key` (a dependency of every POST route, after authentication) inserts the
   row ``(user, key)`` with no answer yet. A concurrent duplicate meets the unique index:
   PostgreSQL makes it wait until the first transaction ends; SQLite's writers already take turns
   (BEGIN IMMEDIATE). Once it may go on it finds the committed row and replays its answer.
2. `IdempotentRoute` runs the endpoint, then writes the rendered answer into that row *before*
   the session dependency commits (FastAPI closes function-scoped dependencies after the route
   handler returns its response, before the response is sent).
3. An error raised by the endpoint (any 4xx or 5xx) rolls the whole transaction back, the key row
   with it: nothing was created, so the key stays free and a retry runs again. Only answers whose
   transaction committed are replayed; a 500 is never replayed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookable.core.auth import CurrentCaller
from bookable.core.clock import clock
from bookable.core.db import DbSession
from bookable.core.errors import BadRequest, Conflict
from bookable.core.routing import CheckedRoute, RouteHandler
from bookable.models import IdempotencyKey

log = logging.getLogger("bookable.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255
_CLAIM = "bookable.idempotency_claim"
# Query parameters that say who calls, not what is asked: a retry may carry another key.
_CREDENTIAL_PARAMS = frozenset({"apiKey"})
_HEADER_DOC = (
    "Makes the POST safe to retry: the same key from the same user within 24 hours answers the "
    "first request's response again (with `Idempotency-Replayed: true`) and creates nothing. "
    "1-255 printable ASCII characters; a UUID is a good choice. Bookable extension."
)


@dataclass
class Claim:
    """The key this request holds, and what it was sent with."""

    user_id: int
    key: str
    method: str
    path: str
    request_hash: str
    row_id: int | None = None


class IdempotentReplay(Exception):
    """The key has a stored answer: the route handler answers it instead of running again."""

    def __init__(self, row: IdempotencyKey) -> None:
        super().__init__(row.key)
        assert row.response_status is not None
        self.status = row.response_status
        self.body = (row.response_body or "").encode()
        self.content_type = row.response_content_type

    def response(self) -> Response:
        response = Response(self.body, status_code=self.status, media_type=self.content_type)
        response.headers[REPLAYED_HEADER] = "true"
        return response


def valid_key(raw: str) -> str:
    if not raw or len(raw) > MAX_KEY_LENGTH:
        raise BadRequest(
            f"too_big in '{HEADER}': must be 1 to {MAX_KEY_LENGTH} characters, got {len(raw)}"
        )
    if any(not (" " <= char <= "~") for char in raw):
        raise BadRequest(f"invalid_string in '{HEADER}': only printable ASCII characters")
    return raw


def request_hash(request: Request, body: bytes) -> str:
    """What the request asks: its query (without credentials) and its body. A JSON body is
    compared by content, so a retry that re-serialises it with other spacing still matches."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    query = sorted(
        (name, value)
        for name, value in request.query_params.multi_items()
        if name not in _CREDENTIAL_PARAMS
    )
    digest = hashlib.sha256(json.dumps(query).encode())
    digest.update(b"\n")
    digest.update(canonical)
    return digest.hexdigest()


async def claim_idempotency_key(
    request: Request,
    session: DbSession,
    caller: CurrentCaller,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description=_HEADER_DOC,
            json_schema_extra={"maxLength": MAX_KEY_LENGTH, "pattern": "^[ -~]+$"},
        ),
    ] = None,
) -> None:
    """Take the caller's key for this request, or answer the stored response (`IdempotentReplay`).
    The key is checked here (`valid_key`), so that the 400 says what a key may hold."""
    if idempotency_key is None:
        return
    claim = Claim(
        user_id=caller.user_id,
        key=valid_key(idempotency_key),
        method=request.method,
        path=request.url.path,
        request_hash=request_hash(request, await request.body()),
    )
    session.info[_CLAIM] = claim
    request.state.idempotency_session = session
    await _take(session, claim)


async def reclaim_idempotency_key(session: AsyncSession) -> None:
    """After the request's transaction was rolled back and begun again (a retried deadlock):
    take its key again, in the new transaction."""
    claim: Claim | None = session.info.get(_CLAIM)
    if claim is not None:
        claim.row_id = None
        await _take(session, claim)


async def _take(session: AsyncSession, claim: Claim) -> None:
    now = clock.now()
    # An expired answer no longer counts: the key may start over (the purge may not have run).
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.user_id == claim.user_id,
            IdempotencyKey.key == claim.key,
            IdempotencyKey.created_at <= now - KEY_LIFETIME,
        )
    )
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(IdempotencyKey)
        .values(
            user_id=claim.user_id,
            key=claim.key,
            method=claim.method,
            path=claim.path,
            request_hash=claim.request_hash,
            created_at=now,
        )
        # PostgreSQL: waits while another transaction holds the same key, then inserts (it
        # rolled back) or does nothing (it committed: its answer is read below).
        .on_conflict_do_nothing(index_elements=["user_id", "key"])
        .returning(IdempotencyKey.id)
    )
    claim.row_id = (await session.execute(statement)).scalar_one_or_none()
    if claim.row_id is not None:
        return
    first = await session.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.user_id == claim.user_id, IdempotencyKey.key == claim.key)
        .execution_options(populate_existing=True)
    )
    if first is None:  # purged between the two statements: a new request after all
        await _take(session, claim)
        return
    if (first.method, first.path) != (claim.method, claim.path):
        raise Conflict(
            f"{HEADER} {claim.key!r} was already used for {first.method} {first.path}; "
            "send a new key for a new request"
        )
    if first.request_hash != claim.request_hash:
        raise Conflict(
            f"{HEADER} {claim.key!r} was already used with a different request body; "
            "send a new key for a new request"
        )
    if first.response_status is None:
        # Not reached through this module (the row commits with its answer); kept for rows
        # written by anything else.
        raise Conflict(f"A request with {HEADER} {claim.key!r} is still being processed")
    raise IdempotentReplay(first)


async def record_answer(session: AsyncSession, response: Response) -> None:
    """Store the endpoint's rendered answer in the claimed row, in the transaction still open."""
    claim: Claim | None = session.info.pop(_CLAIM, None)
    if claim is None or claim.row_id is None:
        return
    body = getattr(response, "body", None)
    text = None
    if isinstance(body, bytes):
        try:
            text = body.decode()
        except UnicodeDecodeError:
            text = None
    if text is None:
        # Not replayable byte for byte (a stream, binary): the key is not kept.
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim.row_id))
        return
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim.row_id)
        .values(
            response_status=response.status_code,
            response_body=text,
            response_content_type=response.headers.get("content-type"),
        )
    )


class IdempotentRoute(CheckedRoute):
    """A route whose POST takes part in ``Idempotency-Key`` (see the module docstring), and whose
    JSON body is checked for unstorable text (`CheckedRoute`). Every resource router is built with
    it: ``APIRouter(route_class=IdempotentRoute)``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if "POST" in {m.upper() for m in kwargs.get("methods") or ()}:
            kwargs["dependencies"] = [
                *(kwargs.get("dependencies") or ()),
                Depends(claim_idempotency_key),
            ]
        super().__init__(path, endpoint, **kwargs)

    def wrap_handler(self, handler: RouteHandler) -> RouteHandler:
        handler = super().wrap_handler(handler)

        async def idempotent_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except IdempotentReplay as replay:
                return replay.response()
            session: AsyncSession | None = getattr(request.state, "idempotency_session", None)
            if session is not None:
                await record_answer(session, response)
            return response

        return idempotent_handler


async def purge_expired(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Delete the answers older than `KEY_LIFETIME`, in a transaction of its own."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at <= clock.now() - KEY_LIFETIME)
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_forever(sessions: async_sessionmaker[AsyncSession], every_seconds: float) -> None:
    """The app's background purge (started by its lifespan): expired keys do not pile up.
    Expired keys are ignored anyway (`_take`), so the first purge can wait a whole interval."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            purged = await purge_expired(sessions)
            if purged:
                log.info("purged %d expired idempotency keys", purged)
        except Exception:  # a database hiccup must not end the loop
            log.exception("purging expired idempotency keys failed")
