"""Request and response models of the API.

Registry entities are the chain-file models of :mod:`core.chain` themselves (``extra`` is
forbidden there, so a typo in a field is a 422, not a silently ignored key); what one can
``PUT`` is what ``registry export`` writes. Responses give times as ISO 8601 in UTC.
Every request model forbids unknown fields and bounds every string and list.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from alerting.profiles import Limits
from core.audit import AuditEntry
from core.chain import Asset, AssetType, Duration, PolicyStep, Sensor, Store
from core.types import Quantity


def _pattern(model: type[BaseModel], field: str) -> str:
    """The id regex a chain model enforces, so paths and bodies accept the same ids."""
    pattern: str = model.model_json_schema()["properties"][field]["pattern"]
    return pattern


ID_PATTERN = _pattern(Store, "id")
SENSOR_ID_PATTERN = _pattern(Sensor, "id")
# Alert ids are "al-" + 10 hex digits (alerting.book); kinds are snake_case words.
ALERT_ID_PATTERN = r"^al-[0-9a-f]{10}$"
KIND_PATTERN = r"^[a-z_]{1,40}$"
# Notes (ack, resolve) and silence reasons: a corrective action fits in a few sentences;
# too short and people cannot record what they did, too long and the audit log and the
# HACCP report carry essays (and a hostile client fills the disk a little faster).
MAX_NOTE_CHARS = 500

Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_NOTE_CHARS)]
RequiredNote = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NOTE_CHARS)
]
EntityId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
SensorId = Annotated[str, StringConstraints(pattern=SENSOR_ID_PATTERN)]


def utc(ts: float | None) -> datetime | None:
    """Epoch seconds as an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def utc_required(ts: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- registry ---------------------------------------------------------------------------


class AssetOut(BaseModel):
    """An asset with the limits its alarms use (type, country, store and asset overrides)."""

    asset: Asset
    limits: Limits
    sensors: list[str]


class SensorOut(BaseModel):
    """A sensor, where it is, and the limits its asset's alarms use."""

    sensor: Sensor
    store: str
    asset_type: AssetType
    retired_at: datetime | None
    limits: Limits


class CalibrationDueOut(BaseModel):
    """A sensor whose calibration runs out soon, or has (``days_left`` < 0)."""

    sensor: str
    store: str
    asset: str
    asset_name: str
    calibrated_at: date | None
    calibration_due: date
    days_left: int = Field(description="Days from today (store's calendar) to the due date")
    overdue: bool


class KeyIn(_In):
    """A new API key: its role, the stores of a manager key, and who it is for."""

    role: Literal["admin", "technician", "manager", "oncall"]
    stores: list[EntityId] = Field(default_factory=list, max_length=500)
    name: str = Field(default="", max_length=80)


class KeyOut(BaseModel):
    """An API key as stored: who and what it is for, never its secret."""

    id: str
    name: str
    role: str
    stores: list[str]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    """A new key, with its secret: shown this once, only its hash is kept."""

    key: str


class RegisterSensor(_In):
    """Register a discovered device's sensor onto an asset in one call."""

    sensor: SensorId
    asset: EntityId
    offset: float = Field(default=0.0, ge=-10, le=10, description="°C added to temperatures")
    interval: Duration | None = Field(
        default=None, description="Seconds (or '5m'); default: the device family's interval"
    )
    calibrated_at: date | None = None
    calibration_due: date | None = None


class DiscoveredOut(BaseModel):
    """A device seen on MQTT with sensors not (yet) registered, or with data not stored.

    ``sensors`` are the exact ids to register; ``quantities`` says what every sensor id
    seen reported; ``ignored`` counts messages that carried nothing to store, by reason
    (``last_ignored`` says what the last one held); ``unused`` lists payload keys decoded
    but not stored; ``note`` says why a registration gets none of the readings.
    """

    device_id: str
    family: str
    first_seen: datetime
    last_seen: datetime
    messages: int
    sensors: list[str]
    last_topic: str
    last_payload: str
    quantities: dict[str, list[str]] = Field(default_factory=dict)
    ignored: dict[str, int] = Field(default_factory=dict)
    last_ignored: str = ""
    unused: list[str] = Field(default_factory=list)
    note: str = ""


class SensorConflictOut(BaseModel):
    """A sensor registration in conflict: already registered, or a bare device id whose
    device carries several probes (``channels``: register one of them)."""

    detail: str
    channels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="For a bare device id refused: the probes seen on the device, sensor id "
        "-> the quantities it reported",
    )


# -- alerts -----------------------------------------------------------------------------

AlertState = Literal["firing", "acknowledged", "resolved"]
Severity = Literal["warning", "critical"]


class AlertOut(BaseModel):
    """An alert as listed."""

    id: str
    kind: str
    severity: str
    stage: str
    store: str
    asset: str | None
    sensor: str | None
    device: str | None
    state: str
    ack_code: str
    opened_at: datetime
    updated_at: datetime
    since: datetime
    acked_at: datetime | None
    acked_by: str | None
    ack_via: str | None
    ack_note: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolve_note: str | None
    level: int
    next_at: datetime | None
    value: float | None
    limit_value: float | None


