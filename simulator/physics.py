"""A vectorised two-node thermal model of many refrigerated units (domain.md §C.9).

Each unit has an air node ``Ta`` and a product node ``Tp``::

    dTa/dt = g_leak·(Tamb - Ta) + g_ap·(Tp - Ta) - on·cooling + heater·defrost_heat
    dTp/dt = g_p·(Ta - Tp)

``g_leak`` grows while the door is open and shrinks behind a night curtain; ``on`` is a
thermostat with hysteresis on the air temperature, forced off during a defrost, a drip
period, a compressor failure or a power cut. The parameters per asset type live in
:mod:`simulator.units`.

Between events the equations are linear with constant inputs, so each sub-step is solved
exactly (a closed-form 2x2 matrix exponential): any ``dt`` is stable, however short the
time constant (an open door, a night curtain). Sub-steps of at most :data:`MAX_SUBSTEP_S`
only serve the discrete events: thermostat switching, door closing and defrost ending.

Everything is an array over units; there is no Python loop over units (100k units take
about 20 ms per sub-step on one core, so a 30 s step costs ~50 ms). Randomness (door
openings, the initial state, default defrost times) comes from the
``numpy.random.Generator`` passed in, so a seed reproduces a run exactly.

Time of day is the caller's: ``step`` takes each unit's local time of day, so stores in
different time zones (and DST) need nothing here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from core.chain import AssetType
from simulator.units import PARAMS, UnitParams

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
Index = int | Sequence[int] | npt.NDArray[np.integer]

DAY_S = 86_400.0

# Longest internal sub-step. The thermostat, door closings and defrost termination are
# checked once per sub-step. Too long: the air overshoots the differential by
# cooling·substep (an open case cools 0.75 K/min: 0.2 K at 15 s, 0.75 K at 60 s) and door
# openings are smeared. Too short: CPU time grows linearly for no visible gain.
MAX_SUBSTEP_S = 15.0

# Door openings last a lognormal time of 5-60 s (§C.9). Median 15 s with sigma = 0.7 puts most
# mass in 6-40 s; the clip keeps the tails inside §C.9's range. A larger median makes every
# opening warm the walk-in more; a smaller one makes doors almost invisible.
DOOR_MEDIAN_S = 15.0
DOOR_SIGMA = 0.7
DOOR_MIN_S = 5.0
DOOR_MAX_S = 60.0

# Evaporator fan failure (§C.7): the coil ices and airflow stops, so the coil removes only a
# fraction of its heat and the air stops stirring the product. Cooling factor: too high and
# a fan failure looks like nothing; too low and it looks like a compressor failure (air
# heading for ambient). §C.7 wants the return air +3-6 K over 1-3 h. Coupling factor:
# natural instead of forced convection; too high and air and product move together (no
# divergence signature); too low and the product is frozen in time.
FAN_FAILED_COOLING = 0.2
FANS_OFF_COUPLING = 0.3

# A door left ajar ices the coil (§C.4: "then climbs slowly as the coil ices"): capacity
# decays with this time constant while the door stays open. Too short and an ajar door is a
# compressor failure within the hour; too long and the slow climb never shows.
ICE_TAU_S = 4 * 3600.0

# A door left ajar is a gap, not a door held wide open: it lets in this fraction of the
# extra infiltration of a full opening. §C.4 wants both a 1-3 K bump per opening and only
# 3-6 K in 10-20 min for an ajar walk-in door; one factor cannot give both. Too high and an
# ajar door runs away within minutes; too low and it is hard to tell from a closed one.
AJAR_OPEN_FRACTION = 0.4


def ambient_c(
    hour_of_day: npt.ArrayLike,
    base: float = 24.0,
    amplitude: float = 3.0,
    peak_hour: float = 15.0,
    setback_k: float = 0.0,
    store_open: npt.ArrayLike | None = None,
) -> FloatArray:
    """Store air temperature around the cases: a diurnal sinusoid plus an HVAC setback.

    §C.9 gives 22-30 °C for hot climates; §C.2 puts the worst duty in the afternoon heat,
    hence the default peak at 15:00. §C.5: some stores set the HVAC back overnight, raising
    the ambient by 2-5 K while closed; pass ``setback_k`` and ``store_open`` for that.

    Args:
        hour_of_day: local hour(s) of day, 0-24 (fractional).
        base: daily mean, °C.
        amplitude: half the daily swing, K.
        peak_hour: local hour of the warmest moment.
        setback_k: added while the store is closed.
        store_open: whether each store is open; required for the setback to apply.

    Returns:
        Ambient temperature in °C, shaped like ``hour_of_day`` (broadcast with
        ``store_open``).
    """
    hours = np.asarray(hour_of_day, dtype=np.float64)
    temp = base + amplitude * np.cos(2 * np.pi * (hours - peak_hour) / 24.0)
    if store_open is not None and setback_k:
        temp = temp + setback_k * ~np.asarray(store_open, dtype=np.bool_)
    return np.asarray(temp, dtype=np.float64)


_Array = TypeVar("_Array", bound=npt.NDArray[Any])


def _readonly(array: _Array) -> _Array:
    view = array.view()
    view.flags.writeable = False
    return view


class ThermalModel:
    """N refrigerated units stepped together; see the module docstring for the equations.

    Example::

        rng = np.random.default_rng(7)
        model = ThermalModel([AssetType.WALKIN_COOLER] * 3, rng, start_tod_s=6 * 3600)
        model.step(30.0, store_open=np.ones(3, bool), ambient_c=np.full(3, 24.0),
                   time_of_day_s=np.full(3, 6 * 3600 + 30.0))
        model.fail_compressor(1)
    """

    def __init__(
        self,
        asset_types: Sequence[AssetType],
        rng: np.random.Generator,
        start_tod_s: float | npt.ArrayLike = 0.0,
    ) -> None:
        """Build the units in a steady state near their setpoints.

        Product starts at the setpoint, air uniformly inside the differential, the
        compressor on or off at random, doors shut. Default defrost schedules are evenly
        spaced (``defrosts_per_day`` of the type) with a random phase per unit, rounded to
        10 min, as a rack controller staggers its cases; :meth:`set_defrost_schedule`
        replaces them.

        Args:
            asset_types: one entry per unit.
            rng: the only source of randomness.
            start_tod_s: local time of day (seconds) of the start, per unit or shared.
        """
        kinds = {kind: i for i, kind in enumerate(PARAMS)}
        types = np.asarray([kinds[AssetType(t)] for t in asset_types], dtype=np.int64)
        self.n = n = len(types)
        self._rng = rng
        table: list[UnitParams] = list(PARAMS.values())

        def col(name: str, scale: float = 1.0) -> FloatArray:
            per_type = [float(getattr(p, name)) * scale for p in table]
            return np.asarray(per_type, dtype=np.float64)[types]

        self._setpoint = col("setpoint_c")
        self._half_diff = col("differential_k", 0.5)
        self._cooling = col("cooling_k_per_min", 1 / 60)  # K/s
        self._g_leak = 1.0 / col("tau_leak_min", 60)  # 1/s
        self._door_factor = col("door_leak_factor")
        self._g_p = 1.0 / col("tau_product_min", 60)
        self._g_ap = 1.0 / col("tau_air_product_min", 60)
        self._heat = col("defrost_heat_k_per_min", 1 / 60)
        self._term = col("defrost_termination_c")
        self._drip_s = col("drip_min", 60)
        self._door_rate = col("door_rate_per_h", 1 / 3600)  # 1/s
        self._curtain = col("night_curtain_factor")
        self._open_case = col("open_case") > 0.5

        # Thermal state.
        self._tp = self._setpoint.copy()
        self._ta = self._setpoint + rng.uniform(-1.0, 1.0, n) * self._half_diff
        self._on = rng.random(n) < 0.5
        self._run_s = np.zeros(n)
        # Defrost: heater phase, then a drip hold-off.
        self._defrost = np.zeros(n, dtype=np.bool_)
        self._defrost_left = np.zeros(n)
        self._drip_left = np.zeros(n)
        self._defrost_count = np.zeros(n, dtype=np.int64)
        # Doors.
        self._door_left = np.zeros(n)
        self._door_openings = np.zeros(n, dtype=np.int64)
        # Failures.
        self._comp_failed = np.zeros(n, dtype=np.bool_)
        self._fan_failed = np.zeros(n, dtype=np.bool_)
        self._leak_rate = np.zeros(n)  # fraction of capacity lost per day
        self._capacity = np.ones(n)
        self._ajar = np.zeros(n, dtype=np.bool_)
        self._ajar_s = np.zeros(n)
        self._power_out = np.zeros(n, dtype=np.bool_)
        self._defrost_stuck = np.zeros(n, dtype=np.bool_)
        self._controller_stuck = np.zeros(n, dtype=np.bool_)
        self._curtain_forgotten = np.zeros(n, dtype=np.bool_)

        self._prev_tod = np.broadcast_to(
            np.asarray(start_tod_s, dtype=np.float64) % DAY_S, (n,)
        ).copy()
        self._defrost_times = _staggered_schedule(col("defrosts_per_day"), rng)
        self._defrost_duration = col("defrost_duration_min", 60)

    # ---------------------------------------------------------------- observed state

    @property
    def air_c(self) -> FloatArray:
        """Air temperature of each unit, °C (read-only view)."""
        return _readonly(self._ta)

    @property
    def product_c(self) -> FloatArray:
        """Product (core) temperature of each unit, °C (read-only view)."""
        return _readonly(self._tp)

    @property
    def compressor_on(self) -> BoolArray:
        """Whether each unit's compressor (or liquid-line solenoid) is running."""
        return _readonly(self._on)

    @property
    def compressor_run_s(self) -> FloatArray:
        """Cumulative compressor run time per unit, seconds (duty = Δrun / Δt)."""
        return _readonly(self._run_s)

    @property
    def defrost_active(self) -> BoolArray:
        """Whether each unit is in a defrost (heater or off-cycle phase, not the drip)."""
        return _readonly(self._defrost)

    @property
    def defrost_count(self) -> IntArray:
        """Defrosts started per unit since construction."""
        return _readonly(self._defrost_count)

    @property
    def door_open(self) -> BoolArray:
        """Whether each unit's door is open at the end of the last step."""
        return _readonly((self._door_left > 0) | self._ajar)

    @property
    def door_openings(self) -> IntArray:
        """Door openings per unit since construction (short ones fall between steps)."""
        return _readonly(self._door_openings)

    @property
    def powered(self) -> BoolArray:
        """False where the unit (and so its store's Wi-Fi devices) has no power."""
        return _readonly(~self._power_out)

    @property
    def setpoint_c(self) -> FloatArray:
        """Thermostat setpoint of each unit, °C."""
        return _readonly(self._setpoint)

    @property
    def capacity(self) -> FloatArray:
        """Remaining refrigerant-charge capacity per unit, 0-1 (a leak lowers it)."""
        return _readonly(self._capacity)

    # ---------------------------------------------------------------- failures

    def fail_compressor(self, idx: Index) -> None:
        """Compressor failure or tripped overload (§C.7): no cooling until repaired."""
        self._comp_failed[idx] = True

    def fail_fan(self, idx: Index) -> None:
        """Evaporator fan failure (§C.7): cooling drops and air and product diverge."""
        self._fan_failed[idx] = True

    def start_leak(self, idx: Index, fraction_per_day: float) -> None:
        """Slow refrigerant leak (§C.7): capacity falls by ``fraction_per_day`` a day.

        The duty cycle climbs toward 100 % and then the setpoint is lost. §C.7's field
        figure (10-25 % of charge a year) is ~0.0005/day; scenarios compress it.
        """
        if fraction_per_day < 0:
            raise ValueError(f"leak fraction_per_day {fraction_per_day} must be >= 0")
        self._leak_rate[idx] = fraction_per_day

    def door_ajar(self, idx: Index, on: bool = True) -> None:
        """Hold the door open (§C.4) or close it again. No effect on open cases."""
        self._ajar[idx] = on
        if not on:
            self._ajar_s[idx] = 0.0

    def power(self, idx: Index, on: bool) -> None:
        """Cut or restore power (§C.7): no cooling, fans or heaters while out.

        :attr:`powered` tells the caller which units' Wi-Fi devices go offline. On restore
        the thermostat sees a warm box and every compressor pulls down together.
        """
        self._power_out[idx] = not on

    def stick_defrost(self, idx: Index) -> None:
        """The running defrost (or the next one) never terminates (§C.7 timer fault).

        A heater still cycles on its limiter at the termination temperature; an off-cycle
        defrost simply keeps the compressor off. Use :meth:`start_defrost` to begin now.
        """
        self._defrost_stuck[idx] = True

    def stick_controller(self, idx: Index) -> None:
        """Controller stuck on (§C.7 overcooling): the compressor runs without stopping."""
        self._controller_stuck[idx] = True

    def forget_curtain(self, idx: Index, forgotten: bool = True) -> None:
        """Nobody pulls the night curtain (§C.5): night duty equals day duty."""
        self._curtain_forgotten[idx] = forgotten

    def repair(self, idx: Index) -> None:
        """Clear every failure of the units (a technician visit): charge restored too."""
        for flags in (
            self._comp_failed,
            self._fan_failed,
            self._ajar,
            self._power_out,
            self._defrost_stuck,
            self._controller_stuck,
            self._curtain_forgotten,
        ):
            flags[idx] = False
        self._leak_rate[idx] = 0.0
        self._capacity[idx] = 1.0
        self._ajar_s[idx] = 0.0

    # ---------------------------------------------------------------- defrost

    def set_defrost_schedule(
        self, idx: Index, times_of_day_s: Sequence[float], duration_s: float
    ) -> None:
        """Replace the defrost schedule of the units ``idx``.

        Args:
            idx: unit index or indices.
            times_of_day_s: local start times, seconds after midnight; empty = none.
            duration_s: the longest each defrost lasts before its timer ends it.
        """
        if duration_s <= 0:
            raise ValueError(f"defrost duration_s {duration_s} must be positive")
        times = np.asarray(sorted(float(t) % DAY_S for t in times_of_day_s), dtype=np.float64)
        width = self._defrost_times.shape[1]
        if times.size > width:
            pad = np.full((self.n, times.size - width), np.nan)
            self._defrost_times = np.concatenate([self._defrost_times, pad], axis=1)
            width = times.size
        row = np.full(width, np.nan)
        row[: times.size] = times
        self._defrost_times[idx] = row
        self._defrost_duration[idx] = duration_s

    def start_defrost(self, idx: Index) -> None:
        """Start a defrost now (a manual or forced defrost), unless one is running."""
        mask = np.zeros(self.n, dtype=np.bool_)
        mask[idx] = True
        self._begin_defrost(mask)

    def _begin_defrost(self, mask: BoolArray) -> None:
        mask = mask & ~self._defrost
        self._defrost |= mask
        self._defrost_left[mask] = self._defrost_duration[mask]
        self._drip_left[mask] = 0.0
        self._defrost_count += mask

    def _scheduled_starts(self, tod: FloatArray) -> BoolArray:
        # Forward time elapsed since the last step, in (-12 h, 12 h]. A clock going back (DST
        # fall-back) makes it negative and starts nothing; read modulo a day it would span
        # ~23 h and start every defrost at once. The repeated hour then runs its defrosts
        # again, as a clock-based timer does.
        delta = (tod - self._prev_tod + DAY_S / 2) % DAY_S - DAY_S / 2
        rel = (self._defrost_times - self._prev_tod[:, None]) % DAY_S  # NaN stays NaN
        hit = (rel > 0) & (rel <= delta[:, None])
        return np.asarray(hit.any(axis=1), dtype=np.bool_)

    # ---------------------------------------------------------------- stepping

    def step(
        self,
        dt: float,
        store_open: npt.ArrayLike,
        ambient_c: npt.ArrayLike,
        time_of_day_s: npt.ArrayLike,
    ) -> None:
        """Advance every unit by ``dt`` seconds.

        Args:
            dt: step length in seconds (any positive value is stable; ≤ 60 s keeps the
                thermostat and door timing realistic).
            store_open: per unit (or one bool for all): whether the store is open during
                this step; drives door traffic and night curtains.
            ambient_c: per unit (or one value): store air temperature around the unit.
            time_of_day_s: per unit (or one value): local time of day at the *end* of the
                step; defrosts scheduled in (previous, this] start during this step.
        """
        if not dt > 0:
            raise ValueError(f"dt {dt} must be positive")
        shape = (self.n,)
        is_open = np.broadcast_to(np.asarray(store_open, dtype=np.bool_), shape)
        amb = np.broadcast_to(np.asarray(ambient_c, dtype=np.float64), shape)
        tod = np.broadcast_to(np.asarray(time_of_day_s, dtype=np.float64) % DAY_S, shape)

        self._begin_defrost(self._scheduled_starts(tod))
        self._prev_tod = tod.copy()

        substeps = max(1, math.ceil(dt / MAX_SUBSTEP_S - 1e-9))
        h = dt / substeps
        for _ in range(substeps):
            self._substep(h, is_open, amb)

    def _substep(self, h: float, is_open: BoolArray, amb: FloatArray) -> None:
        door_frac = self._doors(h, is_open)
        heater = self._defrost_phase()
        on = self._thermostat()

        g_leak = self._g_leak * (1.0 + (self._door_factor - 1.0) * door_frac)
        curtain = self._open_case & ~is_open & ~self._curtain_forgotten
        g_leak = np.where(curtain, g_leak * self._curtain, g_leak)
        fans_off = self._fan_failed | self._power_out
        coupling = np.where(fans_off, FANS_OFF_COUPLING, 1.0)
        g_ap = self._g_ap * coupling
        g_p = self._g_p * coupling
        effectiveness = np.where(self._fan_failed, FAN_FAILED_COOLING, 1.0)
        effectiveness = effectiveness * np.exp(-self._ajar_s / ICE_TAU_S)
        q = heater * self._heat - on * self._cooling * self._capacity * effectiveness

        self._ta, self._tp = _exact_step(self._ta, self._tp, amb, g_leak, g_ap, g_p, q, h)

        self._run_s += on * h
        self._defrost_left = np.where(self._defrost, self._defrost_left - h, 0.0)
        self._drip_left = np.maximum(self._drip_left - h, 0.0)
        self._capacity = np.maximum(self._capacity - self._leak_rate * h / DAY_S, 0.0)
        self._ajar_s = np.where(self._ajar & ~self._open_case, self._ajar_s + h, 0.0)

    def _doors(self, h: float, is_open: BoolArray) -> FloatArray:
        """Poisson arrivals while the store is open; returns the open fraction of ``h``."""
        rate = np.where(is_open, self._door_rate, 0.0)
        arrive = (self._rng.random(self.n) < -np.expm1(-rate * h)) & (self._door_left <= 0)
        count = int(arrive.sum())
        if count:
            durations = self._rng.lognormal(math.log(DOOR_MEDIAN_S), DOOR_SIGMA, count)
            self._door_left[arrive] = np.clip(durations, DOOR_MIN_S, DOOR_MAX_S)
            self._door_openings += arrive
        frac = np.clip(self._door_left / h, 0.0, 1.0)
        self._door_left = np.maximum(self._door_left - h, 0.0)
        return np.where(self._ajar & ~self._open_case, np.maximum(frac, AJAR_OPEN_FRACTION), frac)

    def _defrost_phase(self) -> FloatArray:
        """End defrosts that are due; return 1.0 where a heater runs this sub-step."""
        done = (
            self._defrost
            & ~self._defrost_stuck
            & ((self._defrost_left <= 0) | (self._ta >= self._term))
        )
        self._defrost &= ~done
        self._drip_left[done] = self._drip_s[done]
        heating = self._defrost & ~self._power_out & (self._ta < self._term)
        return heating.astype(np.float64)

    def _thermostat(self) -> BoolArray:
        on = np.where(
            self._ta >= self._setpoint + self._half_diff,
            True,
            np.where(self._ta <= self._setpoint - self._half_diff, False, self._on),
        )
        allowed = ~(self._defrost | self._comp_failed | self._power_out) & (self._drip_left <= 0)
        self._on = allowed & (on | self._controller_stuck)
        return self._on


