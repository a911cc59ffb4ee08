"""What every rule module shares: the chain as the rules see it, and the active board.

:class:`Topology` is the configuration side, rebuilt from the registry when a store,
asset or sensor changes: every sensor with its limits and reporting interval, and the
index arrays the vectorised checks use. It holds no state that time or readings change.

:class:`Board` holds the active conditions and turns a rule's decision into at most one
:class:`~alerting.conditions.Transition` (a condition fires once, only ever upgrades, and
clears once).

Every rule module follows one shape (docs/architecture.md, "Add a rule kind"): a class
built from ``(topology, board)`` that owns its state (per sensor, device, store or asset,
keyed by id, never by array position alone), with ``restore(condition)`` (an open alert
after a restart), ``forget(condition)`` (a person resolved it), ``carry(previous)`` (a
registry change: take over the previous instance's state for what still exists) and
``snapshot()`` (a plain-data view of the state, for tests and inspection).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from alerting.conditions import LEVELS, Condition, Transition
from alerting.profiles import Limits, limits_for
from alerting.weights import WeightCalendar
from core.chain import Asset, Sensor, Store
from core.types import split_sensor_id


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One registered sensor as the rules see it (configuration only)."""

    slot: int  # its index in the per-sensor arrays of this topology
    sensor: str
    device: str
    store: str
    asset: str
    asset_name: str
    limits: Limits
    interval_s: float
    store_slot: int  # the index of its store in the per-store arrays
    calibration_due: date | None = None  # the last day its calibration is valid


class Topology:
    """Stores, assets and sensors, with the indexes the vectorised checks need."""

    def __init__(self, stores: Iterable[Store], assets: Iterable[Asset], sensors: Iterable[Sensor]):
        self.stores = {s.id: s for s in stores}
        self.calendars = {sid: WeightCalendar(s) for sid, s in self.stores.items()}
        self.assets = {a.id: a for a in assets if a.store in self.stores}
        placed: list[tuple[Sensor, Asset]] = []
        for sensor in sensors:
            asset = self.assets.get(sensor.asset)
            if asset is not None:
                placed.append((sensor, asset))
        self.device_store: dict[str, str] = {}
        self.store_devices: dict[str, set[str]] = {}
        for sensor, asset in placed:
            device = split_sensor_id(sensor.id)[0]
            self.device_store[device] = asset.store
            self.store_devices.setdefault(asset.store, set()).add(device)
        self.devices = sorted(self.device_store)
        self.device_index = {d: i for i, d in enumerate(self.devices)}
        self.store_ids = sorted(self.store_devices)
        self.store_index = {s: i for i, s in enumerate(self.store_ids)}
        self.sensors: list[SensorSpec] = []
        for sensor, asset in placed:
            self.sensors.append(
                SensorSpec(
                    slot=len(self.sensors),
                    sensor=sensor.id,
                    device=split_sensor_id(sensor.id)[0],
                    store=asset.store,
                    asset=asset.id,
                    asset_name=asset.name,
                    limits=limits_for(asset, self.stores[asset.store]),
                    interval_s=sensor.interval,
                    store_slot=self.store_index[asset.store],
                    calibration_due=sensor.calibration_due,
                )
            )
        self.by_sensor = {s.sensor: s for s in self.sensors}
        self.by_asset: dict[str, list[SensorSpec]] = {}
        for spec in self.sensors:
            self.by_asset.setdefault(spec.asset, []).append(spec)
        self.slot_device: npt.NDArray[np.int64] = np.array(
            [self.device_index[s.device] for s in self.sensors], dtype=np.int64
        )
        self.device_store_slot: npt.NDArray[np.int64] = np.array(
            [self.store_index[self.device_store[d]] for d in self.devices], dtype=np.int64
        )
        self.slot_store: npt.NDArray[np.int64] = np.array(
            [s.store_slot for s in self.sensors], dtype=np.int64
        )
        self.device_sensors = np.bincount(self.slot_device, minlength=len(self.devices))
        self.store_device_count = np.bincount(self.device_store_slot, minlength=len(self.store_ids))
        self.intervals: npt.NDArray[np.float64] = np.array(
            [s.interval_s for s in self.sensors], dtype=np.float64
        )

    def weight(self, store: str, ts: float) -> tuple[float, str]:
        """The store's criticality weight at ``ts`` and its explanation."""
        weight = self.calendars[store].at(ts)
        return weight.value, weight.explain()

    def same_place(self, other: Topology, sensor: str) -> bool:
        """The sensor exists in both topologies on the same asset (its state carries)."""
        mine, theirs = self.by_sensor.get(sensor), other.by_sensor.get(sensor)
        return mine is not None and theirs is not None and mine.asset == theirs.asset

    def remap_sensors(
        self, other: Topology, values: npt.NDArray[Any], fill: Any
    ) -> npt.NDArray[Any]:
        """A per-sensor array of ``other`` re-indexed for this topology (by sensor id)."""
        out = np.full(len(self.sensors), fill, dtype=values.dtype)
        for spec in self.sensors:
            old = other.by_sensor.get(spec.sensor)
            if old is not None:
                out[spec.slot] = values[old.slot]
        return out

    def remap_stores(
        self, other: Topology, values: npt.NDArray[Any], fill: Any
    ) -> npt.NDArray[Any]:
        """A per-store array of ``other`` re-indexed for this topology (by store id)."""
        out = np.full(len(self.store_ids), fill, dtype=values.dtype)
        for index, store in enumerate(self.store_ids):
            old = other.store_index.get(store)
            if old is not None:
                out[index] = values[old]
        return out

    def remap_devices(
        self, other: Topology, values: npt.NDArray[Any], fill: Any
    ) -> npt.NDArray[Any]:
        """A per-device array of ``other`` re-indexed for this topology (by device id)."""
        out = np.full(len(self.devices), fill, dtype=values.dtype)
        for index, device in enumerate(self.devices):
            old = other.device_index.get(device)
            if old is not None:
                out[index] = values[old]
        return out


