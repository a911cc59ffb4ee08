"""``coldchain bench failover``: how long alerting is deaf when its active instance dies.

Two real ``coldchain alerting`` processes, active and standby on the lease in a
PostgreSQL registry (alerting/lease.py), watch a chain the size of the reference
deployment (docs/deployment.md: ``--stores 300 --per-store 10``, 3,000 sensors, with
store managers, on-call, a regional contact and a default policy). A real ``coldchain
ingest`` (``COLDCHAIN_PUBLISH_OBSERVATIONS=true``) feeds them the live fleet: every
sensor once a minute, spread over the minute (``bench/live_publisher.py``, native
payloads). Before they start, InfluxDB receives ``--history-h`` hours of one-minute
temperatures for every sensor with exactly the tags ingest writes (the window the
warm-up replays: ``COLDCHAIN_WARMUP``, 6 h). Private PostgreSQL 15, InfluxDB and
Mosquitto live in a temporary folder, removed at the end, on SIGTERM and on Ctrl-C.

Each of ``--rounds`` rounds SIGKILLs the active instance (t0 just before) and polls the
standby's ``/metrics`` every 50 ms until ``coldchain_alerting_is_leader`` is 1 (t1),
which the engine sets only once its rules are live (alerting/engine.py ``_lead``). The
standby is warm: it replayed the history once, when it started, and has kept its rules in
step with the live stream since (``_stand_by``). The takeover, t1 - t0, splits into:

- **lease left**: the TTL minus the time since the killed instance last renewed the
  lease (its heartbeat gauge, read just before the kill): no one may take it sooner;
- **detected**: t0 to the standby's "took over the alerting lease" log line (the lease
  left plus up to one tick, 1 s, of the standby);
- **warm-up**: the new active instance's ``coldchain_alerting_warmup_seconds``: for a
  warm standby its reconciliation with the alert book (0 observations replayed); a cold
  one (history unreadable at its start, or deaf for ``STANDBY_STALE_S``) replays here;
- **rest**: resuming pending deliveries, the 50 ms poll.

The killed instance is started again (it stands by) and the next round kills the other.
A last round freezes the active instance with SIGSTOP instead (a hung VM), waits for
the takeover, thaws it and checks that it stands by (``is_leader`` 0) and the new one
keeps the lease.

Limit: ``limit_s = ttl + 5``. A standby cannot take the lease before it expires, up to
one TTL after the last renewal, and notices at its next tick (up to 1 s later); the rest
must then be seconds, 4 s at most, not minutes: pages wait for all of it. ``pass`` holds
when every takeover (SIGSTOP included) is within the limit and the thawed instance stands
by. (Before the standby was warm, it replayed 6 h at the takeover: 29-30 s at 3,000
sensors, of which 19-20 s warm-up.)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.api import BATCH_LINES, write_batches
from coldchain.services import InfluxDB, Mosquitto, PostgreSQL, free_port
from core.chain import parse_chain, parse_duration
from core.influx import InfluxV1
from core.metrics import Family, parse
from core.registry import Registry
from core.settings import Settings, as_env
from core.types import Quantity
from ingest.index import SensorIndex

# How often the standby's /metrics is read while it takes over: the takeover is known to
# this much. Faster costs the standby CPU (it serves every scrape) while it warms up.
POLL_S = 0.05
# Added to the TTL for the limit: one standby tick (1 s) and a warm-up of seconds.
LIMIT_OVER_TTL_S = 5.0
MINUTE_MS = 60_000
# The longest anything here waits (a warm-up of 100k sensors, a slow registry import).
PATIENCE_S = 1800.0
LEADER = "coldchain_alerting_is_leader"
HEARTBEAT = "coldchain_alerting_lease_heartbeat_timestamp_seconds"
LAST_TICK = "coldchain_alerting_last_tick_timestamp_seconds"
WARMUP_S = "coldchain_alerting_warmup_seconds"
WARMUP_OBS = "coldchain_alerting_warmup_observations"
TOOK_OVER = "took over the alerting lease"
LOST = "lost the alerting lease"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="coldchain bench failover")
    parser.add_argument("--stores", type=int, default=300)
    parser.add_argument("--per-store", type=int, default=10, help="sensors per store")
    parser.add_argument("--history-h", type=float, default=6.0, help="hours of history")
    parser.add_argument("--rounds", type=int, default=3, help="kill -9 rounds")
    parser.add_argument("--ttl", default=None, help="COLDCHAIN_LEASE_TTL (default: its own)")
    parser.add_argument("--no-sigstop", action="store_true", help="skip the SIGSTOP round")
    return parser.parse_args(argv)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


# -- the chain and its history ----------------------------------------------------------


def _chain(stores: int, per_store: int) -> dict[str, Any]:
    """Stores of ``per_store`` dairy cases, one sensor each (``bench-NNNNN``, the ids
    bench/live_publisher.py publishes), a manager per store, on-call, a regional."""
    width = len(str(max(1, stores - 1)))
    store_ids = [f"s{st:0{width}d}" for st in range(stores)]
    assets, sensors = [], []
    for st, store in enumerate(store_ids):
        for unit in range(per_store):
            asset = f"{store}-u{unit:02d}"
            assets.append({"id": asset, "store": store, "type": "dairy_case", "name": asset})
            sensors.append({"id": f"bench-{st * per_store + unit:05d}", "asset": asset,
                            "family": "native", "interval": "60s"})  # fmt: skip
    managers = [
        {"id": f"m-{store}", "name": f"Manager {store}", "phone": f"+1555{st:07d}",
         "roles": ["store_manager"], "stores": [store]}
        for st, store in enumerate(store_ids)
    ]  # fmt: skip
    return {
        "stores": [{"id": s, "name": f"Store {s}"} for s in store_ids],
        "assets": assets,
        "sensors": sensors,
        "contacts": [
            *managers,
            {"id": "noc", "name": "NOC", "phone": "+15559000001", "roles": ["oncall"]},
            {"id": "regional", "name": "Regional", "phone": "+15559000002", "roles": ["regional"]},
        ],
        "policies": [
            {
                "id": "default",
                "steps": [
                    {"notify": ["store_manager"], "wait": "15m"},
                    {"notify": ["oncall"], "wait": "15m"},
                    {"notify": ["regional"]},
                ],
            }
        ],
    }


def _history_lines(prefixes: list[str], start_ms: int, end_ms: int) -> Iterator[list[str]]:
    """Batches of one temperature a minute per sensor in ``[start_ms, end_ms)``; sensor
    ``i`` reports at second ``i % 60`` of each minute (spread, as a fleet does)."""
    values = [f"{2.5 + k * 0.05:.2f}" for k in range(21)]  # 2.5-3.5 °C: a quiet night
    batch: list[str] = []
    for minute in range(start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS)):
        base = minute * MINUTE_MS
        for i, prefix in enumerate(prefixes):
            ts = base + (i % 60) * 1000
            if start_ms <= ts < end_ms:
                batch.append(f"{prefix}{values[(minute * 7 + i * 13) % 21]} {ts}")
                if len(batch) >= BATCH_LINES:
                    yield batch
                    batch = []
    if batch:
        yield batch


def _write_history(settings: Settings, sensors: list[str], hours: float) -> int:
    """Write ``hours`` of history up to now for ``sensors`` with ingest's tag sets (as
    ingest/pipeline.py ``_readings`` writes them); returns the points written."""
    registry = Registry(settings.db)
    try:
        index = SensorIndex(registry)
    finally:
        registry.close()
    prefixes = [f"temperature{index.targets(s, Quantity.TEMPERATURE)[0].tags} value="
                for s in sensors]  # fmt: skip
    end_ms = round(time.time() * 1000)
    return write_batches(
        settings, _history_lines(prefixes, end_ms - round(hours * 3_600_000), end_ms)
    )


# -- the processes ------------------------------------------------------------------------


@dataclass
class Process:
    """One restartable child process logging to ``log`` (alerting ones serve /metrics)."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    metrics: bool = False
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=2.0))

    def start(self) -> None:
        """Start it (alerting: on a fresh metrics port)."""
        env = dict(self.env)
        if self.metrics:
            self.port = free_port()
            env["COLDCHAIN_METRICS_BIND"] = f"127.0.0.1:{self.port}"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        """Running (a stopped process is alive)."""
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        """Send ``sig`` if running."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye, no lease handed over."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def stop(self) -> None:
        """SIGCONT (in case stopped), SIGTERM, SIGKILL if it will not go."""
        if self.proc is None:
            return
        self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None

    def text(self) -> str:
        """Its log so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def scrape(self) -> dict[str, Family] | None:
        """Its /metrics, parsed (None while it does not answer)."""
        try:
            response = self.client.get(f"http://127.0.0.1:{self.port}/metrics")
        except httpx.HTTPError:
            return None
        return parse(response.text) if response.status_code == 200 else None

    def gauge(self, name: str) -> float | None:
        """One unlabelled gauge from /metrics (None while it does not answer)."""
        families = self.scrape()
        family = families.get(name) if families is not None else None
        return family.value() if family is not None else None


