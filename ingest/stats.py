"""Ingest counters (exposed at ``/metrics`` and in the demo summary)."""

from __future__ import annotations

from collections.abc import Callable

from core.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram, Registry


class IngestStats:
    """Every count the ingester keeps, by family and reason where it matters."""

    def __init__(self, metrics: Registry | None = None) -> None:
        m = metrics if metrics is not None else Registry()
        self.registry = m
        self.messages = m.add(
            Counter("coldchain_ingest_messages_total", "MQTT messages received", ["family"])
        )
        self.readings = m.add(
            Counter("coldchain_ingest_readings_total", "Readings decoded", ["quantity"])
        )
        self.faults = m.add(
            Counter("coldchain_ingest_faults_total", "Sensor fault values", ["family", "code"])
        )
        self.dead_letters = m.add(
            Counter(
                "coldchain_ingest_dead_letters_total",
                "Messages or points that could not be stored, by reason",
                ["reason"],
            )
        )
        self.ignored = m.add(
            Counter(
                "coldchain_ingest_ignored_total",
                "Valid messages with nothing to store, by reason (listed with their device "
                "in /devices/discovered)",
                ["family", "reason"],
            )
        )
        self.unknown_sensor = m.add(
            Counter(
                "coldchain_ingest_unregistered_readings_total",
                "Readings from sensors not (or no longer) in the registry",
                ["family"],
            )
        )
        self.side_dropped = m.add(
            Counter(
                "coldchain_ingest_side_records_dropped_total",
                "Discovered devices and dead letters counted but not stored (flood budget)",
                ["kind"],
            )
        )
        self.retained_skipped = m.add(
            Counter(
                "coldchain_ingest_retained_skipped_total",
                "Retained readings replayed by the broker on subscribe (age unknown)",
                ["family"],
            )
        )
        self.ts_corrected = m.add(
            Counter(
                "coldchain_ingest_timestamps_corrected_total",
                "Device timestamps too far from the receive time, replaced by it",
                ["family"],
            )
        )
        self.points_written = m.add(
            Counter("coldchain_ingest_points_written_total", "Points written to InfluxDB")
        )
        self.batches_spooled = m.add(
            Counter("coldchain_ingest_batches_spooled_total", "Batches put on the local spool")
        )
        self.batches_drained = m.add(
            Counter("coldchain_ingest_batches_drained_total", "Spooled batches written later")
        )
        self.write_errors = m.add(
            Counter(
                "coldchain_ingest_write_errors_total",
                "InfluxDB write failures by class",
                ["kind"],
            )
        )
        self.acked = m.add(Counter("coldchain_ingest_acked_total", "MQTT messages acknowledged"))
        self.internal_errors = m.add(
            Counter("coldchain_ingest_internal_errors_total", "Bugs caught; message dead-lettered")
        )
        self.latency = m.add(
            Histogram(
                "coldchain_ingest_latency_seconds",
                "Device timestamp to durable (written or spooled), per message",
                LATENCY_BUCKETS,
            )
        )
        self.spool_bytes = m.add(Gauge("coldchain_ingest_spool_bytes", "Bytes on the spool"))
        self.spool_batches = m.add(
            Gauge("coldchain_ingest_spool_batches", "Batches waiting on the spool")
        )
        self.last_message_at = m.add(
            Gauge("coldchain_ingest_last_message_timestamp_seconds", "When a message last arrived")
        )
        self.last_write_at = m.add(
            Gauge(
                "coldchain_ingest_last_write_timestamp_seconds", "When InfluxDB last took a write"
            )
        )
        self.mqtt_connected = m.add(
            Gauge("coldchain_ingest_mqtt_connected", "1 while connected to the broker")
        )
        # Read at scrape time from the writer (watch_writer): what waits to be durable.
        self.unacked = m.add(
            Gauge(
                "coldchain_ingest_unacked_messages",
                "Messages handed to the writer and not yet acknowledged (waiting to be "
                "written or spooled); at coldchain_ingest_inflight_limit the broker waits",
            )
        )
        self.pending_points = m.add(
            Gauge("coldchain_ingest_pending_points", "Points waiting for the next batch")
        )
        self.inflight_limit = m.add(
            Gauge(
                "coldchain_ingest_inflight_limit",
                "Unacknowledged messages the broker may send (COLDCHAIN_MAX_INFLIGHT)",
            )
        )
        self.spool_limit = m.add(
            Gauge("coldchain_ingest_spool_limit_bytes", "Spool bound (COLDCHAIN_SPOOL_MAX_MB)")
        )

    def watch_writer(
        self, depth: Callable[[], tuple[int, int]], *, inflight_limit: int, spool_limit: int
    ) -> None:
        """Read the writer's queue at every scrape (``depth``: unacknowledged messages,
        pending points) and state the bounds they are measured against."""
        self.unacked.read_from(lambda: depth()[0])
        self.pending_points.read_from(lambda: depth()[1])
        self.inflight_limit.set(float(inflight_limit))
        self.spool_limit.set(float(spool_limit))
