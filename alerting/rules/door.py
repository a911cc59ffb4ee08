"""Doors left open: ``door_open:<asset>``, warn then critical, weighted like budgets.

Devices that sample the door with their other readings (not on change) can catch two
different openings in a row: DOOR_SAMPLES consecutive open samples prove one opening that
lasted. The open time is multiplied by the store's criticality weight (a door open at
night counts faster).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from alerting.conditions import CRITICAL, DOOR_OPEN, LEVELS, WARNING, Condition, Transition
from alerting.rules.base import Board, SensorSpec, Topology, plain

# Consecutive "open" samples before a door counts as left open. Too few and busy doors
# sampled every 5 min look stuck open; too many delays the alert for sensors that report
# slowly.
DOOR_SAMPLES = 3


@dataclass(slots=True)
class _Door:
    open_since: float | None = None
    samples: int = 0
    level: int = 0


class DoorRule:
    """``door_open:<asset>`` from door readings (1 open, 0 closed) and time."""

    kinds = frozenset({DOOR_OPEN})

    def __init__(self, topo: Topology, board: Board) -> None:
        self.topo = topo
        self.board = board
        self.states = {s.sensor: _Door() for s in topo.sensors}
        self.open: set[str] = set()  # sensors whose door is open now

    def observe(self, spec: SensorSpec, ts: float, value: float, out: list[Transition]) -> None:
        s = self.states[spec.sensor]
        if value >= 0.5:
            s.samples += 1
            if s.open_since is None:
                s.open_since = ts
                self.open.add(spec.sensor)
            self._check(spec, s, ts, out)
        else:
            s.samples = 0
            s.open_since = None
            self.open.discard(spec.sensor)
            if s.level:
                s.level = 0
                self.board.clear(f"{DOOR_OPEN}:{spec.asset}", ts, out)

    def tick(self, now: float, out: list[Transition]) -> None:
        """Doors still open get older."""
        for sensor in list(self.open):
            self._check(self.topo.by_sensor[sensor], self.states[sensor], now, out)

    def _check(self, spec: SensorSpec, s: _Door, now: float, out: list[Transition]) -> None:
        if s.open_since is None or s.samples < DOOR_SAMPLES:
            return
        weight, weight_text = self.topo.weight(spec.store, now)
        open_s = now - s.open_since
        lim = spec.limits
        level = 0
        if open_s * weight >= lim.door_critical_s:
            level = 3
        elif open_s * weight >= lim.door_warn_s:
            level = 2
        if level > s.level:
            s.level = level
            severity = CRITICAL if level == 3 else WARNING
            self.board.fire(
                Condition(
                    f"{DOOR_OPEN}:{spec.asset}", DOOR_OPEN, severity, severity, spec.store,
                    spec.asset, spec.sensor, spec.device, round(s.open_since * 1000), open_s,
                    lim.door_warn_s,
                    {"open_s": round(open_s), "weight": weight_text,
                     "limit": f"{lim.door_warn_s / 60:g}/{lim.door_critical_s / 60:g} min"},
                ),
                now,
                out,
            )  # fmt: skip

    def restore(self, c: Condition) -> None:
        s = self.states.get(c.sensor or "")
        if s is None:
            return
        s.level = LEVELS.get(c.stage, 2)
        s.open_since = c.since_ms / 1000.0
        s.samples = DOOR_SAMPLES
        self.open.add(c.sensor or "")

    def forget(self, c: Condition) -> None:
        s = self.states.get(c.sensor or "")
        if s is not None:
            s.level = 0

    def carry(self, previous: DoorRule) -> None:
        for sensor, state in previous.states.items():
            if self.topo.same_place(previous.topo, sensor):
                self.states[sensor] = state
                if sensor in previous.open:
                    self.open.add(sensor)

    def snapshot(self) -> dict[str, Any]:
        return {
            "sensors": {k: asdict(v) for k, v in sorted(self.states.items())},
            "open": plain(self.open),
        }
