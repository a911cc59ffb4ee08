"""Simulated time for a whole stack: the simulator, ingest and alerting in lockstep.

One :class:`~core.clock.ManualClock` is the time of everything. After each simulator
step, :class:`Lockstep` sets the clock to the step's time, waits until the broker holds
every published message and the ingester has acknowledged them all (each is then in
InfluxDB or the spool, and handed to alerting), lets the engine evaluate them, ticks it
and lets delivery send what it decided. A night runs in about a minute and every
timestamp is exact, which is what the demo and the acceptance tests need: real
components, simulated hours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from coldchain.compose import Stack
from core.clock import ManualClock
from simulator.runner import StepReport

# How long one step may take to be acknowledged before the run is declared stalled. A
# step is at most a few thousand messages; far longer means ingest is stuck, not slow.
STALL_TIMEOUT_S = 30.0


class Flushable(Protocol):
    """What lockstep needs from the simulator's publisher."""

    def flush(self) -> None:
        """Return once the broker has acknowledged everything published."""
        ...


class Stalled(RuntimeError):
    """Ingest did not acknowledge a step's messages in time."""


class Lockstep:
    """The ``on_step`` callback of a :class:`~simulator.runner.Runner`; see the module."""

    def __init__(
        self,
        stack: Stack,
        clock: ManualClock,
        publisher: Flushable,
        published: Callable[[], int],
        zone: ZoneInfo,
    ) -> None:
        """Tie ``stack`` to ``clock``.

        Args:
            stack: The stack under simulated time (started with ``scheduler=False``).
            clock: The stack's clock.
            publisher: The simulator's publisher.
            published: How many messages the simulator has published so far.
            zone: The zone steps are expressed in (for the hooks' local times).
        """
        self.stack = stack
        self.clock = clock
        self.publisher = publisher
        self.published = published
        self.zone = zone
        self.hooks: list[Callable[[StepReport], None]] = []

    def __call__(self, report: StepReport) -> None:
        self.clock.set(datetime.fromtimestamp(report.sim_time, self.zone))
        self.publisher.flush()
        acked = self.stack.ingester.stats.acked
        deadline = time.monotonic() + STALL_TIMEOUT_S
        while acked.total() < self.published():
            if time.monotonic() > deadline:
                raise Stalled(f"ingest stalled: {acked.total():.0f} of {self.published()}")
            time.sleep(0.001)
        self.stack.pump.join()
        self.stack.engine.tick()
        self.stack.engine.delivery.drain()
        for hook in self.hooks:
            hook(report)
        self.stack.engine.delivery.drain()
