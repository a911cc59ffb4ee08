"""Temperature: excursion budgets, hard limits, early rise, defrost overrun.

``temperature:<asset>`` is one problem per asset that climbs rising < warning < critical
(DESIGN.md §4, docs/design/alerting.md):

- an excursion spends a budget in kelvin-seconds beyond the limit, multiplied by the
  store's criticality weight at that moment; the budget spent fires the severity; a hard
  ceiling or floor fires critical at once;
- inside limits (with hysteresis) the accumulators drain at 1 K, so time back in range is
  forgiven at the rate it was spent; clearing also needs ``clear_hold_s`` back in range;
- during a defrost and its recovery (:mod:`alerting.rules.defrost`), warn does not
  accumulate and the critical limit is raised to the defrost ceiling (research §B.6: MT
  10 °C, LT -5 °C); the hard limit rises to the defrost ceiling + 3 K only; a unit still
  above its warn limit when the recovery ends raises ``defrost_overrun``, the first stage
  of the same problem;
- a sustained rise faster than the profile's rate, near the limit and outside defrost, is
  an early *rising* stage of the same problem;
- a jump too fast to be air waits for the next reading to confirm it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from alerting.conditions import (
    CRITICAL,
    DEFROST_OVERRUN,
    LEVELS,
    STAGES,
    TEMPERATURE,
    WARNING,
    Condition,
    Transition,
)
from alerting.profiles import Limits
from alerting.rules.base import Board, SensorSpec, Topology
from alerting.rules.defrost import DefrostRule
from alerting.rules.faults import FaultRule

# Integrate an excursion across at most this many intervals between two readings: a gap
# is the silence rule's business, not a reason to assume the worst (or the best).
MAX_GAP_INTERVALS = 3.0
# Rate of rise is measured over windows of this length: shorter reacts to door openings,
# longer reacts late to a failed compressor.
RISE_WINDOW_S = 30 * 60
# Time constant of the moving average the rise is measured on: longer than a compressor
# cycle (10-25 min, §C.2) so cycling cancels out; much longer and a failure shows late.
RISE_SMOOTHING_S = 30 * 60
# A rise counts once the smoothed temperature is within this of the warn limit. Too small
# and the early warning comes when the budget is nearly spent anyway; too large and every
# pull-down after a door opening looks like a failure.
RISE_MARGIN_K = 2.0
# A jump faster than this between two readings is physically implausible for air in a
# refrigerated unit (research §C.8: reject > 3 K/min for walk-in air; long 1-Wire runs
# pick up 5-15 K spikes): the reading waits for the next one to confirm it. Too low and a
# door flung open on an open case is doubted; too high and EMI spikes hit hard ceilings.
SPIKE_K_PER_MIN = 5.0
# The next reading confirms a suspected jump when it is within this of it.
SPIKE_CONFIRM_K = 2.0
# During a defrost the hard limit is this far above the defrost ceiling. Too small and a
# normal defrost peak with a door opening is "critical at once"; too large and a stuck
# defrost is only caught by its budget.
DEFROST_HARD_MARGIN_K = 3.0


@dataclass(slots=True)
class _Excursion:
    """Per sensor: what the temperature rules remember between readings."""

    last_ts: float | None = None
    last_value: float | None = None
    hi_warn: float = 0.0  # kelvin-seconds spent beyond the high warn limit
    hi_crit: float = 0.0
    lo_warn: float = 0.0
    lo_crit: float = 0.0
    excursion_since: float | None = None
    clear_since: float | None = None
    level: int = 0  # 0 ok, 1 rising, 2 warning, 3 critical
    side: str = "high"
    rise_anchor: tuple[float, float] | None = None
    rise_slope: float = 0.0
    ema: float | None = None
    ema_ts: float | None = None
    suspect: tuple[float, float] | None = None  # (ts, value) of an unconfirmed jump
    spikes: int = 0
    in_defrost_prev: bool = False
    learned_defrost: str | None = None  # the learned window the last reading was in


class TemperatureRule:
    """``temperature:<asset>`` from temperature readings."""

    kinds = frozenset({TEMPERATURE, DEFROST_OVERRUN})

    def __init__(
        self, topo: Topology, board: Board, defrost: DefrostRule, faults: FaultRule
    ) -> None:
        self.topo = topo
        self.board = board
        self.defrost = defrost
        self.faults = faults
        self.states = {s.sensor: _Excursion() for s in topo.sensors}

    def observe(self, spec: SensorSpec, ts: float, value: float, out: list[Transition]) -> None:
        self.faults.expire(spec, ts, out)
        s = self.states[spec.sensor]
        prev_ts, prev_value = s.last_ts, s.last_value
        if prev_ts is not None and ts <= prev_ts:
            return  # late or duplicate: stored, but the accumulators only move forward
        if prev_ts is not None and prev_value is not None and _implausible(s, ts, value):
            return
        s.last_ts, s.last_value = ts, value
        self.faults.stuck(spec, ts, value, out)
        lim = spec.limits
        phase, learned = self.defrost.phase(spec.asset, ts)
        if learned is not None:
            s.learned_defrost = learned.explain()
        weight, weight_text = self.topo.weight(spec.store, ts)
        self._overrun(spec, s, ts, value, phase, out)
        if prev_ts is None or prev_value is None:
            self._hard_limits(spec, s, ts, value, weight_text, out)
            return
        dt = min(ts - prev_ts, spec.interval_s * MAX_GAP_INTERVALS)
        mean = (prev_value + value) / 2.0
        crit_above = lim.critical_above
        if phase is not None and lim.defrost_ceiling is not None and crit_above is not None:
            crit_above = max(crit_above, lim.defrost_ceiling)
        warn_armed = phase is None
        s.hi_warn = _spend(s.hi_warn, mean, lim.warn_above, dt, weight, lim, armed=warn_armed)
        s.hi_crit = _spend(s.hi_crit, mean, crit_above, dt, weight, lim, armed=True)
        s.lo_warn = _spend(s.lo_warn, -mean, _neg(lim.warn_below), dt, weight, lim, warn_armed)
        s.lo_crit = _spend(s.lo_crit, -mean, _neg(lim.critical_below), dt, weight, lim, True)
        _rise(s, ts, value, phase)
        level, side, limit, budget_text = _level(s, lim, value, crit_above, weight)
        hard = _hard(value, lim, defrosting=phase is not None)
        if hard is not None:
            level, side, limit = 3, hard[0], hard[1]
            budget_text = f"hard {'ceiling' if side == 'high' else 'floor'} {limit:g} °C"
        outside = _outside(value, lim)
        if outside and s.excursion_since is None:
            s.excursion_since = prev_ts if _outside(prev_value, lim) else ts
        explanation: dict[str, Any] = {
            "reading": value,
            "limit": limit,
            "budget": budget_text,
            "weight": weight_text,
            "defrost": phase,
            "interval_s": spec.interval_s,
        }
        if learned is not None:
            explanation["learned_defrost"] = s.learned_defrost
        self._set_level(spec, s, ts, level, side, value, limit, explanation, out)
        self._maybe_clear(spec, s, ts, value, outside, out)
        alerting = s.level > 0 or f"{TEMPERATURE}:{spec.asset}" in self.board.active
        self.defrost.learn(spec, ts, value, alerting=alerting)
        if learned is None:
            s.learned_defrost = None

    def _hard_limits(
        self, spec: SensorSpec, s: _Excursion, ts: float, value: float, weight_text: str,
        out: list[Transition],
    ) -> None:  # fmt: skip
        hard = _hard(value, spec.limits)
        if hard is not None:
            explanation = {"reading": value, "limit": hard[1], "weight": weight_text,
                           "budget": f"hard limit {hard[1]:g} °C"}  # fmt: skip
            s.excursion_since = s.excursion_since or ts
            self._set_level(spec, s, ts, 3, hard[0], value, hard[1], explanation, out)

    def _overrun(
        self, spec: SensorSpec, s: _Excursion, ts: float, value: float, phase: str | None,
        out: list[Transition],
    ) -> None:  # fmt: skip
        """A unit still warm when its defrost recovery ended: the defrost did not end.

        It is the first stage of the asset's temperature problem (same key), so when the
        budget is spent later the same alert is upgraded rather than a second one opened.
        """
        was_in_defrost, s.in_defrost_prev = s.in_defrost_prev, phase is not None
        warn = spec.limits.warn_above
        if warn is None or f"{TEMPERATURE}:{spec.asset}" in self.board.active:
            return
        if was_in_defrost and phase is None and value > warn + spec.limits.hysteresis_k:
            s.level = LEVELS[WARNING]
            s.excursion_since = s.excursion_since or ts
            explanation: dict[str, Any] = {
                "reading": value, "limit": warn, "side": "high",
                "budget": "still above the warn limit when the defrost recovery ended",
            }  # fmt: skip
            if s.learned_defrost is not None:
                explanation["learned_defrost"] = s.learned_defrost
            self.board.fire(
                Condition(
                    f"{TEMPERATURE}:{spec.asset}", DEFROST_OVERRUN, WARNING, WARNING,
                    spec.store, spec.asset, spec.sensor, spec.device,
                    round(s.excursion_since * 1000), value, warn, explanation,
                ),
                ts,
                out,
            )  # fmt: skip

    def _set_level(
        self, spec: SensorSpec, s: _Excursion, ts: float, level: int, side: str, value: float,
        limit: float | None, explanation: dict[str, Any], out: list[Transition],
    ) -> None:  # fmt: skip
        if level <= s.level:
            return
        if s.excursion_since is None:
            s.excursion_since = ts  # the problem starts at its first stage (maybe "rising")
        s.level, s.side = level, side
        stage = STAGES[level]
        since = s.excursion_since if s.excursion_since is not None else ts
        condition = Condition(
            key=f"{TEMPERATURE}:{spec.asset}",
            kind=TEMPERATURE,
            severity=CRITICAL if level == 3 else WARNING,
            stage=stage,
            store=spec.store,
            asset=spec.asset,
            sensor=spec.sensor,
            device=spec.device,
            since_ms=round(since * 1000),
            value=value,
            limit=limit,
            explanation={**explanation, "side": side, "stage": stage},
        )
        self.board.fire(condition, ts, out)

    def _maybe_clear(
        self, spec: SensorSpec, s: _Excursion, ts: float, value: float, outside: bool,
        out: list[Transition],
    ) -> None:  # fmt: skip
        lim = spec.limits
        back_in = not _outside(value, lim, margin=lim.hysteresis_k)
        # A "rising" problem is below the limit by definition: it clears when the rise
        # stops (half the alarm rate), not merely for being in range.
        still_rising = s.level == 1 and s.rise_slope * 3600 >= lim.rise_k_per_h / 2
        if not back_in or still_rising:
            s.clear_since = None
            return
        if s.level == 0 and not outside:
            s.excursion_since = None
            return
        if s.clear_since is None:
            s.clear_since = ts
        if s.level > 0 and ts - s.clear_since >= lim.clear_hold_s:
            s.level = 0
            s.hi_warn = s.hi_crit = s.lo_warn = s.lo_crit = 0.0
            s.excursion_since = None
            s.clear_since = None
            s.rise_slope = 0.0
            # Another sensor of the same asset may still be out of range.
            others = self.topo.by_asset.get(spec.asset, [])
            if any(self.states[o.sensor].level > 0 for o in others if o.sensor != spec.sensor):
                return
            self.board.clear(f"{TEMPERATURE}:{spec.asset}", ts, out, value=value)

    # -- state across restarts, resolutions and reloads --------------------------------

    def _state_for(self, c: Condition) -> _Excursion | None:
        """The sensor that holds an asset's problem: the condition's own, if it is still
        on that asset, else the asset's first."""
        spec = self.topo.by_sensor.get(c.sensor or "")
        if spec is None or spec.asset != c.asset:
            others = self.topo.by_asset.get(c.asset or "", [])
            spec = others[0] if others else None
        return self.states[spec.sensor] if spec is not None else None

    def restore(self, c: Condition) -> None:
        s = self._state_for(c)
        if s is None:
            return
        s.level = LEVELS.get(c.stage, 2)
        s.side = str(c.explanation.get("side", "high"))
        s.excursion_since = c.since_ms / 1000.0

    def forget(self, c: Condition) -> None:
        """The spent budgets are kept, so it fires on the next reading rather than after a
        whole new budget, if the problem is still there."""
        for other in self.topo.by_asset.get(c.asset or "", []):
            self.states[other.sensor].level = 0

    def carry(self, previous: TemperatureRule) -> None:
        for sensor, state in previous.states.items():
            if self.topo.same_place(previous.topo, sensor):
                self.states[sensor] = state

    def snapshot(self) -> dict[str, Any]:
        return {k: asdict(v) for k, v in sorted(self.states.items())}


