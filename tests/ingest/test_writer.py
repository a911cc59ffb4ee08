"""The writer's failure taxonomy, with a small hand-written fake store (unit tier)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from core.clock import SystemClock
from core.errors import InfluxConfigError, InfluxRejected, InfluxTooLarge, InfluxUnavailable
from ingest.spool import Spool
from ingest.stats import IngestStats
from ingest.writer import CAUGHT_UP_FLUSH, BatchWriter, Rejection
from tests.ingest.helpers import wait_for


class FakeStore:
    """Fails as told; remembers every line it accepted."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.mode = "ok"
        self.max_lines = 1_000_000
        self.bad_prefix = "bad"
        self.ensured = 0
        self.lock = threading.Lock()

    def write(self, body: bytes) -> None:
        lines = body.decode().split("\n")
        if self.mode == "down":
            raise InfluxUnavailable("down", 503)
        if self.mode == "nodb":
            raise InfluxConfigError("database not found", 404)
        if len(lines) > self.max_lines:
            raise InfluxTooLarge("too large", 413)
        if any(line.startswith(self.bad_prefix) for line in lines):
            raise InfluxRejected("field type conflict", 400)
        with self.lock:
            self.lines.extend(lines)

    def ensure_database(self) -> bool:
        self.ensured += 1
        self.mode = "ok"
        return True


def _writer(
    tmp_path: Path, store: FakeStore, *, batch_size: int = 10, interval_s: float = 0.05
) -> tuple[BatchWriter, list[Any], list[Rejection]]:
    acked: list[Any] = []
    rejected: list[Rejection] = []
    writer = BatchWriter(
        store,  # type: ignore[arg-type]
        Spool(tmp_path / "spool", 1_000_000),
        acked.extend,
        IngestStats(),
        SystemClock(),
        batch_size=batch_size,
        interval_s=interval_s,
        on_rejected=rejected.extend,
    )
    writer.start()
    return writer, acked, rejected


def test_acks_follow_the_write(tmp_path: Path) -> None:
    store = FakeStore()
    writer, acked, _ = _writer(tmp_path, store)
    for i in range(25):
        writer.submit_many([f"m v={i} {i}"], [i], [], [])
    wait_for(lambda: len(acked) == 25)
    writer.stop()
    assert acked == list(range(25))
    assert len(store.lines) == 25


def test_a_caught_up_source_has_its_batch_written_without_waiting_for_the_interval(
    tmp_path: Path,
) -> None:
    """The tail of a backlog is written when the source has read everything, not an
    interval later; a source still reading, or a batch too small, waits as before."""
    store = FakeStore()
    writer, acked, _ = _writer(tmp_path, store, batch_size=100_000, interval_s=3600)
    n = CAUGHT_UP_FLUSH
    writer.submit_many([f"m v={i} {i}" for i in range(n - 1)], list(range(n - 1)), [], [],
                       caught_up=True)  # fmt: skip
    writer.submit_many([f"m v={n - 1} {n - 1}"], [n - 1], [], [])  # enough, still reading
    time.sleep(0.5)  # the writer thread had its chance: nothing is due for an hour
    assert acked == []
    assert store.lines == []
    assert writer.depth() == (n, n)
    writer.submit_many([f"m v={n} {n}"], [n], [n * 1000], [], caught_up=True)
    wait_for(lambda: len(acked) == n + 1)
    writer.stop()
    assert acked == list(range(n + 1))  # in arrival order
    assert len(store.lines) == n + 1


def test_rejected_lines_are_isolated_by_bisection(tmp_path: Path) -> None:
    store = FakeStore()
    writer, acked, rejected = _writer(tmp_path, store)
    lines = [f"good v={i} {i}" for i in range(9)]
    lines.insert(4, "bad v=1i 4")
    writer.submit_many(lines, ["token"], [], [])
    wait_for(lambda: acked == ["token"])
    writer.stop()
    assert sorted(store.lines) == sorted(lines[:4] + lines[5:])
    assert [r.line for r in rejected] == ["bad v=1i 4"]
    assert "field type conflict" in rejected[0].reason


def test_too_large_is_split(tmp_path: Path) -> None:
    store = FakeStore()
    store.max_lines = 3
    writer, acked, rejected = _writer(tmp_path, store)
    writer.submit_many([f"m v={i} {i}" for i in range(10)], ["t"], [], [])
    wait_for(lambda: acked == ["t"])
    writer.stop()
    assert len(store.lines) == 10
    assert rejected == []


def test_outage_spools_acks_and_drains_in_order(tmp_path: Path) -> None:
    store = FakeStore()
    store.mode = "down"
    writer, acked, _ = _writer(tmp_path, store)
    for i in range(30):
        writer.submit_many([f"m v={i} {i}"], [i], [], [])
    wait_for(lambda: len(acked) == 30)
    assert store.lines == []
    store.mode = "ok"
    wait_for(lambda: len(store.lines) == 30, 30)
    writer.stop()
    assert store.lines == [f"m v={i} {i}" for i in range(30)]


def test_missing_database_is_created_before_the_drain(tmp_path: Path) -> None:
    store = FakeStore()
    store.mode = "nodb"
    writer, acked, _ = _writer(tmp_path, store)
    writer.submit_many(["m v=1 1"], [1], [], [])
    wait_for(lambda: store.lines == ["m v=1 1"], 30)
    writer.stop()
    assert store.ensured == 1
    assert acked == [1]