def _wait(what: str, ready: Callable[[], bool], watch: list[Process], timeout: float) -> float:
    """Poll ``ready`` every :data:`POLL_S` until it holds; its time (unix). Fails naming
    ``what`` (with the logs' tails) when a watched process dies or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return time.time()
        dead = [p for p in watch if not p.alive]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.text()[-2000:]}" for p in watch)
            cause = f"{dead[0].name} exited" if dead else f"not within {timeout:.0f} s"
            raise RuntimeError(f"waiting for {what}: {cause}\n{tails}")
        time.sleep(POLL_S)


def _logged_at(text: str, marker: str) -> float | None:
    """The time (unix) of the first log line containing ``marker`` (cli.py's format:
    ``2026-12-08 10:00:00,123 LEVEL name: message``, local time)."""
    for line in text.splitlines():
        if marker in line:
            with contextlib.suppress(ValueError):
                # logging formats asctime from time.localtime(): mktime inverts it
                local = time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
                return time.mktime(local) + int(line[20:23]) / 1000
    return None


def _stands_by(process: Process) -> Callable[[], bool]:
    """Ticking (a tick finished) and not leading."""

    def check() -> bool:
        families = process.scrape()
        if families is None or LEADER not in families or LAST_TICK not in families:
            return False
        return families[LEADER].value() == 0 and (families[LAST_TICK].value() or 0) > 0

    return check


def _leads(process: Process) -> Callable[[], bool]:
    return lambda: process.gauge(LEADER) == 1


# -- a round --------------------------------------------------------------------------------


def _takeover(
    leader: Process, standby: Process, how: int, ttl_s: float, watch: list[Process]
) -> dict[str, Any]:
    """Fail ``leader`` with ``how`` (SIGKILL or SIGSTOP); time the standby's takeover."""
    heartbeat = leader.gauge(HEARTBEAT)
    offset = len(standby.text())
    t0 = time.time()
    if how == signal.SIGKILL:
        leader.kill()
    else:
        leader.send(how)
    others = [p for p in watch if p is not leader]
    t1 = _wait(f"{standby.name} to lead", _leads(standby), others, PATIENCE_S)
    took = _logged_at(standby.text()[offset:], TOOK_OVER)
    families = standby.scrape() or {}
    warmup = families[WARMUP_S].value() if WARMUP_S in families else None
    observations = families[WARMUP_OBS].value() if WARMUP_OBS in families else None
    detected = None if took is None else took - t0
    return {
        "signal": "SIGKILL" if how == signal.SIGKILL else "SIGSTOP",
        "from": leader.name,
        "to": standby.name,
        "takeover_s": round(t1 - t0, 3),
        "lease_left_s": None if heartbeat is None else round(ttl_s - (t0 - heartbeat), 3),
        "detected_s": None if detected is None else round(detected, 3),
        "warmup_s": None if warmup is None else round(warmup, 3),
        "warmup_observations": None if observations is None else int(observations),
        "rest_s": (
            None if detected is None or warmup is None else round(t1 - t0 - detected - warmup, 3)
        ),
    }


