"""Calibration due: ``calibration_due:<store>``, the store's sensors past their date.

A probe's reading is only as good as its last calibration (HACCP records name the
calibration date; research §B). A sensor whose ``calibration_due`` date has passed (in its
store's local calendar) makes its store's condition fire at CHECK_HOUR local time, one
condition per store listing every overdue sensor, so technicians get one message per
store; the ``calibration`` policy (default :data:`alerting.escalation.CALIBRATION_POLICY`:
the technician role, again every week) decides who and how often. It clears when no
sensor of the store is overdue any more (recalibrated: a new date in the registry).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerting.conditions import CALIBRATION_DUE, WARNING, Condition, Transition
from alerting.rules.base import Board, SensorSpec, Topology, plain

# The local hour an overdue calibration is first reported: technicians work days, and
# nothing about a calibration date is urgent at night. Earlier wakes nobody up only if
# technicians are the only recipients; later loses a working morning.
CHECK_HOUR = 8


class CalibrationRule:
    """``calibration_due:<store>`` from the sensors' calibration dates and the clock."""

    kinds = frozenset({CALIBRATION_DUE})

    def __init__(self, topo: Topology, board: Board) -> None:
        self.topo = topo
        self.board = board
        self.zones = {s: ZoneInfo(store.timezone) for s, store in topo.stores.items()}
        self.due: dict[str, list[SensorSpec]] = {}
        for spec in topo.sensors:
            if spec.calibration_due is not None:
                self.due.setdefault(spec.store, []).append(spec)
        self.overdue: dict[str, tuple[str, ...]] = {}  # store -> sensors reported overdue

    def tick(self, now: float, out: list[Transition]) -> None:
        for store in sorted(set(self.due) | set(self.overdue)):
            local = datetime.fromtimestamp(now, self.zones[store])
            # A date passes at CHECK_HOUR of the day after it.
            today = (local - timedelta(hours=CHECK_HOUR)).date()
            late = tuple(
                s.sensor for s in self.due.get(store, [])
                if s.calibration_due is not None and s.calibration_due < today
            )  # fmt: skip
            if late == self.overdue.get(store, ()):
                continue
            key = f"{CALIBRATION_DUE}:{store}"
            if not late:
                del self.overdue[store]
                self.board.clear(key, now, out)
                continue
            condition = self._condition(store, late, now)
            if store in self.overdue:  # the list changed: the next reminder says so
                self.board.active[key] = condition
                out.append(Transition("upgrade", condition, round(now * 1000)))
            else:
                self.board.fire(condition, now, out)
            self.overdue[store] = late

    def _condition(self, store: str, late: tuple[str, ...], now: float) -> Condition:
        dates: list[date] = [
            s.calibration_due for s in self.due[store]
            if s.sensor in late and s.calibration_due is not None
        ]  # fmt: skip
        oldest = min(dates)
        since = datetime.combine(oldest + timedelta(days=1), datetime.min.time(), self.zones[store])
        return Condition(
            f"{CALIBRATION_DUE}:{store}", CALIBRATION_DUE, WARNING, WARNING, store, None, None,
            None, round(min(since.timestamp(), now) * 1000), float(len(late)), None,
            {"sensors": list(late), "oldest_due": oldest.isoformat()},
        )  # fmt: skip

    def restore(self, c: Condition) -> None:
        self.overdue[c.store] = tuple(c.explanation.get("sensors") or ())

    def forget(self, c: Condition) -> None:
        self.overdue.pop(c.store, None)

    def carry(self, previous: CalibrationRule) -> None:
        self.overdue = {s: v for s, v in previous.overdue.items() if s in self.topo.stores}

    def snapshot(self) -> dict[str, Any]:
        return {"overdue": plain(self.overdue)}