def _implausible(s: _Excursion, ts: float, value: float) -> bool:
    """A jump too fast to be air: hold it until the next reading confirms it."""
    assert s.last_ts is not None
    assert s.last_value is not None
    rate = abs(value - s.last_value) / max((ts - s.last_ts) / 60.0, 1e-6)
    if rate <= SPIKE_K_PER_MIN:
        s.suspect = None
        return False
    if s.suspect is not None and abs(value - s.suspect[1]) <= SPIKE_CONFIRM_K:
        s.suspect = None  # two readings agree: a real step change
        return False
    s.suspect = (ts, value)
    s.spikes += 1
    return True


def _rise(s: _Excursion, ts: float, value: float, phase: str | None) -> None:
    """Slope of the smoothed temperature over the last window (K/s).

    The raw air temperature of a healthy unit is a sawtooth (a walk-in cycles 2.5 K
    every ~25 min, research §C.2), whose 30-min slopes reach several K/h; its moving
    average barely moves, while a failed compressor lifts the average steadily.
    """
    if s.ema is None or s.ema_ts is None:
        s.ema, s.ema_ts = value, ts
    else:
        s.ema += (value - s.ema) * (1.0 - math.exp(-(ts - s.ema_ts) / RISE_SMOOTHING_S))
        s.ema_ts = ts
    if phase is not None:
        s.rise_anchor, s.rise_slope = None, 0.0
        return
    if s.rise_anchor is None:
        s.rise_anchor = (ts, s.ema)
        return
    anchor_ts, anchor_value = s.rise_anchor
    if ts - anchor_ts >= RISE_WINDOW_S:
        s.rise_slope = (s.ema - anchor_value) / (ts - anchor_ts)
        s.rise_anchor = (ts, s.ema)


