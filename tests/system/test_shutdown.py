"""Graceful shutdown of real processes: `bookable serve` on SIGTERM finishes the requests in
flight (within BOOKABLE_SHUTDOWN_TIMEOUT), refuses new connections, answers /readyz with 503
during BOOKABLE_SHUTDOWN_DELAY, and exits 0; a dispatcher (in `serve` or `bookable worker`)
holding webhook deliveries releases them, so another process delivers them at once instead of
after the lease.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bookable.migrations.runner import upgrade
from bookable.models import WebhookEventStatus
from tests.conftest import _empty_postgres
from tests.system.conftest import Server, create_admin, serving, start_worker
from tests.system.test_webhook_delivery import _events, _outbox
from tests.webhook_receiver import receiving

EXIT_TIMEOUT = 20.0  # seconds a stopping process may take here (its own limits are far lower)
# A lease far longer than the test: a row left locked would not be delivered again in time.
LEASE = 120.0
DISPATCH_ENV = {
    "BOOKABLE_RATE_LIMIT": "0",
    "BOOKABLE_WEBHOOK_POLL_INTERVAL": "0.1",
    "BOOKABLE_WEBHOOK_RETRY_JITTER": "0",
    "BOOKABLE_WEBHOOK_TIMEOUT": "30",  # the held deliveries must not time out by themselves
    "BOOKABLE_WEBHOOK_LEASE_SECONDS": str(LEASE),
}
HELD_EVENTS = 3


def _port(server: Server) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def _begin_post(port: int, path: str, body: bytes) -> socket.socket:
    """Send a POST's headers and half its body; return once the app is reading the body (it
    has answered ``Expect: 100-continue``), so the request is surely in flight."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=EXIT_TIMEOUT)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )
    connection.sendall(head.encode() + body[: len(body) // 2])
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):
        chunk = connection.recv(1)
        assert chunk, f"the server closed the connection: {interim!r}"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim
    return connection


def _finish_post(connection: socket.socket, body: bytes) -> tuple[int, bytes]:
    """Send the rest of the body; read the answer to the end (the server closes after it)."""
    connection.sendall(body[len(body) // 2 :])
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    connection.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


def _refused_within(port: int, seconds: float) -> float:
    """Seconds until a new connection to ``port`` is refused (polled)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"new connections were still accepted {seconds} s after SIGTERM")


def _webhook_body(tag: str) -> bytes:
    return json.dumps(
        {
            "subscriberUrl": f"http://127.0.0.1:9/{tag}",
            "eventTriggers": ["BOOKING_CREATED"],
            "active": True,
        }
    ).encode()


def test_requests_in_flight_at_sigterm_finish_then_the_process_exits_0(
    sqlite_url: str, tmp_path: Path
) -> None:
    _email, _username, key = create_admin(sqlite_url)
    env = {"BOOKABLE_RATE_LIMIT": "0", "BOOKABLE_SHUTDOWN_TIMEOUT": "4"}
    with serving(sqlite_url, tmp_path, env=env) as server:
        port = _port(server)
        path = f"/v1/webhooks?apiKey={key}"
        finishing = _begin_post(port, path, _webhook_body("finishing"))
        # A client that never sends the rest: cancelled when BOOKABLE_SHUTDOWN_TIMEOUT is up.
        stalled = _begin_post(port, path, _webhook_body("stalled"))
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        _refused_within(port, 5.0)
        status, payload = _finish_post(finishing, _webhook_body("finishing"))
        assert status == 200, payload
        assert json.loads(payload)["webhook"]["subscriberUrl"] == "http://127.0.0.1:9/finishing"
        assert server.process.wait(timeout=EXIT_TIMEOUT) == 0, server.logs()
        took = time.monotonic() - signalled
        assert b"HTTP/1.1 200" not in stalled.recv(65536)  # closed unanswered
        stalled.close()
    # It waited for the stalled request (the timeout), and not for much longer.
    assert 3.5 < took < 12, took


def test_readiness_fails_during_the_shutdown_delay_while_requests_are_served(
    sqlite_url: str, tmp_path: Path
) -> None:
    _email, _username, key = create_admin(sqlite_url)
    env = {"BOOKABLE_RATE_LIMIT": "0", "BOOKABLE_SHUTDOWN_DELAY": "3"}
    with serving(sqlite_url, tmp_path, env=env) as server:
        assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
        alive = httpx.get(f"{server.base_url}/healthz", timeout=10)
        served = httpx.get(f"{server.base_url}/v1/me", params={"apiKey": key}, timeout=10)
        assert time.monotonic() - signalled < 3, "too slow to see the delay: retry"
        refused_after = _refused_within(_port(server), 10.0) + (time.monotonic() - signalled)
        assert server.process.wait(timeout=EXIT_TIMEOUT) == 0, server.logs()
    assert ready.status_code == 503
    assert ready.json() == {"status": "shutting down", "checks": {}}
    assert alive.status_code == 200
    assert served.status_code == 200, served.text
    assert refused_after >= 2.5, refused_after


# --- dispatchers release what they hold ------------------------------------------------------


def _fresh(database: str, request: pytest.FixtureRequest) -> str:
    url = request.getfixturevalue(f"{database}_url")
    upgrade(url)
    if database == "postgres":
        asyncio.run(_empty_postgres(url))
    return url


def _wait_for_status(database_url: str, status: WebhookEventStatus, within: float) -> float:
    """Seconds until every outbox event has ``status`` (polled)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        events = asyncio.run(_events(database_url))
        if events and all(event.status == status for event, _ok in events):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"events not {status} within {within} s: {events}")


def _stop(process: subprocess.Popen[bytes], describe: str) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=EXIT_TIMEOUT) == 0, describe


@pytest.mark.parametrize("holder", ["serve", "worker"])
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_stopping_dispatcher_releases_the_deliveries_it_holds(
    database: str, holder: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    database_url = _fresh(database, request)
    held = threading.Event()
    with receiving(hold=held) as receiver:
        asyncio.run(_outbox(database_url, receiver.url + "/held", HELD_EVENTS))
        # 1. The holder claims every event; the receiver keeps every delivery waiting.
        if holder == "serve":
            with serving(database_url, tmp_path / "serve", env=DISPATCH_ENV) as server:
                receiver.wait_for_sync(HELD_EVENTS, ok_only=False)
                stopped_at = datetime.now(UTC)
                _stop(server.process, server.logs())
            logs = server.logs()
        else:
            worker = start_worker(database_url, tmp_path / "holder.log", DISPATCH_ENV)
            try:
                receiver.wait_for_sync(HELD_EVENTS, ok_only=False)
                stopped_at = datetime.now(UTC)
                _stop(worker.process, worker.logs())
            finally:
                if worker.process.poll() is None:
                    os.killpg(worker.process.pid, signal.SIGKILL)
            logs = worker.logs()
        assert "Traceback" not in logs, logs

        # 2. Nothing it claimed is still locked, and no attempt was counted.
        events = asyncio.run(_events(database_url))
        assert len(events) == HELD_EVENTS
        for event, _ok in events:
            assert event.status == WebhookEventStatus.PENDING
            assert event.attempts == 0
            locked = event.locked_until
            assert locked is None or locked.replace(tzinfo=UTC) <= stopped_at, locked

        # 3. Another worker delivers them at once, not after the lease.
        held.set()
        receiver.hold = None
        successor = start_worker(database_url, tmp_path / "next.log", DISPATCH_ENV)
        try:
            successor.wait_for_log("worker started")
            took = _wait_for_status(database_url, WebhookEventStatus.DELIVERED, within=30)
        finally:
            _stop(successor.process, successor.logs())
    assert took < LEASE / 4, took
    assert len(receiver.answered()) >= HELD_EVENTS
