"""System tests: the real `bookable` command in subprocesses, spoken to over real HTTP.

`serving(...)` starts `bookable serve` on a free port, waits until it answers and always stops
it (its whole process group, so `--workers N` children go too), even when the test fails.
`working(...)` does the same for `bookable worker` processes (started together, ready once each
has logged "worker started").
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import time as clock_time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.migrations.runner import upgrade
from bookable.models import Availability, EventType, Schedule, User

BIN = Path(sys.executable).parent / "bookable"
BOOKABLE = str(BIN) if BIN.exists() else (shutil.which("bookable") or "bookable")
# The PostgreSQL database of this test worker (one per pytest-xdist worker).
from tests.conftest import PG_URL, _empty_postgres, ensure_worker_database  # noqa: E402

START_TIMEOUT = 30.0  # seconds; a loaded 2-core machine can take a while to import and migrate
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0
# Every server and command of this test process shares one generated encryption key, kept out of
# the checkout (the default is ./bookable.key).
ENCRYPTION_KEY_FILE = Path(tempfile.mkdtemp(prefix="bookable-test-key-")) / "bookable.key"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bookable_env(database_url: str, **overrides: str) -> dict[str, str]:
    """The caller's environment without any BOOKABLE_* setting, plus the database and overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKABLE_")}
    env["BOOKABLE_DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"  # logs reach the files as they happen
    env["BOOKABLE_ENCRYPTION_KEY_FILE"] = str(ENCRYPTION_KEY_FILE)
    # Booking emails as .eml files beside the key, never in the checkout's ./mail.
    env["BOOKABLE_EMAIL_DIR"] = str(ENCRYPTION_KEY_FILE.parent / "mail")
    env.update(overrides)
    return env


def run_cli(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BOOKABLE, *args],
        env=bookable_env(database_url, **env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "expected output on stdout"
    return lines[-1].strip()


def create_admin(database_url: str, *, prefix: str = "admin") -> tuple[str, str, str]:
    """`bookable admin create` with a unique email/username; returns (email, username, key)."""
    tag = uuid.uuid4().hex[:10]
    email, username = f"{prefix}-{tag}@example.com", f"{prefix}-{tag}"
    result = run_cli(database_url, "admin", "create", "--email", email, "--username", username)
    assert result.returncode == 0, result.stderr
    return email, username, last_line(result.stdout)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        return self.stdout() + self.stderr()

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = self.logs()
            if needle in logs:
                return logs
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never appeared in the server's output:\n{self.logs()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it leads its own session), then SIGKILL if needed."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # Workers outlive a supervisor killed with SIGKILL: sweep the group once more.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"bookable serve exited with {server.process.returncode}:\n{server.logs()}"
            )
        try:
            httpx.get(f"{server.base_url}/v1/openapi.json", timeout=2.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"bookable serve did not answer in {START_TIMEOUT} s:\n{server.logs()}")


async def add_daily_meet(
    session: AsyncSession, user: User, opens: clock_time, closes: clock_time
) -> EventType:
    """In ``session``: a UTC schedule open ``opens``-``closes`` every day, made ``user``'s
    default, and a 30-minute event type "meet" bookable at once (flushed: its id is set)."""
    schedule = Schedule(user_id=user.id, name="Daily", time_zone="UTC")
    schedule.availability.append(
        Availability(days=[0, 1, 2, 3, 4, 5, 6], start_time=opens, end_time=closes)
    )
    session.add(schedule)
    await session.flush()
    user.default_schedule_id = schedule.id
    meet = EventType(
        user_id=user.id, title="Meet", slug="meet", length=30,
        minimum_booking_notice=0, locations=[],
    )  # fmt: skip
    session.add(meet)
    await session.flush()
    return meet


@contextmanager
def serving(
    database_url: str,
    log_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> Iterator[Server]:
    """Run `bookable serve --port <free> *args` until the block ends; ``unset``: variables
    taken out of its environment (to see a default), ``cwd``: its working directory."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path = log_dir / f"serve-{port}.out"
    stderr_path = log_dir / f"serve-{port}.err"
    environment = bookable_env(database_url, **(env or {}))
    for name in unset:
        environment.pop(name, None)
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [BOOKABLE, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=environment,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", stdout_path, stderr_path)
    try:
        _wait_until_up(server)
        yield server
    finally:
        _stop(process)


@dataclass
class Worker:
    """A `bookable worker` process; its stdout and stderr go to one log file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = START_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = self.logs()
            if needle in logs:
                return logs
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never appeared in the worker's output:\n{self.logs()}")


def start_worker(database_url: str, log_path: Path, env: dict[str, str] | None = None) -> Worker:
    """A `bookable worker` in its own session (so its process group can be signalled); the
    caller stops it (`working()` does it for a block)."""
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [BOOKABLE, "worker"],
            env=bookable_env(database_url, **(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(process, log_path)


@contextmanager
def working(
    database_url: str, log_dir: Path, count: int = 1, *, env: dict[str, str] | None = None
) -> Iterator[list[Worker]]:
    """Run ``count`` `bookable worker` processes until the block ends; all start at once (a
    start costs seconds of imports) and the block begins once every one is ready. Each is
    stopped like a server: SIGTERM to its process group, SIGKILL if it lingers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    workers: list[Worker] = []
    try:
        for _ in range(count):
            log_path = log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
            workers.append(start_worker(database_url, log_path, env))
        for worker in workers:
            worker.wait_for_log("worker started")
        yield workers
    finally:
        for worker in workers:
            _stop(worker.process)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, empty SQLite file: the CLI and `serve` migrate it themselves."""
    return f"sqlite:///{tmp_path / 'bookable.db'}"


@pytest.fixture
def postgres_url() -> str:
    if not PG_URL:
        pytest.skip("PostgreSQL: BOOKABLE_TEST_DATABASE_URL is not set")
    ensure_worker_database()
    return PG_URL


def emptied_postgres() -> str:
    """This test worker's PostgreSQL database, migrated and emptied (a skip without one)."""
    if not PG_URL:
        pytest.skip("PostgreSQL: BOOKABLE_TEST_DATABASE_URL is not set")
    ensure_worker_database()
    upgrade(PG_URL)
    asyncio.run(_empty_postgres(PG_URL))
    return PG_URL


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test twice: on a fresh SQLite file, and on PostgreSQL migrated and emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bookable.db'}"
    return emptied_postgres()
