"""A vectorised bank of temperature probes over the thermal model (domain.md §C.8, §C.9).

A :class:`SensorBank` turns true temperatures into what DS18B20-class probes report:
Gaussian noise (sigma 0.05-0.1 K, §C.9), the 12-bit step of 0.0625 K (§C.8) and the
datasheet range, plus injected faults. It knows nothing about units or wire formats: the
caller picks each sensor's true temperature (``model.air_c[unit_of_sensor]``) and the
device encoders decide how a fault looks on the wire (``devices.base.fault_wire_value``).

:meth:`SensorBank.read` returns two arrays of the bank's length:

- ``values`` (float64): what the probe reports; ``85.0`` for a power-on-reset read (a
  number that firmware passes through, §C.8), NaN where there is no number at all;
- ``codes`` (int8): 0 for a measurement, else an index into :data:`FAULT_CODES`
  (:func:`fault_code` turns it back into a :class:`~core.types.FaultCode`).

Faults a probe can have, each injected per sensor index:

==============  ============================================================  ===========
fault           reported value                                                code
==============  ============================================================  ===========
``fault_85``    exactly 85.0, once or with a probability per reading          POWER_ON_RESET
``disconnect``  NaN                                                            the chosen code
``stick``       the last reported value, repeated                              0
``spikes``      ±5-15 K added, with a probability per reading                  0
``drift``       a growing offset, K/day                                        0
==============  ============================================================  ===========

Stuck values, spikes and drift are values, not faults on the wire: data-quality rules must
find them (§C.8), so they carry code 0. Battery level is tracked too (:attr:`battery_pct`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from core.types import FaultCode

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
CodeArray = npt.NDArray[np.int8]
Index = int | Sequence[int] | npt.NDArray[np.integer]

DAY_S = 86_400.0

# Fault code k (1-based) is FAULT_CODES[k - 1]; 0 means a measurement. Enum order is part
# of the contract only within one process: store FaultCode values, never these integers.
FAULT_CODES: tuple[FaultCode, ...] = tuple(FaultCode)
NO_FAULT = 0

DS18B20_STEP_C = 0.0625  # 12-bit resolution (§C.8)
DS18B20_MIN_C = -55.0  # datasheet range (§C.8)
DS18B20_MAX_C = 125.0
POWER_ON_RESET_C = 85.0  # scratch-pad default (§C.8)

# Probe noise. §C.9: sigma 0.05-0.1 K. Too low and readings sit on one 0.0625 K step for long
# stretches (false "stuck" alerts, §C.8's 6-identical-readings rule); too high and the
# sawtooth and small drifts drown.
DEFAULT_NOISE_C = 0.08

# Spike size (§C.8 EMI from compressor contactors): ±5-15 K, well above the §C.8 rate limits
# (walk-in air > 3 K/min) so a rate rule can catch them.
SPIKE_MIN_K = 5.0
SPIKE_MAX_K = 15.0

# Battery (§C.8): a 10-year nominal life. Sensors reading below COLD_C drain
# COLD_DRAIN_FACTOR times faster ("freezer cold roughly halves the effective capacity").
DEFAULT_LIFE_DAYS = 3650.0
COLD_C = -10.0
COLD_DRAIN_FACTOR = 2.0

# Battery curve shape: the level sags gently (by PLATEAU_SAG over the life) and then falls
# off a knee; KNEE_SHARPNESS sets how late and steep the knee is. Too low and the curve is
# a straight line (no plateau, §C.8 wants one); too high and the cell dies without warning.
PLATEAU_SAG = 0.3
KNEE_SHARPNESS = 8.0


def fault_code(code: int) -> FaultCode | None:
    """The :class:`FaultCode` behind a code from :meth:`SensorBank.read` (None for 0)."""
    return None if code == NO_FAULT else FAULT_CODES[code - 1]


def code_of(fault: FaultCode) -> int:
    """The integer code :meth:`SensorBank.read` uses for ``fault``."""
    return FAULT_CODES.index(fault) + 1


def battery_curve(used: npt.ArrayLike) -> FloatArray:
    """Battery percent for a used fraction of the capacity (0 = new, 1 = empty).

    A lithium cell's reported level stays on a plateau, then hits a knee and drops
    steeply (§C.8): ``100·(1 - PLATEAU_SAG·u)·(1 - u^KNEE_SHARPNESS)``, which is 100 at
    ``u = 0``, ~85 at 0.5, ~63 at 0.8, ~42 at 0.9 and 0 at 1, and strictly decreasing.
    """
    u = np.clip(np.asarray(used, dtype=np.float64), 0.0, 1.0)
    return np.asarray(100.0 * (1.0 - PLATEAU_SAG * u) * (1.0 - u**KNEE_SHARPNESS))


class SensorBank:
    """``n`` temperature probes with noise, quantisation, faults and batteries.

    Readings of the whole bank are taken together at one simulated time; build one bank
    per reporting interval if families report at different rates.
    """

    def __init__(
        self,
        n: int,
        rng: np.random.Generator,
        *,
        noise_c: float | npt.ArrayLike = DEFAULT_NOISE_C,
        life_days: float | npt.ArrayLike = DEFAULT_LIFE_DAYS,
        offset_c: float | npt.ArrayLike = 0.0,
    ) -> None:
        """Create the bank.

        Args:
            n: number of probes.
            rng: the only source of randomness.
            noise_c: noise sigma per probe (or one for all), K.
            life_days: nominal battery life per probe at room temperature, days; §C.8
                suggests 3-10x shorter for a freezer probe on a short interval.
            offset_c: constant calibration error per probe (DS18B20: ±0.5 K, §C.8).
        """
        self.n = n
        self._rng = rng
        shape = (n,)
        self._noise = np.broadcast_to(np.asarray(noise_c, dtype=np.float64), shape).copy()
        self._life_s = np.broadcast_to(np.asarray(life_days, np.float64), shape) * DAY_S
        self._offset = np.broadcast_to(np.asarray(offset_c, np.float64), shape).copy()
        self._used = np.zeros(n)
        self._drift_rate = np.zeros(n)  # K per second
        self._drift = np.zeros(n)
        self._p85 = np.zeros(n)
        self._once85 = np.zeros(n, dtype=np.bool_)
        self._p_spike = np.zeros(n)
        self._stuck = np.zeros(n, dtype=np.bool_)
        self._disconnected = np.zeros(n, dtype=np.int8)  # 0 or the code reported
        self._last = np.full(n, np.nan)
        self._t_last: float | None = None

    # ---------------------------------------------------------------- faults

    def fault_85(self, idx: Index, probability: float | None = None) -> None:
        """Report exactly 85.0 °C: on the next reading only, or with a probability each."""
        if probability is None:
            self._once85[idx] = True
        else:
            self._p85[idx] = _probability(probability)

    def disconnect(self, idx: Index, code: FaultCode = FaultCode.DISCONNECTED) -> None:
        """Report no number, with ``code`` (DISCONNECTED, NAN, NULL, ABSENT_PROBE...)."""
        if code is FaultCode.POWER_ON_RESET:
            raise ValueError("a disconnect cannot report power_on_reset; use fault_85")
        self._disconnected[idx] = code_of(code)

    def stick(self, idx: Index) -> None:
        """Repeat the last reported value from now on (§C.8 stuck value)."""
        self._stuck[idx] = True

    def spikes(self, idx: Index, probability: float) -> None:
        """Add a ±5-15 K spike with ``probability`` per reading (§C.8 EMI)."""
        self._p_spike[idx] = _probability(probability)

    def drift(self, idx: Index, k_per_day: float) -> None:
        """Let the probe drift by ``k_per_day`` from its next reading on."""
        self._drift_rate[idx] = k_per_day / DAY_S

    def clear(self, idx: Index) -> None:
        """Remove every fault of the probes (a replaced probe: drift reset, battery kept)."""
        self._p85[idx] = 0.0
        self._once85[idx] = False
        self._p_spike[idx] = 0.0
        self._stuck[idx] = False
        self._disconnected[idx] = NO_FAULT
        self._drift_rate[idx] = 0.0
        self._drift[idx] = 0.0

    def replace_battery(self, idx: Index) -> None:
        """Fit a new battery."""
        self._used[idx] = 0.0

    # ---------------------------------------------------------------- reading

    @property
    def battery_pct(self) -> FloatArray:
        """Battery level per probe, percent (0 = dead: the device goes silent)."""
        return battery_curve(self._used)

    def read(self, true_c: npt.ArrayLike, t_s: float) -> tuple[FloatArray, CodeArray]:
        """Read every probe at simulated time ``t_s``.

        Args:
            true_c: true temperature at each probe, °C (length ``n``).
            t_s: simulated time in seconds; it must not go backwards. Drift and battery
                advance by the time since the previous reading.

        Returns:
            ``(values, codes)``, see the module docstring.
        """
        true = np.broadcast_to(np.asarray(true_c, dtype=np.float64), (self.n,))
        elapsed = 0.0 if self._t_last is None else t_s - self._t_last
        if elapsed < 0:
            raise ValueError(f"t_s {t_s} is before the previous reading {self._t_last}")
        self._t_last = t_s
        cold = np.where(true < COLD_C, COLD_DRAIN_FACTOR, 1.0)
        self._used = np.minimum(self._used + elapsed * cold / self._life_s, 1.0)
        self._drift += self._drift_rate * elapsed

        rng = self._rng
        values = true + self._offset + self._drift + rng.standard_normal(self.n) * self._noise
        spike = rng.random(self.n) < self._p_spike
        sizes = rng.uniform(SPIKE_MIN_K, SPIKE_MAX_K, self.n) * rng.choice([-1.0, 1.0], self.n)
        values = np.where(spike, values + sizes, values)
        values = np.round(values / DS18B20_STEP_C) * DS18B20_STEP_C
        values = np.clip(values, DS18B20_MIN_C, DS18B20_MAX_C)
        values = np.where(self._stuck & ~np.isnan(self._last), self._last, values)

        codes = np.zeros(self.n, dtype=np.int8)
        por = self._once85 | (rng.random(self.n) < self._p85)
        self._once85[:] = False
        values = np.where(por, POWER_ON_RESET_C, values)
        codes[por] = code_of(FaultCode.POWER_ON_RESET)
        gone = self._disconnected != NO_FAULT
        values = np.where(gone, np.nan, values)
        codes = np.where(gone, self._disconnected, codes).astype(np.int8)

        self._last = np.where(codes == NO_FAULT, values, self._last)
        return values, codes


def _probability(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability {p} must be within 0..1")
    return p