def _describe(r: dict[str, Any]) -> str:
    return (
        f"  {r['signal']} {r['from']} -> {r['to']}: takeover {r['takeover_s']:.2f} s "
        f"(lease left {r['lease_left_s']} s, detected {r['detected_s']} s, warm-up "
        f"{r['warmup_s']} s over {r['warmup_observations']:,} observations, rest "
        f"{r['rest_s']} s)"
    )


def _thaw(ex: Process, leader: Process, watch: list[Process]) -> dict[str, Any]:
    """SIGCONT the frozen ex-leader; it must stand by and leave the lease where it is."""
    offset = len(ex.text())
    t2 = time.time()
    ex.send(signal.SIGCONT)
    t3 = _wait(f"{ex.name} to stand by after SIGCONT", _stands_by(ex), watch, 60)
    time.sleep(3.0)  # a few more ticks of both
    still = ex.gauge(LEADER) == 0 and leader.gauge(LEADER) == 1
    text = ex.text()[offset:]
    return {
        "stood_down_s": round(t3 - t2, 3),
        "stands_by": still and TOOK_OVER not in text,
        "logged_lost_lease": LOST in text,
    }


# -- the run --------------------------------------------------------------------------------


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a coldchain process: ours without COLDCHAIN_/TWILIO_ variables
    (no Twilio: the console notifier), then the bench's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLDCHAIN_", "TWILIO_"))}
    env.update(
        as_env(settings),
        PYTHONPATH=os.pathsep.join(sys.path),
        COLDCHAIN_LOG_LEVEL="INFO",
        **extra,
    )
    return env


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": min(values),
            "max": max(values)}  # fmt: skip


