"""Facts about the schema shared by the migrations (legacy and Alembic) and the registry."""

from __future__ import annotations

# The chain's entity tables: what ingest, alerting and the API configure themselves from.
# Each has a version in ``entity_versions``, moved by triggers when a row really changes.
ENTITY_TABLES = ("stores", "assets", "sensors", "contacts", "policies")


def changed_columns(table: str) -> list[str]:
    """The columns whose change is a change of an entity row (its version moves)."""
    return ["doc", *{"assets": ["store"], "sensors": ["asset", "retired_at"]}.get(table, [])]
