"""The ingest hot path's view of the registry: sensor -> tags, refreshed on change.

Attribution rules (docs/design/sensor-ids.md):

1. a reading's sensor id is registered -> stored under it with its store/asset tags;
2. a device-level health reading (battery, signal on ``<device_id>``) whose device has
   registered channel sensors -> stored under each of them, so every sensor shows the
   battery and signal of the device that carries it;
3. otherwise the reading is unregistered: written with only the ``sensor`` tag (nothing is
   lost) and its device is listed as discovered for a technician to register.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from core.lineprotocol import escape_key
from core.registry import Registry, SensorInfo
from core.types import Quantity, split_sensor_id

HEALTH_QUANTITIES = frozenset({Quantity.BATTERY, Quantity.SIGNAL})
# The entity tables the index is built from (contacts and policies do not matter here).
INDEX_TABLES = ("stores", "assets", "sensors")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a reading goes: its registered sensor and the precomputed tag set."""

    info: SensorInfo
    tags: str  # ",asset=..,asset_type=..,sensor=..,store=.." (sorted, escaped)


def _tag_string(info: SensorInfo) -> str:
    pairs = sorted(
        {
            "asset": info.asset,
            "asset_type": info.asset_type,
            "sensor": info.sensor,
            "store": info.store,
        }.items()
    )
    return "".join(f",{k}={escape_key(v)}" for k, v in pairs if v)


class SensorIndex:
    """An immutable snapshot; :meth:`refresh` swaps in a new one when the registry changed."""

    def __init__(self, registry: Registry | None) -> None:
        self._registry = registry
        self._version = -1
        self.by_sensor: dict[str, Target] = {}
        self.by_device: dict[str, list[Target]] = {}
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild from the registry if a store, asset or sensor changed since. Returns
        True when a rebuild happened."""
        if self._registry is None:
            return False
        version = self._registry.entity_version(*INDEX_TABLES)
        if version == self._version and not force:
            return False
        self._version = version
        by_sensor = {
            sensor: Target(info, _tag_string(info))
            for sensor, info in self._registry.sensor_infos().items()
        }
        by_device: dict[str, list[Target]] = defaultdict(list)
        for sensor, target in by_sensor.items():
            by_device[split_sensor_id(sensor)[0]].append(target)
        # Swap whole references: readers in other threads see old or new, never half.
        self.by_sensor, self.by_device = by_sensor, dict(by_device)
        return True

    def targets(self, sensor: str, quantity: Quantity) -> list[Target]:
        """Registered sensors a reading belongs to (empty when unregistered)."""
        found = self.by_sensor.get(sensor)
        if found is not None:
            return [found]
        if quantity in HEALTH_QUANTITIES and ":" not in sensor:
            return self.by_device.get(sensor, [])
        return []

    def device_info(self, device_id: str) -> SensorInfo | None:
        """Any registered sensor's info for a device (its store and timezone)."""
        targets = self.by_device.get(device_id)
        return targets[0].info if targets else None
