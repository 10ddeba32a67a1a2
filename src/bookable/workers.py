"""The outbox dispatchers a process runs: inline in `bookable serve`, or alone in `bookable worker`.

Each outbox has its own dispatcher (own loop, own concurrency), so a slow calendar server never
holds up webhook deliveries and the other way round.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookable.calendars.dispatcher import CalendarDispatcher
from bookable.core.db import create_engine, session_factory
from bookable.core.dispatch import DispatcherConfig, OutboxDispatcher
from bookable.core.encryption import Encryptor
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


async def run_worker(settings: Settings) -> None:
    """`bookable worker`: the dispatchers alone, until SIGTERM or SIGINT."""
    encryptor = Encryptor.from_settings(settings)
    engine = create_engine(settings.database_url)
    dispatchers = outbox_dispatchers(session_factory(engine), settings, encryptor)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for dispatcher in dispatchers:
        await dispatcher.start()
    log.info("worker started: %s", ", ".join(dispatcher.name for dispatcher in dispatchers))
    try:
        await stop.wait()
    finally:
        await asyncio.gather(*(dispatcher.stop() for dispatcher in dispatchers))
        await engine.dispose()
