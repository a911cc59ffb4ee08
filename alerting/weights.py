"""Criticality weight of a moment in a store: fewer people watching, more stock at risk.

The weight multiplies how fast an excursion spends its budget and divides escalation
waits. It is the product of:

- the hour: open hours 1.0; closed 1.5 (nobody on the floor to notice a warm case);
  closed overnight (00:00-06:00 local) 2.0 (nobody at all until morning);
- the store's calendar: a peak day or season (Mother's Day, Christmas) multiplies by its
  weight, because the cases are full and the doors open all day.

It is capped at :data:`MAX_WEIGHT` so a stack of factors cannot make budgets vanish.
Every weight carries the factors that made it, so an alert can say why it fired when it
did (DESIGN.md §4: the weight is inspectable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from core.chain import Store

CLOSED = 1.5
CLOSED_NIGHT = 2.0
NIGHT_START, NIGHT_END = time(0, 0), time(6, 0)
# Cap: a 30 min budget never shrinks below 7.5 min; too high and a peak night turns every
# blip into a page, too low and peaks stop mattering.
MAX_WEIGHT = 4.0


@dataclass(frozen=True, slots=True)
class Weight:
    """A weight and the named factors it is the product of."""

    value: float
    factors: tuple[tuple[str, float], ...] = ()

    def explain(self) -> str:
        """``"x2.0 (closed overnight x2.0)"``; ``"x1.0"`` when nothing applies."""
        if not self.factors:
            return f"x{self.value:g}"
        parts = ", ".join(f"{name} x{w:g}" for name, w in self.factors)
        return f"x{self.value:g} ({parts})"


class WeightCalendar:
    """Weights for one store, cached per local minute (they change on the minute)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.zone = ZoneInfo(store.timezone)
        self._hours = store.opening_hours()
        self._cache_key = -1
        self._cache = Weight(1.0)

    def at(self, ts_s: float) -> Weight:
        """The weight at epoch second ``ts_s``."""
        minute = int(ts_s // 60)
        if minute == self._cache_key:
            return self._cache
        local = datetime.fromtimestamp(ts_s, self.zone)
        weight = self._compute(local)
        self._cache_key, self._cache = minute, weight
        return weight

    def is_open(self, local: datetime) -> bool:
        """Whether the store is open at a local time (no hours configured: always open)."""
        if not self._hours:
            return True
        now = local.time()
        return any(start <= now < end for start, end in self._hours.get(local.weekday(), []))

    def _compute(self, local: datetime) -> Weight:
        factors: list[tuple[str, float]] = []
        if not self.is_open(local):
            if NIGHT_START <= local.time() < NIGHT_END:
                factors.append(("closed overnight", CLOSED_NIGHT))
            else:
                factors.append(("closed", CLOSED))
        today = local.date()
        for day in self.store.calendar:
            last = day.until or day.date
            if day.date <= today <= last and day.weight != 1.0:
                factors.append((day.name, day.weight))
        value = 1.0
        for _, factor in factors:
            value *= factor
        return Weight(min(value, MAX_WEIGHT), tuple(factors))
