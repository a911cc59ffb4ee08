"""The batch writer: lines in, durable out, then acknowledge (STYLE.md §3).

The producer (the MQTT network thread) hands over the lines and ack tokens of each receive
chunk's messages (:meth:`submit_many`). The writer thread flushes a batch when it holds
``batch_size`` lines, when its oldest line is ``interval`` old, or when the producer is
caught up with enough pending (:data:`CAUGHT_UP_FLUSH`), and only after the batch is
durable does it acknowledge the messages, all of the batch's tokens in one call (one
write to the broker per batch, not one wake-up of the network thread per message):

- written to InfluxDB -> ack;
- InfluxDB unavailable (refused, timeout, 429, 5xx) or misconfigured (401/403/404) ->
  batch appended to the on-disk spool -> ack; the spool drains in order, with backoff;
- InfluxDB rejects the points (400) -> the batch is bisected (writes are idempotent: same
  series, same time) until the single bad lines are found; those are dead-lettered with
  InfluxDB's reason, the rest written -> ack;
- too large (413) -> split in halves and retried.

While the spool holds batches, new batches go behind them, so InfluxDB sees data in
arrival order. When the spool is full the batch stays in memory and nothing is acked; the
broker stops sending at ``receive_maximum`` unacked messages and queues the rest.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.clock import Clock
from core.errors import (
    InfluxConfigError,
    InfluxRejected,
    InfluxTooLarge,
    InfluxUnavailable,
)
from core.influx import TimeSeriesStore
from ingest.spool import Spool, SpoolFull
from ingest.stats import IngestStats

log = logging.getLogger(__name__)

# Backoff between attempts to reach InfluxDB while it is down. Too short hammers a
# recovering server; too long delays the drain after it is back.
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 10.0
# The systemd watchdog withholds its ping when the writer loop has not turned for this
# long (it turns at least every second, and every backoff while InfluxDB is away). Too
# low and a slow write (a 413 bisected, a timeout or two) gets ingest killed mid-batch
# (harmless: unacked messages are redelivered, but a restart costs seconds); too high and
# a hung writer holds the whole in-flight window for that long before systemd restarts it.
WRITER_STALL_S = 120.0
# A pending batch this large is written as soon as the source is caught up (it has read
# everything the broker sent so far), not after the batch interval. Too low and a steady
# stream that the source keeps up with is written in many small requests (InfluxDB's
# cost is per request as well as per point); too high and a backlog's tail waits for the
# interval (200 ms by default: a fifth of the time a 100k-message backlog takes).
CAUGHT_UP_FLUSH = 500


@dataclass(slots=True)
class Batch:
    """Lines and the messages they came from, plus what to record once durable."""

    lines: list[str] = field(default_factory=list)
    tokens: list[Any] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)  # per message with a device timestamp
    events: list[Any] = field(default_factory=list)  # observations handed on when durable
    first_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line InfluxDB refused, with its reason."""

    line: str
    reason: str


