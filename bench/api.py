"""``coldchain bench api``: the read paths of the REST API against a realistic database.

A private InfluxDB 1.x and registry (in a temporary folder, or ``--data-dir`` to keep them
for the next run) hold a generated chain of 120 stores x 100 units, one sensor each
(12,000 sensors), and a week of their readings at one-minute resolution:

- ``temperature``: one point a minute per sensor for ``--days`` (default 7) up to now;
- ``battery`` and ``signal``: one point an hour per sensor (devices report them rarely);
- ``humidity`` and ``door``: none (the latest query still reads all five measurements).

Points go in as line protocol through :class:`core.influx.InfluxV1` in 10,000-line
batches over two connections. With ``--full-stores N`` only the first N stores get the
whole week and the others ``--other-days``; the JSON line says what was loaded.

Then the real API (uvicorn in a thread, :class:`api.ApiServer`, real API keys) serves
sequential requests over one keep-alive HTTP connection while a background thread keeps
writing "live" readings (every sensor once a minute, spread over the minute, as ingest
would). Latency is measured at the client:

1. ``GET /readings/latest?store=`` as ``coldchain api`` serves it (no cache: InfluxDB),
2. the same with the latest-value cache that ``coldchain run`` feeds from ingest,
3. ``GET /readings?sensor=`` for 24 h raw (1,440 points) and 24 h with ``every=5m``.

Targets (DESIGN.md §7): latest p99 < 20 ms; 24 h history < 100 ms (held to its p99).
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from api import ApiDeps, ApiServer
from api.latest import LatestCache
from coldchain.services import InfluxDB
from core.chain import parse_chain
from core.clock import SystemClock
from core.influx import InfluxV1
from core.lineprotocol import format_float
from core.metrics import Registry as MetricsRegistry
from core.registry import Registry
from core.settings import Settings
from core.types import Quantity
from ingest.pipeline import Observation

LATEST_TARGET_MS = 20.0
HISTORY_TARGET_MS = 100.0
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
# Lines per write: DESIGN.md §7 measured ~200k points/s at 5k-point batches; larger
# batches cut per-request overhead a little more, and stay far below InfluxDB's limits.
BATCH_LINES = 10_000
# Concurrent write connections while loading: one formats while the other waits on
# InfluxDB. More cannot help on two cores shared with influxd.
WRITERS = 2
# Unit mix of a store (100 units): mostly cases, a few walk-ins.
UNIT_MIX = (
    ("dairy_case", 30),
    ("meat_case", 15),
    ("produce_case", 15),
    ("frozen_case", 20),
    ("ice_cream_case", 10),
    ("walkin_cooler", 5),
    ("walkin_freezer", 5),
)
BASE_C = {"frozen_case": -20.0, "ice_cream_case": -24.0, "walkin_freezer": -21.0}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="coldchain bench api")
    parser.add_argument("--stores", type=int, default=120)
    parser.add_argument("--per-store", type=int, default=100, help="sensors per store")
    parser.add_argument("--days", type=float, default=7.0, help="history at 1-minute resolution")
    parser.add_argument(
        "--full-stores",
        type=int,
        default=None,
        help="stores that get --days of history (default: all); the others --other-days",
    )
    parser.add_argument("--other-days", type=float, default=1.0)
    parser.add_argument("--requests", type=int, default=1000, help="per latest variant")
    parser.add_argument("--history-requests", type=int, default=300, help="per history variant")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep InfluxDB and the registry here; a later run reuses them and only tops up",
    )
    args = parser.parse_args(argv)
    if args.full_stores is None or args.full_stores > args.stores:
        args.full_stores = args.stores
    return args


class Fleet:
    """The generated chain: stores, units, sensors and their line-protocol tag sets."""

    def __init__(self, stores: int, per_store: int) -> None:
        types = [t for t, n in UNIT_MIX for _ in range(n)]
        self.stores = [f"s{st:03d}" for st in range(stores)]
        self.sensors: list[tuple[str, str, str, str]] = []  # sensor, store, asset, type
        for st, store in enumerate(self.stores):
            for unit in range(per_store):
                kind = types[unit % len(types)]
                self.sensors.append((f"b{st:03d}-{unit:02d}", store, f"{store}-u{unit:02d}", kind))
        self.per_store = per_store

    def chain(self) -> dict[str, Any]:
        """The chain file of the fleet."""
        return {
            "stores": [{"id": s, "name": f"Store {s}"} for s in self.stores],
            "assets": [
                {"id": asset, "store": store, "type": kind, "name": asset}
                for _sensor, store, asset, kind in self.sensors
            ],
            "sensors": [
                {"id": sensor, "asset": asset, "family": "native", "interval": "60s"}
                for sensor, _store, asset, _kind in self.sensors
            ],
        }

    def tags(self, index: int) -> str:
        """``,asset=...,asset_type=...,sensor=...,store=...`` of sensor ``index``."""
        sensor, store, asset, kind = self.sensors[index]
        return f",asset={asset},asset_type={kind},sensor={sensor},store={store}"


class Loader:
    """Writes generated readings for the fleet (and tells the cache, like ingest would)."""

    def __init__(self, fleet: Fleet, settings: Settings) -> None:
        self.fleet = fleet
        self.settings = settings
        self.prefix = [f"temperature{fleet.tags(i)} value=" for i in range(len(fleet.sensors))]
        self.base = [BASE_C.get(kind, 3.0) for *_rest, kind in fleet.sensors]
        # Temperatures wander in 0.05 K steps around the unit's base: formatting a float
        # per point would cost more than InfluxDB's parsing of it.
        self.offsets = [format_float(round((k - 20) * 0.05, 2)) for k in range(41)]
        self.points = 0

    def value(self, index: int, minute: int) -> float:
        """The temperature of sensor ``index`` at epoch minute ``minute``."""
        return self.base[index] + ((minute * 7 + index * 13) % 41 - 20) * 0.05

    def lines(self, sensors: range, start_ms: int, end_ms: int) -> Iterator[list[str]]:
        """Batches of lines for ``sensors`` at every minute in ``[start_ms, end_ms)``."""
        batch: list[str] = []
        first = -(-start_ms // MINUTE_MS)
        for minute in range(first, -(-end_ms // MINUTE_MS)):
            suffix = f" {minute * MINUTE_MS}"
            for i in sensors:
                batch.append(f"{self.prefix[i]}{self.value(i, minute):.2f}{suffix}")
                if i % 60 == minute % 60:  # hourly, staggered
                    tags = self.fleet.tags(i)
                    batch.append(f"battery{tags} value={90 - i % 30}{suffix}")
                    batch.append(f"signal{tags} value={-60 - i % 40}{suffix}")
                if len(batch) >= BATCH_LINES:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def write(self, sensors: range, start_ms: int, end_ms: int) -> None:
        """Write ``[start_ms, end_ms)`` for ``sensors`` (:func:`write_batches`)."""
        self.points += write_batches(self.settings, self.lines(sensors, start_ms, end_ms))


def write_batches(settings: Settings, batches: Iterable[list[str]]) -> int:
    """Write batches of lines over :data:`WRITERS` connections at once, a few batches
    ahead at most; returns the lines written."""
    clients = [InfluxV1(settings) for _ in range(WRITERS)]
    written = 0
    try:
        with ThreadPoolExecutor(WRITERS) as pool:
            pending = []
            for k, batch in enumerate(batches):
                written += len(batch)
                body = "\n".join(batch).encode()
                pending.append(pool.submit(clients[k % WRITERS].write, body))
                if len(pending) > 2 * WRITERS:
                    pending.pop(0).result()
            for future in pending:
                future.result()
    finally:
        for client in clients:
            client.close()
    return written


class LiveWriter:
    """Every sensor once a minute, spread over the minute, as a running ingester writes.

    Each reading is written to InfluxDB and then handed to ``observe`` (the latest-value
    cache, when one is measured), in that order, as ingest's durable hand-off does.
    """

    def __init__(self, loader: Loader, observe: Callable[[list[Observation]], None]) -> None:
        self.loader = loader
        self.observe = observe
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-live", daemon=True)
        self.client = InfluxV1(loader.settings)
        self.points = 0

    def __enter__(self) -> LiveWriter:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_event.set()
        self.thread.join(10)
        self.client.close()

    def _run(self) -> None:
        fleet, loader = self.loader.fleet, self.loader
        count = len(fleet.sensors)
        cursor = 0
        while not self.stop_event.wait(0.1):  # 10 writes a second
            now_ms = round(time.time() * 1000)
            size = max(1, count // 600)
            lines, events = [], []
            for _ in range(size):
                i = cursor % count
                cursor += 1
                sensor, store, asset, kind = fleet.sensors[i]
                value = round(loader.value(i, now_ms // MINUTE_MS), 2)
                lines.append(f"{loader.prefix[i]}{value:.2f} {now_ms}")
                events.append(Observation("reading", now_ms, sensor, sensor, store, asset, kind,
                                          Quantity.TEMPERATURE, value))  # fmt: skip
            self.client.write("\n".join(lines).encode())
            self.points += len(lines)
            self.observe(events)


def _load(
    fleet: Fleet, settings: Settings, args: argparse.Namespace, quiet: bool
) -> dict[str, Any]:
    """Write the history (or only top it up to now when the folder was kept)."""
    loader = Loader(fleet, settings)
    influx = InfluxV1(settings)
    try:
        influx.ensure_database()
        found = influx.query('SELECT last("value") FROM "temperature"')
    finally:
        influx.close()
    now_ms = round(time.time() * 1000)
    full = range(args.full_stores * fleet.per_store)
    rest = range(full.stop, len(fleet.sensors))
    started = time.perf_counter()
    if found and found[0].values:
        last_ms = int(found[0].values[0][0]) + 1
        if not quiet:
            print(f"  reusing {args.data_dir}: topping up from the last point, "
                  f"{(now_ms - last_ms) / 60000:.0f} min ago", flush=True)  # fmt: skip
        loader.write(range(len(fleet.sensors)), last_ms, now_ms)
    else:
        if not quiet:
            print(f"  loading {len(full):,} sensors x {args.days:g} days"
                  + (f" + {len(rest):,} x {args.other_days:g} days" if rest else "")
                  + " at 1-minute resolution ...", flush=True)  # fmt: skip
        day_ms = 86_400_000
        # Day by day, oldest first, as data arrives: all sensors of a day are written
        # before the next day's, so shards fill in time order.
        start_ms = now_ms - round(args.days * day_ms)
        other_from = now_ms - round(args.other_days * day_ms)
        for day_start in range(start_ms, now_ms, day_ms):
            day_end = min(now_ms, day_start + day_ms)
            loader.write(full, day_start, day_end)
            if rest and day_end > other_from:
                loader.write(rest, max(day_start, other_from), day_end)
            if not quiet:
                rate = loader.points / (time.perf_counter() - started)
                print(f"    {loader.points:>12,} points, {rate:,.0f}/s", flush=True)
        # Loading took a while: bring every sensor up to now.
        loader.write(range(len(fleet.sensors)), now_ms, round(time.time() * 1000))
    elapsed = time.perf_counter() - started
    return {
        "reused_data_dir": bool(found and found[0].values),  # load_* then count the top-up
        "load_points": loader.points,
        "load_s": round(elapsed, 1),
        "load_points_s": round(loader.points / elapsed) if elapsed else 0,
    }


def _timed(client: httpx.Client, requests: list[dict[str, str]], path: str) -> list[float]:
    times = []
    for params in requests:
        started = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text}")
        times.append(elapsed)
    return times


def _stats(name: str, times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        f"{name}_p50_ms": round(ordered[len(ordered) // 2], 2),
        f"{name}_p99_ms": round(p99, 2),
        f"{name}_max_ms": round(ordered[-1], 2),
    }


def _say(quiet: bool, name: str, figures: dict[str, Any], count: int, target: str) -> None:
    if not quiet:
        print(f"  {name:<16} p50 {figures[f'{name}_p50_ms']:>7.2f} ms  "
              f"p99 {figures[f'{name}_p99_ms']:>7.2f} ms  ({count} requests; {target})",
              flush=True)  # fmt: skip


def _measure(
    fleet: Fleet, settings: Settings, loader: Loader, args: argparse.Namespace, quiet: bool
) -> dict[str, Any]:
    """Latest (without and with the cache) and history, through the real API."""
    rng = random.Random(5)
    registry = Registry(settings.db)
    keys = {
        "oncall": registry.create_api_key("oncall", name="bench-oncall"),
        "technician": registry.create_api_key("technician", name="bench-tech"),
    }
    registry.close()
    figures: dict[str, Any] = {}
    latest_target = f"target p99 < {LATEST_TARGET_MS:g} ms"
    with ExitStack() as stack:
        influx = InfluxV1(settings)
        stack.callback(influx.close)
        cache = LatestCache()
        # (figure name, the API's latest-value cache (also who feeds it), key)
        variants: list[tuple[str, LatestCache | None, str]] = [
            ("latest", None, "oncall"),
            ("latest_cached", cache, "oncall"),
            ("history", None, "technician"),
        ]
        for name, fed, role in variants:
            api_registry = Registry(settings.db)
            deps = ApiDeps(settings=settings, registry=api_registry, influx=influx, engine=None,
                           clock=SystemClock(), metrics=MetricsRegistry(), latest=fed)  # fmt: skip
            server = ApiServer(deps, "127.0.0.1", 0)
            server.start()
            client = httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {keys[role]}"}, timeout=30
            )
            try:
                with LiveWriter(loader, fed.observe if fed is not None else lambda _b: None):
                    if name == "history":
                        queried = [
                            s for s, *_ in fleet.sensors[: args.full_stores * fleet.per_store]
                        ]
                        for label, extra in (
                            ("history_24h_raw", {}),
                            ("history_24h_5m", {"every": "5m"}),
                        ):
                            picks = [{"sensor": rng.choice(queried), **extra}
                                     for _ in range(args.history_requests)]  # fmt: skip
                            _timed(client, picks[:20], "/api/v1/readings")  # warm-up
                            figures.update(_stats(label, _timed(client, picks, "/api/v1/readings")))
                            _say(
                                quiet,
                                label,
                                figures,
                                len(picks),
                                f"target < {HISTORY_TARGET_MS:g} ms",
                            )
                        body = client.get("/api/v1/readings", params={"sensor": queried[0]}).json()
                        figures["history_24h_raw_points"] = len(body["points"])
                        continue
                    every = [{"store": s} for s in fleet.stores]
                    if fed is not None:  # the first request of each store primes the cache
                        figures.update(
                            _stats("latest_prime", _timed(client, every, "/api/v1/readings/latest"))
                        )
                    else:
                        _timed(client, every[:20], "/api/v1/readings/latest")  # warm-up
                    picks = [{"store": rng.choice(fleet.stores)} for _ in range(args.requests)]
                    figures.update(_stats(name, _timed(client, picks, "/api/v1/readings/latest")))
                    _say(quiet, name, figures, len(picks), latest_target)
                    body = client.get("/api/v1/readings/latest", params=picks[0]).json()
                    figures[f"{name}_sensors_with_readings"] = sum(
                        1 for s in body["sensors"] if s["readings"]
                    )
            finally:
                client.close()
                server.stop()
                api_registry.close()
    return figures


def run(argv: list[str], *, quiet: bool) -> dict[str, Any]:
    """Load (or top up), measure, return the figures."""
    args = _parse(argv)
    for noisy in ("uvicorn", "api"):  # one server start per variant: keep progress readable
        logging.getLogger(noisy).setLevel(logging.WARNING)
    fleet = Fleet(args.stores, args.per_store)
    with ExitStack() as stack:
        if args.data_dir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coldchain-bench-")))
        else:
            root = args.data_dir
            root.mkdir(parents=True, exist_ok=True)
        server = stack.enter_context(InfluxDB(root / "influxd"))
        settings = Settings(
            influx_url=server.url,
            influx_db="bench",
            db=root / "registry.sqlite3",
            spool_dir=root / "spool",
        )
        if not quiet:
            print(f"bench api: {args.stores} stores x {args.per_store} sensors "
                  f"({len(fleet.sensors):,}) in {root}", flush=True)  # fmt: skip
        registry = Registry(settings.db)
        registry.import_chain(parse_chain(fleet.chain()))
        registry.close()
        loaded = _load(fleet, settings, args, quiet)
        figures = _measure(fleet, settings, Loader(fleet, settings), args, quiet)
    full = args.full_stores * args.per_store
    latest_ok = figures["latest_p99_ms"] < LATEST_TARGET_MS
    cached_ok = figures["latest_cached_p99_ms"] < LATEST_TARGET_MS
    history_ok = max(figures["history_24h_raw_p99_ms"], figures["history_24h_5m_p99_ms"]) < (
        HISTORY_TARGET_MS
    )
    return {
        "benchmark": "api",
        "sensors": len(fleet.sensors),
        "stores": args.stores,
        "loaded": f"temperature 1/min for {full} sensors x {args.days:g} d"
        + (
            f" and {len(fleet.sensors) - full} x {args.other_days:g} d"
            if full < len(fleet.sensors)
            else ""
        )
        + "; battery and signal 1/h",
        **loaded,
        **figures,
        "latest_target_ms": LATEST_TARGET_MS,
        "history_target_ms": HISTORY_TARGET_MS,
        "latest_ratio": round(figures["latest_p99_ms"] / LATEST_TARGET_MS, 3),
        "latest_cached_ratio": round(figures["latest_cached_p99_ms"] / LATEST_TARGET_MS, 3),
        "history_ratio": round(
            max(figures["history_24h_raw_p99_ms"], figures["history_24h_5m_p99_ms"])
            / HISTORY_TARGET_MS,
            3,
        ),
        "pass": latest_ok and cached_ok and history_ok,
    }
