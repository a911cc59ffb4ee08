"""The broker's access control list: every device may publish only its own topics.

``coldchain broker acl`` writes a Mosquitto ``acl_file`` (``docs/operations.md``, section
"Security") from the registry and an optional broker file. Each device connects with user
name = its device id and may **write** exactly the topics its family publishes under that
id, and **read** nothing:

========== ============================================================================
native     ``coldchain/v1/<id>/telemetry``, ``coldchain/v1/<id>/status``
esphome    ``<prefix>/sensor/+/state``, ``<prefix>/binary_sensor/+/state``,
           ``<prefix>/status`` (``<prefix>`` is the node's ``topic_prefix``, by default
           the node name; its last level is the device id)
tasmota    ``tele/<id>/SENSOR``, ``tele/<id>/STATE``, ``tele/<id>/LWT``
shelly     ``<id>/events/rpc``, ``<id>/online``
========== ============================================================================

LoRaWAN devices do not connect to the broker: their network server does, with a user of
its own confined to its application's uplink topics (ChirpStack
``application/<app>/device/<deveui>/event/+``, The Things Stack
``v3/<app>@<tenant>/devices/<device>/#``), for the DevEUIs registered at the stores it
serves, for a list of DevEUIs, or for any device of the application. coldchain's own user
(``COLDCHAIN_MQTT_URL``) reads everything and writes only the split-mode observations.

Why user blocks and no ``pattern`` lines (Mosquitto 2.0, ``src/security_default.c``):
a client's own ``user`` block is checked first, and the patterns after it **for every
user**, so ``pattern write %u/#`` (the ACL once recommended here) also lets a device write
``<own id>/<anyone>/sensor/x/state``, which ESPHome's multi-level prefixes read as device
``<anyone>``; a pattern cannot say which family a user is; and ``tele/%u/#`` lets a
Tasmota write ``tele/<own id>/<anyone>/sensor/x/state`` for the same reason. Exact topics
per family, checked against the families' own routing (:func:`check_plan`), leave no such
hole. Other facts this relies on, from the same source: no ``topic`` line before the first
``user`` line means anonymous clients may do nothing (and the broker config says
``allow_anonymous false``); reading is checked when a message (retained ones included) is
delivered, not at SUBSCRIBE, so a device may subscribe to ``#`` and receives nothing;
a will is checked when the broker sends it, so a will on another device's topic is
dropped; a denied publish is dropped (PUBACK "not authorized" to MQTT 5 clients, a plain
PUBACK to 3.1.1 ones) and logged only at ``log_type debug``; bridges bypass the ACL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ConfigError

# coldchain's own MQTT user (ingest, and alerting in split mode): the user name in
# COLDCHAIN_MQTT_URL. docs/operations.md creates it under this name.
SERVICE_USER = "coldchain-svc"
# What the service user publishes: ingest/observations.py's TOPIC (split mode). Kept as a
# literal so that generating an ACL does not import ingest (and paho).
OBSERVATIONS_TOPIC = "coldchain/v1/_alerting/observations"
# Each ingester's retained status and last will (ingest/service.py STATUS_TOPIC): without
# this grant Mosquitto drops both, and a dead share-group member goes unnoticed.
INGEST_STATUS_TOPIC = "coldchain/v1/_ingest/+/status"

# Families whose devices do not connect to the broker: their LoRaWAN network server does.
SERVER_FAMILIES = ("chirpstack", "tts")

# Device ids and user names: the device id syntax of devices/common.py (no "/", "+",
# "#", "%", spaces or "$": nothing that changes a topic's levels or reads as a wildcard).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")
# One topic level of an ESPHome prefix.
_LEVEL = _NAME
# A ChirpStack application id (a UUID) or a TTS "<application>@<tenant>" / "<application>".
_APPLICATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}$")
_EUI = re.compile(r"^[0-9A-Fa-f]{16}$")
# First topic levels owned by a family's namespace: an ESPHome prefix or Shelly id there
# would be read as that family's topic (or not at all).
RESERVED_ROOTS = frozenset({"tele", "stat", "cmnd", "application", "v3"})
# ESPHome prefixes ingest reads: state topics up to three levels of prefix, the status
# topic up to two (devices/esphome/family.py, ``subscriptions``).
MAX_ESPHOME_PREFIX_LEVELS = 3


@dataclass(frozen=True, slots=True)
class Device:
    """A device that connects to the broker as user ``id``."""

    id: str
    family: str
    prefix: str | None = None  # ESPHome topic_prefix; None = the node name (the id)
    store: str | None = None  # for the comment in the file


@dataclass(frozen=True, slots=True)
class NetworkServer:
    """A LoRaWAN network server's MQTT user and what it may publish for."""

    user: str
    family: Literal["chirpstack", "tts"]
    application: str
    # Device ids (DevEUIs in lower case, or TTS device ids) it may publish uplinks for;
    # None = any device of the application.
    devices: tuple[str, ...] | None = None
    note: str = ""


