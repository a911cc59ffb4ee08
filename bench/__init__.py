"""Benchmarks: reproducible runs that print their figures and the limits they are held to.

Each benchmark measures its reference limit in the same run on the same machine (the
bare paho subscriber for ingest, for instance) and ends by printing one JSON line.
Nothing here is asserted by the test suite: performance lives here, behaviour in tests.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Sequence
from typing import Any

BENCHMARKS = {
    "ingest": "bench.ingest",
    "alerting": "bench.alerting",
    "simulate": "bench.simulate",
    "api": "bench.api",
    "metrics": "bench.metrics",
    "failover": "bench.failover",
}


def run_benchmark(name: str, *, as_json: bool, extra: Sequence[str] = ()) -> int:
    """Run benchmark ``name``; print progress (unless ``as_json``) and one JSON line."""
    if name not in BENCHMARKS:
        known = ", ".join(sorted(BENCHMARKS))
        print(f"unknown benchmark {name!r} (known: {known})")
        return 2
    # Each benchmark builds fresh registries: their schema upgrade is not progress.
    logging.getLogger("core.migrations").setLevel(logging.WARNING)
    module = importlib.import_module(BENCHMARKS[name])
    figures: dict[str, Any] = module.run(list(extra), quiet=as_json)
    print(json.dumps(figures, sort_keys=True))
    return 0
