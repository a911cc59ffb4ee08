"""The ingest hot path's view of the registry: sensor -> tags, refreshed on change.

Attribution rules (docs/design/sensor-ids.md), per message:

1. a reading's sensor id is registered -> stored under it with its store/asset tags;
2. a registered bare ``<device_id>`` covers the device's one probe: when the device id
   itself reports no measurement (temperature, humidity, door) in the message and exactly
   one of its channels not registered under its own id reports a temperature, that
   channel's values are stored under ``<device_id>`` (a Tasmota with one DS18B20
   registered as ``cc-s900-wic2``; an LHT65N's built-in sensor beside a registered
   ``:ds`` probe). With several such channels the bare id is ambiguous: nothing is
   attributed through it, and the device is listed with the ids to register instead;
3. a device-level health reading (battery, signal on ``<device_id>``) whose device has
   registered channel sensors -> stored under each of them, so every sensor shows the
   battery and signal of the device that carries it;
4. otherwise the reading is unregistered: written to the ``unregistered`` measurement with
   its id as a field (nothing is lost, no series per invented id) and its device is listed
   as discovered for a technician to register.

Registration takes effect on the next message: an id the snapshot does not know makes
the index re-read the registry's entity version (one indexed read) before it is called
unregistered, and rebuild at once if a store, asset or sensor changed (see
:meth:`SensorIndex.recheck` for how that is bounded under a flood of unknown ids).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from core.lineprotocol import escape_key
from core.registry import Registry, SensorInfo
from core.types import Fault, Quantity, Reading, split_sensor_id
from ingest.budget import Budget

HEALTH_QUANTITIES = frozenset({Quantity.BATTERY, Quantity.SIGNAL})
# What makes a sensor a probe of its own, not the device's health.
MEASURES = frozenset({Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.DOOR})
# The entity tables the index is built from (contacts and policies do not matter here).
INDEX_TABLES = ("stores", "assets", "sensors")
# Re-reads of the registry version on an unknown id, as a token bucket: up to
# RECHECK_BURST at once, refilled at RECHECK_RATE per second. While tokens last every
# unknown id is checked, so a message published after the API answered a registration
# is attributed whatever the timing; under a flood of unknown ids one check per
# 1/RECHECK_RATE s still sees any registration older than that (a registration answered
# over HTTP and followed by an MQTT publish takes longer). Too low a rate and, during a
# flood, a message sent right after a registration could miss it; too high and a flood of
# junk ids costs the MQTT thread up to RECHECK_RATE x ~6 us of SQLite reads per second.
RECHECK_RATE = 1000.0
RECHECK_BURST = 100.0


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
        self._refresh_lock = threading.Lock()
        self._rechecks = Budget(RECHECK_RATE, RECHECK_BURST)
        self.rechecks = 0  # version re-reads on unknown ids (for tests and metrics)
        self.by_sensor: dict[str, Target] = {}
        self.by_device: dict[str, list[Target]] = {}
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild from the registry if a store, asset or sensor changed since. Returns
        True when a rebuild happened."""
        if self._registry is None:
            return False
        with self._refresh_lock:  # the MQTT and writer threads may both ask
            # Read before building: a change committed while building moves the version
            # again, so the next check rebuilds once more; it is never missed.
            version = self._registry.entity_version(*INDEX_TABLES)
            if version == self._version and not force:
                return False
            by_sensor = {
                sensor: Target(info, _tag_string(info))
                for sensor, info in self._registry.sensor_infos().items()
            }
            by_device: dict[str, list[Target]] = defaultdict(list)
            for sensor, target in by_sensor.items():
                by_device[split_sensor_id(sensor)[0]].append(target)
            # Swap whole references: readers in other threads see old or new, never half.
            self.by_sensor, self.by_device = by_sensor, dict(by_device)
            self._version = version
            return True

    def recheck(self) -> bool:
        """On an id the snapshot does not know: refresh now unless the bucket is empty.

        Returns True when the index was rebuilt (the caller looks the id up again).
        """
        if not self._rechecks.take():
            return False
        self.rechecks += 1
        return self.refresh()

    def targets(self, sensor: str, quantity: Quantity) -> list[Target]:
        """Registered sensors a reading belongs to (empty when unregistered)."""
        found = self.by_sensor.get(sensor)
        if found is not None:
            return [found]
        if quantity in HEALTH_QUANTITIES and ":" not in sensor:
            return self.by_device.get(sensor, [])
        return []

    def fold(
        self, device_id: str, readings: Iterable[Reading], faults: Iterable[Fault]
    ) -> tuple[str | None, Target | None, list[str]]:
        """Rule 2 for one message: (the channel sensor covered by the registered bare
        ``device_id``, its target, the probe channels when that is ambiguous).

        Returns ``(None, None, [])`` when the device id is not registered on its own or
        measures something itself, ``(None, None, [a, b])`` when several channels are
        candidates.
        """
        bare = self.by_sensor.get(device_id)
        if bare is None:
            return None, None, []
        probes: set[str] = set()
        values: list[tuple[str, Quantity]] = [(r.sensor, r.quantity) for r in readings]
        values += [(f.sensor, f.quantity) for f in faults]
        for sensor, quantity in values:
            if sensor == device_id:
                if quantity in MEASURES:
                    return None, None, []
            elif quantity is Quantity.TEMPERATURE and sensor not in self.by_sensor:
                probes.add(sensor)
        if len(probes) == 1:
            return probes.pop(), bare, []
        return None, None, sorted(probes)

    def device_info(self, device_id: str) -> SensorInfo | None:
        """Any registered sensor's info for a device (its store and timezone)."""
        targets = self.by_device.get(device_id)
        return targets[0].info if targets else None
