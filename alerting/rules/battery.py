"""Low battery: ``low_battery:<sensor>`` below the profile's limit, with hysteresis."""

from __future__ import annotations

from typing import Any

from alerting.conditions import LOW_BATTERY, WARNING, Condition, Transition
from alerting.rules.base import Board, SensorSpec, Topology, plain

# Clear only this far above the low limit: a battery hovering at the limit (it reads
# higher when warm) must not fire and clear every day. Larger and a new battery is needed
# to clear it.
BATTERY_HYSTERESIS_PCT = 5.0


class BatteryRule:
    """``low_battery:<sensor>`` from battery readings."""

    kinds = frozenset({LOW_BATTERY})

    def __init__(self, topo: Topology, board: Board) -> None:
        self.topo = topo
        self.board = board
        self.low: set[str] = set()  # sensors whose battery is low now

    def observe(self, spec: SensorSpec, ts: float, value: float, out: list[Transition]) -> None:
        low = spec.limits.low_battery_pct
        key = f"{LOW_BATTERY}:{spec.sensor}"
        if value < low and spec.sensor not in self.low:
            self.low.add(spec.sensor)
            self.board.fire(
                Condition(key, LOW_BATTERY, WARNING, WARNING, spec.store, spec.asset,
                          spec.sensor, spec.device, round(ts * 1000), value, low,
                          {"battery_pct": value, "limit": low}),
                ts,
                out,
            )  # fmt: skip
        elif value >= low + BATTERY_HYSTERESIS_PCT and spec.sensor in self.low:
            self.low.discard(spec.sensor)
            self.board.clear(key, ts, out)

    def restore(self, c: Condition) -> None:
        if c.sensor in self.topo.by_sensor:
            self.low.add(c.sensor)

    def forget(self, c: Condition) -> None:
        self.low.discard(c.sensor or "")

    def carry(self, previous: BatteryRule) -> None:
        self.low = {s for s in previous.low if s in self.topo.by_sensor}

    def snapshot(self) -> dict[str, Any]:
        return {"low": plain(self.low)}
