"""`before_transaction`: a route's network work runs after authentication and before the request's
transaction (and, on SQLite, the write gate and the database write lock) is taken."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import select, update

from bookable.core.auth import Caller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.preflight import Prepared, before_transaction
from bookable.models import User
from tests.conftest import client_for


async def _outside_transaction(request: Request, caller: Caller) -> dict[str, Any]:
    gate = request.app.state.write_gate
    # A write through a session of its own commits at once: it would wait for the request's
    # write lock (SQLite) or its idempotency row (PostgreSQL) if the transaction had begun.
    async with request.app.state.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == caller.user_id).values(name="pre"))
    body = await request.json()
    return {
        "gateHeld": bool(gate._lock is not None and gate._lock.locked()),
        "claimed": hasattr(request.state, "idempotency_session"),
        "echo": body.get("echo"),
        "caller": caller.user_id,
    }


def _probe_router() -> APIRouter:
    router = APIRouter(route_class=IdempotentRoute)

    @router.post("/preflight-probe", dependencies=[before_transaction(_outside_transaction)])
    async def probe_post(session: DbSession, prepared: Prepared) -> dict[str, Any]:
        name = await session.scalar(select(User.name).where(User.id == prepared["caller"]))
        return {**prepared, "nameSeen": name}

    @router.patch("/preflight-probe", dependencies=[before_transaction(_outside_transaction)])
    async def probe_patch(session: DbSession, prepared: Prepared) -> dict[str, Any]:
        return prepared

    return router


async def test_preflight_runs_before_the_transaction(app: FastAPI, alice) -> None:
    app.include_router(_probe_router(), prefix="/v1")
    async with client_for(app) as client:
        for method in ("POST", "PATCH"):
            response = await client.request(
                method,
                "/v1/preflight-probe",
                params=alice.params,
                json={"echo": method},
                headers={"Idempotency-Key": f"k-{method}"},
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["gateHeld"] is False
            assert body["claimed"] is False
            assert body["echo"] == method
        assert body["caller"] == alice.id
        # The endpoint's transaction sees what the preflight committed.
        first = await client.post(
            "/v1/preflight-probe", params=alice.params, json={"echo": "again"}
        )
        assert first.json()["nameSeen"] == "pre"


async def test_preflight_needs_a_key(app: FastAPI) -> None:
    app.include_router(_probe_router(), prefix="/v1")
    async with client_for(app) as client:
        response = await client.post("/v1/preflight-probe", json={"echo": 1})
        assert response.status_code == 401
