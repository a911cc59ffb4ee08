"""The ingest service: MQTT source -> pipeline -> batch writer -> InfluxDB or spool.

Lifecycle (STYLE.md §9): construct and validate without I/O; :meth:`Ingester.start`;
:meth:`Ingester.stop` stops taking messages, writes or spools what is pending, sends the
acknowledgements, then disconnects, leaving the persistent session on the broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from core.clock import Clock
from core.influx import TimeSeriesStore
from core.metrics import Registry as MetricsRegistry
from core.registry import Registry
from core.settings import Settings
from devices import Router
from ingest.index import SensorIndex
from ingest.mqtt import MqttSource
from ingest.pipeline import Observation, Pipeline
from ingest.spool import Spool
from ingest.stats import IngestStats
from ingest.writer import BatchWriter

log = logging.getLogger(__name__)

# After the last batch is acked at shutdown, give paho's thread this long to put the
# PUBACKs on the wire before disconnecting. Unsent acks only cause harmless redelivery.
ACK_GRACE_S = 0.3


class Ingester:
    """One ingest process (or the ingest part of ``coldchain run``)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: TimeSeriesStore,
        clock: Clock,
        *,
        metrics: MetricsRegistry | None = None,
        on_durable: Callable[[list[Observation]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.stats = IngestStats(metrics)
        self.spool = Spool(settings.spool_dir, settings.spool_max_mb * 1024 * 1024)
        self.router = Router()
        self.index = SensorIndex(registry)
        self.writer = BatchWriter(
            store,
            self.spool,
            self._ack,
            self.stats,
            clock,
            batch_size=settings.batch_size,
            interval_s=settings.batch_interval_ms / 1000.0,
            before_ack=self._before_ack,
            on_rejected=self._on_rejected,
            on_durable=on_durable,
            housekeeping=self._housekeeping,
        )
        self.stats.watch_writer(
            self.writer.depth,
            inflight_limit=settings.max_inflight,
            spool_limit=self.spool.max_bytes,
        )
        self.pipeline = Pipeline(
            self.router,
            self.index,
            self.writer,
            stats=self.stats,
            clock=clock,
            registry=registry,
            emit_observations=on_durable is not None,
        )
        self.source = MqttSource(
            settings.mqtt,
            settings.mqtt_client_id,
            self.router.subscriptions,
            self.pipeline.handle,
            receive_maximum=settings.max_inflight,
            on_connection_change=lambda up: self.stats.mqtt_connected.set(1.0 if up else 0.0),
        )

    def _ack(self, token: Any) -> None:
        self.source.ack(token)

    def _before_ack(self) -> None:
        self.pipeline.flush_dead_letters()

    def _on_rejected(self, rejections: Any) -> None:
        self.pipeline.record_rejections(rejections)

    def _housekeeping(self) -> None:
        self.pipeline.housekeeping()

    def start(self) -> None:
        """Start writing, then start consuming."""
        self.writer.start()
        self.source.start()
        log.info("ingest started: %d topic filters", len(self.router.subscriptions))

    def wait_connected(self, timeout: float) -> bool:
        """Block until the broker accepted us (tests and the demo)."""
        return self.source.connected.wait(timeout)

    def stop(self) -> None:
        """Drain in-flight work and disconnect (SIGTERM/SIGINT path)."""
        self.source.pause()
        self.writer.stop()
        self.pipeline.housekeeping(force=True)
        time.sleep(ACK_GRACE_S)
        self.source.stop()
        log.info(
            "ingest stopped: %d messages, %d points written, %d batches on the spool",
            int(self.stats.messages.total()),
            int(self.stats.points_written.total()),
            len(self.spool),
        )