def _level(
    s: _Excursion, lim: Limits, value: float, crit_above: float | None, weight: float
) -> tuple[int, str, float | None, str]:
    """The stage the accumulators (and the rise) put this sensor at.

    The weight lowers the rise rate that counts as a problem, as it shortens budgets:
    on a peak day or at night a slower climb is worth an early word. (It does not widen
    the margin: 4 K below a walk-in's limit is its normal band.)
    """
    level, side, limit, budget_text = 0, "high", None, ""
    if s.hi_crit >= lim.critical_budget_ks:
        level, limit = 3, crit_above
        budget_text = _budget(s.hi_crit, lim.critical_budget_ks)
    elif s.lo_crit >= lim.critical_budget_ks:
        level, side, limit = 3, "low", lim.critical_below
        budget_text = _budget(s.lo_crit, lim.critical_budget_ks)
    elif s.hi_warn >= lim.warn_budget_ks:
        level, limit = 2, lim.warn_above
        budget_text = _budget(s.hi_warn, lim.warn_budget_ks)
    elif s.lo_warn >= lim.warn_budget_ks:
        level, side, limit = 2, "low", lim.warn_below
        budget_text = _budget(s.lo_warn, lim.warn_budget_ks)
    elif s.rise_slope * 3600 * weight >= lim.rise_k_per_h and _near_high(
        s.ema or value, lim, margin=RISE_MARGIN_K
    ):
        level, limit = 1, lim.warn_above
        budget_text = f"rising {s.rise_slope * 3600:.1f} K/h"
    return level, side, limit, budget_text


