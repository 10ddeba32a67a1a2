"""Apply migrations from code (the CLI and tests), without an alembic.ini."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationInfo
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent


@dataclass(frozen=True)
class AppliedMigration:
    revision: str
    message: str  # the first paragraph of the migration's docstring

    def __str__(self) -> str:
        return f"applied {self.revision} {self.message}"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on "%" in URL-encoded passwords.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def head_revisions() -> frozenset[str]:
    """The revisions a database migrated by this code is at (read from the files once)."""
    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


def _upgrade(database_url: str, revision: str) -> list[AppliedMigration]:
    applied: list[AppliedMigration] = []

    def record(*, step: MigrationInfo, **_: Any) -> None:
        if step.is_upgrade and step.is_migration and step.up_revision_id is not None:
            script = step.revision_map.get_revision(step.up_revision_id)
            doc = " ".join(script.doc.split()) if script is not None else ""
            applied.append(AppliedMigration(step.up_revision_id, doc))

    config = alembic_config(database_url)
    # env.py hands this to Alembic's on_version_apply hook, called after each step.
    config.attributes["on_version_apply"] = record
    command.upgrade(config, revision)
    return applied


def upgrade(database_url: str, revision: str = "head") -> list[AppliedMigration]:
    """Migrate to ``revision``; returns the migrations applied, oldest first (empty when the
    database was already there). Alembic's env.py runs its own event loop (``asyncio.run``),
    which cannot start inside a running one: called from async code, migrate on a worker
    thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _upgrade(database_url, revision)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_upgrade, database_url, revision).result()


async def upgrade_async(database_url: str, revision: str = "head") -> list[AppliedMigration]:
    # Alembic's env.py starts its own event loop; keep it off the caller's.
    return await asyncio.to_thread(upgrade, database_url, revision)
