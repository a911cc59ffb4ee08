"""The registry: stores, assets, sensors, contacts, policies, discovered devices, dead letters.

SQLite by default (``COLDCHAIN_DB``), in WAL mode so the ingester, the alerting engine and
the API can share one file: one writer at a time, readers never blocked. Every entity row
keeps its validated chain-file document as JSON (``doc``) beside the columns that queries
and the ingest hot path need, so ``registry export`` round-trips ``registry import``.

The ingest hot path never queries SQLite per message: it holds a :class:`SensorIndex`
snapshot and rebuilds it when ``PRAGMA data_version`` says another connection committed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from core import audit
from core.chain import Asset, Chain, Contact, Policy, Sensor, Store
from core.errors import NotFound

_M = TypeVar("_M", bound=BaseModel)

_MIGRATIONS: list[str] = [
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
]

# Dead letters and discovered payloads keep this much of a payload: enough to diagnose a
# firmware misconfiguration; more would let one chatty bad device fill the disk.
PAYLOAD_KEEP_BYTES = 4096
# Dead letters beyond this many are pruned oldest first; counters keep the totals.
DEAD_LETTER_KEEP = 100_000


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """What ingest and alerting need about a registered sensor, denormalised."""

    sensor: str
    store: str
    asset: str
    asset_type: str
    family: str | None
    offset: float
    interval_s: float
    timezone: str


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    """A device seen on MQTT but not (fully) registered."""

    device_id: str
    family: str
    first_seen: float
    last_seen: float
    messages: int
    sensors: list[str]
    last_topic: str
    last_payload: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message or point that could not be stored, with why."""

    id: int
    at: float
    reason: str
    family: str | None
    topic: str
    payload: str
    detail: str


def payload_text(payload: bytes) -> str:
    """A payload as text for storage: UTF-8 when it is, else ``hex:`` + hex; truncated."""
    cut = payload[:PAYLOAD_KEEP_BYTES]
    try:
        text = cut.decode("utf-8")
    except UnicodeDecodeError:
        text = "hex:" + cut.hex()
    return text + ("…" if len(payload) > PAYLOAD_KEEP_BYTES else "")


