"""``coldchain demo``: the San Pedro night on this machine, narrated, ending by itself.

Everything runs for real in this process: private Mosquitto and InfluxDB servers, the
ingester, the alerting engine with its escalation and delivery, and the REST API. The
simulator plays the ``san-pedro-overnight`` scenario (a walk-in cooler's compressor trips
at 23:10 in a closed store) among a dozen healthy stores, publishing every device
family's native payloads, in simulated time (:mod:`coldchain.lockstep`): a ten-hour night
takes about a minute. A few hostile messages go first, to show they are refused and
counted rather than crashing anything.

The narration follows what a store manager, the on-call desk and an auditor would see:
readings flowing, the failure, the page to the store manager, the escalation to on-call
when nobody answers, on-call acknowledging by SMS reply, the repair and the all-clear.
It ends with a summary, the HACCP record of the night as HTML and CSV files, and the URL
of the API; ``--keep-running`` keeps the stack up for exploring.

Pages go to the console notifier; with Twilio credentials set and ``--phone`` given,
they go by real SMS to that one number (the scenario's numbers are fictitious).
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from alerting.notifiers.base import Delivery, Notifier, Outbound
from alerting.notifiers.console import ConsoleNotifier
from coldchain.compose import Stack, build_stack, make_notifier
from coldchain.lockstep import Lockstep
from coldchain.services import InfluxDB, Mosquitto, free_port
from core.clock import ManualClock
from core.registry import Registry
from core.settings import Settings
from devices.base import Publish
from reports.haccp import build_report
from reports.render import to_csv, to_html
from simulator.publisher import Publisher
from simulator.runner import Runner, StepReport
from simulator.scenario import Generate, Scenario, load_scenario

SCENARIO = "san-pedro-overnight"
STORE, ASSET = "s042", "s042-wic1"
# Healthy stores around San Pedro: enough traffic to make the night ordinary elsewhere,
# few enough that the night runs in about a minute on two cores.
BACKGROUND_STORES = 12
# On-call answers this long after being paged (the acceptance test's timeline).
ONCALL_ANSWERS_AFTER = timedelta(minutes=5)
# A status line this often when the output is not a terminal (simulated time).
LOG_EVERY_S = 3600.0
API_PORT = 8000


@dataclass
class Page:
    """A message the stack sent, at simulated time."""

    at: datetime
    to: str
    body: str


@dataclass
class Story:
    """What happened, for the narration and the summary."""

    pages: list[Page] = field(default_factory=list)
    reply: tuple[datetime, str, str] | None = None  # when, what on-call sent, the answer
    printed: int = 0


class RecordingNotifier:
    """Passes each message on and keeps it, stamped with simulated time, for the story."""

    def __init__(self, inner: Notifier, clock: ManualClock, story: Story) -> None:
        self.inner = inner
        self.name = inner.name
        self.clock = clock
        self.story = story
        self._lock = threading.Lock()

    def send(self, message: Outbound) -> Delivery:
        """Send through the inner notifier, then record it."""
        delivery = self.inner.send(message)
        with self._lock:
            self.story.pages.append(Page(self.clock.now(), message.to, message.body))
        return delivery


class Narrator:
    """Story lines, and a live status line when writing to a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._status = ""

    def say(self, text: str) -> None:
        """A line of the story (clears the status line first)."""
        if self.live and self._status:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        if self.live and self._status:
            self.stream.write(self._status)
        self.stream.flush()

    def status(self, text: str) -> None:
        """Replace the live status line (terminals only)."""
        if self.live:
            self._status = text
            self.stream.write("\r\033[K" + text)
            self.stream.flush()

    def done(self) -> None:
        """End the status line."""
        if self.live and self._status:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self._status = ""


def demo_scenario(background_stores: int = BACKGROUND_STORES) -> Scenario:
    """San Pedro's night, with healthy stores around it."""
    base = load_scenario(SCENARIO)
    if not background_stores:
        return base
    extra = Generate(
        stores=background_stores,
        prefix="gt",
        country="GT",
        timezone="America/Guatemala",
        interval=60.0,
    )
    return base.model_copy(update={"generate": extra})


