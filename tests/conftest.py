"""Shared fixtures: real databases (SQLite always, PostgreSQL when configured), the app, keys.

Set BOOKABLE_TEST_DATABASE_URL=postgresql://... to run every API test on PostgreSQL as well, and
BOOKABLE_TEST_REDIS_URL=redis://... for the Redis rate-limit and revocation tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from bookable.api_keys.service import issue_key
from bookable.app import create_app
from bookable.core.db import create_engine
from bookable.migrations.runner import upgrade
from bookable.models import Base, User, UserRole
from bookable.settings import Settings

# Real calendar servers (Radicale, an ICS feed server), for every test directory.
from tests.calendar_servers import ics_server, private_radicale, radicale, radicale_server  # noqa: F401

# A real SMTP server (aiosmtpd) on loopback.
from tests.mail_servers import make_smtp_server, smtp_server  # noqa: F401

# Under pytest-xdist each worker ("gw0", "gw1", ...) gets its own PostgreSQL database and Redis
# database, so workers never empty each other's tables or flush each other's counters.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(WORKER[2:]) if WORKER.startswith("gw") and WORKER[2:].isdigit() else 0


def _worker_database_url(base: str | None) -> str | None:
    if not base or not WORKER:
        return base
    url = make_url(base)
    return url.set(database=f"{url.database}_{WORKER}").render_as_string(hide_password=False)


def _worker_redis_url(base: str | None) -> str | None:
    if not base or not WORKER:
        return base
    head, _, tail = base.rpartition("/")
    number = int(tail) if tail.isdigit() else 0
    return f"{head}/{max(number - WORKER_INDEX, 0)}" if tail.isdigit() else base


BASE_PG_URL = os.environ.get("BOOKABLE_TEST_DATABASE_URL")
PG_URL = _worker_database_url(BASE_PG_URL)
REDIS_URL = _worker_redis_url(os.environ.get("BOOKABLE_TEST_REDIS_URL"))


def _on_own_loop(work: Coroutine[Any, Any, None]) -> None:
    # Called from sync fixtures and hooks that may run inside an event loop: a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, work).result()


async def _on_server(base_url: str, work: Callable[[AsyncConnection], Awaitable[None]]) -> None:
    """``work`` on a connection to the test server outside any transaction (CREATE/DROP
    DATABASE refuse to run inside one)."""
    engine = create_engine(base_url)
    try:
        async with engine.connect() as conn:
            await work(await conn.execution_options(isolation_level="AUTOCOMMIT"))
    finally:
        await engine.dispose()


def ensure_worker_database() -> None:
    """Create this worker's PostgreSQL database (a sibling of the configured one) if missing."""
    if not BASE_PG_URL or not PG_URL or PG_URL == BASE_PG_URL:
        return
    name = make_url(PG_URL).database

    async def create(conn: AsyncConnection) -> None:
        found = await conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        )
        if not found:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))

    _on_own_loop(_on_server(BASE_PG_URL, create))