class Registry:
    """Thread-safe access to the registry database."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            str(path), timeout=10.0, check_same_thread=False, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._local_changes = 0  # entity changes made through this connection
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._migrate()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # -- plumbing ---------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for statement in script.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def transaction(self, *, entities: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed on success.

        ``entities=True`` marks a change to stores/assets/sensors that indexes must see.
        """
        with self._lock:
            if entities:
                self._local_changes += 1
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Run one read statement (rows support ``row["column"]``)."""
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def data_version(self) -> tuple[int, int]:
        """Changes when any connection commits an entity change (cheap; polled by ingest).

        SQLite's ``data_version`` only moves for commits by *other* connections, so changes
        made through this object (the API in the same process) are counted beside it.
        """
        with self._lock:
            pragma = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            return pragma, self._local_changes

    # -- chain entities ---------------------------------------------------------------

    def import_chain(self, chain: Chain) -> dict[str, int]:
        """Upsert every entity of a chain file (idempotent). Returns counts per kind."""
        with self.transaction(entities=True) as conn:
            for store in chain.stores:
                conn.execute(
                    "INSERT INTO stores(id, doc) VALUES (?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc",
                    (store.id, store.model_dump_json()),
                )
            for asset in chain.assets:
                self._check_exists(conn, "stores", asset.store, f"asset {asset.id}")
                conn.execute(
                    "INSERT INTO assets(id, store, doc) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET store=excluded.store, doc=excluded.doc",
                    (asset.id, asset.store, asset.model_dump_json()),
                )
            for sensor in chain.sensors:
                self._upsert_sensor(conn, sensor)
            for contact in chain.contacts:
                conn.execute(
                    "INSERT INTO contacts(id, doc) VALUES (?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc",
                    (contact.id, contact.model_dump_json()),
                )
            for policy in chain.policies:
                conn.execute(
                    "INSERT INTO policies(id, doc) VALUES (?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc",
                    (policy.id, policy.model_dump_json()),
                )
        return {
            "stores": len(chain.stores),
            "assets": len(chain.assets),
            "sensors": len(chain.sensors),
            "contacts": len(chain.contacts),
            "policies": len(chain.policies),
        }

    @staticmethod
    def _check_exists(conn: sqlite3.Connection, table: str, ident: str, what: str) -> None:
        if conn.execute(f"SELECT 1 FROM {table} WHERE id=?", (ident,)).fetchone() is None:
            raise NotFound(f"{what}: unknown {table[:-1]} {ident!r}")

    def _upsert_sensor(self, conn: sqlite3.Connection, sensor: Sensor) -> None:
        self._check_exists(conn, "assets", sensor.asset, f"sensor {sensor.id}")
        conn.execute(
            "INSERT INTO sensors(id, asset, doc, retired_at) VALUES (?, ?, ?, NULL) "
            "ON CONFLICT(id) DO UPDATE SET asset=excluded.asset, doc=excluded.doc, "
            "retired_at=NULL",
            (sensor.id, sensor.asset, sensor.model_dump_json()),
        )

    def export_chain(self) -> Chain:
        """Every active entity as a chain (retired sensors are left out)."""
        return Chain(
            stores=self.stores(),
            assets=self.assets(),
            sensors=self.sensors(),
            contacts=self.contacts(),
            policies=self.policies(),
        )

    def _docs(self, model: type[_M], sql: str, args: Iterable[Any] = ()) -> list[_M]:
        return [model.model_validate_json(row["doc"]) for row in self.query(sql, args)]

    def stores(self) -> list[Store]:
        """All stores, by id."""
        return self._docs(Store, "SELECT doc FROM stores ORDER BY id")

    def store(self, store_id: str) -> Store:
        """One store. Raises NotFound."""
        found = self._docs(Store, "SELECT doc FROM stores WHERE id=?", (store_id,))
        if not found:
            raise NotFound(f"unknown store {store_id!r}")
        return found[0]

    def assets(self, store: str | None = None) -> list[Asset]:
        """All assets, or a store's."""
        if store is None:
            return self._docs(Asset, "SELECT doc FROM assets ORDER BY id")
        return self._docs(Asset, "SELECT doc FROM assets WHERE store=? ORDER BY id", (store,))

    def asset(self, asset_id: str) -> Asset:
        """One asset. Raises NotFound."""
        found = self._docs(Asset, "SELECT doc FROM assets WHERE id=?", (asset_id,))
        if not found:
            raise NotFound(f"unknown asset {asset_id!r}")
        return found[0]

    def sensors(self, asset: str | None = None, *, include_retired: bool = False) -> list[Sensor]:
        """Active sensors (optionally of one asset)."""
        where = [] if include_retired else ["retired_at IS NULL"]
        args: list[Any] = []
        if asset is not None:
            where.append("asset=?")
            args.append(asset)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._docs(Sensor, f"SELECT doc FROM sensors {clause} ORDER BY id", args)

    def add_sensor(self, sensor: Sensor) -> None:
        """Register (or move, or re-calibrate) a sensor. History in InfluxDB is untouched."""
        with self.transaction(entities=True) as conn:
            self._upsert_sensor(conn, sensor)

    def retire_sensor(self, sensor_id: str, at: float) -> None:
        """Stop attributing a sensor's readings to its asset; keep its row and history."""
        with self.transaction(entities=True) as conn:
            cur = conn.execute(
                "UPDATE sensors SET retired_at=? WHERE id=? AND retired_at IS NULL",
                (at, sensor_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"unknown or already retired sensor {sensor_id!r}")

    def contacts(self) -> list[Contact]:
        """All contacts."""
        return self._docs(Contact, "SELECT doc FROM contacts ORDER BY id")

    def policies(self) -> list[Policy]:
        """All escalation policies."""
        return self._docs(Policy, "SELECT doc FROM policies ORDER BY id")

    def sensor_infos(self) -> dict[str, SensorInfo]:
        """Every active sensor with its store, asset, type and timezone (one query)."""
        rows = self.query(
            "SELECT s.id AS sensor, s.doc AS sdoc, a.doc AS adoc, st.doc AS stdoc "
            "FROM sensors s JOIN assets a ON a.id = s.asset JOIN stores st ON st.id = a.store "
            "WHERE s.retired_at IS NULL"
        )
        out: dict[str, SensorInfo] = {}
        for row in rows:
            sensor = json.loads(row["sdoc"])
            asset = json.loads(row["adoc"])
            store = json.loads(row["stdoc"])
            out[row["sensor"]] = SensorInfo(
                sensor=row["sensor"],
                store=store["id"],
                asset=asset["id"],
                asset_type=asset["type"],
                family=sensor.get("family"),
                offset=float(sensor.get("offset") or 0.0),
                interval_s=float(sensor.get("interval") or 300.0),
                timezone=store.get("timezone") or "UTC",
            )
        return out

    # -- audit log ----------------------------------------------------------------------

    def audit_entries(
        self, *, after_id: int = 0, limit: int = 1000, subject: str | None = None
    ) -> list[audit.AuditEntry]:
        """Audit entries in order (see :mod:`core.audit`)."""
        with self._lock:
            return audit.entries(self._conn, after_id=after_id, limit=limit, subject=subject)

    def audit_verify(self) -> tuple[bool, int | None, int]:
        """Check the audit hash chain: (intact, first bad id, entries checked)."""
        with self._lock:
            return audit.verify(self._conn)

    # -- discovered devices -----------------------------------------------------------

    def record_discovered(self, devices: Iterable[DiscoveredDevice]) -> None:
        """Upsert devices seen without a registration (batched by ingest)."""
        with self.transaction() as conn:
            for d in devices:
                row = conn.execute(
                    "SELECT sensors FROM discovered_devices WHERE device_id=?", (d.device_id,)
                ).fetchone()
                known = json.loads(row["sensors"]) if row else []
                merged = sorted(set(known) | set(d.sensors))
                conn.execute(
                    "INSERT INTO discovered_devices(device_id, family, first_seen, last_seen, "
                    "messages, sensors, last_topic, last_payload) VALUES (?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(device_id) DO UPDATE SET family=excluded.family, "
                    "last_seen=max(last_seen, excluded.last_seen), "
                    "messages=messages+excluded.messages, sensors=excluded.sensors, "
                    "last_topic=excluded.last_topic, last_payload=excluded.last_payload",
                    (
                        d.device_id,
                        d.family,
                        d.first_seen,
                        d.last_seen,
                        d.messages,
                        json.dumps(merged),
                        d.last_topic,
                        d.last_payload,
                    ),
                )

    def discovered(self, *, include_registered: bool = False) -> list[DiscoveredDevice]:
        """Devices seen on MQTT that have at least one unregistered sensor."""
        registered = {s.id for s in self.sensors()}
        out = []
        for row in self.query("SELECT * FROM discovered_devices ORDER BY last_seen DESC"):
            sensors = json.loads(row["sensors"])
            pending = [s for s in sensors if s not in registered]
            if not pending and not include_registered:
                continue
            out.append(
                DiscoveredDevice(
                    device_id=row["device_id"],
                    family=row["family"],
                    first_seen=row["first_seen"],
                    last_seen=row["last_seen"],
                    messages=row["messages"],
                    sensors=sensors if include_registered else pending,
                    last_topic=row["last_topic"],
                    last_payload=row["last_payload"],
                )
            )
        return out

    # -- dead letters -----------------------------------------------------------------

    def add_dead_letters(
        self, letters: Iterable[tuple[float, str, str | None, str, str, str]]
    ) -> int:
        """Store ``(at, reason, family, topic, payload, detail)`` rows; prune the oldest."""
        with self.transaction() as conn:
            cur = conn.executemany(
                "INSERT INTO dead_letters(at, reason, family, topic, payload, detail) "
                "VALUES (?,?,?,?,?,?)",
                list(letters),
            )
            added = cur.rowcount
            conn.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?",
                (DEAD_LETTER_KEEP,),
            )
        return added

    def dead_letters(
        self, *, reason: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[DeadLetter]:
        """Newest first; filter by reason; page with ``before_id``."""
        where: list[str] = []
        args: list[Any] = []
        if reason:
            where.append("reason=?")
            args.append(reason)
        if before_id is not None:
            where.append("id<?")
            args.append(before_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.query(
            f"SELECT * FROM dead_letters {clause} ORDER BY id DESC LIMIT ?", [*args, limit]
        )
        return [
            DeadLetter(
                id=r["id"],
                at=r["at"],
                reason=r["reason"],
                family=r["family"],
                topic=r["topic"],
                payload=r["payload"],
                detail=r["detail"],
            )
            for r in rows
        ]

    def dead_letter_counts(self) -> dict[str, int]:
        """Stored dead letters by reason."""
        rows = self.query("SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason")
        return {r["reason"]: int(r["n"]) for r in rows}