def _hostile(now_ms: int) -> list[tuple[str, Publish]]:
    """Messages a real fleet sends sooner or later, each refused and counted."""
    return [
        ("malformed JSON", Publish("coldchain/v1/cc-s042-wic1/telemetry", b'{"temperature_c": 3.')),
        (
            "wrong type",
            Publish("coldchain/v1/cc-s042-wic1/telemetry", b'{"temperature_c": "cold", "seq": 1}'),
        ),
        (
            "probe unplugged (-127 C)",
            Publish("coldchain/v1/cc-s017-wic1/telemetry", b'{"temperature_c": -127.0}'),
        ),
        (
            "unregistered device",
            Publish(
                "coldchain/v1/new-probe-7/telemetry",
                f'{{"ts": {now_ms / 1000}, "temperature_c": 4.1}}'.encode(),
            ),
        ),
    ]


def run_demo(
    *,
    out_dir: Path,
    keep_running: bool = False,
    phone: str | None = None,
    base_settings: Settings | None = None,
    stream: TextIO | None = None,
    background_stores: int = BACKGROUND_STORES,
) -> int:
    """Run the demo; return the exit code. See the module docstring."""
    for noisy in ("ingest", "alerting", "api", "uvicorn", "coldchain", "simulator"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    say = Narrator(stream or sys.stdout)
    scenario = demo_scenario(background_stores)
    zone = ZoneInfo(str(scenario.zone()))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="coldchain-demo-") as tmp:
        root = Path(tmp)
        say.say(
            "coldchain demo: the San Pedro night, on real Mosquitto, InfluxDB, ingest, "
            "alerting and API"
        )
        with Mosquitto(root / "mosquitto") as broker, InfluxDB(root / "influxd") as influxd:
            settings = _settings(base_settings, broker, influxd, root, phone)
            say.say(f"  Mosquitto {broker.url}  InfluxDB {influxd.url}  (private, in {root})")
            return _run(
                scenario, zone, settings, out_dir, say, keep_running=keep_running, phone=phone
            )


def _settings(
    base: Settings | None, broker: Mosquitto, influxd: InfluxDB, root: Path, phone: str | None
) -> Settings:
    port = API_PORT if _port_free(API_PORT) else free_port()
    values: dict[str, Any] = {
        "mqtt_url": broker.url,
        "influx_url": influxd.url,
        "influx_db": "coldchain_demo",
        "db": root / "registry.sqlite3",
        "spool_dir": root / "spool",
        "api_bind": f"127.0.0.1:{port}",
        "batch_interval_ms": 2,
    }
    settings = (base or Settings()).model_copy(update=values)
    if not (phone and settings.twilio_configured):
        # Fictitious numbers never go to a real provider.
        settings = settings.model_copy(update={"twilio_account_sid": None})
    return settings


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run(
    scenario: Scenario,
    zone: ZoneInfo,
    settings: Settings,
    out_dir: Path,
    say: Narrator,
    *,
    keep_running: bool,
    phone: str | None,
) -> int:
    chain = scenario.full_chain()
    if phone:
        chain = chain.model_copy(
            update={"contacts": [c.model_copy(update={"phone": phone}) for c in chain.contacts]}
        )
    registry = Registry(settings.db)
    registry.import_chain(chain)
    names = {c.phone: f"{c.name} ({', '.join(c.roles)})" for c in chain.contacts}
    say.say(
        f"  registry: {len(chain.stores)} stores, {len(chain.assets)} units, "
        f"{len(chain.sensors)} sensors (native, Tasmota, Shelly, ESPHome), "
        f"{len(chain.contacts)} contacts; escalation: store manager -> on-call -> regional"
    )
    clock = ManualClock(scenario.start())
    story = Story()
    real = settings.twilio_configured
    inner = make_notifier(settings) if real else ConsoleNotifier(out=lambda _line: None)
    notifier = RecordingNotifier(inner, clock, story)
    stack = build_stack(settings, clock, notifier=notifier, with_api=True)
    stack.start(scheduler=False)
    publisher = Publisher(settings.mqtt, "demo-simulator")
    try:
        if not stack.ingester.wait_connected(10):
            say.say("coldchain demo: the ingester could not connect to Mosquitto and subscribe")
            return 1
        publisher.connect()
        assert stack.api is not None
        say.say(
            f"  API {stack.api.url}/docs   notifier: "
            f"{'Twilio SMS to ' + (phone or '') if real else 'console (no SMS leaves)'}\n"
        )
        hostile = _hostile(round(clock.time() * 1000))
        say.say(f"{_hm(clock.now(), zone)}  first, {len(hostile)} hostile messages:")
        for label, message in hostile:
            publisher.publish(message)
            say.say(f"         -> {label:<26} {message.topic}")
        runner = Runner(scenario, publisher.publish)
        step = Lockstep(stack, clock, publisher, lambda: len(hostile) + runner.published, zone)
        runner.on_step = step
        step.hooks.append(_Narration(stack, runner, story, say, zone, names))
        step.hooks.append(_OnCall(stack, story, say, zone, names))
        started = time.monotonic()
        runner.run()
        publisher.flush()
        say.done()
        wall = time.monotonic() - started
        report_paths = _haccp(stack, clock, out_dir, zone)
        _summary(stack, story, runner, say, zone, names, wall, report_paths)
        if keep_running:
            _explore(stack, registry, say)
        return 0
    finally:
        say.done()
        publisher.disconnect()
        stack.stop()
        registry.close()


