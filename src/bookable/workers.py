"""The outbox dispatchers a process runs: inline in `bookable serve`, alone in `bookable worker`, or
in `serve`'s own dispatcher process (`bookable.dispatch_process`, a `worker --serve-child`).

Each outbox has its own dispatcher (own loop, own concurrency), so a slow calendar server never
holds up webhook deliveries and the other way round.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookable.calendars.dispatcher import CalendarDispatcher
from bookable.core.db import create_engine, session_factory
from bookable.core.dispatch import DispatcherConfig, OutboxDispatcher
from bookable.core.encryption import Encryptor
from bookable.dispatch_process import watch_wake_pipe
from bookable.notifications.dispatcher import EmailDispatcher
from bookable.settings import Settings
from bookable.webhooks.dispatcher import Dispatcher

log = logging.getLogger("bookable.worker")


def outbox_dispatchers(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, encryptor: Encryptor
) -> list[OutboxDispatcher[Any, Any]]:
    """Webhook deliveries, calendar writes and (BOOKABLE_EMAILS=on) booking emails; find one
    by its ``name`` ("webhook", "calendar", "email")."""
    dispatchers: list[OutboxDispatcher[Any, Any]] = [
        Dispatcher(sessions, DispatcherConfig.from_settings(settings)),
        CalendarDispatcher(sessions, settings, encryptor),
    ]
    if settings.emails == "on":
        dispatchers.append(EmailDispatcher(sessions, settings))
    return dispatchers


async def run_worker(settings: Settings, *, wake_fd: int | None = None) -> None:
    """`bookable worker`: the dispatchers alone, until SIGTERM or SIGINT. ``wake_fd``: the
    pipe of `bookable serve` whose child this is (`bookable.dispatch_process`): wake-ups by
    outbox, and its end when serve is gone."""
    encryptor = Encryptor.from_settings(settings)
    engine = create_engine(settings.database_url)
    dispatchers = outbox_dispatchers(session_factory(engine), settings, encryptor)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for dispatcher in dispatchers:
        await dispatcher.start()
    unwatch = None
    if wake_fd is not None:
        by_name = {dispatcher.name: dispatcher for dispatcher in dispatchers}

        def wake(name: str) -> None:
            if (dispatcher := by_name.get(name)) is not None:
                dispatcher.wake()

        def gone() -> None:
            # serve died without stopping us (where PR_SET_PDEATHSIG is missing): so do we,
            # as one process would have; the leases bring the claimed rows back.
            log.warning("bookable serve is gone; the dispatcher process ends with it")
            os._exit(1)

        unwatch = watch_wake_pipe(wake_fd, wake, gone)
    what = "dispatcher process" if wake_fd is not None else "worker"
    log.info("%s started: %s", what, ", ".join(dispatcher.name for dispatcher in dispatchers))
    try:
        await stop.wait()
    finally:
        if unwatch is not None:
            unwatch()
        await asyncio.gather(*(dispatcher.stop() for dispatcher in dispatchers))
        await engine.dispose()
