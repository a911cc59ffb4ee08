"""Availability: sensors gone silent, devices offline, whole stores dark.

- ``sensor_silent:<sensor>``: no message for SILENT_INTERVALS reporting intervals
  (vectorised over every sensor in :meth:`AvailabilityRule.tick`);
- ``device_offline:<device>``: the device's last will (LWT) said offline for
  OFFLINE_GRACE_S (weighted like budgets);
- ``store_outage:<store>``: at least OUTAGE_MIN_DEVICES and OUTAGE_SHARE of a store's
  devices down (offline, or all their sensors silent) for OUTAGE_GRACE_S: one alert for a
  power cut or a dead gateway, which holds the store's other alerts
  (alerting/stages/inhibit.py).

After a pipeline stall (:mod:`alerting.rules.watchdog`) or a restart, the silence and
offline clocks of the sensors still silent are re-armed (:meth:`AvailabilityRule.rearm`):
they page after their normal grace from then, not for the gap itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from alerting.conditions import (
    CRITICAL,
    DEVICE_OFFLINE,
    SENSOR_SILENT,
    STORE_OUTAGE,
    WARNING,
    Condition,
    Transition,
)
from alerting.rules.base import Board, SensorSpec, Topology, by_id, plain

# A sensor is silent after this many reporting intervals without a message (research §0:
# 2.5-3x for sleepy devices); fewer pages on a single lost LoRa uplink, more delay.
SILENT_INTERVALS = 3.0
# LWT offline this long before device_offline fires (a Wi-Fi blip reconnects in seconds).
OFFLINE_GRACE_S = 5 * 60
# Store outage: at least this many devices, and this share of the store's devices, down.
OUTAGE_MIN_DEVICES = 2
OUTAGE_SHARE = 0.5
# Store outage must last this long before it fires: an access point rebooting takes every
# Wi-Fi device offline for a minute or two. Too short pages on blips; too long delays the
# one message that matters during a real power cut.
OUTAGE_GRACE_S = 2 * 60


class AvailabilityRule:
    """Silence, offline devices and store outages."""

    kinds = frozenset({SENSOR_SILENT, DEVICE_OFFLINE, STORE_OUTAGE})

    def __init__(self, topo: Topology, board: Board) -> None:
        self.topo = topo
        self.board = board
        count = len(topo.sensors)
        self.last_seen: npt.NDArray[np.float64] = np.full(count, np.nan)
        self.silent = np.zeros(count, dtype=bool)
        self.silence_after = topo.intervals * SILENT_INTERVALS
        # After a stall or a restart: silence is counted from here for the sensors it
        # re-armed (None when no re-arm is pending), and offline grace from here per device.
        self.silence_from: npt.NDArray[np.float64] | None = None
        self.silence_from_until = 0.0
        self.offline_grace_from: dict[str, float] = {}
        self.device_offline = np.zeros(len(topo.devices), dtype=bool)
        self.offline_since: dict[str, float] = {}
        self.offline_fired: set[str] = set()
        self.outage_since: dict[str, float] = {}
        self.outage: set[str] = set()
        # Whether an open pipeline stall covers a store (by store index): set by the
        # engine to the watchdog's answer. A store back during a stall had power all along.
        self.stall_covers: Callable[[int], bool] = lambda _index: False
        # Absence is not judged before this instant (start-up: RuleEngine.resume).
        self.quiet_until = 0.0

    # -- observations -----------------------------------------------------------------

    def seen(self, spec: SensorSpec, ts: float, out: list[Transition]) -> None:
        """Any stored message from the sensor (reading or fault)."""
        slot = spec.slot
        seen = self.last_seen[slot]
        if np.isnan(seen) or ts > seen:
            self.last_seen[slot] = ts
        if self.silent[slot]:
            self.silent[slot] = False
            self.board.clear(f"{SENSOR_SILENT}:{spec.sensor}", ts, out)

    def status(self, device: str, ts: float, *, online: bool, out: list[Transition]) -> None:
        """The device's availability (LWT) changed (unknown devices are ignored: a flood
        of invented ids must not grow the offline table every tick walks)."""
        index = self.topo.device_index.get(device)
        if index is None:
            return
        self.device_offline[index] = not online
        if online:
            self.offline_since.pop(device, None)
            self.offline_grace_from.pop(device, None)
            if device in self.offline_fired:
                self.offline_fired.discard(device)
                self.board.clear(f"{DEVICE_OFFLINE}:{device}", ts, out)
            if device in self.topo.device_store:
                self.outage_check(ts, out)
        else:
            self.offline_since.setdefault(device, ts)

    # -- time -------------------------------------------------------------------------

    def tick_silence(self, now: float, out: list[Transition]) -> None:
        if now <= self.quiet_until:
            return
        seen = self.last_seen
        counted_from = seen
        if self.silence_from is not None:
            if now > self.silence_from_until:
                self.silence_from = None  # every re-armed sensor reported or fired again
            else:
                counted_from = np.fmax(seen, self.silence_from)
        with np.errstate(invalid="ignore"):
            overdue = (now - counted_from) > self.silence_after
        for slot in np.flatnonzero(overdue & ~self.silent):
            s = self.topo.sensors[int(slot)]
            self.silent[slot] = True
            _weight, weight_text = self.topo.weight(s.store, now)
            last = round(float(seen[slot]) * 1000)
            self.board.fire(
                Condition(f"{SENSOR_SILENT}:{s.sensor}", SENSOR_SILENT, WARNING, WARNING,
                          s.store, s.asset, s.sensor, s.device, last, None, None,
                          {"last_seen_ms": last,
                           "silent_after_s": float(self.silence_after[slot]),
                           "weight": weight_text}),
                now,
                out,
            )  # fmt: skip

    def tick_offline(self, now: float, out: list[Transition]) -> None:
        for device, since in list(self.offline_since.items()):
            store = self.topo.device_store.get(device)
            if store is None or device in self.offline_fired:
                continue
            weight, weight_text = self.topo.weight(store, now)
            start = max(since, self.offline_grace_from.get(device, since))
            if (now - start) * weight >= OFFLINE_GRACE_S:
                self.offline_fired.add(device)
                self.board.fire(
                    Condition(f"{DEVICE_OFFLINE}:{device}", DEVICE_OFFLINE, WARNING, WARNING,
                              store, None, None, device, round(since * 1000), None, None,
                              {"offline_since_ms": round(since * 1000), "weight": weight_text}),
                    now,
                    out,
                )  # fmt: skip

    def _down_mask(self) -> npt.NDArray[np.bool_]:
        """Per device: offline (LWT) or every one of its sensors silent."""
        topo = self.topo
        silent_sensors = np.bincount(topo.slot_device[self.silent], minlength=len(topo.devices))
        all_silent: npt.NDArray[np.bool_] = silent_sensors == topo.device_sensors
        return np.logical_or(self.device_offline, all_silent)

    def down_devices(self, store: str) -> set[str]:
        """Devices of a store that are offline (LWT) or whose sensors are all silent."""
        down = self._down_mask()
        return {
            d for i, d in enumerate(self.topo.devices)
            if down[i] and self.topo.device_store[d] == store
        }  # fmt: skip

    def outage_check(self, now: float, out: list[Transition]) -> None:
        """Vectorised over stores: fire or clear ``store_outage`` where the share changed."""
        topo = self.topo
        if not topo.store_ids:
            return
        down = self._down_mask()
        down_per_store = np.bincount(topo.device_store_slot[down], minlength=len(topo.store_ids))
        share = down_per_store / np.maximum(topo.store_device_count, 1)
        firing = (down_per_store >= OUTAGE_MIN_DEVICES) & (share >= OUTAGE_SHARE)
        clearing = share < OUTAGE_SHARE / 2
        for store in list(self.outage_since):
            at = topo.store_index.get(store)
            if at is None or not firing[at]:
                del self.outage_since[store]  # came back within the grace period
        for index in np.flatnonzero(firing | clearing):
            store = topo.store_ids[int(index)]
            key = f"{STORE_OUTAGE}:{store}"
            total = int(topo.store_device_count[index])
            if firing[index] and store not in self.outage:
                since = self.outage_since.setdefault(store, now)
                if now - since < OUTAGE_GRACE_S:
                    continue
                self.outage.add(store)
                self.board.fire(
                    Condition(key, STORE_OUTAGE, CRITICAL, CRITICAL, store, None, None, None,
                              round(since * 1000), float(down_per_store[index]), float(total),
                              {"down": sorted(self.down_devices(store)), "devices": total}),
                    now,
                    out,
                )  # fmt: skip
            elif clearing[index] and store in self.outage:
                self.outage.discard(store)
                # Back while a stall explains it: not a power cut, so no pull-down hold.
                during = self.stall_covers(int(index))
                self.board.clear(key, now, out, extra={"during_stall": True} if during else None)

    def rearm(self, stores: npt.NDArray[np.bool_], now: float, out: list[Transition]) -> None:
        """The gap is over (a stall cleared): clear the silence, offline and outage alerts
        of ``stores`` (a mask over store indexes) and count their clocks from ``now``, so
        what is still silent pages after its normal grace, not for the gap."""
        rearmed = {"rearmed": True}
        topo = self.topo
        slots = stores[topo.slot_store]
        for slot in np.flatnonzero(slots & self.silent):  # only sensors still silent
            spec = topo.sensors[int(slot)]
            self.silent[slot] = False
            self.board.clear(f"{SENSOR_SILENT}:{spec.sensor}", now, out, extra=rearmed)
        self.count_from(slots & ~np.isnan(self.last_seen), now)
        for device in list(self.offline_since):
            store = topo.device_store.get(device)
            if store is None or not stores[topo.store_index[store]]:
                continue
            self.offline_grace_from[device] = now
            if device in self.offline_fired:
                self.offline_fired.discard(device)
                self.board.clear(f"{DEVICE_OFFLINE}:{device}", now, out, extra=rearmed)
        for index in np.flatnonzero(stores):
            store = topo.store_ids[int(index)]
            self.outage_since.pop(store, None)
            if store in self.outage:
                self.outage.discard(store)
                self.board.clear(f"{STORE_OUTAGE}:{store}", now, out, extra=rearmed)

    def count_from(self, slots: npt.NDArray[np.bool_], start: float) -> None:
        """Count the silence of the sensors in ``slots`` from ``start`` at the earliest."""
        if not slots.any():
            return
        if self.silence_from is None:
            self.silence_from = np.full(len(self.topo.sensors), np.nan)
        self.silence_from[slots] = start
        self.silence_from_until = max(
            self.silence_from_until, start + float(np.max(self.silence_after[slots]))
        )

    # -- state across restarts, resolutions and reloads --------------------------------

    def restore(self, c: Condition) -> None:
        if c.kind == STORE_OUTAGE:
            self.outage.add(c.store)
        elif c.kind == DEVICE_OFFLINE and c.device is not None:
            self.offline_fired.add(c.device)
            self.offline_since.setdefault(c.device, c.since_ms / 1000.0)
            if (index := self.topo.device_index.get(c.device)) is not None:
                self.device_offline[index] = True
        elif c.kind == SENSOR_SILENT and (spec := self.topo.by_sensor.get(c.sensor or "")):
            self.silent[spec.slot] = True
            if np.isnan(self.last_seen[spec.slot]):  # so a re-arm can count from it
                self.last_seen[spec.slot] = c.since_ms / 1000.0

    def forget(self, c: Condition) -> None:
        if c.kind == STORE_OUTAGE:
            self.outage.discard(c.store)
        elif c.kind == DEVICE_OFFLINE and c.device is not None:
            self.offline_fired.discard(c.device)
        elif c.kind == SENSOR_SILENT and (spec := self.topo.by_sensor.get(c.sensor or "")):
            self.silent[spec.slot] = False

    def carry(self, previous: AvailabilityRule) -> None:
        """Clocks follow sensor, device and store ids; a moved sensor keeps its silence
        clock (it is the same probe), unlike its excursion."""
        old = previous.topo
        self.last_seen = self.topo.remap_sensors(old, previous.last_seen, np.nan)
        self.silent = self.topo.remap_sensors(old, previous.silent, False)
        if previous.silence_from is not None:
            self.silence_from = self.topo.remap_sensors(old, previous.silence_from, np.nan)
        self.silence_from_until = previous.silence_from_until
        self.offline_grace_from = dict(previous.offline_grace_from)
        self.device_offline = self.topo.remap_devices(old, previous.device_offline, False)
        self.offline_since = dict(previous.offline_since)
        self.offline_fired = set(previous.offline_fired)
        self.outage_since = {
            s: t for s, t in previous.outage_since.items() if s in self.topo.stores
        }
        self.outage = {s for s in previous.outage if s in self.topo.stores}
        self.quiet_until = previous.quiet_until

    def snapshot(self) -> dict[str, Any]:
        ids = [s.sensor for s in self.topo.sensors]
        return {
            "last_seen": by_id(ids, self.last_seen),
            "silent": sorted(ids[i] for i in np.flatnonzero(self.silent)),
            "silence_from": by_id(ids, self.silence_from)
            if self.silence_from is not None
            else None,
            "offline": sorted(self.topo.devices[i] for i in np.flatnonzero(self.device_offline)),
            "offline_since": plain(self.offline_since),
            "offline_fired": plain(self.offline_fired),
            "outage_since": plain(self.outage_since),
            "outage": plain(self.outage),
        }
