"""The registry as of coldchain's legacy SQLite migration 10, for SQLite and PostgreSQL.

Timestamps are epoch seconds in double precision (``Float(53)``): PostgreSQL's ``REAL`` is
4 bytes, which puts a 2026 timestamp up to 64 s off. Ids that count rows are 64-bit on
PostgreSQL (dead letters and notifications outlive 2^31 over the years) and SQLite's
``INTEGER PRIMARY KEY`` (its 64-bit rowid) on SQLite.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.migrations.schema import ENTITY_TABLES, changed_columns

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.Float(precision=53)
COUNTER = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OPEN = "state != 'resolved'"


def _id() -> sa.Column[int]:
    return sa.Column("id", COUNTER, primary_key=True, autoincrement=True)


def upgrade() -> None:
    _chain()
    _ingest_side()
    _alerting()
    _entity_versions()


def _chain() -> None:
    op.create_table("stores", sa.Column("id", sa.Text, primary_key=True),
                    sa.Column("doc", sa.Text, nullable=False))  # fmt: skip
    op.create_table(
        "assets",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("store", sa.Text, sa.ForeignKey("stores.id"), nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_index("assets_store", "assets", ["store"])
    op.create_table(
        "sensors",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("asset", sa.Text, sa.ForeignKey("assets.id"), nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("retired_at", TIME),
    )
    op.create_index("sensors_asset", "sensors", ["asset"])
    for table in ("contacts", "policies"):
        op.create_table(table, sa.Column("id", sa.Text, primary_key=True),
                        sa.Column("doc", sa.Text, nullable=False))  # fmt: skip
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("stores", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME),
    )


def _ingest_side() -> None:
    op.create_table(
        "discovered_devices",
        sa.Column("device_id", sa.Text, primary_key=True),
        sa.Column("family", sa.Text, nullable=False),
        sa.Column("first_seen", TIME, nullable=False),
        sa.Column("last_seen", TIME, nullable=False),
        sa.Column("messages", sa.BigInteger, nullable=False),
        sa.Column("sensors", sa.Text, nullable=False),
        sa.Column("last_topic", sa.Text, nullable=False),
        sa.Column("last_payload", sa.Text, nullable=False),
        sa.Column("ignored", sa.Text, nullable=False, server_default="{}"),
        sa.Column("last_ignored", sa.Text, nullable=False, server_default=""),
        sa.Column("unused", sa.Text, nullable=False, server_default="[]"),
        sa.Column("quantities", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("discovered_devices_last_seen", "discovered_devices", ["last_seen"])
    op.create_table(
        "dead_letters",
        _id(),
        sa.Column("at", TIME, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("family", sa.Text),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("dead_letters_at", "dead_letters", ["at"])
    op.create_index("dead_letters_reason", "dead_letters", ["reason"])


def _alerting() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Text, primary_key=True),
        *(sa.Column(c, sa.Text, nullable=False)
          for c in ("key", "kind", "severity", "stage", "store")),
        *(sa.Column(c, sa.Text) for c in ("asset", "sensor", "device")),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("ack_code", sa.Text, nullable=False),
        *(sa.Column(c, TIME, nullable=False) for c in ("opened_at", "updated_at", "since")),
        sa.Column("acked_at", TIME),
        *(sa.Column(c, sa.Text) for c in ("acked_by", "ack_via", "ack_note")),
        sa.Column("resolved_at", TIME),
        *(sa.Column(c, sa.Text) for c in ("resolved_by", "resolve_note")),
        sa.Column("policy", sa.Text, nullable=False),
        *(sa.Column(c, sa.Integer, nullable=False) for c in ("step", "repeats", "level")),
        *(sa.Column(c, TIME) for c in ("next_at", "value", "limit_value")),
        sa.Column("explanation", sa.Text, nullable=False),
    )  # fmt: skip
    for name, column in (("alerts_open_key", "key"), ("alerts_open_code", "ack_code")):
        op.create_index(name, "alerts", [column], unique=True, sqlite_where=sa.text(OPEN),
                        postgresql_where=sa.text(OPEN))  # fmt: skip
    op.create_index("alerts_store", "alerts", ["store", "state"])
    op.create_index("alerts_due", "alerts", ["state", "next_at"])
    op.create_index("alerts_kind", "alerts", ["kind", "state", "resolved_at"])
    op.create_table(
        "notifications",
        _id(),
        sa.Column("alert_ids", sa.Text, nullable=False),
        sa.Column("store", sa.Text, nullable=False),
        sa.Column("step", sa.Integer),
        *(sa.Column(c, sa.Text, nullable=False)
          for c in ("purpose", "contact", "phone", "channel", "language", "body", "status")),
        sa.Column("provider_id", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sqlite_autoincrement=True,
    )  # fmt: skip
    op.create_index("notifications_status", "notifications", ["status"])
    op.create_index("notifications_provider", "notifications", ["provider_id"])
    op.create_table(
        "notification_alerts",
        sa.Column("alert_id", sa.Text, primary_key=True),
        sa.Column("notification_id", COUNTER, primary_key=True, autoincrement=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "silences",
        _id(),
        *(sa.Column(c, sa.Text) for c in ("store", "asset", "sensor")),
        sa.Column("starts", TIME, nullable=False),
        sa.Column("ends", TIME, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "audit",
        _id(),
        sa.Column("at", TIME, nullable=False),
        *(sa.Column(c, sa.Text, nullable=False)
          for c in ("actor", "action", "subject", "detail", "prev_hash", "hash")),
        sqlite_autoincrement=True,
    )  # fmt: skip
    op.create_table(
        "defrost_episodes",
        sa.Column("asset", sa.Text, primary_key=True),
        sa.Column("start", TIME, primary_key=True),
        sa.Column("duration", TIME, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("defrost_episodes_start", "defrost_episodes", ["start"])
    op.create_table(
        "alert_commands",
        _id(),
        sa.Column("at", TIME, nullable=False),
        sa.Column("alert_id", sa.Text),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("done_at", TIME),
        sqlite_autoincrement=True,
    )
    op.create_index("alert_commands_pending", "alert_commands", ["done_at", "id"])
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("inbound_messages_at", "inbound_messages", ["at"])


def _entity_versions() -> None:
    """A version per entity table, moved by triggers in the writing transaction (whatever
    connection writes) and only when a row really changes (core/registry.py
    ``entity_version``)."""
    versions = op.create_table(
        "entity_versions",
        sa.Column("entity", sa.Text, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(versions, [{"entity": t, "version": 0} for t in ENTITY_TABLES])
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(
            "CREATE FUNCTION coldchain_entity_version() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN UPDATE entity_versions SET version = version + 1 "
            "WHERE entity = TG_TABLE_NAME; RETURN NULL; END $$"
        )
    for table in ENTITY_TABLES:
        changed = " OR ".join(
            f"OLD.{c} IS {'DISTINCT FROM' if postgres else 'NOT'} NEW.{c}"
            for c in changed_columns(table)
        )
        for event in ("INSERT", "UPDATE", "DELETE"):
            when = f"WHEN ({changed}) " if event == "UPDATE" else ""
            name = f"{table}_{event.lower()}_version"
            if postgres:
                op.execute(
                    f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW {when}"
                    "EXECUTE FUNCTION coldchain_entity_version()"
                )
            else:
                op.execute(
                    f"CREATE TRIGGER {name} AFTER {event} ON {table} {when}BEGIN "
                    f"UPDATE entity_versions SET version = version + 1 WHERE entity = '{table}'; "
                    "END"
                )


def downgrade() -> None:
    raise NotImplementedError("the baseline is not downgraded: restore a backup instead")
