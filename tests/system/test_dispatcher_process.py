"""`bookable serve`'s dispatcher process (`bookable.dispatch_process`), as a real process tree.

With BOOKABLE_WEBHOOK_DISPATCHER=process (what `auto` picks on PostgreSQL with two CPUs or more;
tried here on SQLite too, where it works but is not the default) the outbox is
carried out by a child of `serve`: woken at once by serve's commits (the poll here is 60 s, so
only a wake-up can send within the test's deadline), started again when it dies, stopped after
serve's requests, and killed with serve.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bookable.dispatch_process import dispatcher_place
from tests.system.conftest import Server, emptied_postgres, serving

SLOW_POLL = {"BOOKABLE_RATE_LIMIT": "0", "BOOKABLE_WEBHOOK_POLL_INTERVAL": "60"}


def slow_poll(mail: Path, dispatcher: str) -> dict[str, str]:
    return {**SLOW_POLL, "BOOKABLE_EMAIL_DIR": str(mail), "BOOKABLE_WEBHOOK_DISPATCHER": dispatcher}


SENT_WITHIN = 10.0  # seconds; far below the poll


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(pid) and not fields["State"].startswith("Z"):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


class Demo:
    """A served demo user who books its own 30-minute event type, a slot at a time."""

    def __init__(self, server: Server, mail: Path) -> None:
        self.server = server
        self.mail = mail
        self.key = server.stdout().splitlines()[0].strip()
        self.http = httpx.Client(base_url=server.base_url, params={"apiKey": self.key}, timeout=30)
        types = self.http.get("/v1/event-types").json()["event_types"]
        (self.event_type,) = [t["id"] for t in types if t["slug"] == "30min"]
        now = datetime.now(UTC)
        r = self.http.get(
            "/v1/slots",
            params={
                "eventTypeId": self.event_type,
                "startTime": now.isoformat(),
                "endTime": (now + timedelta(days=8)).isoformat(),
                "timeZone": "UTC",
            },
        )
        assert r.status_code == 200, r.text
        self.slots = [s["time"] for day in r.json()["slots"].values() for s in day]

    def book(self) -> str:
        r = self.http.post(
            "/v1/bookings",
            json={
                "eventTypeId": self.event_type,
                "start": self.slots.pop(0),
                "timeZone": "UTC",
                "language": "en",
                "metadata": {},
                "responses": {"name": "Booker", "email": "booker@example.com"},
            },
        )
        assert r.status_code == 200, r.text
        return str(r.json()["uid"])

    def sent(self, uid: str) -> bool:
        """Both of the booking's emails written (the .eml folder). Not the rows' SENT: a
        dispatcher records a send with its next claim, which may wait for the 60-s poll."""
        return len(list(self.mail.glob(f"{uid}.*.eml"))) == 2

    def readiness(self) -> tuple[int, str]:
        r = httpx.get(f"{self.server.base_url}/readyz", timeout=10)
        return r.status_code, r.json()["checks"].get("dispatchers", "")


@pytest.fixture
def demo(database_url: str, tmp_path: Path) -> Iterator[Demo]:
    env = slow_poll(tmp_path / "mail", "process")
    with serving(database_url, tmp_path / "logs", "--demo", env=env) as server:
        server.wait_for_log("dispatcher process started")
        yield Demo(server, tmp_path / "mail")


def test_serve_sends_from_its_own_child_woken_by_its_commits(demo: Demo) -> None:
    serve = demo.server.process.pid
    (child,) = children(serve)
    assert "--serve-child" in Path(f"/proc/{child}/cmdline").read_text()
    assert demo.readiness() == (200, "ok")
    # Frozen, the child sends nothing, and neither does serve: its app runs no dispatcher.
    os.kill(child, signal.SIGSTOP)
    try:
        held = demo.book()
        time.sleep(2.0)
        assert not list(demo.mail.glob(f"{held}.*.eml")), "serve sent emails itself"
    finally:
        os.kill(child, signal.SIGCONT)
    # The wake-up waited in the pipe. The poll is 60 s: only serve's wake-ups (its pipe on
    # SQLite; on PostgreSQL the NOTIFY too) send this soon.
    wait_until(lambda: demo.sent(held), SENT_WITHIN, "the held booking's emails were not sent")
    started = time.monotonic()
    booking = demo.book()
    wait_until(lambda: demo.sent(booking), SENT_WITHIN, "the emails were not sent")
    assert time.monotonic() - started < SENT_WITHIN
    assert "Traceback" not in demo.server.logs(), demo.server.logs()


def test_a_dispatcher_process_that_dies_is_started_again(demo: Demo) -> None:
    serve = demo.server.process.pid
    (first,) = children(serve)
    os.kill(first, signal.SIGKILL)
    # Until the next one runs (a second later), readiness says so.
    down = (503, "not running: dispatcher process")
    wait_until(lambda: demo.readiness() == down, 0.9, "readiness missed the dead process")
    wait_until(lambda: children(serve) not in ([], [first]), 15, "no second dispatcher process")
    (second,) = children(serve)
    demo.server.wait_for_log("dispatcher process exited with status -9; starting another in 1 s")
    wait_until(lambda: demo.server.logs().count("dispatcher process started") == 2, 30,
               "the second dispatcher process never started")  # fmt: skip
    assert demo.readiness() == (200, "ok")
    booking = demo.book()
    wait_until(lambda: demo.sent(booking), SENT_WITHIN, "the second process sent nothing")
    assert alive(second)


def test_the_dispatcher_process_dies_with_serve(demo: Demo) -> None:
    serve = demo.server.process.pid
    (child,) = children(serve)
    os.kill(serve, signal.SIGKILL)  # serve alone: the child is in a session of its own
    demo.server.process.wait(10)
    wait_until(lambda: not alive(child), 5, "the dispatcher process outlived serve")


def test_sigterm_stops_serve_then_its_dispatcher_process(demo: Demo) -> None:
    serve = demo.server.process.pid
    (child,) = children(serve)
    booking = demo.book()
    wait_until(lambda: demo.sent(booking), SENT_WITHIN, "the emails were not sent")
    os.killpg(serve, signal.SIGTERM)  # the group: serve's, not the child's (own session)
    assert demo.server.process.wait(30) == 0
    assert not alive(child)
    logs = demo.server.logs()
    assert "exited with status" not in logs, logs  # stopped, not restarted
    assert "Traceback" not in logs, logs


@pytest.mark.parametrize("setting", ["inline", "auto"])
def test_inline_and_auto_on_sqlite_serve_without_a_child(
    setting: str, sqlite_url: str, tmp_path: Path
) -> None:
    env = slow_poll(tmp_path / "mail", setting)
    with serving(sqlite_url, tmp_path / "logs", "--demo", env=env) as server:
        demo = Demo(server, tmp_path / "mail")
        booking = demo.book()
        wait_until(lambda: demo.sent(booking), SENT_WITHIN, "the emails were not sent")
        assert children(server.process.pid) == []
        assert demo.readiness() == (200, "ok")  # its own dispatchers
        assert "dispatcher process" not in server.logs()


@pytest.mark.parametrize(
    ("setting", "cpus", "sqlite", "place"),
    [
        ("auto", 1, False, "inline"),
        ("auto", 2, False, "process"),
        ("auto", 16, False, "process"),
        ("auto", 16, True, "inline"),
        ("auto", 1, True, "inline"),
        ("process", 1, True, "process"),
        ("inline", 8, False, "inline"),
        ("off", 8, False, "off"),
    ],
)
def test_where_serve_runs_the_dispatchers(
    setting: str, cpus: int, sqlite: bool, place: str
) -> None:
    assert dispatcher_place(setting, cpus=cpus, sqlite=sqlite) == place


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_auto_keeps_them_inline_on_one_cpu(tmp_path: Path) -> None:
    postgres_url = emptied_postgres()
    env = slow_poll(tmp_path / "mail", "auto")
    everywhere = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(everywhere)})  # serve inherits it: one usable CPU
    try:
        with serving(postgres_url, tmp_path / "logs", "--demo", env=env) as server:
            os.sched_setaffinity(0, everywhere)
            demo = Demo(server, tmp_path / "mail")
            uid = demo.book()
            wait_until(lambda: demo.sent(uid), SENT_WITHIN, "the emails were not sent")
            assert children(server.process.pid) == []
            assert "dispatcher process" not in server.logs()
    finally:
        os.sched_setaffinity(0, everywhere)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_auto_runs_them_in_a_process_on_postgresql_with_two_cpus(tmp_path: Path) -> None:
    postgres_url = emptied_postgres()
    env = slow_poll(tmp_path / "mail", "auto")
    with serving(postgres_url, tmp_path / "logs", "--demo", env=env) as server:
        server.wait_for_log("dispatcher process started")
        assert len(children(server.process.pid)) == 1
