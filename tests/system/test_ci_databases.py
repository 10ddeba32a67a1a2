"""`.ci/drop-databases`, which `.ci/run` calls at exit: it drops the run's database and every
sibling named after it (per-xdist-worker copies, the fuzz database), and nothing else."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from bookable.core.db import create_engine

pytestmark = pytest.mark.postgres

SCRIPT = Path(__file__).parents[2] / ".ci" / "drop-databases"


@pytest.fixture
async def server(postgres_url: str) -> AsyncIterator[AsyncConnection]:
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")
    finally:
        await engine.dispose()


async def databases(conn: AsyncConnection, prefix: str) -> set[str]:
    query = text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)")
    return set((await conn.execute(query, {"prefix": prefix})).scalars())


async def test_drops_the_database_and_its_siblings_only(
    postgres_url: str, server: AsyncConnection
) -> None:
    # Siblings of this worker's database, so that a crash here is swept by .ci/run as well.
    url = make_url(postgres_url)
    run = f"{url.database}_ci_{uuid.uuid4().hex[:8]}"
    doomed = {run, f"{run}_gw0", f"{run}_gw1", f"{run}_fuzz"}
    kept = {f"{run}9", f"{run}9_gw0"}  # another run whose number starts with this one's
    for name in doomed | kept:
        await server.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        env = {
            **os.environ,
            "PGHOST": url.host or "127.0.0.1",
            "PGPORT": str(url.port or 5432),
            "PGUSER": url.username or "postgres",
            **({"PGPASSWORD": url.password} if url.password else {}),
        }
        result = await asyncio.to_thread(
            subprocess.run,
            [str(SCRIPT), run],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert await databases(server, run) == kept
    finally:
        for name in doomed | kept:
            await server.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
