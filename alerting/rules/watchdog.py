"""Pipeline watchdog (DESIGN.md §5, docs/design/alerting.md "Pipeline stalls").

When many stores fall silent together the problem is central (broker, ingester, the
server's network), not theirs. ``pipeline_stalled`` is one chain-wide condition, on the
reserved store :data:`~alerting.conditions.CHAIN_STORE`, that fires when at least
STALL_MIN_STORES stores and STALL_SHARE of the stores reporting in the hour before went
quiet within STALL_SPREAD_S of each other (or when the ingester reports its MQTT
connection down for INGEST_DOWN_GRACE_S). The store-level silence alerts it explains are
held by ``alerting/stages/inhibit.py``; when most of its stores report again it clears,
and the silence rules of the stores still silent are re-armed from that moment
(:meth:`AvailabilityRule.rearm`), so they page after their normal grace, not for the stall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from alerting.conditions import (
    CHAIN_STORE,
    CRITICAL,
    PIPELINE_STALLED,
    Condition,
    Transition,
)
from alerting.rules.availability import AvailabilityRule
from alerting.rules.base import Board, SensorSpec, Topology, by_id

# A store is quiet when none of its sensors has reported for this many times its shortest
# reporting interval. It must stay under the silence rule's SILENT_INTERVALS (3): a stall
# has to be recognised before the stores' own sensor-silent alerts fire and page (1.5x
# leaves half an interval to spare, as every sensor last reported less than one interval
# before the stall). Lower and one late reading makes a store "quiet" (harmless alone: the
# chain-wide rule needs many stores at once).
STALL_QUIET_INTERVALS = 1.5
# A stall needs at least this many quiet stores ... With fewer, a chain cannot tell its
# pipeline from two stores' own outages, and paging their managers is the safe mistake.
STALL_MIN_STORES = 3
# ... and at least this share of the stores that reported in the hour before the stall
# (STALL_REPORTING_S). Lower and a regional power cut reads as a pipeline stall (managers
# not paged); higher and a stall that spares a few stores (one region's link is fine) is
# paged to every other store's manager.
STALL_SHARE = 0.5
STALL_REPORTING_S = 60 * 60
# ... all of which went quiet within this of each other ("at once"). It must exceed the
# slowest reporting interval that should be covered (stores whose sensors all report every
# 20 min are not); wider and unrelated outages minutes apart add up to a "stall".
STALL_SPREAD_S = 10 * 60
# The ingester's MQTT connection down this long is a stall at once, whatever the stores
# say (paho reconnects within seconds after a broker restart). Shorter pages on-call for a
# broker restart; longer leaves the readings-based rule to notice first.
INGEST_DOWN_GRACE_S = 2 * 60


@dataclass(slots=True)
class _Stall:
    """The open pipeline stall: its condition and the stores it explains."""

    condition: Condition
    since: float  # the last reading heard from its stores (or the MQTT disconnection)
    stores: npt.NDArray[np.bool_]  # per store index: explained by this stall


class WatchdogRule:
    """``pipeline_stalled:*`` from the newest reading of each store, and the ingester."""

    kinds = frozenset({PIPELINE_STALLED})

    def __init__(self, topo: Topology, board: Board, availability: AvailabilityRule) -> None:
        self.topo = topo
        self.board = board
        self.availability = availability
        availability.stall_covers = self.covers
        # Per store: the newest reading from any of its sensors (updated in seen, O(1)),
        # and how long without one makes it quiet.
        self.store_last: npt.NDArray[np.float64] = np.full(len(topo.store_ids), np.nan)
        self.quiet_after = np.full(len(topo.store_ids), np.inf)
        np.minimum.at(self.quiet_after, topo.slot_store, topo.intervals * STALL_QUIET_INTERVALS)
        self.stall: _Stall | None = None
        # Quiet stores are not judged before this instant (start-up: RuleEngine.resume).
        self.quiet_until = 0.0

    def covers(self, store_index: int) -> bool:
        """An open stall explains this store."""
        return self.stall is not None and bool(self.stall.stores[store_index])

    def seen(self, spec: SensorSpec, ts: float) -> None:
        if not ts <= self.store_last[spec.store_slot]:  # also when NaN
            self.store_last[spec.store_slot] = ts

    def tick(self, now: float, ingest_down: float | None, out: list[Transition]) -> None:
        """Vectorised over stores: open, extend or clear the chain-wide stall."""
        last = self.store_last
        known = ~np.isnan(last)
        with np.errstate(invalid="ignore"):
            quiet = known & ((now - last) > self.quiet_after)
        if self.stall is None:
            if ingest_down is not None and now - ingest_down >= INGEST_DOWN_GRACE_S:
                self._open(known, ingest_down, now, "mqtt_disconnected", out)
                return
            if now <= self.quiet_until or int(np.count_nonzero(quiet)) < STALL_MIN_STORES:
                return
            newest = float(np.max(last[quiet]))
            cluster = quiet & (last >= newest - STALL_SPREAD_S)
            reporting = known & (last >= newest - STALL_REPORTING_S)
            stalled = int(np.count_nonzero(cluster))
            if stalled >= STALL_MIN_STORES and stalled >= STALL_SHARE * np.count_nonzero(reporting):
                self._open(cluster, newest, now, "silence", out)
            return
        stall = self.stall
        # Stores that fell quiet with the stall, later than it (slower reporters): it
        # explains them too.
        joining = quiet & ~stall.stores & (last >= stall.since - STALL_SPREAD_S)
        if joining.any():
            stall.stores = stall.stores | joining
            stall.condition = self._condition(stall.stores, stall.since, stall.condition)
            self.board.active[stall.condition.key] = stall.condition
            out.append(Transition("upgrade", stall.condition, round(now * 1000)))
        with np.errstate(invalid="ignore"):
            back = stall.stores & (last > stall.since)
        members = int(np.count_nonzero(stall.stores))
        still = members - int(np.count_nonzero(back))
        if ingest_down is None and (members == 0 or still < STALL_SHARE * members):
            self._close(now, out)

    def _condition(
        self, stores: npt.NDArray[np.bool_], since: float, previous: Condition | None = None,
        cause: str = "silence",
    ) -> Condition:  # fmt: skip
        last = self.store_last
        known = ~np.isnan(last)
        reporting = known & (last >= since - STALL_REPORTING_S)
        total = int(np.count_nonzero(reporting | stores))
        ids = [self.topo.store_ids[int(i)] for i in np.flatnonzero(stores)]
        newest = float(np.max(last[known])) if known.any() else since
        cause = str(previous.explanation.get("cause", cause)) if previous else cause
        rule = (
            f"the ingester's MQTT connection down >= {INGEST_DOWN_GRACE_S // 60} min"
            if cause == "mqtt_disconnected"
            else f">= {STALL_MIN_STORES} stores and >= {STALL_SHARE:.0%} of the stores "
            f"reporting in the hour before went quiet within {STALL_SPREAD_S // 60} min"
        )
        explanation: dict[str, Any] = {
            "cause": cause,
            "stores": ids,
            "stalled": len(ids),
            "reporting": total,
            "last_reading_ms": round(newest * 1000),
            "rule": rule,
        }
        return Condition(
            f"{PIPELINE_STALLED}:{CHAIN_STORE}", PIPELINE_STALLED, CRITICAL, CRITICAL,
            CHAIN_STORE, None, None, None, round(since * 1000), float(len(ids)), float(total),
            explanation,
        )  # fmt: skip

    def _open(
        self, stores: npt.NDArray[np.bool_], since: float, now: float, cause: str,
        out: list[Transition],
    ) -> None:  # fmt: skip
        condition = self._condition(stores, since, cause=cause)
        self.stall = _Stall(condition, since, stores.copy())
        self.board.fire(condition, now, out)

    def _close(self, now: float, out: list[Transition]) -> None:
        """Most stores report again: clear, and re-arm the stores still silent."""
        assert self.stall is not None
        stores, self.stall = self.stall.stores, None
        self.board.clear(f"{PIPELINE_STALLED}:{CHAIN_STORE}", now, out)
        self.availability.rearm(stores, now, out)

    # -- state across restarts, resolutions and reloads --------------------------------

    def restore(self, c: Condition) -> None:
        members = set(c.explanation.get("stores") or [])
        mask = np.array([s in members for s in self.topo.store_ids], dtype=bool)
        self.stall = _Stall(c, c.since_ms / 1000.0, mask)

    def forget(self, _condition: Condition) -> None:
        self.stall = None  # still stalled: the next tick opens it again

    def carry(self, previous: WatchdogRule) -> None:
        old = previous.topo
        self.store_last = self.topo.remap_stores(old, previous.store_last, np.nan)
        if previous.stall is not None:
            stores = self.topo.remap_stores(old, previous.stall.stores, False)
            self.stall = _Stall(previous.stall.condition, previous.stall.since, stores)
        self.quiet_until = previous.quiet_until

    def snapshot(self) -> dict[str, Any]:
        stall = None
        if self.stall is not None:
            members = [self.topo.store_ids[int(i)] for i in np.flatnonzero(self.stall.stores)]
            stall = {"since": self.stall.since, "stores": members}
        return {"store_last": by_id(self.topo.store_ids, self.store_last), "stall": stall}
