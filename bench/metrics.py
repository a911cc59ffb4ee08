"""What a metric call costs on the ingest hot path: the hand-written counters core/metrics.py
had before prometheus-client, against core/metrics.py now, in single-process mode and in
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, run in a child
process because prometheus-client chooses its value class when it is first imported).

Per message, ingest counts the message by family, each reading by quantity (two for a
typical temperature + humidity payload), stamps the last-message gauge and the writer
observes its latency histogram: :func:`_per_message` does exactly those five calls.
Figures are nanoseconds per call, the best of ``--rounds`` rounds of ``--calls`` calls.
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

from core.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram


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


def _suite(counter: Any, gauge: Any, histogram: Any, calls: int, rounds: int) -> dict[str, float]:
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
        for i in range(n):
            counter.inc("native")  # messages by family
            counter.inc("temperature")  # readings by quantity
            counter.inc("humidity")
            gauge.set(float(i))  # last message at
            histogram.observe(0.3)  # latency, in the writer

    return {
        "counter_inc_labelled_ns": _best_ns(labelled, calls, rounds),
        "gauge_set_ns": _best_ns(gauge_set, calls, rounds),
        "histogram_observe_ns": _best_ns(observe, calls, rounds),
        "per_message_ns": _best_ns(per_message, calls // 5, rounds),
    }


class _Uncached:
    """core/metrics.py's Counter without its child cache: prometheus-client's
    ``labels(...)`` on every call, as its documentation writes it."""

    def __init__(self, counter: Counter) -> None:
        self._metric = counter._metric

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self._metric.labels(*labels).inc(amount)


def _prometheus_figures(calls: int, rounds: int, *, multiprocess: bool) -> dict[str, float]:
    """core/metrics.py as it is, plus the uncached ``labels()`` call and prometheus-client's
    own (locked) gauge ``set``, in this process's prometheus-client mode."""
    counter = Counter("bench_messages_total", "bench", ["family"])
    gauge: Any = Gauge("bench_last_seconds", "bench")
    native = Gauge("bench_native_seconds", "bench", labelnames=["k"])._metric.labels("a")
    if multiprocess:  # attribute-backed gauges are not aggregated there: locked set
        gauge = native
    histogram = Histogram("bench_latency_seconds", "bench", LATENCY_BUCKETS)
    figures = _suite(counter, gauge, histogram, calls, rounds)

    def native_set(n: int) -> None:
        for i in range(n):
            native.set(float(i))

    figures["gauge_set_locked_ns"] = _best_ns(native_set, calls, rounds)
    uncached = _Uncached(Counter("bench_uncached_total", "bench", ["family"]))

    def labelled(n: int) -> None:
        for _ in range(n):
            uncached.inc("native")

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
    with tempfile.TemporaryDirectory(prefix="coldchain-multiproc-") as folder:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}
        out = subprocess.run(
            [sys.executable, "-m", "coldchain", "bench", "metrics", "--json", "--child",
             "--calls", str(args.calls), "--rounds", str(args.rounds)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        multi = json.loads(out.strip().splitlines()[-1])
    figures: dict[str, Any] = {"benchmark": "metrics", "calls": args.calls}
    for prefix, part in (("old", old), ("single", single), ("multiprocess", multi)):
        figures.update({f"{prefix}_{key}": value for key, value in part.items()})
    figures["ratio_single_vs_old_per_message"] = round(
        single["per_message_ns"] / old["per_message_ns"], 2
    )
    figures["ratio_multiprocess_vs_old_per_message"] = round(
        multi["per_message_ns"] / old["per_message_ns"], 2
    )
    if not quiet:
        for prefix, part in (("old", old), ("single", single), ("multiprocess", multi)):
            cells = ", ".join(f"{k.removesuffix('_ns')} {v:g} ns" for k, v in part.items())
            print(f"{prefix:>12}: {cells}")
    return figures