class AlertPage(BaseModel):
    """One page of alerts, newest first."""

    items: list[AlertOut]
    next_offset: int | None = Field(description="Pass as offset for the next page; null at the end")


class NotificationOut(BaseModel):
    """One message sent (or tried) about an alert."""

    id: int
    step: int | None
    purpose: str
    contact: str
    phone: str | None = Field(description="Hidden (null) where the key may not see the contact")
    channel: str
    language: str
    body: str
    status: str
    provider_id: str | None
    error: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


class AuditOut(BaseModel):
    """One audit log entry (``hash`` covers it and the entry before)."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def audit_out(entry: AuditEntry) -> AuditOut:
    """An audit entry as answered."""
    return AuditOut(
        id=entry.id, at=utc_required(entry.at), actor=entry.actor, action=entry.action,
        subject=entry.subject, detail=entry.detail, prev_hash=entry.prev_hash, hash=entry.hash,
    )  # fmt: skip


class AlertDetail(AlertOut):
    """An alert with why it fired, its frozen escalation, what was sent and who did what."""

    explanation: dict[str, Any]
    policy: list[PolicyStep]
    weight_at_open: str = Field(description="The store's criticality weight when it opened")
    weight_now: str
    notifications: list[NotificationOut]
    audit: list[AuditOut]


class AckIn(_In):
    """An acknowledgement: "on it", optionally with what is being done."""

    note: Note = ""


class ResolveIn(_In):
    """A resolution by hand: the corrective action is required (HACCP records it)."""

    note: RequiredNote


class SilenceIn(_In):
    """A maintenance window: alerts in scope do not notify while it lasts.

    Give a store, an asset or a sensor (the narrower ones imply the store).
    """

    store: EntityId | None = None
    asset: EntityId | None = None
    sensor: SensorId | None = None
    starts: AwareDatetime | None = Field(default=None, description="Default: now")
    ends: AwareDatetime
    reason: RequiredNote


class SilenceOut(BaseModel):
    """A maintenance window."""

    id: int
    store: str | None
    asset: str | None
    sensor: str | None
    starts: datetime
    ends: datetime
    reason: str
    created_by: str
    created_at: datetime
    active: bool


# -- readings ---------------------------------------------------------------------------


class LatestValue(BaseModel):
    """The last value of one quantity."""

    time: datetime
    value: float


class SensorLatest(BaseModel):
    """A registered sensor of the store and its last value per quantity (none: silent)."""

    sensor: str
    asset: str
    asset_type: AssetType
    readings: dict[Quantity, LatestValue]


class LatestOut(BaseModel):
    """Latest readings of every active sensor of a store."""

    store: str
    since: datetime = Field(description="Readings older than this are not looked at")
    sensors: list[SensorLatest]


class HistoryPoint(BaseModel):
    """One reading (or one bucket's mean) and the asset the sensor was on then."""

    time: datetime
    value: float
    asset: str | None


class HistoryOut(BaseModel):
    """A sensor's history of one quantity."""

    sensor: str
    quantity: Quantity
    start: datetime
    end: datetime
    every: str | None
    points: list[HistoryPoint]
    truncated: bool = Field(description="True when raw points were cut at the cap; use every")


# -- operations -------------------------------------------------------------------------


class DeadLetterOut(BaseModel):
    """A message or point that could not be stored."""

    id: int
    at: datetime
    reason: str
    family: str | None
    topic: str
    payload: str
    detail: str


class DeadLetterPage(BaseModel):
    """Dead letters, newest first."""

    items: list[DeadLetterOut]
    next_before_id: int | None


class AuditPage(BaseModel):
    """Audit entries in order."""

    items: list[AuditOut]
    next_after_id: int | None


class AuditVerifyOut(BaseModel):
    """The result of walking the hash chain."""

    intact: bool
    first_bad_id: int | None
    checked: int


class IngestHealth(BaseModel):
    """Ingest at a glance (counters since this process started)."""

    running_here: bool = Field(description="False when ingest runs in another process")
    mqtt_connected: bool | None
    messages: float
    points_written: float
    dead_letters: float
    spool_batches: float
    spool_bytes: float
    last_message_at: datetime | None
    last_write_at: datetime | None
    stored_dead_letters: dict[str, int]
    discovered_devices: int


class AlertingHealth(BaseModel):
    """Alerting at a glance (from the alert book, so valid in any process)."""

    engine_here: bool
    open_alerts: dict[str, int]
    open_by_severity: dict[str, int]
    pending_notifications: int
    failed_notifications: int
    overdue_steps: int = Field(description="Open alerts whose next step is over a minute late")
    queued_commands: int = Field(
        default=0,
        description="Commands from an API without the engine (split mode) not yet carried "
        "out by the alerting process; growing means it is not running",
    )


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness, with each dependency's state."""

    ready: bool
    checks: dict[str, str]
