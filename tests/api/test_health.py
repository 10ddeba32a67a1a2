"""`/healthz` and `/readyz`: no key, no rate limit, not in the OpenAPI document; readiness names
the failing check (database down or hung, migrations behind, Redis unreachable, a dispatcher
stopped, the process stopping) and never shows a URL or a password."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from bookable.app import create_app
from bookable.core.health import stopping
from bookable.migrations.runner import head_revisions
from bookable.settings import Settings
from tests.conftest import client_for
from tests.system.conftest import free_port

PASSWORD = "pr0be-S3cret"  # must never show in an answer


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application), client_for(application) as http:
        yield application, http


@pytest.fixture
def standalone_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for tests whose database is not the parametrised one (down, hung, empty)."""

    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path / 'empty.db'}",
            "encryption_key_file": tmp_path / "bookable.key",
            "email_dir": tmp_path / "mail",
            "emails": "off",
            "rate_limit": "0",
            "redis_url": None,
            "clock": None,
        }
        values.update(overrides)
        return Settings(**values)

    return _make


@contextmanager
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung database)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


def assert_no_secret(response: httpx.Response, *needles: str) -> None:
    for needle in (PASSWORD, "postgresql://", "redis://", "sqlite:", *needles):
        assert needle not in response.text, response.text


async def test_healthz_answers_without_a_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
    assert (await client.head("/healthz")).status_code == 200


async def test_readyz_names_every_check(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "redis": "off", "dispatchers": "ok"},
    }
    assert (await client.head("/readyz")).status_code == 200


async def test_probes_are_not_rate_limited_and_not_in_the_openapi_document(
    make_settings: Callable[..., Settings],
) -> None:
    async with running(make_settings(rate_limit="1/minute")) as (_app, http):
        for _ in range(5):
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.get("/healthz")).status_code == 200
        assert "x-ratelimit-limit" not in (await http.get("/readyz")).headers
        paths = (await http.get("/v1/openapi.json")).json()["paths"]
    assert not any(path.endswith(("/healthz", "/readyz")) for path in paths)


async def test_migrations_behind_head(app: FastAPI, client: httpx.AsyncClient) -> None:
    (head,) = head_revisions()
    older = f"{int(head) - 1:04d}"
    async with app.state.engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": older})
    try:
        response = await client.get("/readyz")
    finally:
        async with app.state.engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :v"), {"v": head}
            )
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == f"database at {older}, this version needs {head}"
    assert (await client.get("/readyz")).status_code == 200


async def test_a_database_never_migrated(standalone_settings: Callable[..., Settings]) -> None:
    async with running(standalone_settings(webhook_dispatcher="off")) as (_app, http):
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok",
        "migrations": "not applied: run `bookable db upgrade`",
        "redis": "off",
        "dispatchers": "off",
    }


async def test_a_database_that_cannot_be_reached(
    standalone_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder" / "bookable.db"
    down = {
        "sqlite": f"sqlite:///{missing}",
        "postgres": f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/bookable",
    }
    for url in down.values():
        async with running(standalone_settings(database_url=url)) as (_app, http):
            started = time.monotonic()
            response = await http.get("/readyz")
            assert time.monotonic() - started < 2.0
        assert response.status_code == 503, response.text
        checks = response.json()["checks"]
        assert checks["database"].startswith("unavailable ("), checks
        assert checks["migrations"] == "unknown"
        assert_no_secret(response, str(missing))


async def test_a_hung_database_gives_a_quick_503(
    standalone_settings: Callable[..., Settings],
) -> None:
    with silent_server() as port:
        settings = standalone_settings(
            database_url=f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/bookable",
            # The dispatchers would wait for the same database at start.
            webhook_dispatcher="off",
            health_timeout=0.3,
        )
        async with running(settings) as (_app, http):
            started = time.monotonic()
            response = await http.get("/readyz")
            elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "timed out after 0.3 s"
    assert elapsed < 1.5, elapsed
    assert_no_secret(response, str(port))


async def test_redis_configured(make_settings: Callable[..., Settings], redis_url: str) -> None:
    async with running(make_settings(redis_url=redis_url)) as (_app, http):
        response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["redis"] == "ok"


async def test_redis_unreachable(make_settings: Callable[..., Settings]) -> None:
    port = free_port()
    settings = make_settings(redis_url=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    async with running(settings) as (_app, http):
        response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    checks = response.json()["checks"]
    assert checks["redis"].startswith("unavailable (") or checks["redis"].startswith("timed out")
    assert {name: checks[name] for name in ("database", "migrations", "dispatchers")} == {
        "database": "ok",
        "migrations": "ok",
        "dispatchers": "ok",
    }
    assert_no_secret(response, str(port))


async def test_a_stopped_dispatcher(app: FastAPI, client: httpx.AsyncClient) -> None:
    await app.state.calendar_dispatcher.stop()
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["dispatchers"] == "not running: calendar"


async def test_dispatchers_off_where_workers_run_them(
    make_settings: Callable[..., Settings],
) -> None:
    async with running(make_settings(webhook_dispatcher="off")) as (_app, http):
        response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["dispatchers"] == "off"


async def test_a_stopping_process_is_not_ready_but_alive(client: httpx.AsyncClient) -> None:
    stopping.begin()
    try:
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")
    finally:
        stopping.end()
    assert ready.status_code == 503
    assert ready.json() == {"status": "shutting down", "checks": {}}
    assert alive.status_code == 200
    assert (await client.get("/readyz")).status_code == 200
