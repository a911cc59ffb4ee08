"""Scenario files: a chain, a simulated period and a timeline of failures.

A scenario is YAML::

    name: san-pedro-overnight
    description: ...
    simulation: {start: "2026-11-17T20:00", duration: 12h, step: 30s, seed: 42}
    chain: {stores: [...], assets: [...], sensors: [...], contacts: [...], policies: [...]}
    generate: {stores: 5, ...}          # optional: more stores, built deterministically
    timeline:
      - {at: "23:10", event: compressor_failure, asset: s042-wic1}
      - {at: "+6h", event: repair, asset: s042-wic1}

``start`` is local time of the first store (or carries its own offset). ``at`` is
``HH:MM`` (the next such local time from the start), ``+<duration>`` after the start, or
an ISO time. The same file seeds the registry (``coldchain simulate --seed-registry``), so
the demo and the tests need no hand registration.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.chain import AssetType, Chain, Duration, parse_chain
from core.errors import ConfigError

SCENARIOS = Path(__file__).parent / "scenarios"

EventKind = Literal[
    "compressor_failure",
    "fan_failure",
    "refrigerant_leak",
    "door_ajar",
    "door_closed",
    "power_outage",
    "power_restored",
    "defrost_stuck",
    "repair",
    "sensor_fault",
    "sensor_ok",
    "network_drop",
    "network_restored",
]
FaultKind = Literal["power_on_85", "disconnected", "nan", "null", "stuck", "spikes", "drift"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimelineEvent(_Model):
    """Something that happens to a unit, a sensor or a store."""

    at: str
    event: EventKind
    asset: str | None = None
    sensor: str | None = None
    store: str | None = None
    fault: FaultKind | None = None
    # refrigerant_leak: share of cooling lost per day; drift: K/day; spikes: probability
    amount: float | None = None
    replay: bool = True  # network_drop: buffered readings are sent when it comes back

    @model_validator(mode="after")
    def _target(self) -> TimelineEvent:
        needs = {
            "power_outage": "store", "power_restored": "store", "network_drop": "store",
            "network_restored": "store", "sensor_fault": "sensor", "sensor_ok": "sensor",
        }  # fmt: skip
        field = needs.get(self.event, "asset")
        if getattr(self, field) is None:
            raise ValueError(f"{self.event} needs a {field}")
        if self.event == "sensor_fault" and self.fault is None:
            raise ValueError("sensor_fault needs a fault")
        return self


class SimulationSpec(_Model):
    """The simulated period."""

    start: str
    duration: Duration
    step: Duration = 30.0
    seed: int = 42
    ambient_c: float = 24.0  # store air around the units, daily mean
    # HVAC set back while the store is closed raises the air around the units (§C.5).
    night_setback_k: float = 0.0


class Generate(_Model):
    """Extra stores generated deterministically (large, fault-free background)."""

    stores: int = Field(ge=1, le=100_000)
    prefix: str = "g"
    country: str = "MX"
    timezone: str = "America/Mexico_City"
    language: Literal["es", "pt", "en"] = "es"
    hours: dict[str, str] = Field(default_factory=lambda: {"mon-sun": "07:00-22:00"})
    assets: dict[AssetType, int] = Field(
        default_factory=lambda: {
            AssetType.DAIRY_CASE: 2,
            AssetType.MEAT_CASE: 1,
            AssetType.FROZEN_CASE: 1,
            AssetType.WALKIN_COOLER: 1,
        }
    )
    families: list[str] = Field(default_factory=lambda: ["native", "tasmota", "shelly"])
    interval: Duration = 300.0


class Scenario(_Model):
    """A whole scenario file."""

    name: str
    description: str = ""
    simulation: SimulationSpec
    chain: dict[str, Any]
    generate: Generate | None = None
    timeline: list[TimelineEvent] = Field(default_factory=list)

    def full_chain(self) -> Chain:
        """The chain, with generated stores added."""
        data = {k: list(v) for k, v in self.chain.items()}
        if self.generate is not None:
            for kind, items in generate_chain(self.generate).items():
                data.setdefault(kind, []).extend(items)
        return parse_chain(data, f"scenario {self.name}")

    def zone(self) -> ZoneInfo:
        """The scenario's reference timezone (first store's)."""
        stores = self.chain.get("stores") or []
        name = stores[0].get("timezone", "UTC") if stores else "UTC"
        return ZoneInfo(name)

    def start(self) -> datetime:
        """The simulated start instant (timezone-aware)."""
        moment = datetime.fromisoformat(self.simulation.start)
        return moment if moment.tzinfo else moment.replace(tzinfo=self.zone())

    def end(self) -> datetime:
        """The simulated end instant."""
        return self.start() + timedelta(seconds=self.simulation.duration)

    def shifted_to_end_before(self, instant: datetime) -> Scenario:
        """The same scenario moved by whole days to end at or before ``instant``.

        Local times of day (the store closing, the 23:10 failure) stay as written; readings
        then carry past timestamps an ingester running on the real clock accepts.
        """
        start, end = self.start(), self.end()
        # Whole days back (or forward, for an old scenario) so the end lands in the day
        # before ``instant``: inside ingest's plausibility window whenever it runs.
        shift = timedelta(days=math.ceil((end - instant).total_seconds() / 86400))
        if shift.days == 0:
            return self
        moved = (start - shift).isoformat()
        simulation = self.simulation.model_copy(update={"start": moved})
        timeline = [
            e.model_copy(update={"at": (self.when(e) - shift).isoformat()})
            if not (len(e.at.strip()) == 5 or e.at.strip().startswith("+"))
            else e
            for e in self.timeline
        ]
        return self.model_copy(update={"simulation": simulation, "timeline": timeline})

    def when(self, event: TimelineEvent) -> datetime:
        """The instant of an event."""
        start = self.start()
        text = event.at.strip()
        if text.startswith("+"):
            from core.chain import parse_duration

            return start + timedelta(seconds=parse_duration(text[1:]))
        if len(text) == 5 and text[2] == ":":
            hour, minute = int(text[:2]), int(text[3:])
            local = start.astimezone(self.zone())
            moment = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if moment < local:
                moment += timedelta(days=1)
            return moment
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=self.zone())


# Defrost per asset type for generated assets: (defrosts a day, minutes, recovery minutes),
# as the physics models them (simulator/units.py, research §C.3).
DEFROSTS: dict[AssetType, tuple[int, int, int]] = {
    AssetType.DAIRY_CASE: (3, 30, 30),
    AssetType.MEAT_CASE: (4, 30, 30),
    AssetType.PRODUCE_CASE: (2, 30, 30),
    AssetType.FROZEN_CASE: (2, 40, 45),
    AssetType.ICE_CREAM_CASE: (1, 45, 45),
    AssetType.WALKIN_COOLER: (3, 30, 30),
    AssetType.WALKIN_FREEZER: (4, 40, 50),
    AssetType.PHARMACY_FRIDGE: (2, 20, 30),
}


def defrost_for(asset_type: AssetType, stagger: int) -> dict[str, Any]:
    """Evenly spaced defrosts, shifted by ``stagger`` x 10 min as a rack controller does."""
    per_day, minutes, recovery = DEFROSTS[asset_type]
    spacing = 24 * 60 // per_day
    offset = (stagger * 10) % spacing
    times = [f"{(offset + k * spacing) // 60:02d}:{(offset + k * spacing) % 60:02d}"
             for k in range(per_day)]  # fmt: skip
    return {"times": times, "duration": f"{minutes}m", "recovery": f"{recovery}m"}


def generate_chain(spec: Generate) -> dict[str, list[dict[str, Any]]]:
    """Stores with assets and one sensor per asset, families round-robin."""
    stores: list[dict[str, Any]] = []
    assets: list[dict[str, Any]] = []
    sensors: list[dict[str, Any]] = []
    family_index = 0
    for n in range(spec.stores):
        store = f"{spec.prefix}{n + 1:03d}"
        stores.append({"id": store, "name": f"Tienda {n + 1}", "country": spec.country,
                       "timezone": spec.timezone, "language": spec.language,
                       "hours": spec.hours})  # fmt: skip
        for asset_type, count in spec.assets.items():
            for k in range(count):
                asset = f"{store}-{asset_type.value.replace('_', '')}{k + 1}"
                label = f"{asset_type.value.replace('_', ' ')} {k + 1}"
                assets.append({"id": asset, "store": store, "type": asset_type.value,
                               "name": label,
                               "defrost": defrost_for(asset_type, len(assets))})  # fmt: skip
                family = spec.families[family_index % len(spec.families)]
                family_index += 1
                sensors.append({"id": default_sensor_id(family, asset), "asset": asset,
                                "family": family, "interval": spec.interval})  # fmt: skip
    return {"stores": stores, "assets": assets, "sensors": sensors}


def default_sensor_id(family: str, asset: str) -> str:
    """A realistic sensor id for a generated asset in a given family."""
    return {
        "native": f"cc-{asset}",
        "tasmota": f"tasmota-{asset}:DS18B20-1",
        "shelly": f"shellyplus1-{asset}:temperature:100",
        "esphome": f"esp-{asset}:case_temp",
    }.get(family, f"cc-{asset}")


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIOS / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.yaml")))
        raise ConfigError(f"scenario {name_or_path!r} not found (built in: {known})")
    try:
        scenario = Scenario.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    scenario.full_chain()  # validate references now, naming the scenario
    return scenario
