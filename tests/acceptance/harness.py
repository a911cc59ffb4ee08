"""Acceptance harness: a scenario through real ingest and alerting into a fake Twilio.

Everything real except the phone network: the simulator publishes each device family's
native payloads to a private Mosquitto; ``coldchain run``'s stack ingests them into the
private InfluxDB and evaluates them; pages go through the real ``twilio`` client to
:class:`~tests.fakes.twilio_server.FakeTwilioServer`. With ``with_api=True`` the stack's
API serves too, and :meth:`Run.reply_sms` answers a page the way a phone does: the fake
Twilio POSTs a signed inbound-SMS webhook for ``COLDCHAIN_PUBLIC_URL``, which a reverse
proxy delivers to the API's local address. One manual clock is the
simulated time for all of them, advanced in lockstep: after each 30 s step the harness
waits until every published message is acknowledged and evaluated, then ticks alerting
and lets delivery finish. So a 10-hour night runs in seconds and every timestamp is exact.

By default a run carries the background of a real fleet (``noise=True``): the simulator's
:class:`~simulator.noise.Noise` (unregistered devices, junk, duplicates, late copies,
skewed clocks, retained leftovers) and an :class:`~tests.acceptance.operator.Operator`
editing the registry through the API and the CLI. The scenario's pages must not change;
each run adds what it injected to :data:`REPORTS`, printed at the end of the session.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from pydantic import SecretStr

from coldchain.compose import Stack, build_stack
from coldchain.lockstep import Lockstep
from coldchain.services import Mosquitto, free_port
from core.clock import ManualClock
from core.registry import Registry
from core.settings import Settings
from simulator.noise import Noise
from simulator.publisher import Publisher
from simulator.runner import Runner, StepReport
from simulator.scenario import load_scenario
from tests.acceptance.operator import Operator
from tests.fakes.twilio_server import FakeTwilioServer, ReverseProxy, WebhookReply

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "acceptance-token-not-secret"  # a test credential
FROM = "+15005550006"
# Where Twilio believes the app is (the signed URL); the proxy below leads to 127.0.0.1.
PUBLIC_URL = "https://coldchain.example.com"
SMS_WEBHOOK = f"{PUBLIC_URL}/api/v1/webhooks/twilio/sms"


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


# (scenario, noise messages by kind, operator actions by kind) of every run this session.
REPORTS: list[tuple[str, Counter[str], Counter[str]]] = []


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
        with_api: bool = False,
        noise: bool = True,
        **settings: object,
    ) -> None:
        self.name = scenario
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
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
                "public_url": PUBLIC_URL,
                "api_bind": f"127.0.0.1:{free_port()}",
                **settings,
            }
        )
        registry = Registry(self.settings.db)
        registry.import_chain(self.scenario.full_chain())
        registry.close()
        self.stack: Stack = build_stack(self.settings, self.clock, with_api=with_api or noise)
        self._proxy: httpx.Client | None = None
        self.publisher = Publisher(self.settings.mqtt, f"sim-{scenario}")
        self.noise = (
            Noise(self.scenario.simulation.seed + 1000, self.scenario.start().timestamp())
            if noise
            else None
        )
        self.runner = Runner(self.scenario, self.publisher.publish, noise=self.noise)
        self.lockstep = Lockstep(
            self.stack, self.clock, self.publisher, lambda: self.runner.published, self.zone
        )
        self.runner.on_step = self.lockstep
        self.hooks: list[Callable[[Run], None]] = []
        self.lockstep.hooks.append(self._hooks)
        self.operator = Operator(self) if noise else None
        if self.operator is not None:
            self.hooks.append(self.operator)

    def quiet_stores(self) -> list[str]:
        """The scenario's stores its timeline never touches (the operator's to silence)."""
        chain = self.scenario.full_chain()
        asset_store = {a.id: a.store for a in chain.assets}
        sensor_store = {s.id: asset_store[s.asset] for s in chain.sensors}
        busy = set()
        for event in self.scenario.timeline:
            busy.add(event.store or asset_store.get(event.asset or "")
                     or sensor_store.get(event.sensor or ""))  # fmt: skip
        return sorted(s.id for s in chain.stores if s.id not in busy)

    def api_client(self, key: str) -> httpx.Client:
        """An API client with a bearer key."""
        assert self.stack.api is not None
        return httpx.Client(
            base_url=self.stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=15
        )

    def _leftovers(self) -> None:
        """What an earlier life of the fleet left retained on the broker, before ingest
        subscribes (lockstep counts them as published: ingest acknowledges them too)."""
        assert self.noise is not None
        old = Publisher(self.settings.mqtt, f"leftovers-{self.name}")
        old.connect()
        for message in self.noise.leftovers():
            old.publish(message)
        old.flush()
        old.disconnect()
        self.runner.published += self.noise.counts["retained_leftover"]

    def sms(self) -> list[Sms]:
        """Every message Twilio accepted so far, in order."""
        return [
            Sms(m.received_at.astimezone(self.zone), m.to or "", m.body or "")
            for m in self.twilio.messages
        ]

    def reply_sms(self, from_: str, body: str) -> WebhookReply:
        """``from_`` answers by SMS: Twilio's signed webhook, through the API.

        Raises:
            AssertionError: The run has no API (``with_api=False``).
        """
        if self.stack.api is None:
            raise AssertionError("reply_sms needs Run(..., with_api=True)")
        if self._proxy is None:
            self._proxy = httpx.Client(transport=ReverseProxy(self.stack.api.url), timeout=15)
        return self.twilio.send_inbound_sms(SMS_WEBHOOK, from_, FROM, body, http=self._proxy)

    def local(self) -> datetime:
        """The simulated time, in the scenario's zone."""
        return self.clock.now().astimezone(self.zone)

    def _hooks(self, _report: StepReport) -> None:
        for hook in self.hooks:
            hook(self)

    def run(self) -> None:
        """Run the whole scenario, then stop everything."""
        if self.noise is not None:
            self._leftovers()
        self.stack.start(scheduler=False)
        try:
            assert self.stack.ingester.wait_connected(10)  # and subscribed
            self.publisher.connect()
            self.runner.run()
            self.publisher.disconnect()
        finally:
            if self._proxy is not None:
                self._proxy.close()
            if self.operator is not None:
                self.operator.close()
            self.stack.stop()
            self.twilio.stop()
        if self.noise is not None and self.operator is not None:
            REPORTS.append((self.name, Counter(self.noise.counts), self.operator.actions))