@dataclass(slots=True)
class AclPlan:
    """Everything the ACL file says, before it is written."""

    service_user: str = SERVICE_USER
    devices: list[Device] = field(default_factory=list)
    network_servers: list[NetworkServer] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def users(self) -> list[str]:
        """Every user the ACL names (each needs a password in ``password_file``)."""
        return [
            self.service_user,
            *(s.user for s in self.network_servers),
            *(d.id for d in self.devices),
        ]


# -- topics ---------------------------------------------------------------------------


def device_topics(device: Device) -> tuple[str, ...]:
    """The topics ``device`` may write: its family's native topics under its own id."""
    d = device.id
    if device.family == "native":
        return (f"coldchain/v1/{d}/telemetry", f"coldchain/v1/{d}/status")
    if device.family == "esphome":
        prefix = device.prefix or d
        return (f"{prefix}/sensor/+/state", f"{prefix}/binary_sensor/+/state", f"{prefix}/status")
    if device.family == "tasmota":
        return (f"tele/{d}/SENSOR", f"tele/{d}/STATE", f"tele/{d}/LWT")
    if device.family == "shelly":
        return (f"{d}/events/rpc", f"{d}/online")
    if device.family in SERVER_FAMILIES:
        raise ConfigError(
            f"device {d}: {device.family} devices do not connect to the broker; "
            "give their network server a user (network_servers in the broker file)"
        )
    raise ConfigError(f"device {d}: unknown family {device.family!r}")


def tts_topic_id(device_id: str) -> str:
    """The TTS device id in the topic for a coldchain device id: ``eui-<deveui>`` (TTS's
    default) for a DevEUI, else the id itself (a device registered without a DevEUI)."""
    return f"eui-{device_id.lower()}" if _EUI.match(device_id) else device_id


def server_topics(server: NetworkServer) -> tuple[str, ...]:
    """The topics a network server user may write."""
    app = server.application
    ids = server.devices
    if server.family == "chirpstack":
        # ChirpStack publishes every event (up, status, join, ack, txack, log...); ingest
        # reads only "up", the others are harmless and would only fill the broker log.
        if ids is None:
            return (f"application/{app}/device/+/event/+",)
        return tuple(f"application/{app}/device/{eui.lower()}/event/+" for eui in ids)
    # The Things Stack: up, join, down/queued, down/sent..., service/data, location/solved.
    if ids is None:
        return (f"v3/{app}/devices/+/#",)
    return tuple(f"v3/{app}/devices/{tts_topic_id(d)}/#" for d in ids)


# -- the plan: from the registry and the broker file -----------------------------------


class _FileDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_NAME.pattern)
    family: Literal["esphome", "native", "shelly", "tasmota"]
    prefix: str | None = None
    store: str | None = None


class _FileServer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(pattern=_NAME.pattern)
    family: Literal["chirpstack", "tts"]
    application: str = Field(pattern=_APPLICATION.pattern)
    # The DevEUIs registered at these stores (needs the registry) ...
    stores: list[str] | None = None
    # ... and/or these device ids; with neither, any device of the application.
    devices: list[str] | None = None


class BrokerFile(BaseModel):
    """The broker file (YAML): what the registry does not know."""

    model_config = ConfigDict(extra="forbid")

    service_user: str = Field(default=SERVICE_USER, pattern=_NAME.pattern)
    network_servers: list[_FileServer] = Field(default_factory=list)
    # Devices beyond the registry's (or all of them with --no-registry), and ESPHome
    # prefixes: an entry here wins over the registry's for the same id.
    devices: list[_FileDevice] = Field(default_factory=list)


