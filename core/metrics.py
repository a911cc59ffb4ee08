"""Counters, gauges and histograms for ``/metrics``: the one import site of prometheus-client.

The small API the rest of the code uses (``Counter(...).inc(*labels, amount=)``,
``.value(*labels)``, ``.total()``, ``Gauge.set``, ``Histogram.observe``/``observe_many``,
``Registry.add``, ``render()``) is coldchain's own; prometheus-client writes the
exposition (text format 0.0.4, escaping, OpenMetrics when asked) from each metric's
``collect()`` (its collector interface) and serves it (:class:`MetricsServer`, for the
processes without the API).

Cost on the hot path: ingest makes a few metric calls per message. Counters count per
thread without a lock and histograms file a batch at once, so the calls of a message cost
0.7 us where prometheus-client's own objects cost 2.4 (``coldchain bench metrics``;
figures in docs/performance.md); gauges are prometheus-client's, unlabelled ones read
from a plain attribute at scrape time.

One registry per process, one port per process: prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``) is not used. It is built for pre-forked workers behind one
port (gunicorn); coldchain's processes each have an address, so Prometheus scrapes each
and its ``up`` tells which one died, which an aggregate served by a survivor cannot. It
would also double the cost of every increment (an mmap write under a global lock) and
disable the callback gauges queue depths are made of (docs/operations.md, section 8.1).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

import numpy as np
import prometheus_client as prom  # noqa: TID251 - the one import site
from prometheus_client import parser as prom_parser  # noqa: TID251
from prometheus_client import utils as prom_utils  # noqa: TID251
from prometheus_client.metrics_core import (  # noqa: TID251
    CounterMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import CollectorRegistry  # noqa: TID251

log = logging.getLogger(__name__)

# ``_created`` series (one more sample per counter and histogram series, holding its
# creation time) double the exposition and no query of ours reads them.
prom.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Counter:
    """A monotonically increasing count, optionally labelled.

    Each thread counts into its own dict (one writer per dict: no lock, no lost
    increment), and the scrape sums them: prometheus-client's counter takes a lock and
    two method calls per increment, 0.4 us, where this costs 0.1 (``coldchain bench
    metrics``); ingest makes two or three per message. prometheus-client still writes
    the exposition, from :meth:`collect`.
    """

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._local = threading.local()
        # (thread, its counts) for every thread that counted; dead threads' counts are
        # folded into _retired when a new thread starts counting (bounded by live threads).
        self._shards: list[tuple[threading.Thread, dict[tuple[str, ...], float]]] = []
        self._retired: dict[tuple[str, ...], float] = {}
        self._shards_lock = threading.Lock()
        self._metric = self  # what Registry.add registers: this, as a collector

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` to the series with these label values.

        Raises:
            ValueError: not one value per label name, or a negative amount.
        """
        try:
            counts: dict[tuple[str, ...], float] = self._local.counts
        except AttributeError:
            counts = self._new_shard()
        value = counts.get(labels)
        if value is None or amount < 0:
            self._check(labels, amount)
            value = 0.0
        counts[labels] = value + amount

    def _check(self, labels: tuple[str, ...], amount: float) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: labels {self.labelnames}, got {labels!r}")
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up (amount {amount})")

    def _new_shard(self) -> dict[tuple[str, ...], float]:
        counts: dict[tuple[str, ...], float] = {}
        with self._shards_lock:
            live = []
            for thread, theirs in self._shards:
                if thread.is_alive():
                    live.append((thread, theirs))
                else:  # it will count no more: no other writer
                    for key, value in theirs.items():
                        self._retired[key] = self._retired.get(key, 0.0) + value
            live.append((threading.current_thread(), counts))
            self._shards = live
        self._local.counts = counts
        return counts

    def items(self) -> dict[tuple[str, ...], float]:
        """A copy of every series."""
        with self._shards_lock:
            total = dict(self._retired)
            # dict(...) copies in one C call: consistent even while its thread counts
            shards = [dict(counts) for _, counts in self._shards]
        for counts in shards:
            for key, value in counts.items():
                total[key] = total.get(key, 0.0) + value
        return total

    def value(self, *labels: str) -> float:
        """The current value of one series (0 when never incremented)."""
        return self.items().get(labels, 0.0)

    def total(self) -> float:
        """Sum over all label values."""
        return sum(self.items().values())

    def collect(self) -> list[CounterMetricFamily]:
        """The family for prometheus-client's exposition (an unlabelled counter shows 0
        before its first increment, as prometheus-client's own does)."""
        family = CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        items = self.items()
        if not self.labelnames and not items:
            items = {(): 0.0}
        for labels, value in sorted(items.items()):
            family.add_metric(list(labels), value)
        return [family]

    def describe(self) -> list[CounterMetricFamily]:
        """The family without samples (registration checks names with it)."""
        return [CounterMetricFamily(self.name, self.help, labels=self.labelnames)]


