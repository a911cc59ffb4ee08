"""Acceptance harness: a scenario through real ingest and alerting into a fake Twilio.

Everything real except the phone network: the simulator publishes each device family's
native payloads to a private Mosquitto; ``coldchain run``'s stack (without the API) ingests
them into the private InfluxDB and evaluates them; pages go through the real ``twilio``
client to :class:`~tests.fakes.twilio_server.FakeTwilioServer`. One manual clock is the
simulated time for all of them, advanced in lockstep: after each 30 s step the harness
waits until every published message is acknowledged and evaluated, then ticks alerting
and lets delivery finish. So a 10-hour night runs in seconds and every timestamp is exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from coldchain.compose import Stack, build_stack
from coldchain.services import Mosquitto
from core.clock import ManualClock
from core.registry import Registry
from core.settings import Settings
from simulator.publisher import Publisher
from simulator.runner import Runner, StepReport
from simulator.scenario import load_scenario
from tests.fakes.twilio_server import FakeTwilioServer

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "acceptance-token-not-secret"  # a test credential
FROM = "+15005550006"


@dataclass(frozen=True)
class Sms:
    """One message the fake Twilio accepted, at simulated local time."""

    at: datetime
    to: str
    body: str

    @property
    def clock(self) -> str:
        """``23:41``."""
        return self.at.strftime("%H:%M")


class Run:
    """One scenario run; see the module docstring."""

    def __init__(
        self,
        scenario: str,
        tmp: Path,
        influx_settings: Settings,
        broker: Mosquitto,
        *,
        start: str | None = None,
        **settings: object,
    ) -> None:
        self.scenario = load_scenario(scenario)
        if start is not None:  # the same story on another day
            simulation = self.scenario.simulation.model_copy(update={"start": start})
            self.scenario = self.scenario.model_copy(update={"simulation": simulation})
        self.zone = ZoneInfo(str(self.scenario.zone()))
        self.clock = ManualClock(self.scenario.start())
        # The fake provider stamps what it receives with the simulated time.
        self.twilio = twilio = FakeTwilioServer(ACCOUNT_SID, AUTH_TOKEN, clock=self.clock.now)
        twilio.start()
        self.settings = influx_settings.model_copy(
            update={
                "mqtt_url": broker.url,
                "batch_interval_ms": 2,
                "twilio_account_sid": ACCOUNT_SID,
                "twilio_auth_token": SecretStr(AUTH_TOKEN),
                "twilio_from": FROM,
                "twilio_base_url": twilio.url,
                "public_url": "https://coldchain.example.com",
                **settings,
            }
        )
        registry = Registry(self.settings.db)
        registry.import_chain(self.scenario.full_chain())
        registry.close()
        self.stack: Stack = build_stack(self.settings, self.clock, with_api=False)
        self.publisher = Publisher(self.settings.mqtt, f"sim-{scenario}")
        self.runner = Runner(self.scenario, self.publisher.publish, on_step=self._lockstep)
        self.hooks: list[Callable[[Run], None]] = []

    def sms(self) -> list[Sms]:
        """Every message Twilio accepted so far, in order."""
        return [
            Sms(m.received_at.astimezone(self.zone), m.to or "", m.body or "")
            for m in self.twilio.messages
        ]

    def local(self) -> datetime:
        """The simulated time, in the scenario's zone."""
        return self.clock.now().astimezone(self.zone)

    def _lockstep(self, report: StepReport) -> None:
        self.clock.set(datetime.fromtimestamp(report.sim_time, self.zone))
        self.publisher.flush()
        ingester = self.stack.ingester
        deadline = time.monotonic() + 30
        while ingester.stats.acked.total() < self.runner.published:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"ingest stalled: {ingester.stats.acked.total()} of {self.runner.published}"
                )
            time.sleep(0.001)
        self.stack.pump.join()
        self.stack.engine.tick()
        self.stack.engine.delivery.drain()
        for hook in self.hooks:
            hook(self)
        self.stack.engine.delivery.drain()

    def run(self) -> None:
        """Run the whole scenario, then stop everything."""
        self.stack.start(scheduler=False)
        try:
            assert self.stack.ingester.wait_connected(10)
            time.sleep(0.2)  # subscriptions settle before the first device speaks
            self.publisher.connect()
            self.runner.run()
            self.publisher.disconnect()
        finally:
            self.stack.stop()
            self.twilio.stop()
