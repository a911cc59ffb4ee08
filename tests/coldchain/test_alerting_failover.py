"""Two ``coldchain alerting`` processes on one PostgreSQL registry: active and standby
(issue 14). Real processes, a real ``coldchain ingest`` feeding them over MQTT, devices
publishing through the real Mosquitto, pages counted at the fake Twilio.

Waits are in seconds: the escalation policy pages the store manager, on-call 8 s later,
regional 8 s after that; the lease lives 4 s; absence is judged 2 s after a takeover.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from coldchain.services import Mosquitto, PostgreSQL
from core.chain import parse_chain
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings
from devices.base import Publish
from simulator.publisher import Publisher
from tests.fakes.twilio_server import FakeTwilioServer
from tests.processes import SID, TOKEN, Coldchain, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANA, NOC, MARTA, ROSA = "+50255550101", "+50255550199", "+50255550150", "+50255550103"
WAIT_S = 8
TTL_S = 4
CHAIN_YAML = f"""
stores:
  - {{id: s042, name: San Pedro, country: GT, timezone: America/Guatemala, language: es}}
  - {{id: s043, name: Zona 10, country: GT, timezone: America/Guatemala, language: es}}
assets:
  - {{id: s042-wic1, store: s042, type: walkin_cooler, name: Camara 1}}
  - {{id: s043-dc1, store: s043, type: dairy_case, name: Lacteos 1}}
  - {{id: s043-dc2, store: s043, type: dairy_case, name: Lacteos 2}}
sensors:
  - {{id: cc-s042-wic1, asset: s042-wic1, interval: 1s}}
  - {{id: cc-s043-dc1, asset: s043-dc1, interval: 1s}}
  - {{id: cc-s043-dc2, asset: s043-dc2, interval: 1s}}
contacts:
  - {{id: ana, name: Ana, phone: "{ANA}", roles: [store_manager], stores: [s042]}}
  - {{id: rosa, name: Rosa, phone: "{ROSA}", roles: [store_manager], stores: [s043]}}
  - {{id: noc, name: NOC, phone: "{NOC}", roles: [oncall]}}
  - {{id: marta, name: Marta, phone: "{MARTA}", roles: [regional]}}
policies:
  - id: default
    steps:
      - {{notify: [store_manager], wait: {WAIT_S}s}}
      - {{notify: [oncall], wait: {WAIT_S}s}}
      - {{notify: [regional]}}
"""


class Fleet:
    """The devices: the San Pedro walk-in and Zona 10's two cases, one reading a second."""

    def __init__(self, settings: Settings) -> None:
        self.publisher = Publisher(settings.mqtt, "failover-devices")
        self.publisher.connect()
        self.walkin = 3.0
        self.zona10 = True  # Zona 10 is powered
        self.last = 0.0

    def tick(self) -> None:
        now = time.time()
        if now - self.last < 1.0:
            return
        self.last = now
        devices = [("cc-s042-wic1", self.walkin)]
        if self.zona10:
            devices += [("cc-s043-dc1", 3.1), ("cc-s043-dc2", 3.2)]
        for device, value in devices:
            body = {"ts": round(now, 3), "temperature_c": value}
            self.publisher.publish(
                Publish(f"coldchain/v1/{device}/telemetry", json.dumps(body).encode())
            )
        self.publisher.flush()


@pytest.fixture
def twilio() -> Iterator[FakeTwilioServer]:
    with FakeTwilioServer(SID, TOKEN) as server:
        yield server


@pytest.fixture
def setup(
    influx_settings: Settings, influx: InfluxV1, broker: Mosquitto, postgres: PostgreSQL,
    twilio: FakeTwilioServer, tmp_path: Path,
) -> Iterator[tuple[Settings, Fleet, list[Coldchain]]]:  # fmt: skip
    settings = influx_settings.model_copy(
        update={"mqtt_url": broker.url, "db": postgres.database("failover")}
    )
    registry = Registry(settings.db)
    registry.import_chain(parse_chain(yaml.safe_load(CHAIN_YAML)))
    registry.close()
    common = {"COLDCHAIN_LEASE_TTL": f"{TTL_S}s", "COLDCHAIN_STARTUP_GRACE": "2s"}
    ingest = Coldchain(["ingest"], settings, twilio, tmp_path / "ingest.log",
                       COLDCHAIN_PUBLISH_OBSERVATIONS="true")  # fmt: skip
    alerting = [
        Coldchain(["alerting"], settings, twilio, tmp_path / f"alerting-{name}.log",
                  COLDCHAIN_INSTANCE=name, **common)
        for name in ("a", "b")
    ]  # fmt: skip
    fleet = Fleet(settings)
    processes = [ingest, *alerting]
    try:
        yield settings, fleet, processes
    except BaseException as exc:
        for process in processes:
            exc.add_note(f"{process.log.name}:\n{process.tail(3000)}")
        raise
    finally:
        for process in processes:
            if process.proc is not None:
                process.proc.send_signal(signal.SIGCONT)
            process.stop()
        fleet.publisher.disconnect()


