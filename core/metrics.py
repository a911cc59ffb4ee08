"""Counters, gauges and histograms with Prometheus text exposition.

Small on purpose: labelled counters are dicts keyed by label tuples, updated under one
lock; rendering produces the text format of ``/metrics``. ``snapshot()`` gives a plain
dict for tests, the CLI and the demo summary.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing count, optionally labelled."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` to the series with these label values."""
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        """The current value of one series (0 when never incremented)."""
        with self._lock:
            return self._values.get(labels, 0.0)

    def total(self) -> float:
        """Sum over all label values."""
        with self._lock:
            return sum(self._values.values())

    def items(self) -> dict[tuple[str, ...], float]:
        """A copy of every series."""
        with self._lock:
            return dict(self._values)

    def render(self) -> list[str]:
        lines = super().render()
        for labels, value in sorted(self.items().items()):
            lines.append(f"{self.name}{_labels(self.labelnames, labels)} {value:g}")
        return lines


class Gauge(_Metric):
    """A value that goes up and down, set directly or read from a callback."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float] | None = None) -> None:
        super().__init__(name, help_text)
        self._value = 0.0
        self._read = read

    def set(self, value: float) -> None:
        """Set the value."""
        self._value = value

    def value(self) -> float:
        """The current value."""
        return self._read() if self._read is not None else self._value

    def render(self) -> list[str]:
        return [*super().render(), f"{self.name} {self.value():g}"]


class Histogram(_Metric):
    """Observations in fixed buckets (seconds), with quantile estimates for reports."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float, count: int = 1) -> None:
        """Record ``count`` observations of ``value``."""
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[index] += count
            self._sum += value * count
            self._count += count

    @property
    def count(self) -> int:
        """How many observations."""
        return self._count

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding quantile ``q`` (NaN when empty)."""
        with self._lock:
            counts, total = list(self._counts), self._count
        if total == 0:
            return math.nan
        rank = q * total
        seen = 0
        for index, count in enumerate(counts):
            seen += count
            if seen >= rank:
                return self.buckets[index] if index < len(self.buckets) else math.inf
        return math.inf

    def render(self) -> list[str]:
        lines = super().render()
        with self._lock:
            counts, total, summed = list(self._counts), self._count, self._sum
        running = 0
        for bound, count in zip(self.buckets, counts, strict=False):
            running += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {total}')
        lines.append(f"{self.name}_sum {summed:g}")
        lines.append(f"{self.name}_count {total}")
        return lines


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """A set of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _M) -> _M:
        """Register and return ``metric``."""
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


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
