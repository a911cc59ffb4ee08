"""Time as an argument (STYLE.md §4): no ``datetime.now()`` below the composition root.

Services take a :class:`Clock`. Production wires :class:`SystemClock`; tests and the
accelerated simulator wire :class:`ManualClock` or :class:`ScaledClock`.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A source of the current instant."""

    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...

    def time(self) -> float:
        """The current instant as epoch seconds."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to; thread-safe."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._t = start.timestamp()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def time(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._t += seconds

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (which must not be in the clock's past)."""
        self.advance(instant.timestamp() - self.time())


class ScaledClock:
    """Simulated time that runs ``speed`` times faster than the wall clock from ``start``."""

    def __init__(self, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._start = start.timestamp()
        self._wall0 = time.monotonic()
        self.speed = speed

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def time(self) -> float:
        return self._start + (time.monotonic() - self._wall0) * self.speed
