"""Schema migrations of the registry, with Alembic, for SQLite and PostgreSQL alike.

:func:`migrate` brings a database to the newest revision at start-up (every process may
call it; they take turns under :meth:`core.db.Database.migration_lock`). A SQLite registry
from before Alembic (``PRAGMA user_version`` 1-10) is first brought up to the baseline with
its own legacy scripts (:mod:`core.migrations.legacy`), then stamped.

Adding a change: a new file in ``versions/`` (``down_revision`` = the newest), written with
``alembic.op`` so it runs on both dialects, and a test that an older database upgrades.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from core.db import Database
from core.migrations import legacy
from core.migrations.schema import ENTITY_TABLES

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["ENTITY_TABLES", "migrate"]

BASELINE = "0001"

log = logging.getLogger(__name__)
# Alembic logs every step at INFO (plugins set up, the dialect, "will assume
# non-transactional DDL") each time a process opens the registry, some of it on import
# (hence the imports inside the functions); what an operator needs is one line when the
# schema actually changes, which migrate() writes itself.
logging.getLogger("alembic").setLevel(logging.WARNING)


def _config(db: Database) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["database"] = db
    return config


def migrate(db: Database) -> None:
    """Upgrade ``db`` to the newest revision (a no-op when it is there)."""
    from alembic import command

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
                log.info("registry: legacy schema %d brought up to the baseline", version)
        before = _revision(db)
        command.upgrade(config, "head")
        after = _revision(db)
        if after != before:
            log.info("registry schema upgraded from %s to %s", before or "empty", after)


def _revision(db: Database) -> str | None:
    if not db.has_table("alembic_version"):
        return None
    rows = db.query("SELECT version_num FROM alembic_version")
    return str(rows[0][0]) if rows else None


def _statements(script: str | list[str]) -> list[str]:
    parts = script.split(";") if isinstance(script, str) else script
    return [p for p in parts if p.strip()]