def drop_worker_database() -> None:
    """Drop this worker's PostgreSQL database at the end of its session: a run leaves behind
    only the database it was given (.ci/run also sweeps what a crashed run left)."""
    if not BASE_PG_URL or not PG_URL or PG_URL == BASE_PG_URL:
        return
    name = make_url(PG_URL).database

    async def drop(conn: AsyncConnection) -> None:
        # FORCE: a server a failed test could not stop must not keep the database.
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    _on_own_loop(_on_server(BASE_PG_URL, drop))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        drop_worker_database()
    except Exception as error:  # the server may be gone; the run's result stands
        sys.stderr.write(f"could not drop {make_url(PG_URL or '').database}: {error}\n")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long files first. Workers take whole files (--dist loadfile) in this order, so a long
    file handed out last runs alone at the end while the other workers idle. The system tests
    (servers started as processes, killed and restarted) are few per file but the longest, so
    they go first; then the other files by number of tests, most first (xdist's own reordering,
    turned off in pyproject.toml because it would put the system files last)."""
    counts = Counter(item.nodeid.split("::", 1)[0] for item in items)

    def order(item: pytest.Item) -> tuple[bool, int]:
        path = item.nodeid.split("::", 1)[0]
        return (not path.startswith("tests/system/"), -counts[path])

    items.sort(key=order)  # stable: a file's tests keep their order


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Skips as one line per reason with a count. pytest's -rs prints one line per test
    location: without PostgreSQL that is hundreds of lines saying the same thing."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skipped, by reason", sep="-")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count} skipped: {reason}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (migrating per test would be slow)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    if not PG_URL:
        pytest.skip("PostgreSQL: BOOKABLE_TEST_DATABASE_URL is not set")
    ensure_worker_database()
    upgrade(PG_URL)

    async def no_flush_on_commit(conn: AsyncConnection) -> None:
        # Test data need not survive a crash: no disk flush on every commit (new sessions).
        name = make_url(PG_URL).database
        await conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit TO off'))

    _on_own_loop(_on_server(PG_URL, no_flush_on_commit))
    return PG_URL


# Every table emptied and every id sequence restarted, as one script: one round trip on one plain
# asyncpg connection (an SQLAlchemy engine per test costs a few more round trips to set up, and
# one statement per table many more). DELETE, not TRUNCATE: on tables this small it is many times
# faster (TRUNCATE makes new files and syncs them). Children before parents.
_EMPTY_POSTGRES = ";\n".join(
    [
        *(f'DELETE FROM "{table.name}"' for table in reversed(Base.metadata.sorted_tables)),
        "SELECT setval(c.oid, 1, false) FROM pg_class c WHERE c.relkind = 'S'",
    ]
)


async def _empty_postgres(url: str) -> None:
    """Empty every table and restart ids (one implicit transaction: the script is one query)."""
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(_EMPTY_POSTGRES)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[str]:
    """Every test that uses the database runs once per engine."""
    if request.param == "sqlite":
        path = tmp_path / "bookable.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_migrated")
        await _empty_postgres(url)
        yield url


@pytest.fixture
def make_settings(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., Settings]:
    # A module marked `without_dispatchers` makes no delivery of any outbox: its apps start no
    # dispatcher (starting and stopping three of them is a good part of a short test's time).
    dispatchers = "off" if request.node.get_closest_marker("without_dispatchers") else "inline"

    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            # Never the checkout's ./bookable.key: each test generates its own.
            "encryption_key_file": tmp_path / "bookable.key",
            "rate_limit": "0",
            "redis_url": None,
            "clock": None,
            # A safety net: whatever a test's calendar URL says, the app never looks up or
            # reaches a host outside this machine.
            "calendar_allowed_hosts": "127.0.0.1,::1,localhost",
            # Booking emails go to the test's own folder (never the checkout's ./mail), and are
            # off unless a test turns them on (tests/api/test_booking_emails.py and
            # test_email_sending.py do): other tests' direct reads-then-writes on SQLite must
            # not race an email dispatcher they know nothing of.
            "email_dir": tmp_path / "mail",
            "smtp_url": None,
            "emails": "off",
            "webhook_dispatcher": dispatchers,
        }
        values.update(overrides)
        return Settings(**values)

    return _make


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings())
    async with application.router.lifespan_context(application):
        yield application


def client_for(application: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://bookable.test"
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@dataclass
class Account:
    id: int
    email: str
    username: str
    key: str
    key_id: str

    @property
    def params(self) -> dict[str, str]:
        return {"apiKey": self.key}


@pytest.fixture
def make_account(app: FastAPI) -> Callable[..., Any]:
    """Create a user and a key straight in the database (as `bookable admin create` does)."""

    async def _make(username: str, *, role: UserRole = UserRole.USER, **key_args: Any) -> Account:
        async with app.state.sessions() as session, session.begin():
            user = User(email=f"{username}@example.com", username=username, role=role)
            session.add(user)
            await session.flush()
            key, clear = await issue_key(
                session, user_id=user.id, prefix=app.state.settings.api_key_prefix, **key_args
            )
            return Account(user.id, user.email, username, clear, key.id)

    return _make


@pytest.fixture
async def alice(make_account: Callable[..., Any]) -> Account:
    return await make_account("alice")


@pytest.fixture
async def bob(make_account: Callable[..., Any]) -> Account:
    return await make_account("bob")


@pytest.fixture
async def admin(make_account: Callable[..., Any]) -> Account:
    return await make_account("root", role=UserRole.ADMIN)


@pytest.fixture
def redis_url() -> Iterator[str]:
    if not REDIS_URL:
        pytest.skip("Redis: BOOKABLE_TEST_REDIS_URL is not set")
    yield REDIS_URL
