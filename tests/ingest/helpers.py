"""Shared pieces of the ingest tests: a small chain, a running ingester, polling InfluxDB."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.chain import parse_chain
from core.clock import SystemClock
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings
from ingest.service import Ingester

CHAIN = {
    "stores": [
        {"id": "s042", "name": "San Pedro", "country": "GT", "timezone": "America/Guatemala"}
    ],
    "assets": [
        {"id": "s042-wic1", "store": "s042", "type": "walkin_cooler", "name": "Walk-in cooler 1"},
        {"id": "s042-dc1", "store": "s042", "type": "dairy_case", "name": "Dairy case 1"},
    ],
    "sensors": [
        {"id": "cc-s042-wic1", "asset": "s042-wic1", "family": "native", "offset": -0.5},
        {"id": "cc-s042-dc1", "asset": "s042-dc1", "family": "native"},
    ],
}


def make_registry(path: Path | str) -> Registry:
    """A registry holding :data:`CHAIN`."""
    registry = Registry(path)
    registry.import_chain(parse_chain(CHAIN))
    return registry


@contextmanager
def running_ingester(settings: Settings, registry: Registry, **kwargs: Any) -> Iterator[Ingester]:
    """An ingester connected to the broker; stopped (drained) on exit."""
    store = InfluxV1(settings)
    store.ensure_database()
    ingester = Ingester(settings, registry, store, SystemClock(), **kwargs)
    ingester.start()
    assert ingester.wait_connected(10), "ingester did not connect"
    try:
        yield ingester
    finally:
        ingester.stop()
        store.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll until ``predicate()`` is true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def count(influx: InfluxV1, measurement: str, where: str = "") -> int:
    """Number of points in a measurement (0 when absent)."""
    clause = f" WHERE {where}" if where else ""
    series = influx.query(f'SELECT count("value") FROM "{measurement}"{clause}')
    return int(series[0].values[0][1]) if series else 0
