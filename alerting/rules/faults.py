"""Probe faults: fault values reported by the device, and probes stuck at one value.

Fault values (85.0 power-on, -127 disconnected, NaN, null, 327.67 absent probe ...) come
from the decoders as faults, never as temperatures. FAULTS_TO_ALERT of them within
FAULT_WINDOW_S raise ``sensor_fault``; a whole window of good readings clears it. A probe
whose readings stay within STUCK_TOLERANCE_K for STUCK_AFTER_S is a fault too (code
``stuck``): a working probe in a cycling unit never is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from alerting.conditions import SENSOR_FAULT, WARNING, Condition, Transition
from alerting.rules.base import Board, SensorSpec, Topology

# Faults (85.0, -127, NaN, null ...) this many times within the window raise sensor_fault;
# one power-on 85.0 after a brown-out is not worth a page.
FAULTS_TO_ALERT = 3
FAULT_WINDOW_S = 30 * 60
# Stuck probe: readings that stay within STUCK_TOLERANCE_K of one value for STUCK_AFTER_S
# (and at least STUCK_MIN_READINGS readings) are a sensor fault. A working air probe in a
# refrigerated unit moves by >= 0.5 K within an hour (compressor cycling, doors, defrost:
# research §C.2, §C.8), and any real change crosses a probe's resolution (0.0625 K for a
# DS18B20, 0.1 K for most LoRa sensors), so the tolerance only absorbs float noise from
# unit conversions. The window is 1.5x the research's 60-min example: shorter and a
# well-damped glycol probe on a quiet night could page; longer and a frozen probe hides a
# real failure for longer (it still reports a perfect temperature).
STUCK_TOLERANCE_K = 0.01
STUCK_AFTER_S = 90 * 60
# Sparse reporters need this many identical readings too (a 20-min LoRa sensor: 2 h).
STUCK_MIN_READINGS = 6
STUCK = "stuck"  # the sensor_fault code of a stuck probe


@dataclass(slots=True)
class _Probe:
    fault_window_start: float = 0.0
    fault_count: int = 0
    last_fault_ts: float = 0.0
    fault_active: bool = False
    last_fault_code: str | None = None
    stuck_value: float | None = None  # the value readings have stayed at ...
    stuck_since: float = 0.0  # ... since this reading
    stuck_readings: int = 0
    stuck_active: bool = False


class FaultRule:
    """``sensor_fault:<sensor>``: fault values, and stuck probes."""

    kinds = frozenset({SENSOR_FAULT})

    def __init__(self, topo: Topology, board: Board) -> None:
        self.topo = topo
        self.board = board
        self.states = {s.sensor: _Probe() for s in topo.sensors}

    def fault(self, spec: SensorSpec, ts: float, code: str, out: list[Transition]) -> None:
        """A fault value reported by the sensor."""
        s = self.states[spec.sensor]
        if ts - s.fault_window_start > FAULT_WINDOW_S:
            s.fault_window_start, s.fault_count = ts, 0
        s.fault_count += 1
        s.last_fault_code = code
        s.last_fault_ts = ts
        if s.fault_count >= FAULTS_TO_ALERT and not s.fault_active:
            s.fault_active = True
            self.board.fire(
                Condition(f"{SENSOR_FAULT}:{spec.sensor}", SENSOR_FAULT, WARNING, WARNING,
                          spec.store, spec.asset, spec.sensor, spec.device,
                          round(s.fault_window_start * 1000), None, None,
                          {"code": code, "faults": s.fault_count,
                           "window_min": FAULT_WINDOW_S // 60}),
                ts,
                out,
            )  # fmt: skip

    def expire(self, spec: SensorSpec, ts: float, out: list[Transition]) -> None:
        """A good reading: a whole window of them since the last fault clears it."""
        s = self.states[spec.sensor]
        if s.fault_active and ts - s.last_fault_ts >= FAULT_WINDOW_S:
            s.fault_active = False  # a whole window of good readings: the probe is fine
            if not s.stuck_active:
                self.board.clear(f"{SENSOR_FAULT}:{spec.sensor}", ts, out)

    def stuck(self, spec: SensorSpec, ts: float, value: float, out: list[Transition]) -> None:
        """A probe whose readings no longer move is a fault, whatever value it repeats."""
        s = self.states[spec.sensor]
        moved = s.stuck_value is not None and abs(value - s.stuck_value) > STUCK_TOLERANCE_K
        if s.stuck_value is None or moved:
            s.stuck_value, s.stuck_since, s.stuck_readings = value, ts, 1
            if moved and s.stuck_active:
                s.stuck_active = False
                if not s.fault_active:
                    self.board.clear(f"{SENSOR_FAULT}:{spec.sensor}", ts, out)
            return
        s.stuck_readings += 1
        unchanged = ts - s.stuck_since
        if s.stuck_active or unchanged < STUCK_AFTER_S or s.stuck_readings < STUCK_MIN_READINGS:
            return
        s.stuck_active = True
        self.board.fire(
            Condition(f"{SENSOR_FAULT}:{spec.sensor}", SENSOR_FAULT, WARNING, WARNING,
                      spec.store, spec.asset, spec.sensor, spec.device,
                      round(s.stuck_since * 1000), value, None,
                      {"code": STUCK, "reading": value, "readings": s.stuck_readings,
                       "unchanged_min": round(unchanged / 60),
                       "tolerance_k": STUCK_TOLERANCE_K}),
            ts,
            out,
        )  # fmt: skip

    def restore(self, c: Condition) -> None:
        s = self.states.get(c.sensor or "")
        if s is None:
            return
        if c.explanation.get("code") == STUCK:
            s.stuck_active = True  # clears when a reading moves off the next one seen
        else:
            s.fault_active = True
            s.fault_window_start = c.since_ms / 1000.0

    def forget(self, c: Condition) -> None:
        s = self.states.get(c.sensor or "")
        if s is not None:
            s.fault_active = False
            s.fault_count = 0
            s.stuck_active = False

    def carry(self, previous: FaultRule) -> None:
        for sensor, state in previous.states.items():
            if self.topo.same_place(previous.topo, sensor):
                self.states[sensor] = state

    def snapshot(self) -> dict[str, Any]:
        return {k: asdict(v) for k, v in sorted(self.states.items())}
