"""The `bookable` command end to end: real subprocesses on a real SQLite file.

Keys printed by the CLI are checked through the app itself (create_app on the same file).
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bookable.app import create_app
from bookable.settings import Settings
from tests.system.conftest import ENCRYPTION_KEY_FILE, create_admin, last_line, run_cli


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


async def me(database_url: str, key: str) -> httpx.Response:
    app = create_app(
        Settings(
            database_url=database_url,
            rate_limit="0",
            redis_url=None,
            encryption_key_file=ENCRYPTION_KEY_FILE,
        )
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bookable.test"
        ) as http,
    ):
        return await http.get("/v1/me", params={"apiKey": key})


def flat(text: str) -> str:
    """stderr is wrapped to the terminal width by rich; compare with whitespace collapsed."""
    return " ".join(text.split())


def key_rows(database_url: str, note: str) -> list[str | None]:
    """expires_at of the keys with this note, oldest first."""
    with sqlite3.connect(sqlite_path(database_url)) as db:
        query = "SELECT expires_at FROM api_keys WHERE note = ? ORDER BY created_at"
        return [expires for (expires,) in db.execute(query, (note,))]


def count(database_url: str, table: str) -> int:
    with sqlite3.connect(sqlite_path(database_url)) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@dataclass
class Admin:
    url: str
    email: str
    username: str


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Admin:
    """One SQLite file with one admin made by the CLI, shared by the tests that need a user."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'bookable.db'}"
    email, username, _key = create_admin(url)
    return Admin(url, email, username)


def unique(text: str) -> str:
    return f"{text}-{uuid.uuid4().hex[:8]}"


async def test_admin_create_prints_a_working_key_last(sqlite_url: str) -> None:
    result = run_cli(
        sqlite_url,
        "admin", "create", "--email", "Root@Example.com", "--username", "root",
        "--name", "Root", "--time-zone", "Europe/Paris",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    key = last_line(result.stdout)
    assert key.startswith("cal_")
    assert key not in result.stderr  # human notes on stderr, the key only on stdout
    response = await me(sqlite_url, key)
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert user["username"] == "root"
    assert user["email"].lower() == "root@example.com"
    assert user["name"] == "Root"
    assert user["timeZone"] == "Europe/Paris"
    assert user["role"] == "ADMIN"


def test_duplicate_admin_fails(admin: Admin) -> None:
    users = count(admin.url, "users")
    by_email = run_cli(
        admin.url, "admin", "create", "--email", admin.email, "--username", unique("other")
    )
    by_username = run_cli(
        admin.url, "admin", "create", "--email", "other@example.com", "--username", admin.username
    )
    for result in (by_email, by_username):
        assert result.returncode == 1
        assert "exists" in flat(result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout.strip() == ""
    assert count(admin.url, "users") == users


async def test_keys_create_by_email_and_by_username(admin: Admin) -> None:
    note = unique("ci")
    by_email = run_cli(admin.url, "keys", "create", "--user", admin.email.upper(), "--note", note)
    by_username = run_cli(admin.url, "keys", "create", "--user", admin.username, "--note", note)
    assert by_email.returncode == 0, by_email.stderr
    assert by_username.returncode == 0, by_username.stderr
    keys = {last_line(by_email.stdout), last_line(by_username.stdout)}
    assert len(keys) == 2
    for key in keys:
        assert key not in by_email.stderr + by_username.stderr
        response = await me(admin.url, key)
        assert response.status_code == 200, response.text
        assert response.json()["user"]["username"] == admin.username
    assert key_rows(admin.url, note) == [None, None]  # no expiry unless asked


async def test_keys_create_with_expiry(admin: Admin) -> None:
    note = unique("expiring")
    before = datetime.now(UTC)
    result = run_cli(
        admin.url,
        "keys", "create", "--user", admin.username, "--note", note, "--expires-in-days", "7",
    )  # fmt: skip
    after = datetime.now(UTC)
    assert result.returncode == 0, result.stderr
    (stored,) = key_rows(admin.url, note)
    assert stored is not None
    expires_at = datetime.fromisoformat(stored).replace(tzinfo=UTC)  # stored as naive UTC
    assert before + timedelta(days=7) - timedelta(seconds=5) <= expires_at
    assert expires_at <= after + timedelta(days=7) + timedelta(seconds=5)
    assert (await me(admin.url, last_line(result.stdout))).status_code == 200

    keys = count(admin.url, "api_keys")
    zero = run_cli(admin.url, "keys", "create", "--user", admin.username, "--expires-in-days", "0")
    assert zero.returncode == 2  # usage error from the option's min=1
    assert count(admin.url, "api_keys") == keys


def test_keys_create_for_unknown_user_fails(admin: Admin) -> None:
    keys = count(admin.url, "api_keys")
    result = run_cli(admin.url, "keys", "create", "--user", "nobody@example.com")
    assert result.returncode == 1
    assert "nobody@example.com" in flat(result.stderr)
    assert result.stdout.strip() == ""
    assert count(admin.url, "api_keys") == keys


def test_admin_create_with_invalid_time_zone_fails(admin: Admin) -> None:
    users = count(admin.url, "users")
    result = run_cli(
        admin.url,
        "admin", "create", "--email", "tz@example.com", "--username", "tz",
        "--time-zone", "Mars/Olympus_Mons",
    )  # fmt: skip
    assert result.returncode == 1
    assert "Mars/Olympus_Mons" in flat(result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""
    assert count(admin.url, "users") == users


def test_db_upgrade_is_idempotent(sqlite_url: str) -> None:
    first = run_cli(sqlite_url, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(sqlite_path(sqlite_url)) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "api_keys"} <= tables
    second = run_cli(sqlite_url, "db", "upgrade")
    assert second.returncode == 0, second.stderr
    assert "up to date" in flat(second.stderr)
    with sqlite3.connect(sqlite_path(sqlite_url)) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(revision,)]