class Board:
    """The active conditions, and the only place transitions are made."""

    def __init__(self) -> None:
        self.active: dict[str, Condition] = {}

    def fire(self, condition: Condition, ts: float, out: list[Transition]) -> None:
        """Fire, or upgrade when the condition is already active at a lower stage."""
        previous = self.active.get(condition.key)
        action = "fire" if previous is None else "upgrade"
        if previous is not None and LEVELS.get(condition.stage, 0) <= LEVELS.get(previous.stage, 0):
            return
        self.active[condition.key] = condition
        out.append(Transition(action, condition, round(ts * 1000)))

    def clear(
        self,
        key: str,
        ts: float,
        out: list[Transition],
        *,
        value: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Clear an active condition; ``value`` is the reading that cleared it, ``extra``
        says how (a pipeline stall explained it, or re-armed it)."""
        condition = self.active.pop(key, None)
        if condition is None:
            return
        if value is not None:  # the clearing reading, for the "back to normal" message
            condition = replace(condition, explanation={**condition.explanation, "now": value})
        if extra:
            condition = replace(condition, explanation={**condition.explanation, **extra})
        out.append(Transition("clear", condition, round(ts * 1000)))

    def snapshot(self) -> dict[str, Any]:
        """Active keys with their stage and start."""
        return {k: (c.stage, c.since_ms) for k, c in sorted(self.active.items())}


def plain(value: Any) -> Any:
    """A snapshot-friendly copy: NaN -> None, sets sorted, tuples as lists."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def by_id(ids: list[str], values: npt.NDArray[Any]) -> dict[str, Any]:
    """A per-id array as ``{id: value}`` (NaN as None)."""
    return {ident: plain(values[i].item()) for i, ident in enumerate(ids)}