def _neg(value: float | None) -> float | None:
    return -value if value is not None else None


def _spend(
    acc: float,
    mean: float,
    limit: float | None,
    dt: float,
    weight: float,
    lim: Limits,
    armed: bool,
) -> float:
    """Spend (beyond ``limit``) or drain (back inside with hysteresis) one accumulator."""
    if limit is None:
        return 0.0
    excess = mean - limit
    if excess > 0:
        return acc + excess * dt * weight if armed else acc
    if excess < -lim.hysteresis_k:
        return max(0.0, acc - dt)  # drain at 1 K: time back in range forgives
    return acc


def _hard(value: float, lim: Limits, *, defrosting: bool = False) -> tuple[str, float] | None:
    ceiling = lim.hard_ceiling
    if defrosting and ceiling is not None and lim.defrost_ceiling is not None:
        # Defrost air normally peaks near the defrost ceiling (LT cases at -5..0 °C, MT
        # units +6-8 K, §C.3), above an LT case's -9 °C hard ceiling and close to a
        # walk-in's: during a defrost the hard limit sits DEFROST_HARD_MARGIN_K above the
        # defrost ceiling (whose own budget keeps counting).
        ceiling = max(ceiling, lim.defrost_ceiling + DEFROST_HARD_MARGIN_K)
    if ceiling is not None and value >= ceiling:
        return "high", ceiling
    if lim.hard_floor is not None and value <= lim.hard_floor:
        return "low", lim.hard_floor
    return None


def _outside(value: float, lim: Limits, margin: float = 0.0) -> bool:
    if lim.warn_above is not None and value > lim.warn_above - margin:
        return True
    return lim.warn_below is not None and value < lim.warn_below + margin


def _near_high(value: float, lim: Limits, margin: float) -> bool:
    """Within ``margin`` of the warn limit (a rise far below it is a normal pull-up)."""
    return lim.warn_above is not None and value >= lim.warn_above - margin


def _budget(spent: float, budget: float) -> str:
    return f"{spent / 60:.0f} of {budget / 60:.0f} K·min spent"
