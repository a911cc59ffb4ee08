"""The API under test: the real app served by uvicorn on a free port, over a real registry,
the session's InfluxDB and an alerting engine driven by a manual clock.

Requests go over real HTTP (httpx), so the middleware, uvicorn's parsing and the OpenAPI
schema are exercised as a client sees them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from alerting.engine import AlertingEngine
from alerting.notifiers.base import Notifier
from alerting.notifiers.console import ConsoleNotifier
from alerting.notifiers.twilio import TwilioNotifier
from api import ApiDeps, ApiServer
from core.chain import parse_chain
from core.clock import Clock, ManualClock
from core.influx import InfluxV1
from core.metrics import Registry as MetricsRegistry
from core.registry import Registry
from core.settings import Settings
from core.types import Quantity
from ingest.pipeline import Observation
from ingest.stats import IngestStats
from tests.alerting.harness import default_policy
from tests.fakes.twilio_server import FakeTwilioServer, ReverseProxy

# Twilio calls this public URL; a reverse proxy forwards to the local port. Webhook
# signatures must be checked against it, not against what uvicorn sees.
PUBLIC_URL = "https://coldchain.example.com"
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "twilio-secret-token-0123456789abcdef"
FROM = "+15005550006"  # our Twilio number
SMS_URL = f"{PUBLIC_URL}/api/v1/webhooks/twilio/sms"
STATUS_URL = f"{PUBLIC_URL}/api/v1/webhooks/twilio/status"
VOICE_URL = f"{PUBLIC_URL}/api/v1/webhooks/twilio/voice"
INFLUX_PASSWORD = "influx-secret-password-xyz"

CHAIN = {
    "stores": [
        {"id": "s042", "name": "San Pedro", "country": "GT", "timezone": "America/Guatemala",
         "language": "es", "hours": {"mon-sat": "07:00-21:00", "sun": "08:00-20:00"}},
        {"id": "s043", "name": "Zona 10", "country": "GT", "timezone": "America/Guatemala",
         "language": "es"},
    ],
    "assets": [
        {"id": "s042-wic1", "store": "s042", "type": "walkin_cooler", "name": "Camara 1"},
        {"id": "s042-dc1", "store": "s042", "type": "dairy_case", "name": "Lacteos 1"},
        {"id": "s043-wic1", "store": "s043", "type": "walkin_cooler", "name": "Camara 1"},
    ],
    "sensors": [
        {"id": "wic1", "asset": "s042-wic1", "interval": "60s"},
        {"id": "dc1", "asset": "s042-dc1", "interval": "60s"},
        {"id": "z10-wic1", "asset": "s043-wic1", "interval": "60s"},
    ],
    "contacts": [
        {"id": "ana", "name": "Ana Lopez", "phone": "+50255550101", "roles": ["store_manager"],
         "stores": ["s042"]},
        {"id": "zoe", "name": "Zoe", "phone": "+50255550301", "roles": ["store_manager"],
         "stores": ["s043"]},
        {"id": "noc", "name": "NOC", "phone": "+50255550199", "roles": ["oncall"]},
    ],
    "policies": [default_policy("store_manager")],
}  # fmt: skip

# Where each sensor of CHAIN is: (store, asset).
PLACES = {"wic1": ("s042", "s042-wic1"), "dc1": ("s042", "s042-dc1"),
          "z10-wic1": ("s043", "s043-wic1")}  # fmt: skip

# 23:00 in Guatemala on a Tuesday: the store is closed, the night weight applies.
NIGHT = datetime(2026, 11, 18, 5, 0, tzinfo=UTC)


class Api:
    """A running API and what it serves from, with a client per role."""

    def __init__(
        self,
        settings: Settings,
        influx: InfluxV1,
        clock: Clock,
        notifier: Notifier | None = None,
        *,
        mqtt_ready: Callable[[], bool] | None = None,
        ingest_stats: IngestStats | None = None,
        with_engine: bool = True,
    ) -> None:
        self.settings = settings
        self.influx = influx
        self.clock = clock
        self.registry = Registry(settings.db)
        self.registry.import_chain(parse_chain(CHAIN), at=clock.time())
        self.notifier = notifier or ConsoleNotifier(out=lambda _line: None)
        self.metrics = MetricsRegistry()
        self.engine: AlertingEngine | None = None
        if with_engine:
            self.engine = AlertingEngine(
                Registry(settings.db), self.notifier, clock, influx=influx,
                public_url=settings.public_url, rng=random.Random(7), metrics=self.metrics,
            )  # fmt: skip
            self.engine.start()
        self.deps = ApiDeps(
            settings=settings,
            registry=Registry(settings.db),
            influx=influx,
            engine=self.engine,
            clock=clock,
            metrics=self.metrics,
            ingest_stats=ingest_stats,
            mqtt_ready=mqtt_ready,
        )
        self.server = ApiServer(self.deps, "127.0.0.1", 0)
        self.server.start()
        self.keys = {
            "admin": self.registry.create_api_key("admin", name="root", at=clock.time()),
            "technician": self.registry.create_api_key("technician", name="tech"),
            "oncall": self.registry.create_api_key("oncall", name="noc-desk"),
            "manager": self.registry.create_api_key("manager", ["s042"], name="ana-key"),
            "manager_b": self.registry.create_api_key("manager", ["s043"], name="zoe-key"),
        }
        self.anonymous = httpx.Client(base_url=self.server.url, timeout=15)
        self._clients: dict[str, httpx.Client] = {}

    def client(self, role: str) -> httpx.Client:
        """A client sending ``role``'s key."""
        if role not in self._clients:
            self._clients[role] = httpx.Client(
                base_url=self.server.url,
                headers={"Authorization": f"Bearer {self.keys[role]}"},
                timeout=15,
            )
        return self._clients[role]

    def reading(self, sensor: str, value: float) -> None:
        """A durable temperature reading at the clock's time, straight into alerting."""
        assert self.engine is not None
        store, asset = PLACES[sensor]
        ts = round(self.clock.time() * 1000)
        self.engine.observe(
            [Observation("reading", ts, sensor, sensor, store, asset, None,
                         Quantity.TEMPERATURE, value)]
        )  # fmt: skip

    def minutes(self, count: int, **values: float) -> None:
        """One reading a minute from every sensor (3 °C unless given), ticking alerting."""
        assert self.engine is not None
        assert isinstance(self.clock, ManualClock)
        for _ in range(count):
            self.clock.advance(60)
            for sensor in PLACES:
                self.reading(sensor, values.get(sensor.replace("-", "_"), 3.0))
            self.engine.tick()
        self.engine.delivery.drain()

    def sent(self) -> list[tuple[str, str]]:
        """(to, body) of every message the console notifier sent."""
        assert isinstance(self.notifier, ConsoleNotifier)
        return [(m.to, m.body) for m in self.notifier.sent]

    def open_alert(self, store: str) -> str:
        """The id of the one open alert of a store."""
        assert self.engine is not None
        [alert] = self.engine.book.alerts(store=store, open_only=True)
        return alert.id

    def close(self) -> None:
        for client in [self.anonymous, *self._clients.values()]:
            client.close()
        self.server.stop()
        if self.engine is not None:
            self.engine.stop()
            self.engine.registry.close()
        self.deps.registry.close()
        self.registry.close()


