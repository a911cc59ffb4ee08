"""Settings from ``COLDCHAIN_*`` / ``TWILIO_*`` environment variables and an optional YAML file.

Precedence: environment over the ``--config`` file over defaults. Bad values fail at start-up
with a :class:`~core.errors.ConfigError` that names the setting (``COLDCHAIN_MQTT_URL: ...``)
and never echoes a secret.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.chain import Duration
from core.errors import ConfigError

# Setting name -> environment variable. The YAML file uses the setting names as keys.
ENV_NAMES: dict[str, str] = {
    "mqtt_url": "COLDCHAIN_MQTT_URL",
    "mqtt_client_id": "COLDCHAIN_MQTT_CLIENT_ID",
    "influx_url": "COLDCHAIN_INFLUX_URL",
    "influx_db": "COLDCHAIN_INFLUX_DB",
    "influx_token": "COLDCHAIN_INFLUX_TOKEN",
    "influx_user": "COLDCHAIN_INFLUX_USER",
    "influx_password": "COLDCHAIN_INFLUX_PASSWORD",
    "influx_api": "COLDCHAIN_INFLUX_API",
    "influx_org": "COLDCHAIN_INFLUX_ORG",
    "influx_bucket": "COLDCHAIN_INFLUX_BUCKET",
    "db": "COLDCHAIN_DB",
    "api_bind": "COLDCHAIN_API_BIND",
    "spool_dir": "COLDCHAIN_SPOOL_DIR",
    "spool_max_mb": "COLDCHAIN_SPOOL_MAX_MB",
    "batch_size": "COLDCHAIN_BATCH_SIZE",
    "batch_interval_ms": "COLDCHAIN_BATCH_INTERVAL_MS",
    "max_inflight": "COLDCHAIN_MAX_INFLIGHT",
    "twilio_account_sid": "TWILIO_ACCOUNT_SID",
    "twilio_auth_token": "TWILIO_AUTH_TOKEN",
    "twilio_from": "TWILIO_FROM",
    "twilio_base_url": "COLDCHAIN_TWILIO_BASE_URL",
    "public_url": "COLDCHAIN_PUBLIC_URL",
    "log_level": "COLDCHAIN_LOG_LEVEL",
    "publish_observations": "COLDCHAIN_PUBLISH_OBSERVATIONS",
    "ack_timeout": "COLDCHAIN_ACK_TIMEOUT",
    "warmup": "COLDCHAIN_WARMUP",
    "instance": "COLDCHAIN_INSTANCE",
    "lease_ttl": "COLDCHAIN_LEASE_TTL",
    "startup_grace": "COLDCHAIN_STARTUP_GRACE",
    "api_public_docs": "COLDCHAIN_API_PUBLIC_DOCS",
    "api_public_metrics": "COLDCHAIN_API_PUBLIC_METRICS",
    "metrics_bind": "COLDCHAIN_METRICS_BIND",
    "max_payload_bytes": "COLDCHAIN_MAX_PAYLOAD_BYTES",
    "share_group": "COLDCHAIN_SHARE_GROUP",
    "ingest_member": "COLDCHAIN_INGEST_MEMBER",
}


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """Where and how to reach the broker, parsed from ``COLDCHAIN_MQTT_URL``."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None = None

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return f"MqttTarget(host={self.host!r}, port={self.port}, tls={self.tls})"


