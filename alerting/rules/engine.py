"""The rule engine: observations and time in, condition transitions out. No I/O.

A thin façade over one module per rule kind (each owns its state; see
:mod:`alerting.rules.base` for the shape they share):

==========================  =============================================================
``temperature``             budgets, hard limits, rise, defrost overrun
``defrost``                 declared and learned defrost windows (used by temperature)
``faults``                  fault values and stuck probes
``door``, ``battery``       doors left open, low batteries
``availability``            sensors silent, devices offline, store outages
``watchdog``                the chain-wide pipeline stall
``calibration``             sensors past their calibration date, per store
==========================  =============================================================

Driven by two calls, both taking the instant as an argument:

- :meth:`RuleEngine.observe` for every stored reading, fault or availability change;
- :meth:`RuleEngine.tick` periodically, for what happens by the passing of time alone.

A registry change builds a new engine and :meth:`RuleEngine.carry` hands it every piece
of state of what still exists (docs/design/state-continuity.md): a technician registering
a sensor in one store changes nothing for the budgets running in another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from alerting.conditions import (
    CALIBRATION_DUE,
    DEFROST_OVERRUN,
    DEVICE_OFFLINE,
    DOOR_OPEN,
    LOW_BATTERY,
    PIPELINE_STALLED,
    SENSOR_FAULT,
    SENSOR_SILENT,
    STORE_OUTAGE,
    TEMPERATURE,
    Condition,
    Transition,
)
from alerting.rules.availability import AvailabilityRule
from alerting.rules.base import Board, Topology
from alerting.rules.battery import BatteryRule
from alerting.rules.calibration import CalibrationRule
from alerting.rules.defrost import DefrostRule, Learned
from alerting.rules.door import DoorRule
from alerting.rules.faults import FaultRule
from alerting.rules.temperature import TemperatureRule
from alerting.rules.watchdog import WatchdogRule
from alerting.weights import WeightCalendar
from core.chain import Asset, Sensor, Store
from core.types import Quantity


class RuleEngine:
    """Evaluates every rule for a chain; see the module docstring."""

    def __init__(
        self,
        stores: Iterable[Store],
        assets: Iterable[Asset],
        sensors: Iterable[Sensor],
    ) -> None:
        self.topo = Topology(stores, assets, sensors)
        self.board = Board()
        self.defrost = DefrostRule(self.topo)
        self.faults = FaultRule(self.topo, self.board)
        self.temperature = TemperatureRule(self.topo, self.board, self.defrost, self.faults)
        self.door = DoorRule(self.topo, self.board)
        self.battery = BatteryRule(self.topo, self.board)
        self.availability = AvailabilityRule(self.topo, self.board)
        self.watchdog = WatchdogRule(self.topo, self.board, self.availability)
        self.calibration = CalibrationRule(self.topo, self.board)
        # The newest observation seen per (sensor, quantity): anything not newer is a
        # QoS 1 duplicate or a late copy, stored by ingest but news to no rule.
        self.newest: dict[tuple[str, Quantity], float] = {}
        self._by_kind: dict[str, Any] = {
            TEMPERATURE: self.temperature,
            DEFROST_OVERRUN: self.temperature,
            SENSOR_FAULT: self.faults,
            DOOR_OPEN: self.door,
            LOW_BATTERY: self.battery,
            SENSOR_SILENT: self.availability,
            DEVICE_OFFLINE: self.availability,
            STORE_OUTAGE: self.availability,
            PIPELINE_STALLED: self.watchdog,
            CALIBRATION_DUE: self.calibration,
        }

    # -- what callers read ------------------------------------------------------------

    @property
    def active(self) -> dict[str, Condition]:
        """The active conditions by key."""
        return self.board.active

    @property
    def calendars(self) -> dict[str, WeightCalendar]:
        """Criticality weights per store."""
        return self.topo.calendars

    @property
    def learned(self) -> dict[str, Learned]:
        """Learned defrost windows per asset (assets without a declared schedule)."""
        return self.defrost.learned

    @property
    def new_episodes(self) -> list[tuple[str, float, float]]:
        """Defrost episodes learned since the caller last took them (and emptied this)."""
        return self.defrost.new_episodes

    @new_episodes.setter
    def new_episodes(self, value: list[tuple[str, float, float]]) -> None:
        self.defrost.new_episodes = value

    # -- inputs -----------------------------------------------------------------------

    def observe(
        self,
        kind: str,
        ts_ms: int,
        *,
        sensor: str | None = None,
        device: str | None = None,
        quantity: Quantity | None = None,
        value: float | None = None,
        code: str | None = None,
    ) -> list[Transition]:
        """Feed one stored observation (``kind`` is reading, fault or status)."""
        ts = ts_ms / 1000.0
        out: list[Transition] = []
        if kind == "status" and device is not None and value is not None:
            self.availability.status(device, ts, online=value >= 0.5, out=out)
            return out
        spec = self.topo.by_sensor.get(sensor or "")
        if spec is None:
            return out
        self.availability.seen(spec, ts, out)
        self.watchdog.seen(spec, ts)
        if quantity is not None:
            stream = (spec.sensor, quantity)
            if ts <= self.newest.get(stream, -math.inf):
                return out  # a duplicate or a late copy: it must not confirm a spike, count
                # a fault twice, reopen a closed door or close an open one
            self.newest[stream] = ts
        if kind == "fault":
            self.faults.fault(spec, ts, code or "fault", out)
        elif kind == "reading" and value is not None and quantity is not None:
            if quantity is Quantity.TEMPERATURE:
                self.temperature.observe(spec, ts, value, out)
            elif quantity is Quantity.DOOR:
                self.door.observe(spec, ts, value, out)
            elif quantity is Quantity.BATTERY:
                self.battery.observe(spec, ts, value, out)
        return out

    def tick(self, now_ms: int, *, ingest_down_since_ms: int | None = None) -> list[Transition]:
        """Everything that happens by time alone, up to ``now_ms``.

        ``ingest_down_since_ms``: when the ingester's MQTT connection went down, if it is
        down now (``coldchain run`` knows; None elsewhere).
        """
        now = now_ms / 1000.0
        out: list[Transition] = []
        self.availability.tick_silence(now, out)
        self.door.tick(now, out)
        self.availability.tick_offline(now, out)
        self.availability.outage_check(now, out)
        down = ingest_down_since_ms / 1000.0 if ingest_down_since_ms is not None else None
        self.watchdog.tick(now, down, out)
        self.calibration.tick(now, out)
        return out

    def down_devices(self, store: str) -> set[str]:
        """Devices of a store that are offline (LWT) or whose sensors are all silent."""
        return self.availability.down_devices(store)

    # -- state across restarts, resolutions and reloads --------------------------------

    def restore(self, c: Condition) -> None:
        """Re-adopt a condition whose alert is still open (after a restart or reload), so
        that it can clear, instead of firing again or staying open forever."""
        self.board.active[c.key] = c
        rule = self._by_kind.get(c.kind)
        if rule is not None:
            rule.restore(c)

    def forget(self, key: str) -> None:
        """A person resolved the alert: drop the condition so it fires again if the
        problem is still there."""
        c = self.board.active.pop(key, None)
        if c is None:
            return
        rule = self._by_kind.get(c.kind)
        if rule is not None:
            rule.forget(c)

    def seed_learned(self, episodes: Iterable[tuple[str, float, float]]) -> None:
        """Relearn defrost windows from persisted episodes (a restart)."""
        self.defrost.seed(episodes)

    def resume(self, quiet_until: float) -> None:
        """The rules caught up on history and go live: absence (a sensor silent, a store
        quiet) is judged from ``quiet_until`` on, when what the broker kept for us has
        arrived (:data:`alerting.warmup.STARTUP_GRACE_S`). A sensor that stopped while
        nothing ran is then reported at once, not a whole silence period later."""
        self.availability.quiet_until = quiet_until
        self.watchdog.quiet_until = quiet_until

    def carry(self, previous: RuleEngine) -> None:
        """Take over ``previous``'s state (a registry change rebuilt the topology): every
        active condition, and each rule's state of the sensors, devices, stores and assets
        that still exist. A sensor moved to another asset starts its excursion afresh."""
        self.board.active = dict(previous.board.active)
        self.newest = {k: v for k, v in previous.newest.items() if k[0] in self.topo.by_sensor}
        self.defrost.carry(previous.defrost)
        self.faults.carry(previous.faults)
        self.temperature.carry(previous.temperature)
        self.door.carry(previous.door)
        self.battery.carry(previous.battery)
        self.availability.carry(previous.availability)
        self.watchdog.carry(previous.watchdog)
        self.calibration.carry(previous.calibration)

    def snapshot(self) -> dict[str, Any]:
        """Every rule's state as plain data (equal snapshots: equal futures)."""
        return {
            "active": self.board.snapshot(),
            "newest": {f"{s}/{q.value}": ts for (s, q), ts in sorted(self.newest.items())},
            "temperature": self.temperature.snapshot(),
            "defrost": self.defrost.snapshot(),
            "faults": self.faults.snapshot(),
            "door": self.door.snapshot(),
            "battery": self.battery.snapshot(),
            "availability": self.availability.snapshot(),
            "watchdog": self.watchdog.snapshot(),
            "calibration": self.calibration.snapshot(),
        }
