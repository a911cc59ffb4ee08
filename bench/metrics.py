"""What a metric call costs on the ingest hot path: the hand-written counters core/metrics.py
had before prometheus-client ("old"), prometheus-client's own metric objects as
core/metrics.py used them until issue 15 ("prometheus"), and core/metrics.py now (per-thread
counters and a bucket-array histogram exported through prometheus-client's collector
interface), plus prometheus-client's objects in its multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, run in a child process because prometheus-client chooses
its value class when it is first imported).

Per message, ingest counts the message by family, each reading by quantity (two for a
typical temperature + humidity payload), stamps the last-message gauge and the writer
files its latency in the histogram: :func:`_suite`'s "per message" does exactly those
calls (core/metrics.py now: the latency as ingest's writer does it, one ``observe_many``
per batch of 5,000). Figures are nanoseconds per call, the best of ``--rounds`` rounds of
``--calls`` calls.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import prometheus_client as prom  # noqa: TID251 - the measured alternative

from core.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram

# Messages per writer batch (ingest's COLDCHAIN_BATCH_SIZE default) for observe_many.
BATCH = 5000


class _OldCounter:
    """The hand-written labelled counter core/metrics.py had until prometheus-client (the
    baseline): a dict keyed by label tuples under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount


class _OldGauge:
    def __init__(self) -> None:
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = value


class _OldHistogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float, count: int = 1) -> None:
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[index] += count
            self._sum += value * count
            self._count += count


def _best_ns(fn: Callable[[int], None], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn(calls)
        best = min(best, time.perf_counter() - started)
    return round(best / calls * 1e9, 1)


def _suite(
    counter: Any, gauge: Any, histogram: Any, calls: int, rounds: int, *, batched: bool = False
) -> dict[str, float]:
    def labelled(n: int) -> None:
        inc = counter.inc
        for _ in range(n):
            inc("native")

    def gauge_set(n: int) -> None:
        for i in range(n):
            gauge.set(float(i))

    def observe(n: int) -> None:
        for _ in range(n):
            histogram.observe(0.3)

    def per_message(n: int) -> None:
        latencies: list[float] = []
        for i in range(n):
            counter.inc("native")  # messages by family
            counter.inc("temperature")  # readings by quantity
            counter.inc("humidity")
            gauge.set(float(i))  # last message at
            if not batched:
                histogram.observe(0.3)  # latency, in the writer
                continue
            latencies.append(0.3)
            if len(latencies) == BATCH:
                histogram.observe_many(latencies)
                latencies = []
        if latencies:
            histogram.observe_many(latencies)

    figures = {
        "counter_inc_labelled_ns": _best_ns(labelled, calls, rounds),
        "gauge_set_ns": _best_ns(gauge_set, calls, rounds),
        "histogram_observe_ns": _best_ns(observe, calls, rounds),
        "per_message_ns": _best_ns(per_message, calls // 5, rounds),
    }
    if batched:
        values = [0.3] * BATCH

        def observe_many(n: int) -> None:
            for _ in range(n // BATCH):
                histogram.observe_many(values)

        figures["histogram_observe_many_per_value_ns"] = _best_ns(observe_many, calls, rounds)
    return figures


class _PromCounter:
    """A prometheus-client counter as core/metrics.py used it until issue 15: a dict of
    label values to prometheus-client children (its own ``labels()`` each call is 3x)."""

    def __init__(self, name: str) -> None:
        self._metric = prom.Counter(name, "bench", ["family"], registry=None)
        self._children: dict[tuple[str, ...], Any] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        child.inc(amount)


def _prometheus_figures(calls: int, rounds: int, *, multiprocess: bool) -> dict[str, float]:
    """prometheus-client's own objects, in this process's prometheus-client mode: the
    cached-child counter, its locked gauge ``set`` (an attribute-backed gauge is what
    core/metrics.py's unlabelled Gauge is, and not possible in multiprocess mode), its
    histogram, and ``labels(...).inc()`` on every call as its documentation writes it."""
    counter = _PromCounter("bench_messages_total")
    locked = prom.Gauge("bench_native_seconds", "bench", ["k"], registry=None).labels("a")
    gauge: Any = locked if multiprocess else Gauge("bench_last_seconds", "bench")
    histogram = prom.Histogram(
        "bench_latency_seconds", "bench", buckets=LATENCY_BUCKETS, registry=None
    )
    figures = _suite(counter, gauge, histogram, calls, rounds)

    def locked_set(n: int) -> None:
        for i in range(n):
            locked.set(float(i))

    figures["gauge_set_locked_ns"] = _best_ns(locked_set, calls, rounds)
    uncached = prom.Counter("bench_uncached_total", "bench", ["family"], registry=None)

    def labelled(n: int) -> None:
        for _ in range(n):
            uncached.labels("native").inc()

    figures["counter_labels_call_ns"] = _best_ns(labelled, calls, rounds)
    return figures


def run(argv: list[str], *, quiet: bool) -> dict[str, Any]:
    """Measure and return the figures (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="coldchain bench metrics")
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # the multiprocess-mode half, in a process started with the variable
        return _prometheus_figures(args.calls, args.rounds, multiprocess=True)
    old = _suite(_OldCounter(), _OldGauge(), _OldHistogram(LATENCY_BUCKETS),
                 args.calls, args.rounds)  # fmt: skip
    single = _prometheus_figures(args.calls, args.rounds, multiprocess=False)
    now = _suite(
        Counter("bench_now_total", "bench", ["family"]), Gauge("bench_now_seconds", "bench"),
        Histogram("bench_now_latency_seconds", "bench", LATENCY_BUCKETS),
        args.calls, args.rounds, batched=True,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="coldchain-multiproc-") as folder:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}
        out = subprocess.run(
            [sys.executable, "-m", "coldchain", "bench", "metrics", "--json", "--child",
             "--calls", str(args.calls), "--rounds", str(args.rounds)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        multi = json.loads(out.strip().splitlines()[-1])
    figures: dict[str, Any] = {"benchmark": "metrics", "calls": args.calls}
    parts = (("old", old), ("prometheus", single), ("now", now), ("multiprocess", multi))
    for prefix, part in parts:
        figures.update({f"{prefix}_{key}": value for key, value in part.items()})
    for prefix, part in parts[1:]:
        figures[f"ratio_{prefix}_vs_old_per_message"] = round(
            part["per_message_ns"] / old["per_message_ns"], 2
        )
    if not quiet:
        for prefix, part in parts:
            cells = ", ".join(f"{k.removesuffix('_ns')} {v:g} ns" for k, v in part.items())
            print(f"{prefix:>12}: {cells}")
    return figures
