"""What a watcher outside alerting reads (issue 14): who leads, the lease heartbeat, ticks,
how far evaluation lags behind ingest, the queue between them, and what the last warm-up
cost (at start-up; at a takeover, a warm standby's reconciliation with the book).

Prometheus scrapes these from every alerting process (``/metrics``: the API's in
``coldchain run``, ``COLDCHAIN_METRICS_BIND`` in ``coldchain alerting``) and the rules in
docs/operations.md, section 8, page on them through a path that does not need coldchain;
the systemd watchdog (coldchain/systemd.py) asks :meth:`AlertingHealth.healthy`.

Who calls what:

- :meth:`~AlertingHealth.lease` by the engine on every tick, after trying the lease
  (alerting/lease.py): leader or standby, with a heartbeat when the lease was renewed (or
  when there is no lease: a lone engine always leads), and ``leader=False`` when a
  fenced write finds the lease lost;
- :meth:`~AlertingHealth.ticked` by the engine at the end of each tick, standby or not;
- :meth:`~AlertingHealth.warmed` by the engine after each warm-up (start-up or takeover);
- :meth:`~AlertingHealth.batch_evaluated` by whoever feeds the engine observations (the
  in-process pump, or ``coldchain alerting``'s MQTT handler), with the time since the
  batch became durable in ingest;
- :meth:`~AlertingHealth.watch_queue` by the in-process pump.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram
from core.metrics import Registry as MetricsRegistry

# The systemd watchdog withholds its ping when no tick has finished for this long. Too
# low and a legitimately slow tick (a registry reload rebuilds rules in ~5 s at 100k
# sensors; an InfluxDB write timing out) gets the process killed; too high and a hung
# alerting (a deadlock, a stuck database lock) is restarted and paged late.
TICK_STALL_S = 60.0


class AlertingHealth:
    """The gauges above, and the methods that set them (see the module docstring)."""

    def __init__(self, metrics: MetricsRegistry) -> None:
        m = metrics
        self.is_leader = m.add(
            Gauge(
                "coldchain_alerting_is_leader",
                "1 while this process holds the alerting lease and evaluates (a lone "
                "engine always does), 0 on standby",
            )
        )
        self.lease_heartbeat = m.add(
            Gauge(
                "coldchain_alerting_lease_heartbeat_timestamp_seconds",
                "When this process last renewed the alerting lease (unix time)",
            )
        )
        self.last_tick = m.add(
            Gauge(
                "coldchain_alerting_last_tick_timestamp_seconds",
                "When the last evaluation tick finished (unix time, the engine's clock)",
            )
        )
        self.since_tick = m.add(
            Gauge(
                "coldchain_alerting_seconds_since_last_tick",
                "Seconds since the last evaluation tick finished (since start before the "
                "first); the scheduler ticks every second",
                read=self.seconds_since_tick,
            )
        )
        self.evaluation_lag = m.add(
            Histogram(
                "coldchain_alerting_evaluation_lag_seconds",
                "From a batch of observations becoming durable in ingest to its evaluation "
                "finishing, per batch",
                LATENCY_BUCKETS,
            )
        )
        self.last_lag = m.add(
            Gauge(
                "coldchain_alerting_evaluation_lag_last_seconds",
                "The evaluation lag of the most recent batch",
            )
        )
        self.observations = m.add(
            Counter("coldchain_alerting_observations_evaluated_total", "Observations evaluated")
        )
        self.queued = m.add(
            Gauge(
                "coldchain_alerting_queued_batches",
                "Observation batches waiting for evaluation in this process (coldchain run)",
            )
        )
        self.queue_capacity = m.add(
            Gauge(
                "coldchain_alerting_queue_capacity_batches",
                "Batches the queue holds before ingest waits (and stops acknowledging)",
            )
        )
        self.warmup_seconds = m.add(
            Gauge(
                "coldchain_alerting_warmup_seconds",
                "How long this process's last warm-up took (rules built, stored history "
                "replayed, reconciled with the alert book; at a warm standby's takeover, "
                "the reconciliation alone); it grows with sensors x COLDCHAIN_WARMUP",
            )
        )
        self.warmup_observations = m.add(
            Gauge(
                "coldchain_alerting_warmup_observations",
                "Stored observations the last warm-up replayed",
            )
        )
        self._since = time.monotonic()

    def lease(self, *, leader: bool, heartbeat_at: float | None = None) -> None:
        """Leadership changed or was renewed at ``heartbeat_at`` (unix seconds)."""
        self.is_leader.set(1.0 if leader else 0.0)
        if heartbeat_at is not None:
            self.lease_heartbeat.set(heartbeat_at)

    def warmed(self, seconds: float, observations: int) -> None:
        """A warm-up took ``seconds`` and replayed ``observations``."""
        self.warmup_seconds.set(seconds)
        self.warmup_observations.set(float(observations))

    def ticked(self, at: float) -> None:
        """A tick finished at ``at`` (the engine's clock)."""
        self.last_tick.set(at)
        self._since = time.monotonic()

    def seconds_since_tick(self) -> float:
        """Real seconds since the last tick finished (or since construction)."""
        return time.monotonic() - self._since

    def healthy(self, stall_s: float = TICK_STALL_S) -> bool:
        """Ticks keep finishing (the systemd watchdog's check)."""
        return self.seconds_since_tick() < stall_s

    def batch_evaluated(self, observations: int, lag_s: float | None) -> None:
        """A batch was evaluated ``lag_s`` seconds after it became durable (None: unknown,
        e.g. a batch from an ingester that does not say when)."""
        self.observations.inc(amount=observations)
        if lag_s is not None:
            lag_s = max(0.0, lag_s)  # clocks of two processes on one host: never negative
            self.evaluation_lag.observe(lag_s)
            self.last_lag.set(lag_s)

    def watch_queue(self, depth: Callable[[], float], capacity: int) -> None:
        """Read the in-process queue's depth at every scrape."""
        self.queued.read_from(depth)
        self.queue_capacity.set(float(capacity))