class BatchWriter:
    """Owns the writer thread; see the module docstring."""

    def __init__(
        self,
        store: TimeSeriesStore,
        spool: Spool,
        ack_many: Callable[[list[Any]], None],
        stats: IngestStats,
        clock: Clock,
        *,
        batch_size: int,
        interval_s: float,
        before_ack: Callable[[], None] | None = None,
        on_rejected: Callable[[Sequence[Rejection]], None] | None = None,
        on_durable: Callable[[list[Any]], None] | None = None,
        housekeeping: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._spool = spool
        self._ack_many = ack_many
        self._stats = stats
        self._clock = clock
        self.batch_size = batch_size
        self.interval_s = interval_s
        self._before_ack = before_ack
        self._on_rejected = on_rejected
        self._on_durable = on_durable
        self._housekeeping = housekeeping
        # A plain Lock under the Condition: submit_many() takes it once per chunk, directly
        # (the Condition's own __enter__ is a Python call more), and an RLock costs more.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending = Batch()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._backoff = BACKOFF_MIN_S
        self._retry_at = 0.0
        self._database_missing = False
        self._in_hand = 0  # messages of the batch being written, not yet acknowledged
        self.beat = time.monotonic()  # the loop's last turn (systemd watchdog)
        self._update_spool_gauges()

    # -- producer side ----------------------------------------------------------------

    def submit_many(
        self,
        lines: list[str],
        tokens: list[Any],
        ts_ms: list[int],
        events: list[Any],
        *,
        caught_up: bool = False,
    ) -> None:
        """Queue the lines of some messages (one receive chunk), their tokens in arrival
        order (acks go out in that order), and the device times of those that had one.

        ``caught_up``: the source has read all there is for now. A pending batch of at
        least :data:`CAUGHT_UP_FLUSH` messages is then written at once instead of after
        ``interval_s``: the end of a backlog is queryable without waiting for the
        interval, while a source that is never caught up (saturated) keeps filling
        batches of ``batch_size``.
        """
        with self._lock:  # the Condition's lock: notify() below is allowed
            batch = self._pending
            if not batch.tokens:
                batch.first_at = time.monotonic()
                # The writer may be in a long idle wait: it must learn the flush deadline.
                self._cond.notify()
            batch.lines += lines
            batch.tokens += tokens
            if ts_ms:
                batch.ts_ms += ts_ms
            if events:
                batch.events += events
            if len(batch.lines) >= self.batch_size:
                self._cond.notify()
            elif caught_up and len(batch.tokens) >= min(CAUGHT_UP_FLUSH, self.batch_size):
                batch.first_at = 0.0  # due now
                self._cond.notify()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Flush what is pending (write or spool), ack it, and stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def depth(self) -> tuple[int, int]:
        """Messages not yet acknowledged (pending, and the batch being written) and lines
        pending for the next batch (``/metrics``)."""
        with self._cond:
            return len(self._pending.tokens) + self._in_hand, len(self._pending.lines)

    def alive(self, stall_s: float = WRITER_STALL_S) -> bool:
        """The writer thread runs and its loop turned within ``stall_s`` (watchdog)."""
        thread = self._thread
        return thread is not None and thread.is_alive() and time.monotonic() - self.beat < stall_s

    @property
    def idle(self) -> bool:
        """Nothing waits to be written or acknowledged."""
        with self._cond:
            return not self._pending.tokens and not self._in_hand

    def flush_now(self) -> None:
        """Ask the thread to flush at once (tests, shutdown)."""
        with self._cond:
            if self._pending.tokens:
                self._pending.first_at = 0.0
            self._cond.notify()

    # -- writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._due():
                    self.beat = time.monotonic()
                    self._cond.wait(self._wait_time())
                batch, self._pending = self._pending, Batch()
                stopping = self._stopping
                self._in_hand = len(batch.tokens)
            self.beat = time.monotonic()
            try:
                if batch.tokens:
                    self._flush(batch, stopping=stopping)
                if len(self._spool) and time.monotonic() >= self._retry_at:
                    self._drain_one()
                if self._housekeeping is not None:
                    self._housekeeping()
            except Exception:  # never let the writer thread die; the batch is not acked
                log.exception("ingest writer failed; will retry")
                self._stats.internal_errors.inc()
                time.sleep(BACKOFF_MIN_S)
            self._in_hand = 0
            if stopping:
                return

    def _due(self) -> bool:
        batch = self._pending
        if batch.tokens and (
            len(batch.lines) >= self.batch_size
            or time.monotonic() - batch.first_at >= self.interval_s
        ):
            return True
        return bool(len(self._spool)) and time.monotonic() >= self._retry_at

    def _wait_time(self) -> float:
        waits = [1.0]
        if self._pending.tokens:
            waits.append(self._pending.first_at + self.interval_s - time.monotonic())
        if len(self._spool):
            waits.append(self._retry_at - time.monotonic())
        return max(0.005, min(waits))

    def _flush(self, batch: Batch, *, stopping: bool) -> None:
        body = "\n".join(batch.lines).encode()
        while True:
            self.beat = time.monotonic()  # waiting for room on the spool is alive
            if self._persist(body):
                break
            if stopping:
                log.error("spool full at shutdown: %d messages left unacked", len(batch.tokens))
                return  # not acked: the broker redelivers them after restart
            time.sleep(self._next_backoff())
            if len(self._spool) and time.monotonic() >= self._retry_at:
                self._drain_one()
        if self._before_ack is not None:
            self._before_ack()
        self._ack_many(batch.tokens)
        self._stats.acked.inc(amount=len(batch.tokens))
        self._in_hand = 0
        now_s = self._clock.time()
        self._stats.latency.observe_many([max(0.0, now_s - ts / 1000.0) for ts in batch.ts_ms])
        if self._on_durable is not None and batch.events:
            self._on_durable(batch.events)

    def _persist(self, body: bytes) -> bool:
        """Write or spool one batch; False only when it could do neither (spool full)."""
        if not body:
            return True
        if len(self._spool) == 0:
            try:
                self._write(body)
            except (InfluxUnavailable, InfluxConfigError) as exc:
                self._note_unavailable(exc)
            else:
                return True
        try:
            self._spool.append(body)
        except SpoolFull as exc:
            full = str(exc)
        else:
            self._stats.batches_spooled.inc()
            self._update_spool_gauges()
            return True
        self._stats.write_errors.inc("spool_full")
        log.error("%s; not acknowledging until InfluxDB drains it", full)
        return False

    def _write(self, body: bytes) -> None:
        """Write, splitting on 413 and isolating rejected lines on 400.

        Raises:
            InfluxUnavailable, InfluxConfigError: nothing (more) could be written.
        """
        try:
            self._store.write(body)
        except InfluxTooLarge:
            self._stats.write_errors.inc("too_large")
            self._split_and_write(body)
            return
        except InfluxRejected as exc:
            self._stats.write_errors.inc("rejected")
            if b"\n" not in body:
                self._reject([Rejection(body.decode(errors="replace"), str(exc))])
                return
            self._split_and_write(body)
            return
        self._stats.points_written.inc(amount=body.count(b"\n") + 1)
        self._stats.last_write_at.set(self._clock.time())

    def _split_and_write(self, body: bytes) -> None:
        lines = body.split(b"\n")
        if len(lines) == 1:
            reason = "InfluxDB refused a single line as too large"
            self._reject([Rejection(body.decode(errors="replace"), reason)])
            return
        middle = len(lines) // 2
        self._write(b"\n".join(lines[:middle]))
        self._write(b"\n".join(lines[middle:]))

    def _reject(self, rejections: Sequence[Rejection]) -> None:
        self._stats.dead_letters.inc("influx_rejected", amount=len(rejections))
        if self._on_rejected is not None:
            self._on_rejected(rejections)

    def _drain_one(self) -> None:
        head = self._spool.head()
        if head is None:
            return
        path, body = head
        if self._database_missing:
            # InfluxDB came back without our database (new server, or it was down at
            # start-up): create it before the next attempt.
            self._database_missing = not self._store.ensure_database()
        try:
            self._write(body)
        except (InfluxUnavailable, InfluxConfigError) as exc:
            self._note_unavailable(exc)
            self._retry_at = time.monotonic() + self._next_backoff()
            return
        self._spool.pop(path)
        self._stats.batches_drained.inc()
        self._update_spool_gauges()
        self._backoff = BACKOFF_MIN_S
        self._retry_at = 0.0
        if not len(self._spool):
            log.info("spool drained; InfluxDB is taking writes again")

    def _note_unavailable(self, exc: Exception) -> None:
        kind = "config" if isinstance(exc, InfluxConfigError) else "unavailable"
        if isinstance(exc, InfluxConfigError) and exc.status == 404:
            self._database_missing = True
        self._stats.write_errors.inc(kind)
        if not len(self._spool):
            log.warning("InfluxDB write failed (%s); spooling to disk", exc)

    def _next_backoff(self) -> float:
        delay = self._backoff * (0.5 + random.random())  # jitter: no thundering herd
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
        return delay

    def _update_spool_gauges(self) -> None:
        self._stats.spool_bytes.set(self._spool.size_bytes)
        self._stats.spool_batches.set(len(self._spool))
