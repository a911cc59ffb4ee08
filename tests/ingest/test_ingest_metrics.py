"""What ingest's queue gauges say (coldchain_ingest_unacked_messages and _pending_points,
read from the writer at scrape time), and the observation batches that carry their
durable time to a separate alerting process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from core.clock import SystemClock
from core.metrics import Registry, parse
from core.types import Quantity
from ingest import observations
from ingest.pipeline import Observation
from ingest.spool import Spool
from ingest.stats import IngestStats
from ingest.writer import BatchWriter
from tests.ingest.helpers import wait_for
from tests.ingest.test_writer import FakeStore


class SlowStore(FakeStore):
    """Holds every write until released (a slow InfluxDB)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writing = threading.Event()

    def write(self, body: bytes) -> None:
        self.writing.set()
        self.release.wait(10)
        super().write(body)


def _gauges(metrics: Registry) -> tuple[float | None, float | None]:
    families = parse(metrics.render())
    return (families["coldchain_ingest_unacked_messages"].value(),
            families["coldchain_ingest_pending_points"].value())  # fmt: skip


def test_unacked_messages_count_what_waits_to_be_durable(tmp_path: Path) -> None:
    metrics = Registry()
    stats = IngestStats(metrics)
    store = SlowStore()
    acked: list[Any] = []
    writer = BatchWriter(store, Spool(tmp_path / "spool", 1_000_000), acked.extend, stats,  # type: ignore[arg-type]
                         SystemClock(), batch_size=100, interval_s=0.05)  # fmt: skip
    stats.watch_writer(writer.depth, inflight_limit=50, spool_limit=1_000_000)
    assert _gauges(metrics) == (0, 0)
    for n in range(3):  # three messages, two points each
        writer.submit_many([f"t,s=a value={n} {n}", f"h,s=a value={n} {n}"], [f"token{n}"], [], [])
    assert _gauges(metrics) == (3, 6)  # pending
    writer.start()
    try:
        assert store.writing.wait(5)
        writer.submit_many(["t,s=b value=9 9"], ["token9"], [], [])
        assert _gauges(metrics) == (4, 1)  # three being written, one pending
        store.release.set()
        wait_for(lambda: len(acked) == 4, what="4 acks")
        wait_for(lambda: _gauges(metrics) == (0, 0), what="nothing waiting")
        families = parse(metrics.render())
        assert families["coldchain_ingest_inflight_limit"].value() == 50
        assert families["coldchain_ingest_spool_limit_bytes"].value() == 1_000_000
        assert writer.alive()
        assert not writer.alive(stall_s=0.0)
    finally:
        store.release.set()
        writer.stop()
    assert not writer.alive()


READING = Observation("reading", 1_700_000_000_000, "wic1", "wic1", "s042", "s042-wic1",
                      "walkin_cooler", Quantity.TEMPERATURE, 4.5)  # fmt: skip


def test_observation_batches_carry_their_durable_time() -> None:
    timed = observations.encode([READING], durable_at=1_700_000_001.25)
    assert observations.decode_timed(timed) == ([READING], 1_700_000_001.25)
    assert observations.decode(timed) == [READING]
    # What ingest published before (and an older ingest still does): no time, still read.
    assert observations.decode_timed(observations.encode([READING])) == ([READING], None)


@pytest.mark.parametrize(
    "payload",
    [b'{"rows": []}', b'{"durable_at": "soon", "rows": []}', b'{"durable_at": true, "rows": []}',
     b'{"durable_at": 1.0, "rows": {}}', b'{"durable_at": 1.0, "rows": [[1, 2]]}'],
)  # fmt: skip
def test_a_malformed_timed_batch_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError, match="observation"):
        observations.decode_timed(payload)
