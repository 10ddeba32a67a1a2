"""`bookable serve` with one process: uvicorn's server, stopping gracefully on SIGTERM.

On SIGTERM (or SIGINT) the process:

1. answers `/readyz` with 503 "shutting down" from then on, and, for ``BOOKABLE_SHUTDOWN_DELAY``
   seconds, goes on serving everything else, so a load balancer sees it leave before its
   connections are refused (a second signal cuts the delay short);
2. stops accepting connections and lets requests in flight finish, for up to
   ``BOOKABLE_SHUTDOWN_TIMEOUT`` seconds (uvicorn's ``timeout_graceful_shutdown``), then cancels
   the rest;
3. stops the app (its lifespan): the outbox dispatchers give deliveries in flight a moment to
   finish and release the rows they claimed but did not finish (``locked_until`` cleared), so
   another process takes them at once instead of after the lease;
4. exits 0. (uvicorn raises a handled SIGTERM again once it is done, which would end the process
   "killed by SIGTERM", status 143; a graceful stop is a success.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from bookable.app import create_app
from bookable.core.health import stopping

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("uvicorn.error")
DELAY_POLL = 0.05  # seconds between looks for a second signal during the delay


def create_served_app() -> FastAPI:
    """The app as `bookable serve` runs it (uvicorn's factory, in each worker process).

    Everything alive once the app is built (modules, routes, models: ~200,000 objects) lives as
    long as the process; ``gc.freeze`` takes it out of the collector's sight. Otherwise every
    full collection walks it all: ~230 ms with the event loop stopped, every request in flight
    waiting (the p99 of ~150 ms against a p50 of 15 ms under load). Not in ``create_app``: the
    tests build hundreds of apps in one process and must get them collected."""
    app = create_app()
    gc.collect()
    gc.freeze()
    return app


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, shutdown_delay: float = 0.0) -> None:
        super().__init__(config)
        self.shutdown_delay = shutdown_delay
        self.exit_signals = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.exit_signals += 1
        stopping.begin()  # before anything closes: /readyz answers 503 from now on
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.exit_signals and self.shutdown_delay > 0:
            log.info("Not ready; serving %g s more before closing", self.shutdown_delay)
            deadline = time.monotonic() + self.shutdown_delay
            # Polled: the flags change in a signal handler, where an asyncio.Event must not be set.
            while time.monotonic() < deadline and self.exit_signals < 2 and not self.force_exit:  # noqa: ASYNC110
                await asyncio.sleep(DELAY_POLL)
        await super().shutdown(sockets)


def _stopped_gracefully(_sig: int, _frame: FrameType | None) -> None:
    """Where uvicorn's re-raised SIGTERM lands after a graceful stop: nothing left to do."""


def serve(config: uvicorn.Config, *, shutdown_delay: float) -> None:
    """Run one server process until it is stopped; exit 0 after a graceful stop."""
    server = GracefulServer(config, shutdown_delay=shutdown_delay)
    previous = signal.signal(signal.SIGTERM, _stopped_gracefully)
    try:
        server.run()
    except KeyboardInterrupt:  # SIGINT, raised again by uvicorn after its graceful stop
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        sys.exit(STARTUP_FAILURE)
