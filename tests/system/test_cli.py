"""The `bookable` command end to end: real subprocesses on a real SQLite file (and on the local
PostgreSQL server when BOOKABLE_TEST_DATABASE_URL is set).

Keys printed by the CLI are checked through the app itself (create_app on the same file).
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bookable import __version__
from bookable.app import create_app
from bookable.core.db import create_engine
from bookable.migrations.runner import alembic_config
from bookable.settings import Settings
from tests.system.conftest import (
    ENCRYPTION_KEY_FILE,
    PG_URL,
    create_admin,
    free_port,
    last_line,
    run_cli,
    serving,
)


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


# --- version, migrations printed --------------------------------------------------------------


def test_version() -> None:
    result = run_cli("sqlite:///unused.db", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"bookable {__version__}\n"
    assert not Path("unused.db").exists()


def every_migration() -> list[str]:
    """What `db upgrade` prints on an empty database: one line per migration, oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    revisions = reversed(list(scripts.walk_revisions()))
    return [f"applied {script.revision} {' '.join(script.doc.split())}" for script in revisions]


def assert_upgrade_prints_each_migration_once(database_url: str) -> None:
    fresh = run_cli(database_url, "db", "upgrade")
    assert fresh.returncode == 0, fresh.stderr
    lines = fresh.stderr.splitlines()
    assert lines[0] == "applied 0001 users and api keys"
    assert lines == [*every_migration(), "database is up to date"]
    warm = run_cli(database_url, "db", "upgrade")
    assert warm.returncode == 0, warm.stderr
    assert warm.stderr.splitlines() == ["database is already up to date"]


def test_db_upgrade_prints_each_migration_on_sqlite(sqlite_url: str) -> None:
    assert_upgrade_prints_each_migration_once(sqlite_url)


@pytest.fixture
async def fresh_postgres_url(postgres_url: str) -> AsyncIterator[str]:
    """A new, empty database on the test PostgreSQL server, dropped afterwards."""
    # A sibling of the test database: .ci/run sweeps its prefix should a run crash.
    name = f"{make_url(postgres_url).database}_cli_{uuid.uuid4().hex[:12]}"
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                yield (
                    make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
                )
            finally:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


@pytest.mark.postgres
def test_db_upgrade_prints_each_migration_on_postgres(fresh_postgres_url: str) -> None:
    assert_upgrade_prints_each_migration_once(fresh_postgres_url)


