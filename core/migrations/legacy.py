"""The registry's migrations before Alembic (numbered by SQLite's ``PRAGMA user_version``).

Kept only to bring a SQLite registry written by an older coldchain up to the schema of
Alembic's baseline (``versions/0001_baseline.py``), which is then stamped on it; every
later change is an Alembic revision, for SQLite and PostgreSQL alike. Never edit these.
"""

from __future__ import annotations

from core.migrations.schema import ENTITY_TABLES, changed_columns


def _changed(table: str) -> str:
    """The WHEN clause of an entity table's update trigger: the row really changed."""
    return "WHEN " + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in changed_columns(table)) + " "


# Each migration is a script of ';'-separated statements, or a list of statements (for
# statements that contain ';' themselves, such as triggers).
MIGRATIONS: list[str | list[str]] = [
    # 1: the chain and the ingest side tables
    """
    CREATE TABLE stores (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE assets (
        id TEXT PRIMARY KEY, store TEXT NOT NULL REFERENCES stores(id), doc TEXT NOT NULL);
    CREATE INDEX assets_store ON assets(store);
    CREATE TABLE sensors (
        id TEXT PRIMARY KEY, asset TEXT NOT NULL REFERENCES assets(id), doc TEXT NOT NULL,
        retired_at REAL);
    CREATE INDEX sensors_asset ON sensors(asset);
    CREATE TABLE contacts (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE policies (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE discovered_devices (
        device_id TEXT PRIMARY KEY, family TEXT NOT NULL, first_seen REAL NOT NULL,
        last_seen REAL NOT NULL, messages INTEGER NOT NULL, sensors TEXT NOT NULL,
        last_topic TEXT NOT NULL, last_payload TEXT NOT NULL);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, reason TEXT NOT NULL,
        family TEXT, topic TEXT NOT NULL, payload TEXT NOT NULL, detail TEXT NOT NULL);
    CREATE INDEX dead_letters_at ON dead_letters(at);
    CREATE INDEX dead_letters_reason ON dead_letters(reason);
    """,
    # 2: alerting: alerts with their frozen escalation, notifications, silences, audit
    """
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY, key TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL,
        stage TEXT NOT NULL, store TEXT NOT NULL, asset TEXT, sensor TEXT, device TEXT,
        state TEXT NOT NULL, ack_code TEXT NOT NULL, opened_at REAL NOT NULL,
        updated_at REAL NOT NULL, since REAL NOT NULL, acked_at REAL, acked_by TEXT,
        ack_via TEXT, ack_note TEXT, resolved_at REAL, resolved_by TEXT, resolve_note TEXT,
        policy TEXT NOT NULL, step INTEGER NOT NULL, repeats INTEGER NOT NULL,
        level INTEGER NOT NULL, next_at REAL, value REAL, limit_value REAL,
        explanation TEXT NOT NULL);
    CREATE UNIQUE INDEX alerts_open_key ON alerts(key) WHERE state != 'resolved';
    CREATE UNIQUE INDEX alerts_open_code ON alerts(ack_code) WHERE state != 'resolved';
    CREATE INDEX alerts_store ON alerts(store, state);
    CREATE INDEX alerts_due ON alerts(state, next_at);
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT, alert_ids TEXT NOT NULL, store TEXT NOT NULL,
        step INTEGER, purpose TEXT NOT NULL, contact TEXT NOT NULL, phone TEXT NOT NULL,
        channel TEXT NOT NULL, language TEXT NOT NULL, body TEXT NOT NULL,
        status TEXT NOT NULL,
        provider_id TEXT, error TEXT, attempts INTEGER NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL);
    CREATE INDEX notifications_status ON notifications(status);
    CREATE INDEX notifications_provider ON notifications(provider_id);
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY AUTOINCREMENT, store TEXT, asset TEXT, sensor TEXT,
        starts REAL NOT NULL, ends REAL NOT NULL, reason TEXT NOT NULL,
        created_by TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
    """,
    # 3: API keys (only a hash of the secret is stored; see Registry.create_api_key)
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, stores TEXT NOT NULL,
        hash TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL);
    """,
    # 4: lookups that stay cheap as history grows: an alert's notifications (was a scan of
    # every notification ever sent) and alerts by kind (the pipeline reads open outages,
    # doors and stalls, and recently resolved ones, at every escalation round)
    """
    CREATE TABLE notification_alerts (
        alert_id TEXT NOT NULL, notification_id INTEGER NOT NULL,
        PRIMARY KEY (alert_id, notification_id)) WITHOUT ROWID;
    INSERT OR IGNORE INTO notification_alerts(alert_id, notification_id)
        SELECT j.value, n.id FROM notifications AS n, json_each(n.alert_ids) AS j;
    CREATE INDEX alerts_kind ON alerts(kind, state, resolved_at);
    """,
    # 5: defrost-like rises alerting learned from (alerting.rules.defrost.Learned), so that a
    # restart keeps the learned defrost windows instead of relearning them for two days
    """
    CREATE TABLE defrost_episodes (
        asset TEXT NOT NULL, start REAL NOT NULL, duration REAL NOT NULL,
        PRIMARY KEY (asset, start)) WITHOUT ROWID;
    CREATE INDEX defrost_episodes_start ON defrost_episodes(start);
    """,
    # 6: a version per entity table, moved by triggers in the writing transaction whatever
    # connection writes, and only when a row really changes (an unchanged re-import moves
    # nothing). Consumers (the ingest index, alerting, the API's layouts) reload on it;
    # SQLite's PRAGMA data_version moved on every commit by another connection, dead
    # letters and audit rows included, and each move reset every excursion budget.
    [
        "CREATE TABLE entity_versions (entity TEXT PRIMARY KEY, version INTEGER NOT NULL)",
        *(f"INSERT INTO entity_versions VALUES ('{table}', 0)" for table in ENTITY_TABLES),
        *(
            f"CREATE TRIGGER {table}_{event.lower()}_version AFTER {event} ON {table} "
            f"{_changed(table) if event == 'UPDATE' else ''}BEGIN UPDATE entity_versions "
            f"SET version = version + 1 WHERE entity = '{table}'; END"
            for table in ENTITY_TABLES
            for event in ("INSERT", "UPDATE", "DELETE")
        ),
    ],
    # 7: commands for the alerting process from an API running without it (split mode):
    # resolved messages to send, late delivery failures to fall back from
    # (alerting/commands.py); done_at is set once the engine carried one out
    """
    CREATE TABLE alert_commands (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, alert_id TEXT,
        payload TEXT NOT NULL, done_at REAL);
    CREATE INDEX alert_commands_pending ON alert_commands(done_at, id);
    """,
    # 8: what a device said that was not stored, listed with it (issue 12): ignored
    # messages by reason ({"reason": count}) and the last one's detail, payload keys decoded
    # but not stored, and the quantities each sensor id was seen with (which ids a
    # technician may register, and whether a bare device id is ambiguous)
    """
    ALTER TABLE discovered_devices ADD COLUMN ignored TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE discovered_devices ADD COLUMN last_ignored TEXT NOT NULL DEFAULT '';
    ALTER TABLE discovered_devices ADD COLUMN unused TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE discovered_devices ADD COLUMN quantities TEXT NOT NULL DEFAULT '{}';
    """,
    # 9: inbound SMS already handled (Twilio MessageSid), so a replayed webhook does
    # nothing (alerting/book.py INBOUND_KEEP_S)
    """
    CREATE TABLE inbound_messages (
        id TEXT PRIMARY KEY, sender TEXT NOT NULL, at REAL NOT NULL) WITHOUT ROWID;
    CREATE INDEX inbound_messages_at ON inbound_messages(at);
    """,
    # 10: discovered devices are kept most recent first and pruned beyond DISCOVERED_KEEP
    """
    CREATE INDEX discovered_devices_last_seen ON discovered_devices(last_seen);
    """,
]
