"""Restart drill: ``coldchain alerting`` killed with SIGKILL between escalation steps.

A real process on the system clock, fed over a private Mosquitto (the observations topic
``coldchain ingest`` publishes to), writing alert events to the private InfluxDB, paging
through the real ``twilio`` client into the fake Twilio. The escalation policy is the
chain file's, in seconds instead of minutes:

- the walk-in passes its hard ceiling: Ana (store manager) is paged at once;
- the process is killed 6 s before on-call is due and started again at once: on-call is
  paged when the step is due, not at start-up and not twice;
- the process is killed again and stays dead past the regional manager's step: the new
  process pages them as soon as it is up, once;
- nobody got anything twice, and the audit log tells the same story.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from coldchain.services import Mosquitto
from core.chain import parse_chain
from core.registry import Registry
from core.settings import Settings
from core.types import Quantity
from devices.base import Publish
from ingest import observations
from ingest.pipeline import Observation
from simulator.publisher import Publisher
from tests.fakes.twilio_server import FakeTwilioServer
from tests.processes import SID, TOKEN, Coldchain, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANA, NOC, MARTA = "+50255550101", "+50255550199", "+50255550150"
# Long enough for a killed process to be replaced before the next step is due (Python
# starts in ~1-2 s), short enough for the drill to take ~25 s.
WAIT_S = 6
CHAIN_YAML = f"""
stores:
  - {{id: s042, name: San Pedro, country: GT, timezone: America/Guatemala, language: es}}
assets:
  - {{id: s042-wic1, store: s042, type: walkin_cooler, name: Camara 1}}
sensors:
  - {{id: wic1, asset: s042-wic1, interval: 60s}}
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


class Drill(Coldchain):
    """``coldchain alerting``, and the registry it writes."""

    def __init__(self, settings: Settings, twilio: FakeTwilioServer, log: Path) -> None:
        super().__init__(["alerting"], settings, twilio, log)
        self.registry = Registry(settings.db)

    def sent_to(self, contact: str) -> bool:
        rows = self.registry.query(
            "SELECT 1 FROM notifications WHERE contact=? AND status='sent'", (contact,)
        )
        return bool(rows)

    def steps(self) -> list[dict[str, object]]:
        """The alert's escalation steps, as audited: when each ran, and its next_at."""
        return [
            {"at": e.at, **e.detail}
            for e in self.registry.audit_entries()
            if e.action == "alert.escalate"
        ]


@pytest.fixture
def twilio() -> Iterator[FakeTwilioServer]:
    with FakeTwilioServer(SID, TOKEN) as server:
        yield server


def test_kill_9_between_steps_neither_repeats_nor_skips_nor_hurries(
    influx_settings: Settings, broker: Mosquitto, twilio: FakeTwilioServer, tmp_path: Path
) -> None:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    setup = Registry(settings.db)
    setup.import_chain(parse_chain(yaml.safe_load(CHAIN_YAML)))
    setup.close()
    log = tmp_path / "alerting.log"
    drill = Drill(settings, twilio, log)
    publisher = Publisher(settings.mqtt, "drill-ingest")
    publisher.connect()
    try:
        _drill(drill, publisher, twilio)
    except BaseException as exc:
        exc.add_note(f"alerting log:\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        drill.stop()
        publisher.disconnect()
        drill.registry.close()


def _warm_walk_in(publisher: Publisher) -> None:
    """One reading past the walk-in's 10 °C hard ceiling, as ingest would hand it over."""
    reading = Observation(
        "reading", round(time.time() * 1000), "wic1", "wic1", "s042", "s042-wic1",
        "walkin_cooler", Quantity.TEMPERATURE, 11.0,
    )  # fmt: skip
    publisher.publish(Publish(observations.TOPIC, observations.encode([reading])))
    publisher.flush()


def _received(twilio: FakeTwilioServer, number: str) -> list[datetime]:
    return [m.received_at for m in twilio.messages if m.to == number]


def _drill(drill: Drill, publisher: Publisher, twilio: FakeTwilioServer) -> None:
    drill.start()

    # Until the process has subscribed the broker drops what we publish: repeat. A repeated
    # reading is harmless (the alert is open; the rules only move forward in time).
    def paged_ana() -> bool:
        if not drill.sent_to("ana"):
            _warm_walk_in(publisher)
            time.sleep(0.3)
        return drill.sent_to("ana")

    wait_for("the page to Ana", paged_ana, 30)
    [first] = drill.steps()
    due_noc = float(str(first["next_at"]))
    assert due_noc == pytest.approx(float(str(first["at"])) + WAIT_S)

    # Killed between steps; the replacement is up before on-call is due.
    drill.kill_9()
    drill.start()
    wait_for("the page to on-call", lambda: drill.sent_to("noc"), WAIT_S + 15)
    [noc_at] = _received(twilio, NOC)
    assert noc_at.timestamp() >= due_noc  # not early: not at start-up
    assert noc_at.timestamp() < due_noc + 5  # the 1 s scheduler picked it up when due
    _, second = drill.steps()
    due_marta = float(str(second["next_at"]))

    # Killed again, and down while the regional step falls due: it runs at start-up.
    drill.kill_9()
    time.sleep(max(0.0, due_marta + 1 - time.time()))
    drill.start()
    wait_for("the page to Marta", lambda: drill.sent_to("marta"), 20)
    [marta_at] = _received(twilio, MARTA)
    assert marta_at.timestamp() >= due_marta

    time.sleep(2)  # two more ticks: nothing else is due
    assert drill.stop() == 0
    assert [m.to for m in twilio.messages] == [ANA, NOC, MARTA]
    assert "Sin respuesta (nivel 3)" in (twilio.messages[2].body or "")
    [alert] = drill.registry.query("SELECT id, level, next_at FROM alerts")
    assert (alert["level"], alert["next_at"]) == (3, None)
    actions = [e.action for e in drill.registry.audit_entries(subject=alert["id"])]
    assert actions == ["alert.open", "alert.escalate", "alert.escalate", "alert.escalate"]
    assert drill.registry.audit_verify()[0]
