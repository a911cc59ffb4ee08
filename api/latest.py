"""The latest value of every sensor and quantity, kept in memory for ``/readings/latest``.

Why: on this machine's InfluxDB 1.6.7, ``last("value")`` over the five measurements of a
store (100 sensors, 300-500 series) costs 30-60 ms at p50 and over 100 ms at p99 whatever
the look-back (a 10-minute one still pays ~0.1 ms per series); the target is 20 ms p99
(DESIGN.md §7, docs/performance.md). In ``coldchain run`` ingest runs in the same process
and already hands every durable observation to alerting, so the API can know the latest
values without asking InfluxDB.

How it stays equal to what the query would answer:

- **Fed after durability**: :meth:`LatestCache.observe` receives the batches ingest hands
  on once written (or spooled), keyed by the ``store`` and ``sensor`` tags the points were
  written with, so a moved sensor's readings stay under the store that took them.
- **Newest wins**: a late or out-of-order reading only replaces an older one; at the same
  timestamp the later write wins, as InfluxDB overwrites a point.
- **Primed per store**: the first request for a store runs the InfluxDB query once and
  merges its answer (newest wins again, so readings arriving meanwhile are not lost);
  from then on the store is served from memory. Sensors silent for the whole look-back
  are simply absent, as in the query.
- The look-back window is applied when reading, exactly as the query's ``time >``.

Standalone ``coldchain api`` (split mode, several ingest processes) gets the same cache
when ``COLDCHAIN_PUBLISH_OBSERVATIONS`` is set: it then reads the observation batches the
ingest processes publish once durable (:mod:`coldchain.latest_feed`), and serves nothing
from memory while that feed is down (:meth:`LatestCache.suspend`). Without either, a
process would see only what it writes itself, so standalone ``coldchain api`` without the
feed has no cache and queries InfluxDB every time. Memory is one small tuple per (store,
sensor, quantity) ever reported: about 100 bytes each, ~50 MB at 100k sensors reporting
five quantities.

The API finds the cache in ``ApiDeps.latest`` (set by ``ApiServer.for_stack``, or by
``coldchain api`` with the feed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from core.chain import AssetType
from core.registry import Registry
from core.types import Quantity

# One reading: (epoch milliseconds, value).
Entry = tuple[int, float]
# sensor -> quantity -> newest entry
StoreValues = dict[str, dict[Quantity, Entry]]


class LatestCache:
    """Newest (time, value) per store, sensor and quantity; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, StoreValues] = {}
        self._primed: set[str] = set()
        # Fed by another process (split mode, coldchain/latest_feed.py): the feed may drop.
        # While it is down nothing is served from memory; each suspend or resume starts a
        # new epoch, and a priming query begun in an earlier epoch primes nothing.
        self._live = True
        self._epoch = 0

    @property
    def epoch(self) -> int:
        """Read before a priming query; hand it to :meth:`prime`."""
        return self._epoch

    def suspend(self) -> None:
        """The feed stopped: readings may be missed from now on, so no store is served
        from memory until the feed is back (:meth:`resume`) and the store primed again."""
        with self._lock:
            self._live = False
            self._epoch += 1
            self._primed.clear()

    def resume(self) -> None:
        """The feed is back and misses nothing from now on: stores may be primed again."""
        with self._lock:
            self._live = True
            self._epoch += 1

    def observe(self, batch: Iterable[Any]) -> None:
        """Take a batch of durable ingest observations (``ingest.pipeline.Observation``).

        Only readings with a store, a sensor, a quantity and a value count; faults and
        status changes are not readings (they are not in the five measurements either).
        """
        with self._lock:
            for obs in batch:
                if obs.kind != "reading" or obs.store is None or obs.sensor is None:
                    continue
                if obs.quantity is None or obs.value is None:
                    continue
                self._put(obs.store, obs.sensor, Quantity(obs.quantity), obs.ts_ms, obs.value)

    def _put(self, store: str, sensor: str, quantity: Quantity, ts_ms: int, value: float) -> None:
        sensors = self._values.get(store)
        if sensors is None:
            sensors = self._values[store] = {}
        quantities = sensors.get(sensor)
        if quantities is None:
            quantities = sensors[sensor] = {}
        old = quantities.get(quantity)
        if old is None or ts_ms >= old[0]:
            quantities[quantity] = (ts_ms, float(value))

    def primed(self, store: str) -> bool:
        """Whether ``store``'s history has been merged in (see :meth:`prime`)."""
        return store in self._primed

    def prime(self, store: str, found: Mapping[str, Mapping[Quantity, Entry]], epoch: int) -> None:
        """Merge what InfluxDB holds for ``store`` (newest wins) and serve it from memory,
        unless the feed is down or dropped since the query began (``epoch``, read before
        it): readings written meanwhile could be in neither."""
        with self._lock:
            for sensor, quantities in found.items():
                for quantity, (ts_ms, value) in quantities.items():
                    self._put(store, sensor, quantity, ts_ms, value)
            if self._live and epoch == self._epoch:
                self._primed.add(store)

    def latest(self, store: str, after_ns: int) -> StoreValues:
        """A copy of ``store``'s entries newer than ``after_ns`` (the query's ``time >``).

        Entries at or before it are dropped on the way, so memory follows the look-back.
        """
        out: StoreValues = {}
        with self._lock:
            sensors = self._values.get(store, {})
            for sensor in list(sensors):
                quantities = sensors[sensor]
                for quantity in [
                    q for q, (ts, _v) in quantities.items() if ts * 1_000_000 <= after_ns
                ]:
                    del quantities[quantity]
                if quantities:
                    out[sensor] = dict(quantities)
                else:
                    del sensors[sensor]
        return out


# (sensor id, asset id, asset type) of each active sensor of a store, in id order.
Layout = list[tuple[str, str, AssetType]]


class StoreLayouts:
    """Which active sensors a store has, on which assets, remembered until the registry
    changes (``Registry.entity_version`` of stores, assets and sensors: one indexed read
    per request).

    Reading them from SQLite and validating 100 sensor documents costs ~4 ms a request,
    a fifth of the 20 ms target; the registry changes a few times a day.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._layouts: dict[str, Layout] = {}

    def get(self, registry: Registry, store: str) -> Layout:
        """The store's layout (raises NotFound for an unknown store)."""
        version = registry.entity_version("stores", "assets", "sensors")
        with self._lock:
            if version != self._version:
                self._layouts.clear()
                self._version = version
            cached = self._layouts.get(store)
        if cached is not None:
            return cached
        registry.store(store)  # NotFound for an unknown store
        assets = {a.id: a for a in registry.assets(store)}
        layout = [
            (sensor.id, sensor.asset, assets[sensor.asset].type)
            for sensor, _ in registry.sensors_with_state(assets=assets)
        ]
        with self._lock:
            if self._version == version:
                self._layouts[store] = layout
        return layout