def load_broker_file(path: Path) -> BrokerFile:
    """Read and validate a broker file; ConfigError names the path and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return BrokerFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


@dataclass(frozen=True, slots=True)
class RegisteredSensor:
    """What the ACL needs about one registered sensor."""

    sensor: str
    family: str | None
    store: str


def build_plan(
    sensors: Iterable[RegisteredSensor],
    broker: BrokerFile | None = None,
    *,
    seen_families: Mapping[str, str] | None = None,
) -> AclPlan:
    """The ACL for the registered sensors' devices and the broker file's entries.

    Args:
        sensors: registered sensors (``Registry.sensor_infos()``); their device is the id
            before the first ``:``.
        broker: the broker file, if any.
        seen_families: device id -> the family it was seen publishing as (the registry's
            discovered devices), for sensors registered without ``--family``.

    Returns:
        The plan; ``warnings`` lists LoRaWAN devices no network server user may publish for.

    Raises:
        ConfigError: a sensor whose family is unknown, conflicting entries, or an id or
            prefix that would let a device write another family's or device's topics.
    """
    broker = broker or BrokerFile()
    seen = dict(seen_families or {})
    plan = AclPlan(service_user=broker.service_user)
    devices: dict[str, Device] = {}
    lorawan: dict[str, dict[str, set[str]]] = {f: {} for f in SERVER_FAMILIES}  # store->ids
    unknown: list[str] = []
    for s in sorted(sensors, key=lambda s: s.sensor):
        device_id = s.sensor.partition(":")[0]
        family = s.family or seen.get(device_id)
        if family is None:
            unknown.append(s.sensor)
        elif family in SERVER_FAMILIES:
            lorawan[family].setdefault(s.store, set()).add(device_id.lower())
        else:
            _add_device(devices, Device(device_id, family, store=s.store), "registry")
    if unknown:
        raise ConfigError(
            f"{len(unknown)} registered sensors have no family and were never seen on "
            f"MQTT: {', '.join(unknown[:10])}; set it (coldchain sensors add ... --family F)"
        )
    for entry in broker.devices:
        old = devices.get(entry.id)
        if old is not None and old.family != entry.family:
            raise ConfigError(
                f"device {entry.id}: the broker file says {entry.family}, the registry {old.family}"
            )
        store = entry.store or (old.store if old else None)
        devices[entry.id] = Device(entry.id, entry.family, entry.prefix, store)
    plan.devices = sorted(devices.values(), key=lambda d: (d.store or "", d.id))
    covered: dict[str, set[str]] = {f: set() for f in SERVER_FAMILIES}
    for server in broker.network_servers:
        ids: set[str] | None = None
        notes = []
        if server.stores is not None or server.devices is not None:
            ids = {d.lower() if server.family == "chirpstack" else d for d in server.devices or []}
            for store in server.stores or []:
                ids |= lorawan[server.family].get(store, set())
            if server.stores:
                notes.append(f"devices registered at {', '.join(server.stores)}")
            if server.devices:
                notes.append(f"{len(server.devices)} listed devices")
            covered[server.family] |= ids
        else:
            notes.append("any device of the application")
        plan.network_servers.append(
            NetworkServer(
                server.user,
                server.family,
                server.application,
                None if ids is None else tuple(sorted(ids)),
                "; ".join(notes),
            )
        )
    for family, stores in lorawan.items():
        wide = any(s.family == family and s.devices is None for s in plan.network_servers)
        left = sorted(set().union(*stores.values()) - covered[family]) if not wide else []
        if left:
            plan.warnings.append(
                f"{len(left)} registered {family} devices have no network server user that "
                f"may publish for them: {', '.join(left[:10])}"
            )
    check_plan(plan)
    return plan


def _add_device(devices: dict[str, Device], device: Device, where: str) -> None:
    old = devices.get(device.id)
    if old is not None and old.family != device.family:
        raise ConfigError(
            f"device {device.id} is registered as {old.family} and {device.family} ({where})"
        )
    devices[device.id] = old or device


def check_plan(plan: AclPlan) -> None:
    """Refuse names and prefixes that would let one user write another's topics.

    Raises:
        ConfigError: naming the entry.
    """
    users: dict[str, str] = {}
    entries = [
        (plan.service_user, "the coldchain service user"),
        *((s.user, f"network server {s.user}") for s in plan.network_servers),
        *((d.id, f"{d.family} device {d.id}") for d in plan.devices),
    ]
    for user, what in entries:
        if not _NAME.match(user):
            raise ConfigError(f"{what}: {user!r} is not a valid user name / device id")
        if user in users:
            raise ConfigError(f"user {user} is both {users[user]} and {what}")
        users[user] = what
    for device in plan.devices:
        device_topics(device)  # unknown or LoRaWAN family
        levels = (device.prefix or device.id).split("/")
        if device.family not in ("esphome", "shelly"):
            continue
        if device.prefix is not None and device.family != "esphome":
            raise ConfigError(f"device {device.id}: only ESPHome nodes have a topic prefix")
        if not 1 <= len(levels) <= MAX_ESPHOME_PREFIX_LEVELS or not all(
            _LEVEL.match(level) for level in levels
        ):
            raise ConfigError(
                f"device {device.id}: prefix {device.prefix!r} must be 1 to "
                f"{MAX_ESPHOME_PREFIX_LEVELS} levels of letters, digits, '_', '.', '-'"
            )
        if levels[-1] != device.id:
            raise ConfigError(
                f"device {device.id}: the last level of prefix {device.prefix!r} must be "
                "the device id (ingest names an ESPHome node after it)"
            )
        if levels[0] in RESERVED_ROOTS or (levels[:2] == ["coldchain", "v1"]):
            raise ConfigError(
                f"device {device.id}: topics under {'/'.join(levels[:2])}/ belong to "
                "another family; choose another id or prefix"
            )
    for server in plan.network_servers:
        if not _APPLICATION.match(server.application):
            raise ConfigError(f"network server {server.user}: bad application")
        for device_id in server.devices or ():
            if not _NAME.match(device_id):
                raise ConfigError(f"network server {server.user}: bad device id {device_id!r}")


# -- the file -----------------------------------------------------------------------


def render_acl(plan: AclPlan) -> str:
    """The Mosquitto ``acl_file`` text for ``plan``."""
    out = [
        "# Mosquitto acl_file written by `coldchain broker acl`: do not edit by hand,",
        "# regenerate after registering devices (docs/operations.md, Security).",
        "# Deny by default: no pattern lines, no anonymous section; each user below may",
        "# do only what its own lines say. Devices read nothing.",
        f"# {len(plan.devices)} devices, {len(plan.network_servers)} network servers.",
        *(f"# WARNING: {warning}" for warning in plan.warnings),
        "",
        "# coldchain (ingest; split-mode alerting): reads every device topic, writes only",
        "# the observations of split mode and each ingester's status.",
        f"user {plan.service_user}",
        "topic read #",
        f"topic write {OBSERVATIONS_TOPIC}",
        f"topic write {INGEST_STATUS_TOPIC}",
        "",
    ]
    for server in plan.network_servers:
        out.append(f"# {server.family} network server, {server.application}: {server.note}")
        out.append(f"user {server.user}")
        topics = server_topics(server)
        out.extend(f"topic write {t}" for t in topics)
        if not topics:
            out.append("# (no devices yet: this user may publish nothing)")
        out.append("")
    for device in plan.devices:
        where = f" at {device.store}" if device.store else ""
        out.append(f"# {device.family}{where}")
        out.append(f"user {device.id}")
        out.extend(f"topic write {t}" for t in device_topics(device))
        out.append("")
    return "\n".join(out)


def write_topics(plan: AclPlan) -> dict[str, tuple[str, ...]]:
    """User -> the topic filters it may write (what :func:`render_acl` grants)."""
    grants: dict[str, tuple[str, ...]] = {
        plan.service_user: (OBSERVATIONS_TOPIC, INGEST_STATUS_TOPIC)
    }
    for server in plan.network_servers:
        grants[server.user] = server_topics(server)
    for device in plan.devices:
        grants[device.id] = device_topics(device)
    return grants


def summary(plan: AclPlan) -> Sequence[str]:
    """One line per family with its number of users, for the command's stderr."""
    counts: dict[str, int] = {}
    for d in plan.devices:
        counts[d.family] = counts.get(d.family, 0) + 1
    for s in plan.network_servers:
        counts[f"{s.family} network servers"] = counts.get(f"{s.family} network servers", 0) + 1
    return [f"{n} {what}" for what, n in sorted(counts.items())]
