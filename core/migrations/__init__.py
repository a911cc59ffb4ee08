"""Schema migrations of the registry, with Alembic, for SQLite and PostgreSQL alike.

:func:`migrate` brings a database to the newest revision at start-up (every process may
call it; they take turns under :meth:`core.db.Database.migration_lock`). A SQLite registry
from before Alembic (``PRAGMA user_version`` 1-10) is first brought up to the baseline with
its own legacy scripts (:mod:`core.migrations.legacy`), then stamped.

Adding a change: a new file in ``versions/`` (``down_revision`` = the newest), written with
``alembic.op`` so it runs on both dialects, and a test that an older database upgrades.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.db import Database
from core.migrations import legacy
from core.migrations.schema import ENTITY_TABLES

__all__ = ["ENTITY_TABLES", "migrate"]

BASELINE = "0001"


def _config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["database"] = db
    return config


def migrate(db: Database) -> None:
    """Upgrade ``db`` to the newest revision (a no-op when it is there)."""
    with db.migration_lock() as connection:
        config = _config(db)
        config.attributes["connection"] = connection
        if db.dialect == "sqlite" and not db.has_table("alembic_version"):
            version = int(db.query("PRAGMA user_version")[0][0])
            if version:  # a registry from before Alembic
                for script in legacy.MIGRATIONS[version:]:
                    with db.transaction() as tx:
                        for statement in _statements(script):
                            tx.execute(statement)
                command.stamp(config, BASELINE)
        command.upgrade(config, "head")


def _statements(script: str | list[str]) -> list[str]:
    parts = script.split(";") if isinstance(script, str) else script
    return [p for p in parts if p.strip()]