def _to(twilio: FakeTwilioServer, number: str) -> list[float]:
    return [m.received_at.timestamp() for m in twilio.messages if m.to == number]


def _start(processes: list[Coldchain], fleet: Fleet, settings: Settings) -> None:
    ingest, a, b = processes
    a.start()
    time.sleep(1.0)  # a takes the lease first
    b.start()
    ingest.start()
    influx = InfluxV1(settings)

    def flowing() -> bool:
        fleet.tick()
        found = influx.query('SELECT count("value") FROM "temperature"')
        return bool(found) and int(found[0].values[0][1]) >= 6

    try:
        wait_for("readings flowing into InfluxDB", flowing, 40, poll_s=0.2)
    finally:
        influx.close()
    time.sleep(1.5)  # both alerting processes subscribed and ticking


def _until(what: str, fleet: Fleet, condition: object, timeout_s: float) -> None:
    def check() -> bool:
        fleet.tick()
        return bool(condition())  # type: ignore[operator]

    wait_for(what, check, timeout_s, poll_s=0.1)


@pytest.mark.parametrize("failure", ["kill -9", "SIGSTOP"])
def test_the_standby_takes_over_mid_escalation_and_reports_a_store_that_died_meanwhile(
    setup: tuple[Settings, Fleet, list[Coldchain]], twilio: FakeTwilioServer, failure: str
) -> None:
    settings, fleet, processes = setup
    _, a, b = processes
    _start(processes, fleet, settings)
    assert twilio.messages == []
    fleet.walkin = 11.0  # past the hard ceiling (confirmed by the next reading)
    _until("a page to Ana from the active instance", fleet, lambda: _to(twilio, ANA), 20)
    [ana_at] = _to(twilio, ANA)
    time.sleep(max(0.0, ana_at + 2 - time.time()))
    assert a.proc is not None
    if failure == "kill -9":
        a.kill_9()
    else:
        a.proc.send_signal(signal.SIGSTOP)  # hung: connections open, nothing answered
    fleet.zona10 = False  # and Zona 10 loses power while nobody is active
    _until("a page to on-call", fleet, lambda: _to(twilio, NOC), WAIT_S + TTL_S + 20)
    [noc_at] = _to(twilio, NOC)
    assert WAIT_S <= noc_at - ana_at <= WAIT_S + TTL_S + 6  # when due, or at the takeover
    _until("Zona 10 reported", fleet, lambda: _to(twilio, ROSA), 30)
    _until("the regional page", fleet, lambda: _to(twilio, MARTA), WAIT_S + 20)
    if failure == "SIGSTOP":
        assert a.proc is not None
        a.proc.send_signal(signal.SIGCONT)  # a wakes up: fenced, it sends nothing
        _until("a few more seconds", fleet, lambda: time.time() > _to(twilio, MARTA)[0] + 4, 10)
    # The walk-in: one page per step, none missing, none twice.
    walkin = [m.to or "" for m in twilio.messages if "Camara 1" in (m.body or "")]
    assert walkin == [ANA, NOC, MARTA]
    # Zona 10, dark since the failure: reported (its units silent) to its manager first.
    zona10 = [m for m in twilio.messages if "Zona 10" in (m.body or "")]
    assert zona10[0].to == ROSA
    assert "sin datos" in (zona10[0].body or "")
    registry = Registry(settings.db)
    try:
        [alert] = [r for r in registry.query("SELECT id, store FROM alerts") if r[1] == "s042"]
        actions = [e.action for e in registry.audit_entries(subject=alert[0])]
        assert actions == ["alert.open", "alert.escalate", "alert.escalate", "alert.escalate"]
        [lease] = registry.query("SELECT holder, epoch FROM leases")
        assert (lease[0], lease[1]) == ("b", 2)
    finally:
        registry.close()
    assert "took over the alerting lease (epoch 2) from a" in b.log.read_text()
