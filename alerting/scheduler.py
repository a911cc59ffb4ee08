"""The scheduler adapter: the one place APScheduler is imported.

APScheduler only *wakes* the engine: an interval job calls ``tick`` (time-based rules,
due escalation steps). It holds no state of its own; the database is the truth, so a
restart re-arms nothing: the first tick reads which steps are due (STYLE.md §2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC

from apscheduler.schedulers.background import (  # noqa: TID251 - the one import site
    BackgroundScheduler,
)

log = logging.getLogger(__name__)

# How often the engine wakes. Escalation steps and silence checks happen within this of
# being due: too low wastes CPU on 100k-sensor ticks, too high delays pages. (Accelerated
# simulations pass a smaller interval so simulated minutes stay fine-grained.)
TICK_INTERVAL_S = 1.0


class Scheduler:
    """Calls ``tick`` every ``interval_s`` seconds on a background thread."""

    def __init__(self, tick: Callable[[], None], interval_s: float = TICK_INTERVAL_S) -> None:
        self._tick = tick
        self.interval_s = interval_s
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.add_job(
            self._safe_tick,
            "interval",
            seconds=interval_s,
            id="coldchain-tick",
            max_instances=1,  # a slow tick is skipped, never run twice at once
            coalesce=True,  # after a stall, run once, not once per missed interval
            misfire_grace_time=None,
        )

    def _safe_tick(self) -> None:
        try:
            self._tick()
        except Exception:  # a failing tick must not unschedule the next ones
            log.exception("alerting tick failed")

    def start(self) -> None:
        """Start waking the engine."""
        self._scheduler.start()

    def stop(self) -> None:
        """Stop; waits for a running tick to finish."""
        self._scheduler.shutdown(wait=True)
