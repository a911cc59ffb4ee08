"""``coldchain run`` as a real process on the system clock: a fleet's junk on the broker,
and kill -9 in the middle of an excursion and of an escalation (issue 11).

Budgets and waits are in seconds instead of minutes so a drill takes about a minute. The
walk-in reads 6.5 °C (1.5 K over its 5 °C limit) once a second with its device time; its
warn budget of 30 K·s is spent 20 s into the excursion (the first warm reading, a 3.5 K
jump, waits one second for the next to confirm it). The store has no opening hours, so it
counts as open: weight x1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from coldchain.services import Mosquitto, free_port
from core.chain import parse_chain
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings
from devices.base import Publish
from simulator.publisher import Publisher
from tests.fakes.twilio_server import FakeTwilioServer
from tests.processes import SID, TOKEN, Coldchain, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANA, NOC, MARTA = "+50255550101", "+50255550199", "+50255550150"
BUDGET_S = 20.0  # 30 K·s at 1.5 K over
WAIT_S = 15  # between escalation steps
CHAIN_YAML = f"""
stores:
  - {{id: s042, name: San Pedro, country: GT, timezone: America/Guatemala, language: es}}
assets:
  - {{id: s042-wic1, store: s042, type: walkin_cooler, name: Camara 1,
     thresholds: {{warn_budget: 30s}}}}
sensors:
  - {{id: cc-s042-wic1, asset: s042-wic1, interval: 2s}}
contacts:
  - {{id: ana, name: Ana Lopez, phone: "{ANA}", roles: [store_manager], stores: [s042]}}
  - {{id: noc, name: NOC, phone: "{NOC}", roles: [oncall]}}
  - {{id: marta, name: Marta, phone: "{MARTA}", roles: [regional]}}
policies:
  - id: default
    steps:
      - {{notify: [store_manager], wait: {WAIT_S}s}}
      - {{notify: [oncall], wait: {WAIT_S}s}}
      - {{notify: [regional]}}
"""


class Walkin:
    """The walk-in's device (native JSON with its own time), and a fleet's junk."""

    def __init__(self, settings: Settings) -> None:
        self.publisher = Publisher(settings.mqtt, "drill-devices")
        self.publisher.connect()
        self.last = 0.0
        self.seq = 0
        self.junk = 0
        self.warm_since: float | None = None

    def report(self, value: float, *, noise: bool = False) -> None:
        """Publish a reading if a second has passed (and, with ``noise``, junk)."""
        now = time.time()
        if now - self.last < 1.0:
            return
        self.last = now
        self.seq += 1
        if value > 5.0 and self.warm_since is None:
            self.warm_since = now
        body = {"ts": round(now, 3), "seq": self.seq, "temperature_c": value}
        self.publisher.publish(
            Publish("coldchain/v1/cc-s042-wic1/telemetry", json.dumps(body).encode())
        )
        if noise:  # every second: a malformed payload, an unknown device, a stranger topic
            self.junk += 3
            self.publisher.publish(Publish("coldchain/v1/cc-s042-wic1/telemetry", b'{"ts": '))
            stranger = {"ts": round(now, 3), "temperature_c": 4.0}
            self.publisher.publish(
                Publish(f"coldchain/v1/stranger-{self.seq % 50}/telemetry",
                        json.dumps(stranger).encode())
            )  # fmt: skip
            self.publisher.publish(Publish("factory/line1/status", b"running"))
        self.publisher.flush()

    def close(self) -> None:
        self.publisher.disconnect()


@pytest.fixture
def twilio() -> Iterator[FakeTwilioServer]:
    with FakeTwilioServer(SID, TOKEN) as server:
        yield server


@pytest.fixture
def stack(
    influx_settings: Settings,
    influx: InfluxV1,  # the test's database exists before the process starts
    broker: Mosquitto,
    twilio: FakeTwilioServer,
    tmp_path: Path,
) -> Iterator[tuple[Coldchain, Walkin]]:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    setup = Registry(settings.db)
    setup.import_chain(parse_chain(yaml.safe_load(CHAIN_YAML)))
    setup.close()
    process = Coldchain(["run"], settings, twilio, tmp_path / "run.log",
                        COLDCHAIN_API_BIND=f"127.0.0.1:{free_port()}")  # fmt: skip
    walkin = Walkin(settings)
    try:
        yield process, walkin
    except BaseException as exc:
        exc.add_note(f"coldchain run log:\n{process.tail()}")
        raise
    finally:
        process.stop()
        walkin.close()


def _pages(twilio: FakeTwilioServer, number: str) -> list[float]:
    return [m.received_at.timestamp() for m in twilio.messages if m.to == number]


def _started(process: Coldchain, walkin: Walkin, twilio: FakeTwilioServer) -> None:
    """Start, and wait until its ingest stores the device's (normal) readings."""
    process.start()
    influx = InfluxV1(process.settings)

    def ingesting() -> bool:
        walkin.report(3.0)
        return bool(influx.query('SELECT count("value") FROM "temperature"'))

    try:
        wait_for("ingest to store the device's readings", ingesting, 30)
    finally:
        influx.close()
    assert not twilio.messages