def run(argv: list[str], *, quiet: bool) -> dict[str, Any]:
    """Run the benchmark; return its figures (see the module docstring)."""
    args = _parse(argv)
    # SIGTERM unwinds like an exception, so the processes and servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for noisy in ("coldchain", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ttl_s = parse_duration(args.ttl) if args.ttl else Settings().lease_ttl
    sensors = args.stores * args.per_store
    load = os.getloadavg()
    _say(quiet, f"bench failover: {args.stores:,} stores x {args.per_store} sensors "
                f"({sensors:,}), {args.history_h:g} h of history, lease TTL {ttl_s:g} s; "
                f"load average {load[0]:.2f}")  # fmt: skip
    figures: dict[str, Any] = {
        "benchmark": "failover",
        "stores": args.stores,
        "per_store": args.per_store,
        "sensors": sensors,
        "history_h": args.history_h,
        "ttl_s": ttl_s,
        "load_avg_1m_start": round(load[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="coldchain-bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        postgres = PostgreSQL(root / "postgres")
        stack.callback(postgres.remove)
        postgres.start()
        influxd = stack.enter_context(InfluxDB(root / "influxd"))
        broker = stack.enter_context(Mosquitto(root / "mosquitto"))
        settings = Settings(
            db=postgres.database("bench"), influx_url=influxd.url, influx_db="bench",
            mqtt_url=broker.url, spool_dir=root / "spool",
        )  # fmt: skip
        started = time.perf_counter()
        chain = parse_chain(_chain(args.stores, args.per_store))
        registry = Registry(settings.db)
        try:
            registry.import_chain(chain)
        finally:
            registry.close()
        figures["registry_s"] = round(time.perf_counter() - started, 1)
        _say(quiet, f"  registry (PostgreSQL): {sensors:,} sensors, {len(chain.contacts):,} "
                    f"contacts in {figures['registry_s']} s")  # fmt: skip
        influx = InfluxV1(settings)
        stack.callback(influx.close)
        influx.ensure_database()
        started = time.perf_counter()
        points = _write_history(settings, [s.id for s in chain.sensors], args.history_h)
        elapsed = time.perf_counter() - started
        figures.update(history_points=points, history_write_s=round(elapsed, 1),
                       history_points_s=round(points / elapsed) if elapsed else 0)  # fmt: skip
        _say(quiet, f"  history: {points:,} points written in {elapsed:.1f} s "
                    f"({figures['history_points_s']:,}/s)")  # fmt: skip
        figures.update(_failovers(args, settings, root, ttl_s, sensors, stack, quiet))
        since_ms = figures.pop("live_from_ms")
        live = influx.query(f'SELECT count("value") FROM "temperature" WHERE time >= {since_ms}ms')
        figures["live_readings_stored"] = int(live[0].values[0][1]) if live else 0
    figures["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    takeovers = [r["takeover_s"] for r in figures["rounds"]]
    warmups = [r["warmup_s"] for r in figures["rounds"] if r["warmup_s"] is not None]
    figures["takeover_s"] = _spread(takeovers)
    if warmups:
        figures["warmup_s"] = _spread(warmups)
    figures["limit_s"] = ttl_s + LIMIT_OVER_TTL_S
    worst = max([*takeovers, figures.get("sigstop", {}).get("takeover_s", 0.0)])
    figures["ratio"] = round(worst / figures["limit_s"], 3)
    figures["pass"] = worst <= figures["limit_s"] and figures.get("sigstop", {}).get(
        "stands_by", True
    )
    _say(quiet, f"  takeover median {figures['takeover_s']['median']} s, max {worst} s "
                f"(limit {figures['limit_s']:g} s); load average "
                f"{figures['load_avg_1m_end']:.2f}")  # fmt: skip
    return figures


def _failovers(
    args: argparse.Namespace, settings: Settings, root: Path, ttl_s: float, sensors: int,
    stack: ExitStack, quiet: bool,
) -> dict[str, Any]:  # fmt: skip
    """Start the fleet, ingest and both alerting processes; run the rounds."""
    python = [sys.executable, "-m"]
    lease = {"COLDCHAIN_LEASE_TTL": args.ttl} if args.ttl else {}
    ingest = Process("ingest", [*python, "coldchain", "ingest"],
                     _env(settings, COLDCHAIN_PUBLISH_OBSERVATIONS="true"),
                     root / "ingest.log")  # fmt: skip
    rate = max(1, math.ceil(sensors / 60))  # every sensor once a minute
    fleet = Process("fleet", [*python, "bench.live_publisher", settings.mqtt_url, str(rate),
                              str(PATIENCE_S * 10), str(sensors)],
                    _env(settings), root / "fleet.log")  # fmt: skip
    a, b = (
        Process(name, [*python, "coldchain", "alerting"],
                _env(settings, COLDCHAIN_INSTANCE=name, **lease), root / f"alerting-{name}.log",
                metrics=True)
        for name in ("a", "b")
    )  # fmt: skip
    everyone = [ingest, fleet, a, b]
    for process in everyone:
        stack.callback(process.client.close)
        stack.callback(process.stop)  # last started, first stopped
    ingest.start()
    _wait("ingest to subscribe", lambda: "MQTT subscribed" in ingest.text(), [ingest], 120)
    live_from_ms = round(time.time() * 1000)
    fleet.start()
    started = time.time()
    a.start()
    _wait("a to lead", _leads(a), [ingest, fleet, a], PATIENCE_S)
    first = a.gauge(WARMUP_S)
    _say(quiet, f"  live fleet {rate:,} readings/s through ingest; a leads after "
                f"{time.time() - started:.1f} s (warm-up {first:.2f} s)")  # fmt: skip
    b.start()
    started = time.time()
    _wait("b to stand by", _stands_by(b), everyone, PATIENCE_S)
    ready = round(time.time() - started, 1)
    _say(quiet, f"  b stands by after {ready} s")
    leader, standby = a, b
    rounds = []
    for _ in range(args.rounds):
        result = _takeover(leader, standby, signal.SIGKILL, ttl_s, everyone)
        leader.start()  # the killed one comes back: it stands by
        started = time.time()
        _wait(f"{leader.name} to stand by", _stands_by(leader), everyone, PATIENCE_S)
        result["restarted_standby_ready_s"] = round(time.time() - started, 1)
        rounds.append(result)
        _say(quiet, _describe(result))
        leader, standby = standby, leader
    out: dict[str, Any] = {
        "live_rate_msg_s": rate,
        "live_from_ms": live_from_ms,
        "first_warmup_s": None if first is None else round(first, 3),
        "standby_ready_s": ready,
        "rounds": rounds,
    }
    if not args.no_sigstop:
        frozen = _takeover(leader, standby, signal.SIGSTOP, ttl_s, everyone)
        frozen.update(_thaw(leader, standby, everyone))
        _say(quiet, _describe(frozen) + f"; thawed, it stood down in {frozen['stood_down_s']} s"
                    f"{'' if frozen['stands_by'] else ' -- BUT DID NOT STAND BY'}")  # fmt: skip
        out["sigstop"] = frozen
    return out
