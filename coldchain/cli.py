"""The ``coldchain`` command: one subcommand per service and tool.

This is the composition root: the only place that reads the environment, builds the
system clock and wires services together. Long-running commands stop cleanly on SIGTERM
and SIGINT, draining in-flight work.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from core.errors import ColdchainError, ConfigError
from core.settings import Settings, load_settings

log = logging.getLogger("coldchain")

Handler = Callable[[argparse.Namespace, Settings], int]


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Libraries' per-request chatter would drown our own lines at INFO.
    for noisy in ("httpx", "httpcore", "urllib3", "twilio.http_client", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def wait_for_signal(stop: threading.Event | None = None) -> None:
    """Block until SIGTERM or SIGINT (or ``stop`` is set)."""
    event = stop or threading.Event()

    def _handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        event.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    while not event.wait(0.5):
        pass


# -- services -------------------------------------------------------------------------


class _Supervision:
    """What every long-running command does around its services: ``/metrics`` on
    ``COLDCHAIN_METRICS_BIND`` (if set), and systemd's ready, stopping and watchdog
    notifications (coldchain/systemd.py), the watchdog asking ``healthy``."""

    def __init__(
        self, settings: Settings, metrics: Any, kind: str, healthy: Callable[[], bool]
    ) -> None:
        from coldchain.systemd import SystemdNotifier, Watchdog
        from core.metrics import MetricsServer

        metrics.describe_process(kind)
        where = settings.metrics_host_port
        self.server = MetricsServer(metrics, *where) if where is not None else None
        self.notifier = SystemdNotifier()
        self.watchdog = Watchdog(self.notifier, healthy)

    def serve(self) -> None:
        """Open the metrics listener (before the services start: a taken port stops the
        command at once, naming the setting)."""
        if self.server is None:
            return
        try:
            self.server.start()
        except OSError as exc:
            raise ConfigError(f"COLDCHAIN_METRICS_BIND: cannot listen there: {exc}") from None

    def ready(self) -> None:
        """The services run: tell systemd, start the watchdog pings."""
        self.notifier.ready()
        self.watchdog.start()

    def stopping(self) -> None:
        """Tell systemd the drain has begun; no more watchdog pings."""
        self.notifier.stopping()
        self.watchdog.stop()

    def close(self) -> None:
        """Close the metrics listener (last: the drain stays observable)."""
        if self.server is not None:
            self.server.stop()


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Run the MQTT ingester until SIGTERM/SIGINT (or, with --retire, drain and leave)."""
    from core.clock import SystemClock
    from core.influx import connect
    from core.metrics import Registry as MetricsRegistry
    from core.registry import Registry
    from ingest import observations
    from ingest.pipeline import Observation
    from ingest.service import Ingester

    registry = Registry(settings.db)
    store = connect(settings)
    store.ensure_database()
    holder: list[Ingester] = []

    def publish(batch: list[Observation]) -> None:
        observations.publish(holder[0].source, batch)

    on_durable = publish if settings.publish_observations else None
    metrics = MetricsRegistry()
    ingester = Ingester(
        settings, registry, store, SystemClock(), metrics=metrics, on_durable=on_durable
    )
    holder.append(ingester)
    if args.retire:
        try:
            return 0 if ingester.retire() else 1
        finally:
            store.close()
            registry.close()
    supervision = _Supervision(settings, metrics, "ingest", ingester.writer.alive)
    supervision.serve()
    ingester.start()
    try:
        supervision.ready()
        wait_for_signal()
    finally:
        supervision.stopping()
        ingester.stop()
        store.close()
        registry.close()
        supervision.close()
    return 0


def cmd_run(_args: argparse.Namespace, settings: Settings) -> int:
    """Ingest, alerting and the API in one process, until SIGTERM/SIGINT."""
    from coldchain.compose import build_stack
    from core.clock import SystemClock

    stack = build_stack(settings, SystemClock())

    def healthy() -> bool:
        return stack.engine.stats.health.healthy() and stack.ingester.writer.alive()

    supervision = _Supervision(settings, stack.metrics, "run", healthy)
    supervision.serve()
    stack.start()
    try:
        supervision.ready()
        wait_for_signal()
    finally:
        supervision.stopping()
        stack.stop()
        supervision.close()
    return 0


