"""A token bucket: how much of something ingest may do per second, with a burst.

Used where a flood of junk must cost a bounded amount of work or storage: re-reading the
registry on unknown ids (:mod:`ingest.index`), recording newly discovered devices and
storing dead letters (:mod:`ingest.pipeline`). What a spent budget refuses is counted by
the caller, never silently lost.
"""

from __future__ import annotations

import threading
import time


class Budget:
    """Up to ``burst`` at once, refilled at ``rate`` per second (monotonic time)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """One token if there is one."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True
