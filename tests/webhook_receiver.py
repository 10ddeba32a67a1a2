"""A real HTTP receiver for webhook deliveries, run in a thread of the test process.

It records every request (headers, raw body, when it started and ended), answers with scripted
status codes, can hold requests (to keep a delivery in flight) or be slow (timeouts), and counts
deliveries of one event that overlap in time (two dispatchers sending the same event at once).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    started: float
    ended: float = 0.0
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def trigger(self) -> str | None:
        try:
            return self.json().get("triggerEvent")
        except (ValueError, AttributeError):
            return None


@dataclass
class Receiver:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    # Answers by path, in order; once used up (or for other paths) the answer is `default`.
    script: dict[str, list[int]] = field(default_factory=dict)
    default: int = 200
    delay: float = 0.0  # seconds every answer waits
    hold: threading.Event | None = None  # while set to an unset Event, requests wait for it
    key: Callable[[Received], str] | None = None  # which event a request is (overlap check)
    in_flight: Counter[str] = field(default_factory=Counter)
    overlaps: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    location: str = "http://127.0.0.1:9/elsewhere"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answered(self) -> list[Received]:
        """Requests that got a 2xx answer."""
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    async def wait_for(
        self, count: int, *, ok_only: bool = True, within: float = 15.0
    ) -> list[Received]:
        """Wait (polling, no fixed sleep) until ``count`` requests have been received."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            got = self.answered() if ok_only else self.all()
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        got = self.answered() if ok_only else self.all()
        raise AssertionError(f"expected {count} deliveries, got {len(got)}: {got}")

    def wait_for_sync(
        self, count: int, *, ok_only: bool = True, within: float = 30.0
    ) -> list[Received]:
        """`wait_for` for tests that are not async (system tests)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            got = self.answered() if ok_only else self.all()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        got = self.answered() if ok_only else self.all()
        raise AssertionError(f"expected {count} deliveries, got {len(got)}")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if len(body) < length:
                # The sender died mid-request (a SIGKILLed worker): no delivery was made, and
                # nobody is left to answer.
                self.close_connection = True
                return
            record = Received(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
            )
            key = receiver.key(record) if receiver.key else None
            with receiver.lock:
                receiver.received.append(record)
                queue = receiver.script.get(self.path)
                status = queue.pop(0) if queue else receiver.default
                if key is not None:
                    receiver.in_flight[key] += 1
                    if receiver.in_flight[key] > 1:
                        receiver.overlaps.append(key)
            try:
                if receiver.hold is not None:
                    receiver.hold.wait(timeout=60)
                if receiver.delay:
                    time.sleep(receiver.delay)
                body = b'{"received":true}'
                # Set before answering: once the sender has its answer, the record shows it.
                record.status = status
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the sender went away (timed out, or was killed)
            finally:
                record.ended = time.monotonic()
                if key is not None:
                    with receiver.lock:
                        receiver.in_flight[key] -= 1

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    # The default backlog (5) drops connections under a burst; the sender then waits a second
    # for the SYN to be retried, which looks like a slow receiver.
    request_queue_size = 256


@contextmanager
def receiving(port: int = 0, **options: Any) -> Iterator[Receiver]:
    """Serve a `Receiver` on 127.0.0.1 (a free port unless ``port`` is given) for the block."""
    receiver = Receiver(**options)
    server = _Server(("127.0.0.1", port), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