@pytest.mark.postgres
def test_processes_started_at_once_migrate_one_after_the_other(fresh_postgres_url: str) -> None:
    """Replicas starting together on a fresh database: one applies the migrations, the others
    wait for its advisory lock and find nothing left to do (none fails on a duplicate key)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: run_cli(fresh_postgres_url, "db", "upgrade"), range(3)))
    assert [result.returncode for result in results] == [0, 0, 0], [r.stderr for r in results]
    outputs = sorted(result.stderr.splitlines() for result in results)
    assert outputs == [
        [*every_migration(), "database is up to date"],
        ["database is already up to date"],
        ["database is already up to date"],
    ]


def test_serve_prints_migrations_on_a_fresh_database_only(sqlite_url: str, tmp_path: Path) -> None:
    applied = re.compile(r"^applied \d{4} ", re.MULTILINE)
    with serving(sqlite_url, tmp_path / "fresh") as server:
        assert applied.findall(server.stderr()) == ["applied 0001 "] + [
            line[: len("applied 0001 ")] for line in every_migration()[1:]
        ]
    with serving(sqlite_url, tmp_path / "warm") as server:
        assert not applied.search(server.logs())


# --- a database, a port or Redis that cannot be used: one line, exit 1 --------------------------

# Every command that touches the database, with the options it needs.
DATABASE_COMMANDS = {
    "db upgrade": ["db", "upgrade"],
    "admin create": ["admin", "create", "--email", "a@example.com", "--username", "a"],
    "keys create": ["keys", "create", "--user", "a@example.com"],
    "demo": ["demo"],
    "encryption rotate": ["encryption", "rotate"],
    "worker": ["worker"],
    "serve": ["serve", "--host", "127.0.0.1", "--port", "{port}"],
}


def run_command(command: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    args = [arg.replace("{port}", str(free_port())) for arg in DATABASE_COMMANDS[command]]
    return run_cli(database_url, *args, **env)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of a failed command: exit code 1, nothing on stdout, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def postgres_url_with(**parts: str) -> str:
    if not PG_URL:
        pytest.skip("PostgreSQL: BOOKABLE_TEST_DATABASE_URL is not set")
    url = make_url(PG_URL)
    # The password is there to be masked (the local server trusts loopback and ignores it).
    return url.set(password=url.password or "s3cret-pw", **parts).render_as_string(
        hide_password=False
    )


def masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@pytest.mark.postgres
@pytest.mark.parametrize("command", DATABASE_COMMANDS)
def test_missing_postgres_database(command: str) -> None:
    name = f"bookable_missing_{uuid.uuid4().hex[:12]}"
    url = postgres_url_with(database=name)
    parsed = make_url(url)
    line = error_line(run_command(command, url))
    assert line == (
        f'error: database "{name}" does not exist on {masked(url)}; create it with: '
        f"createdb -h {parsed.host} -p {parsed.port or 5432} -U {parsed.username} {name}"
    )
    assert str(parsed.password) not in line


@pytest.mark.parametrize("command", ["db upgrade", "serve", "worker"])
def test_unreachable_postgres_server(command: str) -> None:
    port = free_port()  # closed again: nothing listens there
    url = f"postgresql://bookable:s3cret-pw@127.0.0.1:{port}/bookable"
    line = error_line(run_command(command, url))
    assert line == (
        f"error: cannot connect to the database at postgresql://bookable:***@127.0.0.1:{port}"
        f"/bookable: connection refused; is PostgreSQL running on 127.0.0.1:{port}?"
    )


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["db upgrade", "admin create"])
def test_postgres_login_refused(command: str) -> None:
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    url = postgres_url_with(username=role)
    line = error_line(run_command(command, url))
    assert line.startswith(f"error: PostgreSQL refused the login at {masked(url)}: ")
    assert role in line
    assert line.endswith("check the user and password in BOOKABLE_DATABASE_URL")
    assert str(make_url(url).password) not in line


@pytest.mark.parametrize("command", DATABASE_COMMANDS)
def test_sqlite_folder_missing(command: str, tmp_path: Path) -> None:
    folder = tmp_path / "missing"
    line = error_line(run_command(command, f"sqlite:///{folder / 'bookable.db'}"))
    assert line == (
        f"error: cannot open the SQLite database {folder / 'bookable.db'}: folder {folder} does "
        f"not exist; create the folder (mkdir -p {folder}) or change BOOKABLE_DATABASE_URL"
    )
    assert not folder.exists()


def test_sqlite_folder_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("not a folder")
    line = error_line(run_command("db upgrade", f"sqlite:///{file / 'bookable.db'}"))
    assert f"{file} is not a folder" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_sqlite_folder_read_only(tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    line = error_line(run_command("serve", f"sqlite:///{folder / 'bookable.db'}"))
    assert f"folder {folder} is not writable" in line


def test_unsupported_database_url_scheme() -> None:
    line = error_line(run_command("db upgrade", "mysql://bookable:s3cret-pw@127.0.0.1/bookable"))
    assert "mysql://bookable:***@127.0.0.1/bookable" in line
    assert "s3cret-pw" not in line


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_serve_on_a_busy_port_fails_before_migrating(host: str, sqlite_url: str) -> None:
    if host == "::1" and not ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as busy:
        busy.bind((host, 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(sqlite_url, "serve", "--host", host, "--port", str(port))
    assert error_line(result) == (
        f"error: port {port} on {host} is in use; stop the other process or pass --port"
    )
    assert not Path(sqlite_path(sqlite_url)).exists()  # no migration ran


def test_serve_with_unreachable_redis_fails_before_migrating(sqlite_url: str) -> None:
    port = free_port()
    result = run_command(
        "serve", sqlite_url, BOOKABLE_REDIS_URL=f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    )
    assert error_line(result) == (
        f"error: cannot connect to Redis at redis://:***@127.0.0.1:{port}/0 "
        f"(BOOKABLE_REDIS_URL): connection refused; is Redis running on 127.0.0.1:{port}? "
        "(or unset BOOKABLE_REDIS_URL for one process)"
    )
    assert not Path(sqlite_path(sqlite_url)).exists()