def api_settings(influx_settings: Settings, **extra: object) -> Settings:
    """The test's settings with Twilio webhooks configured behind :data:`PUBLIC_URL`."""
    values: dict[str, object] = {
        "public_url": PUBLIC_URL,
        "twilio_auth_token": SecretStr(TWILIO_TOKEN),
        "twilio_account_sid": TWILIO_SID,
        **extra,
    }
    return influx_settings.model_copy(update=values)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NIGHT)


@pytest.fixture
def api(influx_settings: Settings, influx: InfluxV1, clock: ManualClock) -> Iterator[Api]:
    harness = Api(api_settings(influx_settings), influx, clock)
    yield harness
    harness.close()


@pytest.fixture
def twilio() -> Iterator[FakeTwilioServer]:
    with FakeTwilioServer(TWILIO_SID, TWILIO_TOKEN) as server:
        yield server


@pytest.fixture
def paged(
    influx_settings: Settings, influx: InfluxV1, clock: ManualClock, twilio: FakeTwilioServer
) -> Iterator[tuple[Api, httpx.Client]]:
    """The API with an engine that pages through the fake Twilio, and a proxied client."""
    notifier = TwilioNotifier(TWILIO_SID, TWILIO_TOKEN, FROM, base_url=twilio.url)
    api = Api(api_settings(influx_settings), influx, clock, notifier)
    proxy = httpx.Client(transport=ReverseProxy(api.server.url), timeout=15)
    try:
        yield api, proxy
    finally:
        proxy.close()
        api.close()
