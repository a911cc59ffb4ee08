"""Wiring: settings and a clock in, a running coldchain out.

``coldchain run`` (ingest + alerting + API in one process), the demo and the acceptance
tests all build the same :class:`Stack`. Each component gets its own registry connection
(SQLite WAL lets them read and write side by side) and they share one metrics registry.
Ingest hands durable observations to alerting through a bounded queue served by a thread
of its own, so evaluating rules never delays InfluxDB writes and acknowledgements.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alerting.engine import AlertingEngine
from alerting.lease import Lease
from alerting.notifiers.base import Notifier
from alerting.notifiers.console import ConsoleNotifier
from alerting.scheduler import TICK_INTERVAL_S, Scheduler
from core.clock import Clock
from core.errors import ConfigError
from core.influx import InfluxV1, connect
from core.metrics import Registry as MetricsRegistry
from core.registry import Registry
from core.settings import Settings
from ingest.pipeline import Observation
from ingest.service import Ingester

log = logging.getLogger(__name__)

# Observation batches waiting for the alerting thread. Each is one ingest batch (up to
# COLDCHAIN_BATCH_SIZE readings). When full, the ingest writer waits: alerting falling
# behind slows acknowledgements (the broker buffers) instead of growing memory.
OBSERVATION_QUEUE_BATCHES = 256


def make_notifier(settings: Settings, out: Callable[[str], None] | None = None) -> Notifier:
    """Twilio when credentials are set, else the console notifier (DESIGN.md §3)."""
    if settings.twilio_configured:
        from alerting.notifiers.twilio import TwilioNotifier

        assert settings.twilio_account_sid is not None
        assert settings.twilio_auth_token is not None
        assert settings.twilio_from is not None
        return TwilioNotifier(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            settings.twilio_from,
            base_url=settings.twilio_base_url,
        )
    return ConsoleNotifier(out=out)


def make_engine(
    settings: Settings,
    clock: Clock,
    influx: InfluxV1,
    *,
    notifier: Notifier | None = None,
    metrics: MetricsRegistry | None = None,
) -> AlertingEngine:
    """The alerting engine for ``settings``, on a registry connection of its own, active
    while it holds the alerting lease (alerting/lease.py) under ``settings.instance``."""
    lease = Lease(Registry(settings.db), settings.instance_name, clock, ttl_s=settings.lease_ttl)
    return AlertingEngine(
        Registry(settings.db),
        notifier or make_notifier(settings),
        clock,
        influx=influx,
        public_url=settings.public_url,
        ack_timeout_s=settings.ack_timeout,
        warmup_s=settings.warmup,
        startup_grace_s=settings.startup_grace,
        metrics=metrics,
        lease=lease,
    )


class ObservationPump:
    """Moves durable observations from the ingest writer to the alerting engine.

    Its depth (``coldchain_alerting_queued_batches``) and the time from ``put`` to the end
    of evaluation (``coldchain_alerting_evaluation_lag_seconds``) are what the monitoring
    rules watch (alerting/health.py).
    """

    def __init__(self, engine: AlertingEngine) -> None:
        self.engine = engine
        # (monotonic time the batch became durable, the batch); None stops the thread.
        self._queue: queue.Queue[tuple[float, list[Observation]] | None] = queue.Queue(
            OBSERVATION_QUEUE_BATCHES
        )
        self._thread = threading.Thread(target=self._run, name="alerting-pump", daemon=True)
        engine.stats.health.watch_queue(self._queue.qsize, OBSERVATION_QUEUE_BATCHES)

    def put(self, batch: list[Observation]) -> None:
        """Called by the ingest writer once a batch is durable (blocks when full)."""
        self._queue.put((time.monotonic(), batch))

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Evaluate what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(30)

    def join(self) -> None:
        """Wait until every queued batch has been evaluated (tests, demo)."""
        self._queue.join()

    def _run(self) -> None:
        health = self.engine.stats.health
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                durable_at, batch = item
                self.engine.observe(batch)
                if self.engine.leading:  # a standby only keeps its rules in step
                    health.batch_evaluated(len(batch), time.monotonic() - durable_at)
            except Exception:  # the pump must outlive a bug in one batch
                log.exception("alerting failed on a batch of %d observations",
                              len(item[1]) if item else 0)  # fmt: skip
            finally:
                self._queue.task_done()


@dataclass
class Stack:
    """Every long-running part of one coldchain process, started and stopped in order."""

    settings: Settings
    clock: Clock
    metrics: MetricsRegistry
    influx: InfluxV1
    registry: Registry
    engine: AlertingEngine
    pump: ObservationPump
    scheduler: Scheduler
    ingester: Ingester
    api: Any = None  # api.server.ApiServer when the API runs in this process
    extra_stops: list[Callable[[], None]] = field(default_factory=list)
    _scheduled: bool = False

    def start(self, *, scheduler: bool = True) -> None:
        """Alerting first (so no observation is missed), then ingest, then the API.

        ``scheduler=False`` leaves ticking to the caller (lockstep simulations, tests).
        """
        self.engine.start()
        self.pump.start()
        if scheduler:
            self.scheduler.start()
        self._scheduled = scheduler
        self.ingester.start()
        if self.api is not None:
            self.api.start()

    def stop(self) -> None:
        """Reverse order, each draining: API, ingest (writes + acks), alerting."""
        if self.api is not None:
            self.api.stop()
        self.ingester.stop()
        self.pump.stop()
        if self._scheduled:
            self.scheduler.stop()
        self.engine.stop()
        for stop in self.extra_stops:
            stop()
        self.influx.close()
        self.registry.close()


def build_stack(
    settings: Settings,
    clock: Clock,
    *,
    notifier: Notifier | None = None,
    tick_interval_s: float = TICK_INTERVAL_S,
    with_api: bool = True,
) -> Stack:
    """Construct (without starting) ingest + alerting (+ API) for ``settings``."""
    if settings.share_group:
        # Each process would evaluate only its share of the readings.
        raise ConfigError(
            "COLDCHAIN_SHARE_GROUP: shared ingest runs as `coldchain ingest` processes "
            "(split mode), not in `coldchain run`"
        )
    metrics = MetricsRegistry()
    influx = connect(settings)
    influx.ensure_database()
    engine = make_engine(settings, clock, influx, notifier=notifier, metrics=metrics)
    pump = ObservationPump(engine)
    # Ingest hands each durable batch to every one of these, in order: the API's
    # latest-value cache (added by _api_server; cheap, never blocks), then alerting.
    handoff: list[Callable[[list[Observation]], None]] = [pump.put]

    def hand_off(batch: list[Observation]) -> None:
        for sink in handoff:
            sink(batch)

    ingester = Ingester(
        settings, Registry(settings.db), influx, clock, metrics=metrics, on_durable=hand_off
    )
    # The pipeline watchdog: MQTT down for 2 min is a stall (docs/design/alerting.md).
    engine.ingest_connected = ingester.source.connected.is_set
    stack = Stack(
        settings=settings,
        clock=clock,
        metrics=metrics,
        influx=influx,
        registry=Registry(settings.db),
        engine=engine,
        pump=pump,
        scheduler=Scheduler(engine.tick, tick_interval_s),
        ingester=ingester,
    )
    if with_api:
        stack.api = _api_server(stack, handoff)
    return stack


def _api_server(stack: Stack, handoff: list[Callable[[list[Observation]], None]]) -> Any:
    """The API server if the api package provides one (issue 5), else None.

    Its ``/readings/latest`` is served from a latest-value cache fed by this process's
    ingest (api/latest.py says why and when that is exact).
    """
    try:
        from api.latest import LatestCache
        from api.server import ApiServer  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        log.info("API not available in this build; running ingest and alerting only")
        return None
    cache = LatestCache()
    handoff.insert(0, cache.observe)
    return ApiServer.for_stack(stack, latest=cache)