class Settings(BaseModel):
    """Validated configuration of every coldchain service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    # Fixed client id: the broker keeps this persistent session's messages while we are down.
    mqtt_client_id: str = Field(default="coldchain-ingest", min_length=1, max_length=64)
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = Field(default="coldchain", pattern=r"^[A-Za-z0-9_.\-]+$")
    influx_token: SecretStr | None = None
    influx_user: str | None = None
    influx_password: SecretStr | None = None
    influx_api: Literal["v1", "v2"] = "v1"
    influx_org: str | None = None
    influx_bucket: str | None = None
    # The registry: a SQLite file path (one host) or a postgresql://user:password@host/db
    # URL (processes on several hosts, an alerting standby; core/db.py).
    db: Path | str = "coldchain.sqlite3"
    api_bind: str = "127.0.0.1:8000"
    spool_dir: Path = Path("var/spool")
    # 1 GiB holds ~10 M points (about 10 h of 300 stores x 40 sensors at 1/min x 10 quantities);
    # too small and a long InfluxDB outage stops ingestion (the broker then queues), too large
    # and the disk fills before anyone notices the outage.
    spool_max_mb: int = Field(default=1024, ge=1)
    # 5,000-point batches reach InfluxDB 1.x's best rate on one connection
    # (research/perf-limits.md §3); larger only adds latency.
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    # Flush at least this often: the floor of publish-to-queryable latency at low rates.
    batch_interval_ms: int = Field(default=200, ge=1, le=60_000)
    # Unacknowledged QoS 1 messages the broker may send us (MQTT 5 Receive Maximum). Acks
    # wait for a durable write, so this must cover a batch plus a write's round trip; too
    # high and a crash replays more messages (harmless, idempotent) and memory grows.
    max_inflight: int = Field(default=10_000, ge=1, le=65_535)
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_base_url: str | None = None
    public_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `coldchain ingest` publishes durable observations for a separate `coldchain alerting`
    # process (not needed by `coldchain run`, where they pass in memory).
    publish_observations: bool = False
    # An acknowledged alert whose problem persists re-escalates after this long. Too short
    # nags someone already on the way; too long forgets a forgotten fridge.
    ack_timeout: Duration = 2 * 3600.0
    # How much stored history alerting replays at start-up so a restart continues every
    # budget and timer (alerting/warmup.py WARMUP_S says why 6 h). Shorter and a slow
    # excursion that began before it restarts its budget; longer costs start-up time.
    warmup: Duration = 6 * 3600.0
    # This process's name among its peers: the alerting lease's holder and the alerting
    # MQTT session (coldchain-alerting-<instance>). Unique per process (two alerting
    # processes with one name take the lease from each other); stable across restarts (a
    # restarted process resumes its own lease and MQTT session). Default: the host name.
    instance: str = Field(default="", pattern=r"^[A-Za-z0-9._-]{0,64}$")
    # The alerting lease (alerting/lease.py LEASE_TTL_S says why 10 s): a standby takes
    # over this long after the active instance stops renewing it.
    lease_ttl: Duration = 10.0
    # After becoming active, absence (a silent sensor, a quiet store) is judged only this
    # long later, while the broker delivers what it kept (alerting/warmup.py
    # STARTUP_GRACE_S says why 60 s).
    startup_grace: Duration = 60.0
    # /docs and /openapi.json without a key. Convenient on a private network; set false
    # when the API is reachable from outside (they list every route and schema).
    api_public_docs: bool = True
    # /metrics without a key (Prometheus scrapes it). Set false when the API is reachable
    # from outside: counters tell an attacker what traffic and failures the chain sees.
    # Prometheus then sends any key (authorization: credentials in its scrape config).
    api_public_metrics: bool = True
    # HOST:PORT of a /metrics listener of this process's own (no authentication), for
    # `coldchain ingest` and `coldchain alerting`, which have no API, and for `run` or `api`
    # when the API's /metrics needs a key. Unset: no listener. Every process needs its own
    # port (N ingest members on a host: one each): Prometheus scrapes each, so `up` says
    # which one died (docs/operations.md, section 8). Keep it on loopback or a private
    # network: counts tell an attacker what traffic and failures the chain sees.
    metrics_bind: str | None = None
    # Largest MQTT payload ingest accepts; larger ones are dead-lettered (truncated,
    # reason payload_too_large) and acknowledged, and the broker is asked (MQTT 5 Maximum
    # Packet Size) not to send anything much larger. The largest legitimate payloads are
    # LoRaWAN uplinks carrying many gateways' metadata (a few KiB; ~10 KiB with 20
    # gateways). Too low and real uplinks are dead-lettered; too high and one message may
    # hold that much memory (a 256 MiB message once took the ingester to 1.16 GB RSS).
    max_payload_bytes: int = Field(default=65_536, ge=1024, le=16 * 1024 * 1024)
    # Horizontal ingest: several `coldchain ingest` processes sharing the subscriptions
    # as MQTT 5 shared subscriptions `$share/<group>/<filter>`; the broker hands each
    # message to one member. Unset: one ingester receives everything.
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{1,32}$")
    # This process's name in the share group (e.g. 1, 2, 3): its client id is
    # `<mqtt_client_id>-<member>` and its spool `<spool_dir>/<member>`, so members never
    # share a persistent session or a spool. Required with share_group.
    ingest_member: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{1,16}$")

    @model_validator(mode="after")
    def _check_members(self) -> Settings:
        if self.share_group and not self.ingest_member:
            raise ValueError(
                "COLDCHAIN_SHARE_GROUP needs COLDCHAIN_INGEST_MEMBER (a distinct name per "
                "process, e.g. 1, 2, 3): members sharing one client id would take each "
                "other's session over"
            )
        if self.ingest_member and len(self.ingest_client_id) > 64:
            raise ValueError("COLDCHAIN_MQTT_CLIENT_ID + member is longer than 64 characters")
        return self

    @property
    def ingest_client_id(self) -> str:
        """The ingester's MQTT client id: the fixed id, plus ``-<member>`` in a group."""
        if self.ingest_member:
            return f"{self.mqtt_client_id}-{self.ingest_member}"
        return self.mqtt_client_id

    @property
    def ingest_spool_dir(self) -> Path:
        """This ingester's spool folder (one per member: a spool has one writer)."""
        return self.spool_dir / self.ingest_member if self.ingest_member else self.spool_dir

    @field_validator("db", mode="before")
    @classmethod
    def _check_db(cls, value: object) -> Path | str:
        text = str(value)
        if "://" in text and not text.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a file path or a postgresql:// URL")
        return text

    @property
    def instance_name(self) -> str:
        """``instance``, or the host name when it is not set."""
        return self.instance or socket.gethostname()

    @property
    def db_is_file(self) -> bool:
        """The registry is a SQLite file (not a PostgreSQL URL)."""
        return "://" not in str(self.db)

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @field_validator("influx_url", "twilio_base_url", "public_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("api_bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8000")
        return value

    @field_validator("metrics_bind")
    @classmethod
    def _check_metrics_bind(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        # Port 0: the system picks a free one, logged at start-up ("metrics on ...").
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9181")
        return value

    @property
    def mqtt(self) -> MqttTarget:
        """The broker address and credentials."""
        return parse_mqtt_url(self.mqtt_url)

    @property
    def api_host_port(self) -> tuple[str, int]:
        """``api_bind`` split into host and port."""
        host, _, port = self.api_bind.rpartition(":")
        return host, int(port)

    @property
    def metrics_host_port(self) -> tuple[str, int] | None:
        """``metrics_bind`` split into host and port (None when unset)."""
        if self.metrics_bind is None:
            return None
        host, _, port = self.metrics_bind.rpartition(":")
        return host, int(port)

    def redacted(self) -> dict[str, Any]:
        """The settings to show a person: every secret, and any password inside a URL
        (``mqtt_url``, ``influx_url``, ``twilio_base_url``, ``public_url``, or any URL a
        later setting adds), replaced by ``***`` (set) or None (unset)."""
        shown = self.model_dump()
        for name, value in shown.items():
            if isinstance(value, SecretStr):
                shown[name] = "***"
            elif isinstance(value, str) and "://" in value:
                shown[name] = redact_url(value)
        return shown

    @property
    def twilio_configured(self) -> bool:
        """True when real SMS can be sent; otherwise messages go to the console notifier."""
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)


# What a child coldchain process needs to find what its parent found: the broker,
# InfluxDB, the registry and the spool (tests and benchmarks start such processes).
WIRING = ("mqtt_url", "influx_url", "influx_db", "db", "spool_dir")


def as_env(settings: Settings, names: tuple[str, ...] = WIRING) -> dict[str, str]:
    """The environment variables that give a process these settings' ``names``."""
    return {ENV_NAMES[name]: str(getattr(settings, name)) for name in names}


def redact_url(url: str) -> str:
    """``scheme://user:***@host/...``: a URL's password replaced (the rest is kept, to
    recognise the setting); a URL without one is returned as it is."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    hidden = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"  # a bare token too
    return urlunsplit(parts._replace(netloc=hidden))


def parse_mqtt_url(url: str) -> MqttTarget:
    """Parse ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...`` (TLS, default port 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError("must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("has no host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ValueError("has an invalid port") from None
    return MqttTarget(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def load_settings(
    env: Mapping[str, str] | None = None, config_file: Path | None = None
) -> Settings:
    """Build settings from a YAML file (optional) overlaid with the environment.

    Raises:
        ConfigError: naming the setting and why it is wrong; secrets are never echoed.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--config {config_file}: cannot read: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {config_file}: must be a mapping of setting: value")
        for key, value in loaded.items():
            values[str(key)] = value
            origin[str(key)] = f"{config_file}: {key}"
    for name, var in ENV_NAMES.items():
        if var in env and env[var] != "":
            values[name] = env[var]
            origin[name] = var
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            where = origin.get(name, ENV_NAMES.get(name, name))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown setting (known: {', '.join(sorted(ENV_NAMES))})"
            problems.append(f"{where}: {message}" if err["loc"] else message)
        raise ConfigError("; ".join(problems)) from None
