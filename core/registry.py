"""The registry: stores, assets, sensors, contacts, policies, discovered devices, dead letters.

SQLite by default (``COLDCHAIN_DB``), in WAL mode so the ingester, the alerting engine and
the API can share one file: one writer at a time, readers never blocked. Every entity row
keeps its validated chain-file document as JSON (``doc``) beside the columns that queries
and the ingest hot path need, so ``registry export`` round-trips ``registry import``.

The ingest hot path never queries SQLite per message: it holds a :class:`SensorIndex`
snapshot and rebuilds it when :meth:`Registry.entity_version` moves (a version per entity
table, kept by triggers: side-table writes never move it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from core import audit
from core.chain import Asset, Chain, Contact, Policy, Sensor, Store
from core.db import Database, Row, Transaction
from core.errors import NotFound, RegistryError
from core.migrations import ENTITY_TABLES, migrate

_M = TypeVar("_M", bound=BaseModel)


# File mode of the registry database (and so of its WAL files): read and write for the
# service account only.
REGISTRY_MODE = 0o600
# Dead letters and discovered payloads keep this much of a payload: enough to diagnose a
# firmware misconfiguration; more would let one chatty bad device fill the disk.
PAYLOAD_KEEP_BYTES = 4096
# Dead letters beyond this many are pruned oldest first; counters keep the totals. With
# payloads of up to PAYLOAD_KEEP_BYTES, 20k is at most ~80 MB; more keeps older samples of
# the same few broken devices, fewer loses a slow one's among a noisy one's.
DEAD_LETTER_KEEP = 20_000
# Discovered devices kept, most recently seen first (a flood of invented ids must not grow
# the registry: 100k ids were 215 MB and a 138 MB listing). A chain has at most a few
# thousand unregistered devices in view; more are junk.
DISCOVERED_KEEP = 10_000
# Sensor ids and unused payload keys kept per discovered device. Real devices have a few
# of each (a Tasmota with eight probes, an LHT65N with a dozen codec fields); too low and a
# big BLE gateway's sensors drop off the list, too high and a device inventing ids or keys
# grows its row without bound.
DISCOVERED_SENSORS_KEEP = 64
DISCOVERED_UNUSED_KEEP = 64
# Quantities that make a sensor a probe of its own (battery and signal are the device's
# health, reported beside the probes).
PROBE_QUANTITIES = ("temperature", "humidity", "door")


def probe_channels(device_id: str, quantities: dict[str, list[str]]) -> list[str]:
    """The channel sensor ids of a device that measure a temperature (its probes)."""
    return sorted(
        sensor
        for sensor, kinds in quantities.items()
        if sensor.startswith(f"{device_id}:") and "temperature" in kinds
    )


def _open_probes(
    device_id: str, quantities: dict[str, list[str]], registered: set[str]
) -> list[str]:
    """The probes a registered bare ``<device_id>`` could cover: none when the bare id is
    not registered or measures something itself, else those without an id of their own."""
    if device_id not in registered:
        return []
    own = quantities.get(device_id, [])
    if any(kind in own for kind in PROBE_QUANTITIES):
        return []
    return [s for s in probe_channels(device_id, quantities) if s not in registered]


def covered_by_bare_id(
    device_id: str, quantities: dict[str, list[str]], registered: set[str]
) -> str | None:
    """The one probe a registered bare ``<device_id>`` covers (ingest stores it there)."""
    probes = _open_probes(device_id, quantities, registered)
    return probes[0] if len(probes) == 1 else None


def bare_id_note(device_id: str, quantities: dict[str, list[str]], registered: set[str]) -> str:
    """Why a registered bare ``<device_id>`` gets none of the device's probes, or "".

    A bare id covers the device's own measurements, or its one probe not registered under
    its own id (docs/design/sensor-ids.md); with several such probes it is ambiguous.
    """
    open_probes = _open_probes(device_id, quantities, registered)
    if len(open_probes) < 2:
        return ""
    return (
        f"{device_id} is registered but the device carries {len(open_probes)} probes; "
        f"register one of them instead: {', '.join(open_probes)}"
    )


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
    """A device seen on MQTT but not (fully) registered, or saying what is not stored.

    ``sensors`` are the sensor ids seen without a registration; ``quantities`` every sensor
    id seen (registered or not) with what it reported; ``ignored`` counts the device's
    messages that carried nothing to store, by reason, ``last_ignored`` says what the last
    one held; ``unused`` lists payload keys decoded but not stored. ``note`` (computed when
    listing) says why a registration does not get the readings.
    """

    device_id: str
    family: str
    first_seen: float
    last_seen: float
    messages: int
    sensors: list[str]
    last_topic: str
    last_payload: str
    ignored: dict[str, int] = field(default_factory=dict)
    last_ignored: str = ""
    unused: list[str] = field(default_factory=list)
    quantities: dict[str, list[str]] = field(default_factory=dict)
    note: str = ""


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


# API key roles (DESIGN.md §3): admin does everything; technician writes the registry;
# manager reads and acknowledges for its own stores only; oncall reads and acknowledges
# for every store. The API enforces them (api/auth.py); the registry only stores them.
ROLES = ("admin", "technician", "manager", "oncall")
# Key = ``cc_<id>_<secret>``: the id finds the row (a primary-key lookup, so nothing about
# the secret is learned from timing), the secret is 32 random bytes (256 bits) from
# ``secrets``. Only sha256(secret) is stored. A slow KDF (bcrypt, argon2) exists to make
# guessing *low-entropy passwords* from a stolen hash expensive; a 256-bit random secret
# cannot be guessed at any speed, so a fast hash loses nothing and keeps authentication
# of every request at microseconds.
_KEY_ID_BYTES = 6
_KEY_SECRET_BYTES = 32
_KEY_PATTERN = re.compile(r"^cc_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
# Compared against when the id is unknown, so both failures cost the same time.
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: never the secret, only who and what it is for."""

    id: str
    name: str
    role: str
    stores: tuple[str, ...]  # manager keys: the stores it may see; empty otherwise
    created_at: float
    revoked_at: float | None


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _stamp(at: float | None) -> float:
    """The audit time of a change. Services pass their clock's time; the one-shot CLI
    commands (the composition root itself) pass nothing and get the wall clock."""
    return time.time() if at is None else at


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
        """Open (and migrate) the registry at ``path``: a SQLite file, or a
        ``postgresql://`` URL (core/db.py)."""
        self.db = Database(path)
        self.path = self.db.path or Path(str(path))
        migrate(self.db)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    # -- plumbing ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """What the registry was opened with (a path or a URL; never shown: it may hold a
        password)."""
        return self.db.url

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction, serialized with every other writer (SQLite's ``BEGIN
        IMMEDIATE``, PostgreSQL's advisory lock), committed on success."""
        return self.db.transaction()

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        """Run one read statement (rows support ``row["column"]``)."""
        return self.db.query(sql, args)

    def entity_version(self, *tables: str) -> int:
        """A number that grows whenever a row of the named entity tables (default: all of
        :data:`ENTITY_TABLES`) is created, changed or deleted, by any connection.

        Writes to the side tables (dead letters, discovered devices, alerts, silences,
        audit, keys) never move it, nor does rewriting a row with the same content. One
        indexed read; cheap enough to poll every second or on an unknown sensor id.
        """
        wanted = tables or ENTITY_TABLES
        unknown = set(wanted) - set(ENTITY_TABLES)
        if unknown:
            raise ValueError(f"not entity tables: {sorted(unknown)}")
        marks = ",".join("?" * len(wanted))
        [row] = self.db.query(
            f"SELECT sum(version) FROM entity_versions WHERE entity IN ({marks})", wanted
        )
        return int(row[0] or 0)

    # -- chain entities ---------------------------------------------------------------

    def import_chain(
        self, chain: Chain, *, actor: str = "cli", at: float | None = None
    ) -> dict[str, int]:
        """Upsert every entity of a chain file (idempotent). Returns counts per kind.

        One audit entry records the import (the counts), not one per entity: an import of
        thousands of sensors stays one fast transaction.
        """
        counts = {
            "stores": len(chain.stores),
            "assets": len(chain.assets),
            "sensors": len(chain.sensors),
            "contacts": len(chain.contacts),
            "policies": len(chain.policies),
        }
        with self.transaction() as conn:
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
            audit.append(
                conn, at=_stamp(at), actor=actor, action="chain.import", subject="chain",
                detail=counts,
            )  # fmt: skip
        return counts

    @staticmethod
    def _check_exists(conn: Transaction, table: str, ident: str, what: str) -> None:
        if conn.execute(f"SELECT 1 FROM {table} WHERE id=?", (ident,)).fetchone() is None:
            raise NotFound(f"{what}: unknown {table[:-1]} {ident!r}")

    def _upsert_sensor(self, conn: Transaction, sensor: Sensor) -> None:
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

    def add_sensor(self, sensor: Sensor, *, actor: str = "cli", at: float | None = None) -> str:
        """Register (or move, or re-calibrate, or reinstate) a sensor; audited.

        History in InfluxDB is untouched: points keep the tags they were written with, so
        a moved sensor's old readings stay under its old asset and new ones go to the new.

        Returns:
            ``"created"``, ``"moved"`` or ``"updated"``.
        """
        with self.transaction() as conn:
            row = conn.execute("SELECT asset FROM sensors WHERE id=?", (sensor.id,)).fetchone()
            self._upsert_sensor(conn, sensor)
            was = None if row is None else str(row[0])
            change = "created" if was is None else "moved" if was != sensor.asset else "updated"
            detail: dict[str, Any] = sensor.model_dump(mode="json")
            if change == "moved":
                detail["from_asset"] = was
            action = {"created": "create", "moved": "move", "updated": "update"}[change]
            audit.append(
                conn, at=_stamp(at), actor=actor, action=f"sensor.{action}", subject=sensor.id,
                detail=detail,
            )  # fmt: skip
        return change

    def retire_sensor(self, sensor_id: str, at: float, *, actor: str = "cli") -> None:
        """Stop attributing a sensor's readings to its asset; keep its row and history."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE sensors SET retired_at=? WHERE id=? AND retired_at IS NULL",
                (at, sensor_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"unknown or already retired sensor {sensor_id!r}")
            audit.append(conn, at=at, actor=actor, action="sensor.retire", subject=sensor_id)

    def sensor(self, sensor_id: str) -> tuple[Sensor, float | None]:
        """One sensor, retired or not, with when it was retired. Raises NotFound."""
        rows = self.query("SELECT doc, retired_at FROM sensors WHERE id=?", (sensor_id,))
        if not rows:
            raise NotFound(f"unknown sensor {sensor_id!r}")
        return Sensor.model_validate_json(rows[0]["doc"]), rows[0]["retired_at"]

    def sensors_with_state(
        self, *, assets: Iterable[str] | None = None, include_retired: bool = False
    ) -> list[tuple[Sensor, float | None]]:
        """Sensors (optionally of some assets) with their retirement time, by id."""
        where = [] if include_retired else ["retired_at IS NULL"]
        args: list[Any] = []
        if assets is not None:
            wanted = list(assets)
            where.append(f"asset IN ({','.join('?' * len(wanted))})" if wanted else "0")
            args.extend(wanted)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.query(f"SELECT doc, retired_at FROM sensors {clause} ORDER BY id", args)
        return [(Sensor.model_validate_json(r["doc"]), r["retired_at"]) for r in rows]

    # -- single-entity writes (the API), each audited in its own transaction ----------

    def _upsert_doc(
        self, table: str, model: BaseModel, ident: str, actor: str, at: float | None,
        extra: dict[str, Any] | None = None, requires: tuple[str, str] | None = None,
    ) -> bool:  # fmt: skip
        """Insert or replace one ``(id, doc[, extra columns])`` row; True when created.

        ``requires`` is a ``(table, id)`` that must exist, checked in the same transaction.
        """
        columns = {"id": ident, **(extra or {}), "doc": model.model_dump_json()}
        names = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c != "id")
        with self.transaction() as conn:
            if requires is not None:
                self._check_exists(conn, requires[0], requires[1], f"{table[:-1]} {ident}")
            created = conn.execute(f"SELECT 1 FROM {table} WHERE id=?", (ident,)).fetchone() is None
            conn.execute(
                f"INSERT INTO {table}({names}) VALUES ({marks}) "
                f"ON CONFLICT(id) DO UPDATE SET {updates}",
                tuple(columns.values()),
            )
            kind = table[:-1] if table != "policies" else "policy"
            audit.append(
                conn, at=_stamp(at), actor=actor,
                action=f"{kind}.{'create' if created else 'update'}", subject=ident,
                detail=model.model_dump(mode="json"),
            )  # fmt: skip
        return created

    def _delete(
        self, table: str, ident: str, actor: str, at: float | None,
        blockers: list[tuple[str, str]],
    ) -> None:  # fmt: skip
        """Delete one row unless a blocker query ``(sql, what)`` finds a reference."""
        kind = table[:-1] if table != "policies" else "policy"
        with self.transaction() as conn:
            self._check_exists(conn, table, ident, "delete")
            for sql, what in blockers:
                [(count,)] = conn.execute(sql, (ident,)).fetchall()
                if count:
                    raise RegistryError(f"{kind} {ident!r} is still used by {count} {what}")
            conn.execute(f"DELETE FROM {table} WHERE id=?", (ident,))
            audit.append(conn, at=_stamp(at), actor=actor, action=f"{kind}.delete", subject=ident)

    def upsert_store(self, store: Store, *, actor: str = "cli", at: float | None = None) -> bool:
        """Create or replace a store; True when created. Audited."""
        return self._upsert_doc("stores", store, store.id, actor, at)

    def delete_store(self, store_id: str, *, actor: str = "cli", at: float | None = None) -> None:
        """Delete a store without assets. Raises NotFound, or RegistryError when in use."""
        self._delete(
            "stores", store_id, actor, at,
            [("SELECT count(*) FROM assets WHERE store=?", "asset(s)")],
        )  # fmt: skip

    def upsert_asset(self, asset: Asset, *, actor: str = "cli", at: float | None = None) -> bool:
        """Create or replace an asset (its store must exist); True when created. Audited."""
        return self._upsert_doc(
            "assets", asset, asset.id, actor, at, {"store": asset.store}, ("stores", asset.store)
        )

    def delete_asset(self, asset_id: str, *, actor: str = "cli", at: float | None = None) -> None:
        """Delete an asset that never had sensors (retired ones keep their history's link)."""
        self._delete(
            "assets", asset_id, actor, at,
            [("SELECT count(*) FROM sensors WHERE asset=?", "sensor(s), retired included")],
        )  # fmt: skip

    def contact(self, contact_id: str) -> Contact:
        """One contact. Raises NotFound."""
        found = self._docs(Contact, "SELECT doc FROM contacts WHERE id=?", (contact_id,))
        if not found:
            raise NotFound(f"unknown contact {contact_id!r}")
        return found[0]

    def upsert_contact(
        self, contact: Contact, *, actor: str = "cli", at: float | None = None
    ) -> bool:
        """Create or replace a contact; True when created. Audited."""
        return self._upsert_doc("contacts", contact, contact.id, actor, at)

    def delete_contact(
        self, contact_id: str, *, actor: str = "cli", at: float | None = None
    ) -> None:
        """Delete a contact (alerts already frozen keep their notification log)."""
        self._delete("contacts", contact_id, actor, at, [])

    def policy(self, policy_id: str) -> Policy:
        """One escalation policy. Raises NotFound."""
        found = self._docs(Policy, "SELECT doc FROM policies WHERE id=?", (policy_id,))
        if not found:
            raise NotFound(f"unknown policy {policy_id!r}")
        return found[0]

    def upsert_policy(self, policy: Policy, *, actor: str = "cli", at: float | None = None) -> bool:
        """Create or replace a policy (open alerts keep their frozen copy). Audited."""
        return self._upsert_doc("policies", policy, policy.id, actor, at)

    def delete_policy(self, policy_id: str, *, actor: str = "cli", at: float | None = None) -> None:
        """Delete a policy no store or asset names. Raises RegistryError when in use."""
        policy = self.db.json_field("doc", "policy")
        self._delete(
            "policies",
            policy_id,
            actor,
            at,
            [
                (f"SELECT count(*) FROM stores WHERE {policy}=?", "store(s)"),
                (f"SELECT count(*) FROM assets WHERE {policy}=?", "asset(s)"),
            ],
        )

    # -- API keys -----------------------------------------------------------------------

    def create_api_key(
        self,
        role: str,
        stores: Iterable[str] = (),
        name: str = "",
        at: float | None = None,
        *,
        actor: str = "cli",
    ) -> str:
        """Create an API key and return it in full: the only time the secret exists.

        Raises:
            RegistryError: an unknown role, a manager key without stores, stores on a
                role that is not scoped, or a store that does not exist.
        """
        scope = tuple(dict.fromkeys(stores))
        if role not in ROLES:
            raise RegistryError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        if role == "manager" and not scope:
            raise RegistryError("a manager key needs at least one store (--store S)")
        if role != "manager" and scope:
            raise RegistryError(f"only manager keys are scoped to stores, not {role!r} keys")
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        secret = secrets.token_urlsafe(_KEY_SECRET_BYTES)
        stamp = _stamp(at)
        label = name.strip()[:80] or f"{role}-{key_id[:4]}"
        with self.transaction() as conn:
            for store in scope:
                self._check_exists(conn, "stores", store, "api key")
            conn.execute(
                "INSERT INTO api_keys(id, name, role, stores, hash, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (key_id, label, role, json.dumps(list(scope)), _secret_hash(secret), stamp),
            )
            # Never the secret nor its hash: the audit log is readable at GET /audit.
            audit.append(
                conn, at=stamp, actor=actor, action="api_key.create", subject=f"key-{key_id}",
                detail={"name": label, "role": role, "stores": list(scope)},
            )  # fmt: skip
        return f"cc_{key_id}_{secret}"

    def api_key(self, token: str) -> ApiKey | None:
        """The active key a bearer token stands for, or None (malformed, unknown, wrong
        secret, revoked: callers must not tell these apart to the client)."""
        match = _KEY_PATTERN.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        rows = self.query("SELECT * FROM api_keys WHERE id=?", (key_id,))
        stored = rows[0]["hash"] if rows else _DUMMY_HASH
        if not hmac.compare_digest(_secret_hash(secret), stored) or not rows:
            return None
        key = _api_key(rows[0])
        return key if key.revoked_at is None else None

    def api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first (no secrets exist to show)."""
        return [_api_key(r) for r in self.query("SELECT * FROM api_keys ORDER BY created_at")]

    def revoke_api_key(self, key_id: str, at: float | None = None, *, actor: str = "cli") -> None:
        """Revoke a key at once. Raises NotFound when unknown or already revoked."""
        stamp = _stamp(at)
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL",
                (stamp, key_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"unknown or already revoked api key {key_id!r}")
            audit.append(
                conn, at=stamp, actor=actor, action="api_key.revoke", subject=f"key-{key_id}"
            )

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
        return audit.entries(self.db, after_id=after_id, limit=limit, subject=subject)

    def audit_verify(self) -> tuple[bool, int | None, int]:
        """Check the audit hash chain: (intact, first bad id, entries checked)."""
        return audit.verify(self.db)

    # -- discovered devices -----------------------------------------------------------

    def record_discovered(self, devices: Iterable[DiscoveredDevice]) -> None:
        """Upsert devices seen without a registration or with unstored data (batched by
        ingest): counts add up, sets are merged (bounded), the last payload wins."""
        with self.transaction() as conn:
            for d in devices:
                row = conn.execute(
                    "SELECT sensors, ignored, unused, quantities FROM discovered_devices "
                    "WHERE device_id=?",
                    (d.device_id,),
                ).fetchone()
                sensors, ignored, unused, quantities = (
                    (
                        json.loads(row["sensors"]),
                        json.loads(row["ignored"]),
                        json.loads(row["unused"]),
                        json.loads(row["quantities"]),
                    )
                    if row
                    else ([], {}, [], {})
                )
                for reason, count in d.ignored.items():
                    ignored[reason] = int(ignored.get(reason, 0)) + count
                for sensor, kinds in d.quantities.items():
                    if sensor in quantities or len(quantities) < DISCOVERED_SENSORS_KEEP:
                        quantities[sensor] = sorted(set(quantities.get(sensor, [])) | set(kinds))
                merged = sorted(set(sensors) | set(d.sensors))[:DISCOVERED_SENSORS_KEEP]
                keys = sorted(set(unused) | set(d.unused))[:DISCOVERED_UNUSED_KEEP]
                conn.execute(
                    "INSERT INTO discovered_devices(device_id, family, first_seen, last_seen, "
                    "messages, sensors, last_topic, last_payload, ignored, last_ignored, "
                    "unused, quantities) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(device_id) DO UPDATE SET family=excluded.family, "
                    "last_seen=CASE WHEN excluded.last_seen > discovered_devices.last_seen "
                    "THEN excluded.last_seen ELSE discovered_devices.last_seen END, "
                    "messages=discovered_devices.messages+excluded.messages, "
                    "sensors=excluded.sensors, "
                    "last_topic=excluded.last_topic, last_payload=excluded.last_payload, "
                    "ignored=excluded.ignored, unused=excluded.unused, "
                    "quantities=excluded.quantities, last_ignored=CASE "
                    "WHEN excluded.last_ignored != '' THEN excluded.last_ignored "
                    "ELSE discovered_devices.last_ignored END",
                    (
                        d.device_id,
                        d.family,
                        d.first_seen,
                        d.last_seen,
                        d.messages,
                        json.dumps(merged),
                        d.last_topic,
                        d.last_payload,
                        json.dumps(ignored, sort_keys=True),
                        d.last_ignored[:300],
                        json.dumps(keys),
                        json.dumps(quantities, sort_keys=True),
                    ),
                )
            # Bounded: beyond DISCOVERED_KEEP the least recently seen go (a flood's ids).
            conn.execute(
                "DELETE FROM discovered_devices WHERE last_seen < (SELECT last_seen FROM "
                "discovered_devices ORDER BY last_seen DESC LIMIT 1 OFFSET ?)",
                (DISCOVERED_KEEP,),
            )

    def discovered(
        self, *, include_registered: bool = False, limit: int | None = None
    ) -> list[DiscoveredDevice]:
        """Devices to look at, most recent first: those with a sensor id not registered,
        or whose every message was ignored (a probe the decoder does not understand), or
        whose registration cannot get the readings (a bare device id over several probes).

        With ``include_registered``, every device seen, with all its sensor ids.
        """
        registered = {s.id for s in self.sensors()}
        registered_devices = {s.partition(":")[0] for s in registered}
        out = []
        for row in self.query("SELECT * FROM discovered_devices ORDER BY last_seen DESC"):
            sensors = json.loads(row["sensors"])
            quantities: dict[str, list[str]] = json.loads(row["quantities"])
            ignored: dict[str, int] = json.loads(row["ignored"])
            covered = covered_by_bare_id(row["device_id"], quantities, registered)
            pending = [s for s in sensors if s not in registered and s != covered]
            note = bare_id_note(row["device_id"], quantities, registered)
            # Every message ignored and nothing registered: a probe the decoder does not
            # understand, the case a technician would otherwise see nowhere.
            nothing_stored = (
                bool(ignored) and not quantities and row["device_id"] not in registered_devices
            )
            if not (pending or note or nothing_stored or include_registered):
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
                    ignored=ignored,
                    last_ignored=row["last_ignored"],
                    unused=json.loads(row["unused"]),
                    quantities=quantities,
                    note=note,
                )
            )
            if limit is not None and len(out) >= limit:
                break
        return out

    def seen_quantities(self, device_id: str) -> dict[str, list[str]]:
        """Every sensor id a device was seen with and what each reported ({} if never)."""
        rows = self.query(
            "SELECT quantities FROM discovered_devices WHERE device_id=?", (device_id,)
        )
        return json.loads(rows[0]["quantities"]) if rows else {}

    def ambiguous_channels(self, sensor_id: str) -> dict[str, list[str]]:
        """The probes a bare device id would leave ambiguous ({} when it is not).

        A bare ``<device_id>`` may be registered when the device measures something itself
        or has at most one probe not registered under its own id; otherwise the answer is
        those probes (sensor id -> quantities seen), for the technician to pick from.
        """
        if ":" in sensor_id:
            return {}
        seen = self.seen_quantities(sensor_id)
        if any(kind in seen.get(sensor_id, []) for kind in PROBE_QUANTITIES):
            return {}
        registered = {s.id for s in self.sensors()}
        probes = [s for s in probe_channels(sensor_id, seen) if s not in registered]
        return {s: seen[s] for s in probes} if len(probes) >= 2 else {}

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


def _api_key(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        stores=tuple(json.loads(row["stores"])),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
