"""Drive a :class:`~simulator.physics.ThermalModel` through a timeline and record it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from simulator.physics import ThermalModel, ambient_c

H = 3600.0
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def store_hours(opens_h: float = 7.0, closes_h: float = 21.0) -> Callable[[float], bool]:
    """San Pedro's ``mon-sat: "07:00-21:00"`` as a function of the time of day (s)."""
    return lambda tod: opens_h * H <= tod < closes_h * H


def diurnal(tod: float) -> float:
    """The default store ambient of :func:`simulator.physics.ambient_c` (24 ± 3 °C)."""
    return float(ambient_c(tod / H))


@dataclass
class Trace:
    """Per-step samples, shape (steps, units); ``t_h`` is hours since the trace began."""

    t_h: FloatArray
    air: FloatArray
    product: FloatArray
    on: BoolArray
    defrost: BoolArray
    door: BoolArray

    def at(self, hours: float) -> int:
        """Index of the sample closest to ``hours`` after the trace began."""
        return int(np.argmin(np.abs(self.t_h - hours)))


@dataclass
class Sim:
    """A model plus a local clock; ``run`` steps it and returns what happened."""

    model: ThermalModel
    start_tod_s: float
    store_open: Callable[[float], bool] | bool = False
    ambient: Callable[[float], float] | float = 24.0
    dt: float = 30.0
    elapsed_s: float = field(default=0.0)

    @property
    def tod(self) -> float:
        """Local time of day now, seconds."""
        return (self.start_tod_s + self.elapsed_s) % 86_400.0

    def run(self, hours: float) -> Trace:
        """Step for ``hours`` and record every step."""
        steps = round(hours * H / self.dt)
        n = self.model.n
        air = np.empty((steps, n))
        product = np.empty((steps, n))
        on = np.empty((steps, n), dtype=np.bool_)
        defrost = np.empty((steps, n), dtype=np.bool_)
        door = np.empty((steps, n), dtype=np.bool_)
        for i in range(steps):
            self.elapsed_s += self.dt
            tod = self.tod
            is_open = self.store_open(tod) if callable(self.store_open) else self.store_open
            amb = self.ambient(tod) if callable(self.ambient) else self.ambient
            self.model.step(self.dt, is_open, amb, tod)
            air[i] = self.model.air_c
            product[i] = self.model.product_c
            on[i] = self.model.compressor_on
            defrost[i] = self.model.defrost_active
            door[i] = self.model.door_open
        t_h = np.asarray(np.arange(1, steps + 1) * self.dt / H, dtype=np.float64)
        return Trace(t_h, air, product, on, defrost, door)