class Gauge:
    """A value that goes up and down: set directly, or read from a callback at scrape time.

    An unlabelled gauge keeps its value in a plain attribute that prometheus-client reads
    at scrape time (its ``set_function``): ``set`` is then an attribute store, 8x cheaper
    than prometheus-client's locked ``set``, and ingest stamps one per message.
    Labelled gauges take their label values after the value: ``g.set(1, "ingest")``.
    """

    def __init__(
        self,
        name: str,
        help_text: str,
        read: Callable[[], float] | None = None,
        labelnames: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._metric = prom.Gauge(name, help_text, self.labelnames, registry=None)
        self._value = 0.0
        self._read: Callable[[], float] | None = None
        if not self.labelnames:
            self.read_from(read or self._stored)

    def _stored(self) -> float:
        return self._value

    def read_from(self, read: Callable[[], float]) -> None:
        """Take the value from ``read`` at every scrape (a queue's length, say). A ``read``
        that raises shows NaN (and is logged) rather than failing the whole scrape."""

        def safe() -> float:
            try:
                return float(read())
            except Exception:  # a broken probe must not hide every other metric
                log.exception("metric %s: reading the value failed", self.name)
                return math.nan

        self._read = safe
        self._metric.set_function(safe)

    def set(self, value: float, *labels: str) -> None:
        """Set the value (of the series with these label values)."""
        if labels:
            self._metric.labels(*labels).set(value)
        else:
            self._value = value

    def value(self, *labels: str) -> float:
        """The current value (of the series with these label values; 0 when unset)."""
        if not labels and self._read is not None:
            return self._read()
        for s in _samples(self._metric):
            if tuple(s.labels.get(n, "") for n in self.labelnames) == labels:
                return float(s.value)
        return 0.0


class Histogram:
    """Observations in fixed buckets (seconds), with quantile estimates for reports.

    Counts per bucket under one lock; :meth:`observe_many` files a whole batch with one
    numpy ``searchsorted`` (ingest's writer observes the latency of every message it
    acknowledges: prometheus-client's histogram scans its buckets and takes two locks
    per observation, 0.8 us a message).
    """

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.help = help_text
        self.buckets = tuple(sorted(buckets))
        self._edges = np.array(self.buckets, dtype=np.float64)
        self._lock = threading.Lock()
        self._counts = [0] * (len(self.buckets) + 1)  # per bucket, +Inf last; not cumulative
        self._sum = 0.0
        self._metric = self  # what Registry.add registers: this, as a collector

    def observe(self, value: float, count: int = 1) -> None:
        """Record ``count`` observations of ``value``."""
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[index] += count
            self._sum += value * count

    def observe_many(self, values: Sequence[float]) -> None:
        """Record each of ``values``."""
        if not values:
            return
        array = np.asarray(values, dtype=np.float64)
        per_bucket = np.bincount(
            np.searchsorted(self._edges, array, side="left"), minlength=len(self._counts)
        )
        total = float(array.sum())
        with self._lock:
            for index, seen in enumerate(per_bucket.tolist()):
                self._counts[index] += seen
            self._sum += total

    def _cumulative(self) -> tuple[list[float], float]:
        """Cumulative counts per bucket (``+Inf`` last) and the sum."""
        with self._lock:
            counts, summed = list(self._counts), self._sum
        return [float(n) for n in itertools.accumulate(counts)], summed

    @property
    def count(self) -> int:
        """How many observations."""
        counts, _ = self._cumulative()
        return int(counts[-1])

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding quantile ``q`` (NaN when empty)."""
        counts, _ = self._cumulative()
        total = counts[-1]
        if total == 0:
            return math.nan
        rank = q * total
        for index, seen in enumerate(counts):
            if seen >= rank:
                return self.buckets[index] if index < len(self.buckets) else math.inf
        return math.inf

    def collect(self) -> list[HistogramMetricFamily]:
        """The family for prometheus-client's exposition."""
        counts, summed = self._cumulative()
        bounds = [_go_float(b) for b in self.buckets] + ["+Inf"]
        family = HistogramMetricFamily(self.name, self.help)
        family.add_metric([], list(zip(bounds, counts, strict=True)), summed)
        return [family]

    def describe(self) -> list[HistogramMetricFamily]:
        """The family without samples."""
        return [HistogramMetricFamily(self.name, self.help)]


_Metric = Counter | Gauge | Histogram
_M = TypeVar("_M", Counter, Gauge, Histogram)


def _samples(metric: Any) -> Iterable[Any]:
    for family in metric.collect():
        yield from family.samples


class Registry:
    """A set of metrics rendered together: one per process (tests build many)."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._names: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def add(self, metric: _M) -> _M:
        """Register and return ``metric``.

        Raises:
            ValueError: a metric of that name is already registered here (it would be
                exposed twice, which Prometheus refuses).
        """
        with self._lock:
            if metric.name in self._names:
                raise ValueError(f"metric {metric.name} is already registered")
            self._registry.register(metric._metric)
            self._names[metric.name] = metric
        return metric

    def get(self, name: str) -> _Metric | None:
        """The metric registered under ``name``, if any."""
        return self._names.get(name)

    def describe_process(self, kind: str) -> None:
        """Add what every long-running process exposes besides its own counters:
        ``process_start_time_seconds``, CPU, memory and file descriptors
        (prometheus-client's process collector, from /proc), and
        ``coldchain_process_info{kind,version} 1`` saying which coldchain this is."""
        with self._lock:
            if "coldchain_process_info" in self._names:
                return
        prom.ProcessCollector(registry=self._registry)
        info = self.add(
            Gauge(
                "coldchain_process_info",
                "Which coldchain process this is (run, ingest, alerting, api) and its version",
                labelnames=["kind", "version"],
            )
        )
        info.set(1.0, kind, _version())

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        return prom.generate_latest(self._registry).decode()

    @property
    def collector(self) -> CollectorRegistry:
        """The prometheus-client registry (for :class:`MetricsServer`)."""
        return self._registry


def _version() -> str:
    try:
        return metadata.version("coldchain")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "unknown"


class MetricsServer:
    """``/metrics`` of one registry on an address of its own (``COLDCHAIN_METRICS_BIND``),
    served by prometheus-client's threaded HTTP server.

    Lifecycle as every component (STYLE.md §9): construct without I/O, :meth:`start`
    binds (port 0 picks a free one: :attr:`port`), :meth:`stop` closes the socket.
    """

    def __init__(self, registry: Registry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve in a daemon thread.

        Raises:
            OSError: the address is taken or cannot be bound.
        """
        if os.environ.get(MULTIPROC_ENV):
            log.warning(
                "%s is set but coldchain does not use multiprocess mode: each process serves "
                "its own /metrics, and the variable only makes every increment also write "
                "to a file there (docs/operations.md, section 8.1); unset it",
                MULTIPROC_ENV,
            )
        self._server, self._thread = prom.start_http_server(
            self.port, addr=self.host, registry=self.registry.collector
        )
        self.port = int(self._server.server_port)
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family as a Prometheus server parses it (tests, checks)."""

    name: str
    type: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, sample: str | None = None, **labels: str) -> float | None:
        """The value of the sample called ``sample`` (default: the family's own name, or
        ``<name>_total`` for a counter) with exactly these labels, or None."""
        wanted = sample or (f"{self.name}_total" if self.type == "counter" else self.name)
        for name, have, value in self.samples:
            if name == wanted and have == labels:
                return value
        return None


def parse(text: str) -> dict[str, Family]:
    """Parse an exposition with prometheus-client's own text parser (the one Prometheus'
    format is checked against); raises ValueError on anything a scraper would refuse."""
    families: dict[str, Family] = {}
    for family in prom_parser.text_string_to_metric_families(text):
        samples = [(s.name, dict(s.labels), float(s.value)) for s in family.samples]
        families[family.name] = Family(family.name, family.type, samples)
    return families


# Latency buckets (seconds) from a few ms to minutes: spans the 2 s ingest target and the
# spool-drain tail after an outage.
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


def _go_float(value: float) -> str:
    """A bucket bound as prometheus-client writes ``le`` (Go's float formatting)."""
    return str(prom_utils.floatToGoString(value))  # type: ignore[no-untyped-call]  # untyped upstream
