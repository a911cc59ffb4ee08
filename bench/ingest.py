"""``coldchain bench ingest``: coldchain against its peers and the broker, in one run.

Every contender is a process of its own, consumes the same native QoS 1 payloads from a
fresh private Mosquitto, and (when it writes) writes to the same private InfluxDB 1.6.7:

- ``mosquitto_sub -q 1``: the broker's own client, counting: the broker's limit;
- ``paho``: a bare paho-mqtt subscriber that only counts (``bench/bare.py``);
- ``coldchain-N``: N ``coldchain ingest`` processes (N > 1: one share group), end to end;
- ``node-red-default`` / ``node-red-batched``: Node-RED flows (``bench/node_red.py``).

Figures, each contender measured the same way:

1. **drain** (``--repeat`` times, repetitions interleaved): the contender connects and
   subscribes with a persistent session, is frozen (SIGSTOP), N messages are queued for
   it, and it is thawed (SIGCONT); the rate is N over the time until the last message is
   counted (subscribers) or queryable in InfluxDB (writers, polled every 50 ms). Freezing
   takes start-up and the publisher's own speed out of the figure. CPU seconds per 100k
   messages and peak RSS of the contender's processes over the drain;
2. **latency** at one fixed live rate for every writer (default: half of coldchain's
   single-process drain rate): a publisher process sends readings stamped with the
   publish time, 20 a second of them on a probe sensor whose points are polled every
   20 ms; latency is publish to queryable;
3. **drills**: live readings at ``--drill-rate``; (a) SIGKILL the writer halfway and start
   it again at once; (b) stop InfluxDB for ``--outage`` seconds; lost = sent (acked by the
   broker) minus stored once the count settles. Every reading has its own (sensor, time).

Ends with one JSON line: every figure with its spread, the ratios, the targets and pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import node_red
from bench.live_publisher import PROBE_DEVICE
from coldchain.services import InfluxDB, Mosquitto
from core.chain import parse_chain
from core.errors import InfluxError
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings, as_env
from devices.base import Publish
from simulator.publisher import Publisher

# Targets (issue 15, DESIGN.md §7).
NODE_RED_RATIO_TARGET = 1.5  # coldchain >= 1.5x the tuned (batched) Node-RED flow
BROKER_RATIO_TARGET = 0.35  # coldchain >= 0.35 of mosquitto_sub -q 1
P99_TARGET_S = 1.0  # publish to queryable at half capacity
RSS_TARGET_MB = 300  # per ingest process, with 100k registered sensors
PROBES_PER_S = 20
# How often a drain asks InfluxDB for the stored count. Too often and the count queries
# take InfluxDB's CPU from the writes being measured; too rarely and the drain's end is
# known late (up to this much is added to a drain of a few seconds).
POLL_S = 0.05
TOPIC = "coldchain/v1/+/telemetry"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="coldchain bench ingest")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--registered", type=int, default=100_000, help="sensors registered")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ingesters", default="1,2", help="coldchain process counts, e.g. 1,2")
    parser.add_argument("--rate", type=int, default=0, help="live msg/s (default: half cap.)")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency phase length")
    parser.add_argument("--drill-rate", type=int, default=5000)
    parser.add_argument("--outage", type=float, default=20.0, help="InfluxDB outage, s")
    parser.add_argument("--no-node-red", action="store_true")
    parser.add_argument("--no-drills", action="store_true")
    return parser.parse_args(argv)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


def _messages(devices: int, count: int, base_ts: int) -> list[Publish]:
    out = []
    for i in range(count):
        device, step = i % devices, i // devices
        body = {"ts": base_ts + step, "seq": step, "temperature_c": round(2 + (i % 50) / 10, 1)}
        out.append(
            Publish(
                f"coldchain/v1/bench-{device:05d}/telemetry",
                json.dumps(body, separators=(",", ":")).encode(),
            )
        )
    return out


@dataclass
class Bench:
    """What every measurement shares: the servers, the registry, the payloads."""

    args: argparse.Namespace
    root: Path
    influxd: InfluxDB
    registry_path: Path
    messages: list[Publish]
    node_red_install: Path | None
    runs: int = 0

    def broker(self) -> Mosquitto:
        """A fresh broker per measurement: no session or queue leaks between them."""
        self.runs += 1
        return Mosquitto(self.root / f"mosquitto-{self.runs}")

    def database(self, name: str) -> InfluxV1:
        """A fresh database of its own."""
        settings = Settings(influx_url=self.influxd.url, influx_db=f"{name}_{self.runs}")
        store = InfluxV1(settings)
        store.ensure_database()
        return store


@dataclass
class Contender:
    """Running processes of one contender, with the means to freeze, kill and restart."""

    kind: str
    bench: Bench
    broker: Mosquitto
    store: InfluxV1 | None
    expected: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    spool: Path | None = None

    @property
    def writes(self) -> bool:
        return self.store is not None

    # -- launching ----------------------------------------------------------------

    def launch(self) -> None:
        """Start the processes and wait until they are subscribed."""
        self.procs, self.logs = [], []
        bench = self.bench
        folder = bench.root / f"{self.kind}-{bench.runs}"
        folder.mkdir(exist_ok=True)
        if self.kind == "mosquitto_sub":
            cmd = [
                shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", "127.0.0.1",
                "-p", str(self.broker.port), "-q", "1", "-c", "-i", "bench-msub",
                "-t", TOPIC, "-C", str(self.expected),
            ]  # fmt: skip
            self._spawn(cmd, folder / "out.log")
            self._await(lambda: "as bench-msub" in _read(self.broker.root / "mosquitto.log"))
            time.sleep(0.3)
        elif self.kind == "paho":
            cmd = [sys.executable, "-m", "bench.bare", self.broker.url, "bench-paho", TOPIC,
                   str(self.expected)]  # fmt: skip
            self._spawn(cmd, folder / "out.log")
            self._await(lambda: "READY" in _read(self.logs[0]))
        elif self.kind.startswith("coldchain-"):
            members = int(self.kind.split("-")[1])
            self.spool = self.spool or folder / "spool"
            for m in range(1, members + 1):
                self._spawn(
                    [sys.executable, "-m", "coldchain", "ingest"],
                    folder / f"ingest-{m}.log",
                    env=self._coldchain_env(members, m),
                )
            self._await(lambda: all("MQTT subscribed" in _read(p) for p in self.logs), 120)
        else:
            assert bench.node_red_install is not None
            assert self.store is not None
            flow = node_red.flows(
                batched=self.kind.endswith("batched"),
                mqtt_port=self.broker.port,
                influx_port=bench.influxd.port,
                database=self.store.database,
                client_id="bench-nodered",
            )
            cmd = node_red.command(bench.node_red_install, folder / "userdir", flow)
            self._spawn(cmd, folder / "node-red.log")
            self._await(lambda: "Connected to broker" in _read(self.logs[0]), 120)
            time.sleep(1.0)  # its SUBSCRIBE follows the connection

    def _coldchain_env(self, members: int, member: int) -> dict[str, str]:
        assert self.store is not None
        assert self.spool is not None
        wiring = Settings(
            mqtt_url=self.broker.url,
            influx_url=self.bench.influxd.url,
            influx_db=self.store.database,
            db=str(self.bench.registry_path),
            spool_dir=self.spool,
        )
        env = dict(os.environ)
        env.update(
            as_env(wiring),
            COLDCHAIN_LOG_LEVEL="INFO",
            PYTHONPATH=os.pathsep.join(sys.path),
        )
        if members > 1:
            env.update(COLDCHAIN_SHARE_GROUP="bench", COLDCHAIN_INGEST_MEMBER=str(member))
        return env

    def _spawn(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        env = env or dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self.procs.append(proc)
        self.logs.append(log)

    def _await(self, ready: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                tail = "".join(_read(log)[-1500:] for log in self.logs)
                raise RuntimeError(f"{self.kind} did not get ready:\n{tail}")
            time.sleep(0.05)

    # -- control ------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL every process (a crash)."""
        self.signal(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()

    def stop(self) -> None:
        """SIGTERM (SIGCONT first, in case frozen), then SIGKILL if it will not go."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def cpu_s(self) -> float:
        """CPU seconds used so far by the running processes."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(proc.pid).cpu_times()
                total += times.user + times.system
        return total

    def stored(self, where: str = "") -> int:
        """Points queryable in this contender's database (-1 while InfluxDB is down)."""
        assert self.store is not None
        clause = f" WHERE {where}" if where else ""
        try:
            series = self.store.query(f'SELECT count("value") FROM temperature{clause}')
        except InfluxError:
            return -1
        return int(series[0].values[0][1]) if series else 0


class _RssPeak:
    """Samples the summed and the largest single RSS of some processes."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids]
        self.total = 0
        self.single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            rss = []
            for proc in self.procs:
                with contextlib.suppress(psutil.Error):
                    rss.append(proc.memory_info().rss)
            if rss:
                self.total = max(self.total, sum(rss))
                self.single = max(self.single, *rss)

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.total / 2**20, self.single / 2**20


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _preload(broker: Mosquitto, messages: list[Publish]) -> None:
    pub = Publisher(broker_target(broker), "bench-loader", window=5000)
    pub.connect()
    pub.publish_many(messages)
    pub.disconnect()  # flushed: the broker holds them all


def broker_target(broker: Mosquitto) -> Any:
    """The broker's address as settings see it."""
    return Settings(mqtt_url=broker.url).mqtt


# -- 1. drain ---------------------------------------------------------------------------


# Node-RED's default flow writes one HTTP request per message (~400 msg/s here): it
# drains this many messages only, so one repetition takes seconds, not minutes. The rate
# is per message either way.
DEFAULT_FLOW_MESSAGES = 10_000


def drain(bench: Bench, kind: str) -> dict[str, Any]:
    """One drain of the queued messages by ``kind``; see the module docstring."""
    messages = bench.messages
    if kind == "node-red-default":
        messages = messages[:DEFAULT_FLOW_MESSAGES]
    n = len(messages)
    with bench.broker() as broker:
        writes = kind.startswith(("coldchain", "node-red"))
        store = bench.database(kind.replace("-", "_")) if writes else None
        c = Contender(kind, bench, broker, store, n)
        try:
            c.launch()
            c.signal(signal.SIGSTOP)
            _preload(broker, messages)
            cpu0 = c.cpu_s()
            waiter = _ExitWatcher(c.procs) if not writes else None
            rss = _RssPeak([p.pid for p in c.procs])
            started = time.time()
            c.signal(signal.SIGCONT)
            ended, got = _await_done(c, waiter, started)
            cpu = (waiter.cpu_s if waiter else c.cpu_s()) - cpu0
            rss_total, rss_single = rss.stop()
        finally:
            c.stop()
            if store is not None:
                store.close()
    elapsed = max(1e-6, ended - started)
    return {
        "msg_s": round(got / elapsed),
        "complete": got >= n,
        "received": got,
        "cpu_s_per_100k": round(cpu * 100_000 / max(1, got), 2),
        "rss_mb": round(rss_total),
        "rss_max_process_mb": round(rss_single),
    }


class _ExitWatcher:
    """Waits for counting subscribers to exit; keeps their exit time and CPU (rusage)."""

    def __init__(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self.ended = 0.0
        self.cpu_s = 0.0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(procs,), daemon=True)
        self._thread.start()

    def _run(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_s += usage.ru_utime + usage.ru_stime
        self.ended = time.time()
        self.done.set()


def _await_done(c: Contender, waiter: _ExitWatcher | None, started: float) -> tuple[float, int]:
    """(time the last message was counted or stored, how many)."""
    if waiter is not None:
        if not waiter.done.wait(600):
            raise RuntimeError(f"{c.kind} did not finish in 10 minutes")
        if c.kind == "paho":
            line = _read(c.logs[0]).strip().splitlines()[-1]
            result = json.loads(line)
            return float(result["t_last"]), int(result["count"])
        return waiter.ended, c.expected
    # The last message queued is the last device's last reading: until its series is
    # complete, ask only for that series (~1 ms); a count over every point costs InfluxDB
    # 15-25 ms of CPU, taken from the writes being measured.
    last_device = f"bench-{bench_devices(c) - 1:05d}"
    per_device = c.expected // bench_devices(c)
    seen, seen_change = -1, time.monotonic()
    while (now := c.stored(f"sensor='{last_device}'")) < per_device:
        if now != seen:
            seen, seen_change = now, time.monotonic()
        elif time.monotonic() - seen_change > 30:
            break  # some of that series never arrives (a writer that drops): count all
        time.sleep(POLL_S)
    last, last_change = 0, time.monotonic()
    while True:
        now = c.stored()
        at = time.time()
        if now >= c.expected:
            return at, now
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > 30:
            return at, max(0, now)  # stuck: report what arrived
        if at - started > 600:
            raise RuntimeError(f"{c.kind} did not finish in 10 minutes")
        time.sleep(POLL_S)


# -- 2. latency -------------------------------------------------------------------------


def bench_devices(c: Contender) -> int:
    """How many devices the queued messages come from."""
    return min(int(c.bench.args.devices), c.expected)


def _publish_live(
    broker: Mosquitto, rate: int, seconds: float, probes: int
) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen(
        [sys.executable, "-m", "bench.live_publisher", broker.url, str(rate), str(seconds),
         "200", str(probes)],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def latency(bench: Bench, kind: str, rate: int) -> dict[str, Any]:
    """p50/p99 publish-to-queryable of probe readings at ``rate`` msg/s."""
    seconds = bench.args.seconds
    with bench.broker() as broker:
        store = bench.database(kind.replace("-", "_"))
        c = Contender(kind, bench, broker, store, 0)
        seen: dict[int, float] = {}
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                try:
                    series = store.query(
                        f"SELECT value FROM temperature WHERE sensor='{PROBE_DEVICE}'"
                    )
                except InfluxError:
                    series = []
                now = time.time()
                for s in series:
                    for row in s.values:
                        seen.setdefault(int(row[0]), now)
                time.sleep(0.02)

        try:
            c.launch()
            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            began = time.time()
            pub = _publish_live(broker, rate, seconds, PROBES_PER_S)
            out, _ = pub.communicate(timeout=seconds + 120)
            sent_s = time.time() - began
            sent = int(out.strip().splitlines()[-1])
            probes = (sent - 1) // max(1, rate // PROBES_PER_S) + 1
            deadline = time.monotonic() + 30
            while len(seen) < probes and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            poller.join()
            stored = _settle(c, sent, 10, timeout=60)
        finally:
            c.stop()
            store.close()
    lat = sorted(at - ts / 1000 for ts, at in seen.items())
    if not lat:
        return {"latency_p50_s": None, "latency_p99_s": None, "live_stored": stored}
    return {
        "live_rate_msg_s": round(sent / sent_s),
        "latency_p50_s": round(lat[len(lat) // 2], 3),
        "latency_p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
        "latency_max_s": round(lat[-1], 3),
        "probes": len(lat),
        "probes_sent": probes,
        "live_sent": sent,
        "live_stored": stored,
    }


def _settle(c: Contender, target: int, quiet_s: float, timeout: float = 180.0) -> int:
    """The stored count once it reaches ``target`` or stops changing for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = -2, time.monotonic()
    while time.monotonic() < deadline:
        now = c.stored()
        if now >= target:
            return now
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s and now >= 0:
            return now
        time.sleep(0.2)
    return max(0, last)


# -- 3. drills --------------------------------------------------------------------------


def drill(bench: Bench, kind: str, what: str) -> dict[str, Any]:
    """Readings lost when the writer is SIGKILLed (``kill``) or InfluxDB is stopped."""
    rate = bench.args.drill_rate
    outage = bench.args.outage
    # The outage drill goes on for 20 s after InfluxDB is back: long enough for a writer
    # that backs off (Node-RED's InfluxDB client waits up to 10 s) to write again.
    seconds = 8.0 if what == "kill" else 3.0 + outage + 20.0
    with bench.broker() as broker:
        store = bench.database(f"{what}_{kind.replace('-', '_')}")
        c = Contender(kind, bench, broker, store, 0)
        try:
            c.launch()
            pub = _publish_live(broker, rate, seconds, 0)
            if what == "kill":
                time.sleep(seconds / 2)
                c.kill()
                c.launch()  # restarted at once (same session, same spool)
            else:
                time.sleep(3.0)
                bench.influxd.stop()
                time.sleep(outage)
                bench.influxd.start()
            out, _ = pub.communicate(timeout=seconds + 120)
            sent = int(out.strip().splitlines()[-1])
            stored = _settle(c, sent, 15)
        finally:
            if not bench.influxd.running:
                bench.influxd.start()
            c.stop()
            store.close()
    return {"sent": sent, "stored": stored, "lost": sent - stored,
            "lost_pct": round(100 * (sent - stored) / sent, 2)}  # fmt: skip


# -- the run ----------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _setup(args: argparse.Namespace, root: Path, quiet: bool) -> tuple[Path, list[Publish]]:
    registry_path = root / "registry.sqlite3"
    registry = Registry(registry_path)
    started = time.perf_counter()
    devices = [f"bench-{d:05d}" for d in range(args.devices)] + [PROBE_DEVICE]
    others = [f"idle-{d:06d}" for d in range(max(0, args.registered - len(devices)))]
    assets = max(1, len(devices + others) // 100)
    registry.import_chain(
        parse_chain(
            {
                "stores": [{"id": "b001", "name": "Bench store"}],
                "assets": [
                    {"id": f"b001-a{a}", "store": "b001", "type": "dairy_case", "name": f"C{a}"}
                    for a in range(assets)
                ],
                "sensors": [
                    {"id": sensor, "asset": f"b001-a{i % assets}"}
                    for i, sensor in enumerate(devices + others)
                ],
            }
        )
    )
    registry.close()
    _say(quiet, f"  registry: {len(devices + others):,} sensors in "
                f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    base_ts = int(time.time()) - 6 * 3600
    return registry_path, _messages(args.devices, args.messages, base_ts)


def run(argv: list[str], *, quiet: bool) -> dict[str, Any]:
    """Run the benchmark; return its figures."""
    args = _parse(argv)
    # SIGTERM unwinds like an exception, so the servers and contenders are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.getLogger("coldchain").setLevel(logging.WARNING)
    ingesters = [int(n) for n in args.ingesters.split(",") if n]
    if shutil.which("mosquitto_sub") is None:
        raise RuntimeError("mosquitto_sub not found: ./scripts/ensure-bench-deps.sh (make bench)")
    load = os.getloadavg()
    install: Path | None = None
    note = ""
    if not args.no_node_red:
        try:
            install = node_red.ensure_installed()
        except node_red.NodeRedUnavailable as exc:
            note = f"Node-RED skipped: {exc}"
            _say(quiet, f"  {note}")
    kinds = ["mosquitto_sub", "paho", *[f"coldchain-{n}" for n in ingesters]]
    if install is not None:
        kinds += ["node-red-batched", "node-red-default"]
    writers = [k for k in kinds if k.startswith(("coldchain", "node-red"))]
    _say(quiet, f"bench ingest: {args.messages:,} QoS 1 messages from {args.devices:,} devices, "
                f"{args.repeat} repetitions; load average {load[0]:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="coldchain-bench-") as tmp:
        root = Path(tmp)
        with InfluxDB(root / "influxd") as influxd:
            registry_path, messages = _setup(args, root, quiet)
            bench = Bench(args, root, influxd, registry_path, messages, install)
            drains: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
            for rep in range(args.repeat):
                for kind in kinds:
                    result = drain(bench, kind)
                    drains[kind].append(result)
                    _say(quiet, f"  [{rep + 1}] {kind:<18} {result['msg_s']:>9,} msg/s  "
                                f"CPU {result['cpu_s_per_100k']:>6.2f} s/100k  "
                                f"RSS {result['rss_mb']:>5} MB"
                                f"{'' if result['complete'] else '  INCOMPLETE'}")  # fmt: skip
            single = statistics.median(r["msg_s"] for r in drains[f"coldchain-{ingesters[0]}"])
            rate = args.rate or max(100, int(single / 2))
            live = {}
            for kind in writers:
                live[kind] = latency(bench, kind, rate)
                _say(quiet, f"  live {rate:,} msg/s {kind:<18} p50 {live[kind]['latency_p50_s']} s"
                            f"  p99 {live[kind]['latency_p99_s']} s")  # fmt: skip
            drills: dict[str, dict[str, Any]] = {}
            if not args.no_drills:
                for kind in [f"coldchain-{ingesters[0]}", *writers[len(ingesters) :]]:
                    drills[kind] = {w: drill(bench, kind, w) for w in ("kill", "outage")}
                    kill, out = drills[kind]["kill"], drills[kind]["outage"]
                    _say(quiet, f"  drills {kind:<18} lost on kill -9: "
                                f"{kill['lost']} of {kill['sent']}, on a {args.outage:.0f} s "
                                f"InfluxDB outage: {out['lost']} of {out['sent']}")  # fmt: skip
    return _figures(args, kinds, ingesters, drains, live, drills, rate, load, note)


def _figures(
    args: argparse.Namespace,
    kinds: list[str],
    ingesters: list[int],
    drains: dict[str, list[dict[str, Any]]],
    live: dict[str, dict[str, Any]],
    drills: dict[str, dict[str, Any]],
    rate: int,
    load: tuple[float, float, float],
    note: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "ingest",
        "messages": args.messages,
        "devices": args.devices,
        "registered_sensors": args.registered,
        "repeat": args.repeat,
        "load_avg_1m_start": round(load[0], 2),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "live_rate_msg_s": rate,
    }
    for kind in kinds:
        runs = drains[kind]
        out[kind] = {
            "msg_s": _spread([r["msg_s"] for r in runs]),
            "cpu_s_per_100k": _spread([r["cpu_s_per_100k"] for r in runs]),
            "rss_mb": max(r["rss_mb"] for r in runs),
            "rss_max_process_mb": max(r["rss_max_process_mb"] for r in runs),
            "complete": all(r["complete"] for r in runs),
            **live.get(kind, {}),
            **({"drills": drills[kind]} if kind in drills else {}),
        }
    # Ratios per repetition (same run, same load), then their spread.
    ratios: dict[str, Any] = {}
    for n in ingesters:
        ours = [r["msg_s"] for r in drains[f"coldchain-{n}"]]
        for peer in ("mosquitto_sub", "paho", "node-red-batched", "node-red-default"):
            if peer in drains:
                theirs = [r["msg_s"] for r in drains[peer]]
                pairs = [round(a / b, 3) for a, b in zip(ours, theirs, strict=True) if b]
                if pairs:
                    ratios[f"coldchain-{n}/{peer}"] = _spread(pairs)
    out["ratios"] = ratios
    best = max(ingesters, key=lambda n: out[f"coldchain-{n}"]["msg_s"]["median"])
    checks = {
        "broker_ratio": ratios[f"coldchain-{best}/mosquitto_sub"]["median"] >= BROKER_RATIO_TARGET,
        "p99": (out[f"coldchain-{ingesters[0]}"].get("latency_p99_s") or 99) < P99_TARGET_S,
        "rss": out[f"coldchain-{ingesters[0]}"]["rss_max_process_mb"] < RSS_TARGET_MB,
    }
    if f"coldchain-{best}/node-red-batched" in ratios:
        median = ratios[f"coldchain-{best}/node-red-batched"]["median"]
        checks["node_red_ratio"] = median >= NODE_RED_RATIO_TARGET
    for kind, found in drills.items():
        if kind.startswith("coldchain"):
            checks["no_loss"] = all(d["lost"] == 0 for d in found.values())
    out["targets"] = {
        "coldchain_vs_node_red_batched": NODE_RED_RATIO_TARGET,
        "coldchain_vs_mosquitto_sub": BROKER_RATIO_TARGET,
        "p99_s": P99_TARGET_S,
        "rss_mb": RSS_TARGET_MB,
        "lost": 0,
    }
    out["best_ingesters"] = best
    out["checks"] = checks
    out["pass"] = all(checks.values())
    if note:
        out["note"] = note
    return out