def _hm(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%H:%M")


class _Narration:
    """After each step: new events, new pages, and the status line."""

    def __init__(
        self,
        stack: Stack,
        runner: Runner,
        story: Story,
        say: Narrator,
        zone: ZoneInfo,
        names: dict[str, str],
    ) -> None:
        self.stack = stack
        self.runner = runner
        self.story = story
        self.say = say
        self.zone = zone
        self.names = names
        self.unit = runner.asset_index[ASSET]
        self.next_log = runner.start_s + LOG_EVERY_S
        self.failed = False
        self.crossed = False

    def __call__(self, report: StepReport) -> None:
        now = datetime.fromtimestamp(report.sim_time, self.zone)
        air = float(self.runner.model.air_c[self.unit])
        for event in report.events:
            self.failed = self.failed or event.startswith("compressor_failure")
            self.say.say(f"{_hm(now, self.zone)}  !! {_EVENTS.get(event.split()[0], event)}")
        if self.failed and air > 5.0 and not self.crossed:
            self.crossed = True
            self.say.say(
                f"{_hm(now, self.zone)}  the walk-in passes its 5 C limit; its excursion "
                "budget starts to run, spent 1.5x faster while the store is closed"
            )
        for page in self.story.pages[self.story.printed :]:
            who = self.names.get(page.to, page.to)
            self.say.say(
                f"{_hm(page.at, self.zone)}  SMS to {who} {page.to}:\n"
                f'           "{" | ".join(page.body.splitlines())}"'
            )
        self.story.printed = len(self.story.pages)
        stats = self.stack.ingester.stats
        book = self.stack.engine.book
        line = (
            f"{now:%a %H:%M}  readings {int(stats.points_written.total()):>7,}  "
            f"San Pedro walk-in {air:5.1f} C  open alerts {len(book.alerts(open_only=True))}  "
            f"SMS {len(self.story.pages)}"
        )
        self.say.status(line)
        if not self.say.live and report.sim_time >= self.next_log:
            self.next_log += LOG_EVERY_S
            self.say.say(f"       .. {line}")


_EVENTS = {
    "compressor_failure": "the compressor of San Pedro's walk-in cooler trips (store closed)",
    "repair": "the technician resets the walk-in's compressor",
}


class _OnCall:
    """On-call replies "OK <code>" by SMS a few minutes after being paged."""

    def __init__(
        self, stack: Stack, story: Story, say: Narrator, zone: ZoneInfo, names: dict[str, str]
    ) -> None:
        self.stack = stack
        self.story = story
        self.say = say
        self.zone = zone
        self.oncall = {phone for phone, name in names.items() if "oncall" in name}

    def __call__(self, report: StepReport) -> None:
        if self.story.reply is not None:
            return
        paged = [p for p in self.story.pages if p.to in self.oncall]
        if not paged:
            return
        now = datetime.fromtimestamp(report.sim_time, self.zone)
        if now < paged[0].at + ONCALL_ANSWERS_AFTER:
            return
        code = re.search(r"OK (\d{4})", paged[0].body)
        if code is None:
            return
        text = f"OK {code.group(1)} voy en camino"
        # The same path as Twilio's inbound-SMS webhook after its signature check.
        answer = self.stack.engine.handle_sms(paged[0].to, text)
        self.story.reply = (now, text, answer.text)
        self.say.say(
            f'{_hm(now, self.zone)}  on-call replies by SMS "{text}"\n'
            f'           coldchain answers "{answer.text}"'
        )


def _haccp(stack: Stack, clock: ManualClock, out_dir: Path, zone: ZoneInfo) -> list[Path]:
    """The HACCP records of San Pedro for the days the night touched."""
    paths = []
    end_day = clock.now().astimezone(zone).date()
    for day in (end_day - timedelta(days=1), end_day):
        result = build_report(
            registry=stack.registry, influx=stack.influx, clock=clock, store_id=STORE, day=day
        )
        stem = out_dir / f"haccp-{STORE}-{day}"
        stem.with_suffix(".html").write_text(to_html(result), encoding="utf-8")
        stem.with_suffix(".csv").write_text(to_csv(result.report), encoding="utf-8")
        paths.append(stem.with_suffix(".html"))
    return paths


def _summary(
    stack: Stack,
    story: Story,
    runner: Runner,
    say: Narrator,
    zone: ZoneInfo,
    names: dict[str, str],
    wall_s: float,
    reports: list[Path],
) -> None:
    stats = stack.ingester.stats
    book = stack.engine.book
    alerts = sorted(book.alerts(limit=1000), key=lambda a: a.opened_at)
    people = {c.id: c.name for c in stack.registry.contacts()}
    say.say("\nSummary")
    say.say(
        f"  simulated {_hours(runner)} h in {wall_s:.0f} s; "
        f"{runner.published:,} device messages + 4 hostile ones"
    )
    say.say(f"  readings written to InfluxDB   {int(stats.points_written.total()):,}")
    say.say(
        f"  sensor faults recognised       {int(stats.faults.total())}  "
        f"(reported as faults, not temperatures)"
    )
    letters = stack.registry.dead_letters()
    say.say(
        f"  dead letters                   {len(letters)}  "
        f"(kept with topic, payload and reason: `coldchain deadletters`)"
    )
    for letter in letters:
        say.say(f"    {letter.reason}: {letter.topic} {letter.detail[:60]}")
    discovered = stack.registry.discovered()
    say.say(
        f"  discovered, not registered     {len(discovered)}  "
        f"({', '.join(d.device_id for d in discovered)}: `coldchain devices discovered`)"
    )
    say.say(f"  alerts                         {len(alerts)}")
    for a in alerts:
        opened = datetime.fromtimestamp(a.opened_at, zone)
        line = f"    {a.kind} {a.severity} {a.asset or a.store}: opened {opened:%H:%M}"
        if a.acked_at is not None:
            took = (a.acked_at - a.opened_at) / 60
            line += (
                f", acknowledged {datetime.fromtimestamp(a.acked_at, zone):%H:%M} by "
                f"{people.get(a.acked_by or '', a.acked_by)} by {a.ack_via} reply "
                f"({took:.0f} min after the first page)"
            )
        if a.resolved_at is not None:
            line += f", resolved {datetime.fromtimestamp(a.resolved_at, zone):%H:%M}"
        say.say(line)
    say.say(f"  messages sent                  {len(story.pages)}")
    for page in story.pages:
        say.say(f"    {_hm(page.at, zone)} {names.get(page.to, page.to)}")
    say.say("\nHACCP record of the night (open in a browser; CSV beside it):")
    for path in reports:
        say.say(f"  {path.resolve()}")
    assert stack.api is not None
    say.say(f"\nAPI: {stack.api.url}/docs (OpenAPI at {stack.api.url}/openapi.json)")


def _hours(runner: Runner) -> str:
    return f"{(runner.end_s - runner.start_s) / 3600:g}"


def _explore(stack: Stack, registry: Registry, say: Narrator) -> None:
    """Keep the stack up until Ctrl-C, with a key to try the API with."""
    assert stack.api is not None
    key = registry.create_api_key("admin", name=f"demo-{secrets.token_hex(2)}")
    url = stack.api.url
    say.say(
        "\nThe stack stays up (simulated clock stopped at the end of the night). Try:\n"
        f"  export CC_KEY={key}\n"
        f'  curl -s -H "Authorization: Bearer $CC_KEY" "{url}/api/v1/alerts?store={STORE}"\n'
        f'  curl -s -H "Authorization: Bearer $CC_KEY" '
        f'"{url}/api/v1/readings/latest?store={STORE}"\n'
        f'  curl -s -H "Authorization: Bearer $CC_KEY" '
        f'"{url}/api/v1/reports/haccp?store={STORE}&date={_report_day(stack)}&format=csv"\n'
        "Ctrl-C stops it."
    )
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        say.say("stopping")


def _report_day(stack: Stack) -> date:
    return stack.clock.now().astimezone(ZoneInfo("America/Guatemala")).date()