def cmd_alerting(_args: argparse.Namespace, settings: Settings) -> int:
    """Run alerting alone, fed by `coldchain ingest` over MQTT (publish_observations)."""
    import time

    from alerting.scheduler import Scheduler
    from coldchain.compose import make_engine
    from core.clock import SystemClock
    from core.influx import connect
    from core.metrics import Registry as MetricsRegistry
    from ingest import observations
    from ingest.mqtt import AckToken, MqttSource

    influx = connect(settings)
    metrics = MetricsRegistry()
    engine = make_engine(settings, SystemClock(), influx, metrics=metrics)
    health = engine.stats.health
    holder: list[MqttSource] = []

    def handle(topic: str, payload: bytes, _retained: bool, token: AckToken) -> None:
        try:
            batch, durable_at = observations.decode_timed(payload)
        except ValueError:
            log.exception("undecodable observation batch on %s", topic)
        else:
            engine.observe(batch)
            if engine.leading:  # a standby only keeps its rules in step
                lag = None if durable_at is None else time.time() - durable_at
                health.batch_evaluated(len(batch), lag)
        holder[0].ack(token)  # evaluated (or unusable): the broker may forget it

    source = MqttSource(
        settings.mqtt,
        f"coldchain-alerting-{settings.instance_name}",
        [observations.TOPIC],
        handle,
        receive_maximum=100,
    )
    holder.append(source)
    scheduler = Scheduler(engine.tick)
    supervision = _Supervision(settings, metrics, "alerting", health.healthy)
    supervision.serve()
    engine.start()
    scheduler.start()
    source.start()
    try:
        supervision.ready()
        wait_for_signal()
    finally:
        supervision.stopping()
        source.pause()
        source.stop()
        scheduler.stop()
        engine.stop()
        influx.close()
        supervision.close()
    return 0


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """Print what a rule set would have fired over stored history."""
    from zoneinfo import ZoneInfo

    from alerting import backtest
    from core.chain import load_chain
    from core.influx import connect
    from core.registry import Registry

    registry = Registry(settings.db)
    store = registry.store(args.store)
    zone = ZoneInfo(store.timezone)

    def instant(text: str) -> int:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"--from/--to: {text!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return round(moment.timestamp() * 1000)

    start, end = instant(args.start), instant(args.end)
    if end <= start:
        raise ConfigError("--to must be after --from")
    overrides = load_chain(args.rules) if args.rules else None
    engine = backtest.engine_for(registry, args.store, overrides)
    influx = connect(settings)
    try:
        events = backtest.load_events(influx, args.store, start, end)
    finally:
        influx.close()
        registry.close()
    transitions = backtest.replay(engine, events, start, end)
    print(f"{len(events)} observations replayed for {store.name} ({args.store}); "
          f"{len(transitions)} transitions")  # fmt: skip
    for t in transitions:
        print(backtest.describe(t, store.timezone))
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Run a scenario against the broker (real time, accelerated, or flat out)."""
    import time

    from core.registry import Registry
    from simulator.publisher import Publisher
    from simulator.runner import Runner, StepReport, local_label
    from simulator.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    if args.start == "auto":
        scenario = scenario.shifted_to_end_before(datetime.now(UTC))
    elif args.start != "scenario":
        moved = scenario.simulation.model_copy(update={"start": args.start})
        scenario = scenario.model_copy(update={"simulation": moved})
    if args.seed_registry:
        registry = Registry(settings.db)
        counts = registry.import_chain(scenario.full_chain())
        registry.close()
        print(f"seeded {_where(settings)}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    speed = None if args.speed == "max" else float(args.speed)
    publisher = Publisher(settings.mqtt, f"coldchain-sim-{scenario.name}"[:64])
    publisher.connect()
    zone = scenario.zone()
    last = [0.0]

    def progress(report: StepReport) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or report.events:
            last[0] = now
            events = f"  <- {', '.join(report.events)}" if report.events else ""
            print(f"\r{local_label(report.sim_time, zone)} {runner.published:>9,} messages"
                  f"{events}", end="\n" if events else "", flush=True)  # fmt: skip

    runner = Runner(scenario, publisher.publish, speed=speed, on_step=progress)
    print(f"scenario {scenario.name}: {len(runner.sensors)} sensors, "
          f"{scenario.simulation.duration / 3600:g} h from {scenario.start():%Y-%m-%d %H:%M %Z}"
          f", speed {args.speed}")  # fmt: skip
    try:
        runner.run()
    finally:
        publisher.disconnect()
    print(f"\ndone: {runner.published:,} messages published")
    return 0


def cmd_api(_args: argparse.Namespace, settings: Settings) -> int:
    """Serve the REST API alone (acks go to the alert book; webhooks need alerting).

    With ``COLDCHAIN_PUBLISH_OBSERVATIONS`` (split mode: ingest publishes what it stored),
    ``/readings/latest`` is served from a cache fed by that stream (coldchain/latest_feed.py).
    """
    from api import ApiDeps, serve
    from api.latest import LatestCache
    from coldchain.latest_feed import LatestFeed
    from core.clock import SystemClock
    from core.influx import connect
    from core.metrics import Registry as MetricsRegistry
    from core.registry import Registry

    stop = threading.Event()
    influx = connect(settings)
    metrics = MetricsRegistry()
    feed = LatestFeed(settings, LatestCache()) if settings.publish_observations else None
    deps = ApiDeps(
        settings=settings,
        registry=Registry(settings.db),
        influx=influx,
        engine=None,
        clock=SystemClock(),
        metrics=metrics,
        latest=feed.cache if feed is not None else None,
    )
    host, port = settings.api_host_port
    server = threading.Thread(target=serve, args=(deps, host, port, stop), daemon=True)
    supervision = _Supervision(settings, metrics, "api", server.is_alive)
    supervision.serve()
    if feed is not None:
        feed.start()
    server.start()
    try:
        supervision.ready()
        wait_for_signal(stop)
    finally:
        supervision.stopping()
        stop.set()
        server.join(30)
        if feed is not None:
            feed.stop()
        influx.close()
        supervision.close()
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create an API key and print it (it is stored hashed; this is the only copy)."""
    from api.cli import cmd_keys_create as create

    return create(args, settings)


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    """List API keys."""
    from api.cli import cmd_keys_list as listing

    return listing(args, settings)


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke an API key."""
    from api.cli import cmd_keys_revoke as revoke

    return revoke(args, settings)


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Check the audit log's hash chain."""
    from api.cli import cmd_audit_verify as verify

    return verify(args, settings)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the self-contained demo on private servers."""
    from coldchain.demo import run_demo

    return run_demo(
        out_dir=args.out, keep_running=args.keep_running, phone=args.phone,
        base_settings=settings,
    )  # fmt: skip


# -- registry tools -------------------------------------------------------------------


def _where(settings: Settings) -> str:
    """The registry as it may be printed (a URL's password hidden)."""
    from core.settings import redact_url

    return redact_url(str(settings.db))


def _registry(settings: Settings) -> Any:
    from core.registry import Registry

    return Registry(settings.db)


def cmd_registry_import(args: argparse.Namespace, settings: Settings) -> int:
    """Upsert a chain file into the registry (idempotent)."""
    from core.chain import load_chain

    chain = load_chain(Path(args.file))
    counts = _registry(settings).import_chain(chain)
    print(
        ", ".join(f"{n} {kind}" for kind, n in counts.items())
        + f" imported into {_where(settings)}"
    )
    return 0


def cmd_registry_export(_args: argparse.Namespace, settings: Settings) -> int:
    """Print the registry as a chain file."""
    from core.chain import dump_chain

    print(dump_chain(_registry(settings).export_chain()), end="")
    return 0


def cmd_sensors_add(args: argparse.Namespace, settings: Settings) -> int:
    """Register (or move, or re-calibrate) a sensor."""
    from core.chain import Sensor

    data: dict[str, Any] = {"id": args.sensor_id, "asset": args.asset, "offset": args.offset}
    if args.family:
        data["family"] = args.family
    if args.interval:
        data["interval"] = args.interval
    try:
        sensor = Sensor.model_validate(data)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    registry = _registry(settings)
    channels = registry.ambiguous_channels(sensor.id)
    if channels and not any(s.id == sensor.id for s in registry.sensors()):
        print(
            f"coldchain: {sensor.id} carries {len(channels)} probes; register the one on "
            f"{sensor.asset} by its own id:",
            file=sys.stderr,
        )
        for channel, quantities in channels.items():
            print(f"  {channel}  ({', '.join(quantities)})", file=sys.stderr)
        return 2
    registry.add_sensor(sensor)
    print(f"sensor {sensor.id} -> asset {sensor.asset} (offset {sensor.offset:+g} °C)")
    return 0


def cmd_sensors_list(args: argparse.Namespace, settings: Settings) -> int:
    """List registered sensors with their store and asset."""
    infos = _registry(settings).sensor_infos()
    rows = [
        (i.sensor, i.store, i.asset, i.asset_type, i.family or "-", f"{i.offset:+g}")
        for i in infos.values()
        if args.store is None or i.store == args.store
    ]
    _table(["sensor", "store", "asset", "type", "family", "offset"], sorted(rows))
    return 0


def cmd_devices_discovered(args: argparse.Namespace, settings: Settings) -> int:
    """Devices to register, with the exact sensor ids, and what they sent that was not
    stored (ignored messages by reason, unused payload keys)."""
    devices = _registry(settings).discovered(include_registered=args.all)
    if args.json:
        print(json.dumps([d.__dict__ for d in devices], indent=2))
        return 0
    rows = []
    for d in devices:
        seen = datetime.fromtimestamp(d.last_seen, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        ids = d.sensors or ["-"]
        for number, sensor in enumerate(ids):
            measures = ", ".join(d.quantities.get(sensor, []))
            head = (d.device_id, d.family, seen, str(d.messages)) if number == 0 else ("",) * 4
            rows.append((*head[:2], sensor, measures or "-", *head[2:]))
    _table(["device", "family", "sensor id to register", "measures", "last seen", "messages"], rows)
    for d in devices:
        notes = []
        if d.note:
            notes.append(d.note)
        if d.ignored:
            counts = ", ".join(f"{reason} x{n}" for reason, n in sorted(d.ignored.items()))
            notes.append(f"ignored messages: {counts} (last: {d.last_ignored})")
        if d.unused:
            notes.append(f"sent but not stored: {', '.join(d.unused)}")
        for line in notes:
            print(f"{d.device_id}: {line}")
    return 0


def cmd_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    """Show recent dead letters (undecodable or rejected messages)."""
    registry = _registry(settings)
    letters = registry.dead_letters(reason=args.reason, limit=args.limit)
    for d in letters:
        when = datetime.fromtimestamp(d.at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        print(f"{when} {d.reason:<16} {d.topic}\n    {d.detail}\n    {d.payload[:200]}")
    counts = registry.dead_letter_counts()
    print(f"stored dead letters by reason: {json.dumps(counts, sort_keys=True)}")
    return 0


def cmd_config_check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate a chain file (or the settings when no file is given)."""
    if args.file:
        from core.chain import load_chain

        chain = load_chain(Path(args.file))
        print(
            f"{args.file}: OK ({len(chain.stores)} stores, {len(chain.assets)} assets, "
            f"{len(chain.sensors)} sensors, {len(chain.contacts)} contacts, "
            f"{len(chain.policies)} policies)"
        )
    else:
        print(json.dumps(settings.redacted(), indent=2, default=str))
    return 0


def cmd_bench(args: argparse.Namespace, _settings: Settings) -> int:
    """Run a benchmark and print its figures (one JSON line at the end)."""
    from bench import run_benchmark

    # `bench NAME --json` (the documented form) and `bench --json NAME` both work: after
    # NAME everything goes to the benchmark (REMAINDER), so --json is taken back out there.
    extra = [arg for arg in args.bench_args if arg != "--json"]
    as_json = args.json or len(extra) != len(args.bench_args)
    return run_benchmark(args.name, as_json=as_json, extra=extra)


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    """Print the Mosquitto acl_file (``acl``) or its user names (``users``) for the
    registry's devices and a broker file (docs/operations.md, section 12)."""
    from coldchain.broker import (
        BrokerFile,
        RegisteredSensor,
        build_plan,
        load_broker_file,
        render_acl,
        summary,
    )

    broker = load_broker_file(args.devices) if args.devices else BrokerFile()
    if args.service_user:
        broker = broker.model_copy(update={"service_user": args.service_user})
    sensors: list[RegisteredSensor] = []
    seen: dict[str, str] = {}
    if not args.no_registry:
        if settings.db_is_file and not Path(settings.db).exists():
            raise ConfigError(
                f"registry {settings.db} not found (COLDCHAIN_DB); "
                "use --no-registry to write the ACL from --devices alone"
            )
        registry = _registry(settings)
        sensors = [
            RegisteredSensor(i.sensor, i.family, i.store) for i in registry.sensor_infos().values()
        ]
        seen = {d.device_id: d.family for d in registry.discovered(include_registered=True)}
        registry.close()
    plan = build_plan(sensors, broker, seen_families=seen)
    for warning in plan.warnings:
        print(f"coldchain: warning: {warning}", file=sys.stderr)
    if args.action == "users":
        print("\n".join(plan.users()))
    else:
        print(render_acl(plan), end="")
        print(f"coldchain: ACL for {', '.join(summary(plan)) or 'no devices'}", file=sys.stderr)
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=False)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar."""
    parser = argparse.ArgumentParser(
        prog="coldchain",
        description="Cold-chain telemetry and escalating alerts for grocery chains.",
    )
    parser.add_argument("--config", type=Path, help="YAML settings file (env vars win)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        return _add(sub, name, handler, help_text)

    add("run", cmd_run, "ingest + alerting + API in one process (until SIGTERM/SIGINT)")
    p = add("ingest", cmd_ingest, "run the MQTT ingester (until SIGTERM/SIGINT)")
    p.add_argument(
        "--retire",
        action="store_true",
        help="take this share group member out for good: drain its session, then delete it",
    )
    p = add("alerting", cmd_alerting, "run alerting alone, fed by `coldchain ingest` over MQTT")
    asub = p.add_subparsers(dest="action", metavar="ACTION")
    p = asub.add_parser("backtest", help="replay stored readings through a rule set")
    p.add_argument("--store", required=True)
    p.add_argument("--from", dest="start", required=True, help="ISO time (store local if no zone)")
    p.add_argument("--to", dest="end", required=True, help="ISO time (store local if no zone)")
    p.add_argument("--rules", type=Path, help="chain-format YAML overriding stores/assets")
    p.set_defaults(handler=cmd_backtest)
    p = add("demo", cmd_demo, "the San Pedro night, narrated, on private Mosquitto and InfluxDB")
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the stack and its API up after the night, until Ctrl-C",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("demo-output"),
        help="where the HACCP record files go (default ./demo-output)",
    )
    p.add_argument("--phone", help="with Twilio credentials set: send every page to this "
                   "E.164 number by real SMS (the scenario's numbers are fictitious)")  # fmt: skip
    add("api", cmd_api, "serve the REST API alone (until SIGTERM/SIGINT)")
    keys = sub.add_parser("keys", help="API keys")
    ksub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ksub.add_parser("create", help="create an API key and print it once")
    p.add_argument("--role", required=True, choices=["admin", "technician", "manager", "oncall"])
    p.add_argument("--store", action="append", help="store a manager key may see (repeat)")
    p.add_argument("--name", default="", help="who or what the key is for")
    p.set_defaults(handler=cmd_keys_create)
    p = ksub.add_parser("list", help="list API keys (never their secrets)")
    p.set_defaults(handler=cmd_keys_list)
    p = ksub.add_parser("revoke", help="revoke an API key at once")
    p.add_argument("key_id", help="the key's id (see 'keys list')")
    p.set_defaults(handler=cmd_keys_revoke)
    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    aud = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = aud.add_parser("verify", help="verify the hash chain (exit 1 if tampered)")
    p.set_defaults(handler=cmd_audit_verify)
    p = add("simulate", cmd_simulate, "publish a scenario's sensors over MQTT")
    p.add_argument("--scenario", required=True, help="built-in name or a scenario YAML file")
    p.add_argument("--speed", default="1", help="1 = real time, 600 = a day in 2.4 min, max")
    p.add_argument("--seed-registry", action="store_true", help="import the scenario's chain")
    p.add_argument(
        "--start",
        default="auto",
        help="auto (default: moved by whole days to end before now, for a real-clock "
        "ingester), scenario (as written), or an ISO time",
    )

    _add_registry_commands(sub)
    _add_broker_commands(sub)

    p = add(
        "bench", cmd_bench, "run a benchmark (ingest, alerting, simulate, api, metrics, failover)"
    )
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="benchmark options")
    return parser


def _add(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def _add_registry_commands(sub: Any) -> None:
    """registry, sensors, devices, deadletters and config subcommands."""

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        return _add(sub, name, handler, help_text)

    registry = sub.add_parser("registry", help="import/export the chain file")
    rsub = registry.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = rsub.add_parser("import", help="upsert a chain file (idempotent)")
    p.add_argument("file")
    p.set_defaults(handler=cmd_registry_import)
    p = rsub.add_parser("export", help="print the registry as a chain file")
    p.set_defaults(handler=cmd_registry_export)

    sensors = sub.add_parser("sensors", help="register and list sensors")
    ssub = sensors.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ssub.add_parser("add", help="register, move or re-calibrate a sensor")
    p.add_argument("sensor_id")
    p.add_argument("--asset", required=True)
    p.add_argument("--family")
    p.add_argument("--offset", type=float, default=0.0, help="°C added to temperatures")
    p.add_argument("--interval", help="expected reporting interval, e.g. 60s or 10m")
    p.set_defaults(handler=cmd_sensors_add)
    p = ssub.add_parser("list", help="list registered sensors")
    p.add_argument("--store")
    p.set_defaults(handler=cmd_sensors_list)

    devices = sub.add_parser("devices", help="devices seen on MQTT")
    dsub = devices.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = dsub.add_parser(
        "discovered", help="devices with unregistered sensors or messages not stored"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="every device seen, registered ones included")
    p.set_defaults(handler=cmd_devices_discovered)

    p = add("deadletters", cmd_deadletters, "show recent dead letters")
    p.add_argument("--reason")
    p.add_argument("--limit", type=int, default=20)

    config = sub.add_parser("config", help="validate configuration")
    csub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = csub.add_parser("check", help="validate a chain file, or print effective settings")
    p.add_argument("file", nargs="?")
    p.set_defaults(handler=cmd_config_check)


def _add_broker_commands(sub: Any) -> None:
    """broker acl | users: the Mosquitto access control list (coldchain/broker.py)."""
    broker = sub.add_parser("broker", help="the MQTT broker's access control list")
    bsub = broker.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("acl", "print the Mosquitto acl_file: each device writes only its own topics"),
        ("users", "print the user names the acl_file needs in the password_file"),
    ):
        p = bsub.add_parser(action, help=text, description=text)
        p.add_argument("--devices", type=Path, help="broker file (YAML): network servers, "
                       "ESPHome prefixes, devices not in the registry")  # fmt: skip
        p.add_argument("--no-registry", action="store_true",
                       help="only the broker file's devices")  # fmt: skip
        p.add_argument("--service-user", help="coldchain's own MQTT user (default "
                       "coldchain-svc, or the broker file's)")  # fmt: skip
        p.set_defaults(handler=cmd_broker)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coldchain`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as exc:
        print(f"coldchain: configuration error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except ColdchainError as exc:
        print(f"coldchain: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `coldchain ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
