"""Alembic environment: runs on the async engine the application uses."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from bookable.core.db import create_engine
from bookable.models import Base

config = context.config
target_metadata = Base.metadata
# An arbitrary constant ("bookable" in ASCII): the advisory lock every migrating process takes.
MIGRATION_LOCK_KEY = 0x626F6F6B61626C65


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # runner.py collects the steps applied, to print them (`bookable db upgrade`).
        on_version_apply=config.attributes.get("on_version_apply"),
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Processes started at once (replicas, a worker) migrate one after the other: the
            # second waits here, then finds the database at head and applies nothing.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_async())