def _excursion(walkin: Walkin, until: Callable[[], bool]) -> Callable[[], bool]:
    """A wait condition that keeps the walk-in reporting 6.5 °C meanwhile."""

    def check() -> bool:
        walkin.report(6.5)
        return until()

    return check


def test_dead_letters_on_a_running_coldchain_run_keep_the_budget(
    stack: tuple[Coldchain, Walkin], twilio: FakeTwilioServer
) -> None:
    """Was: with junk and unknown devices on the broker, ingest committed dead letters and
    discovered devices every 2 s, each commit rebuilt the rules and reset the walk-in's
    budget: only hard ceilings still paged. Now the page comes when the budget is spent."""
    process, walkin = stack
    _started(process, walkin, twilio)

    def noisy() -> bool:
        walkin.report(6.5, noise=True)
        return bool(_pages(twilio, ANA))

    wait_for("a page to Ana", noisy, BUDGET_S + 25)
    assert walkin.warm_since is not None
    delay = _pages(twilio, ANA)[0] - walkin.warm_since
    assert BUDGET_S <= delay <= BUDGET_S + 5
    registry = Registry(process.settings.db)
    try:
        assert registry.dead_letter_counts().get("bad_json", 0) > 10
        assert len(registry.discovered()) > 5
    finally:
        registry.close()


def test_kill_9_mid_excursion_and_mid_escalation(
    stack: tuple[Coldchain, Walkin], twilio: FakeTwilioServer
) -> None:
    """Killed 10 s into a 20 s budget and restarted at once: Ana is paged when the budget
    is spent, not 20 s after the restart (the rules warm up from InfluxDB and the backlog
    the broker kept). Killed again between Ana's page and on-call's: on-call is paged when
    due, once. Nobody hears anything twice; the audit log has one open, two steps."""
    process, walkin = stack
    _started(process, walkin, twilio)
    wait_for("10 s of excursion", _excursion(walkin, lambda: walkin.warm_since is not None
             and time.time() - walkin.warm_since >= 10), 20)  # fmt: skip
    process.kill_9()
    process.start()  # up again in a few seconds; the device never stopped
    wait_for("a page to Ana", _excursion(walkin, lambda: bool(_pages(twilio, ANA))), 50)
    assert walkin.warm_since is not None
    [ana_at] = _pages(twilio, ANA)
    assert BUDGET_S <= ana_at - walkin.warm_since <= BUDGET_S + 5
    wait_for("7 s after Ana's page", _excursion(walkin, lambda: time.time() - ana_at >= 7), 15)
    process.kill_9()
    process.start()
    wait_for("a page to on-call", _excursion(walkin, lambda: bool(_pages(twilio, NOC))), 45)
    [noc_at] = _pages(twilio, NOC)
    assert WAIT_S <= noc_at - ana_at <= WAIT_S + 5
    assert process.stop() == 0
    assert [m.to for m in twilio.messages] == [ANA, NOC]
    registry = Registry(process.settings.db)
    try:
        [alert] = registry.query("SELECT id, level FROM alerts")
        actions = [e.action for e in registry.audit_entries(subject=alert["id"])]
        assert actions == ["alert.open", "alert.escalate", "alert.escalate"]
    finally:
        registry.close()