def _staggered_schedule(per_day: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Evenly spaced defrost times per unit with a random phase rounded to 10 min.

    Returns an ``(n, max per_day)`` array of seconds of day, NaN where a unit has fewer.
    """
    count = per_day.astype(np.int64)
    spacing = DAY_S / np.maximum(count, 1)
    phase = np.floor(rng.random(count.size) * spacing / 600.0) * 600.0
    k = np.arange(max(1, int(count.max(initial=1))), dtype=np.float64)
    times = (phase[:, None] + k[None, :] * spacing[:, None]) % DAY_S
    times[k[None, :] >= count[:, None]] = np.nan
    return np.asarray(times, dtype=np.float64)


def _exact_step(
    ta: FloatArray,
    tp: FloatArray,
    amb: FloatArray,
    g_leak: FloatArray,
    g_ap: FloatArray,
    g_p: FloatArray,
    q: FloatArray,
    h: float,
) -> tuple[FloatArray, FloatArray]:
    """Solve the linear two-node system exactly over ``h`` with constant inputs.

    ``x' = A x + b`` with ``A = [[-(g_leak+g_ap), g_ap], [g_p, -g_p]]``; its fixed point
    is ``Ta* = Tp* = Tamb + q/g_leak`` and ``x(h) = x* + e^{Ah}(x - x*)``. For a 2x2
    matrix with eigenvalues ``m ± s``: ``e^{Ah} = C·I + S·(A - m·I)`` with
    ``C = (e^{l1 h} + e^{l2 h})/2`` and ``S = (e^{l1 h} - e^{l2 h})/(2s)``, computed with
    ``expm1`` so a small ``s`` loses no precision. ``s > 0`` always (``g_ap·g_p > 0``).
    """
    a11 = -(g_leak + g_ap)
    a22 = -g_p
    m = (a11 + a22) / 2
    s = np.sqrt(((a11 - a22) / 2) ** 2 + g_ap * g_p)
    e2 = np.exp((m - s) * h)
    c = e2 * (1.0 + np.expm1(2 * s * h) / 2)
    sh = e2 * np.expm1(2 * s * h) / (2 * s)
    fixed = amb + q / g_leak
    da = ta - fixed
    dp = tp - fixed
    new_a = fixed + (c + sh * (a11 - m)) * da + sh * g_ap * dp
    new_p = fixed + sh * g_p * da + (c + sh * (a22 - m)) * dp
    return new_a, new_p
