"""The alerting engine on a fake clock and a real SQLite registry: a chain, readings, ticks.

Shared by the engine timelines (console notifier) and the delivery-failure tests (the real
``twilio`` client against the fake Twilio server).
"""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from alerting.engine import AlertingEngine
from alerting.lease import Lease
from alerting.notifiers.base import Notifier, Outbound
from alerting.notifiers.console import ConsoleNotifier
from core.chain import parse_chain
from core.clock import ManualClock
from core.influx import TimeSeriesStore
from core.lineprotocol import serialize
from core.registry import Registry
from core.types import Point, Quantity
from ingest.pipeline import Observation

GT = ZoneInfo("America/Guatemala")


def default_policy(first: str) -> dict[str, Any]:
    """The tests' escalation policy: ``first`` (a role or contact), on-call at 30 min, then
    on-call every 2 h."""
    return {"id": "default", "steps": [
        {"notify": [first], "wait": "30m"},
        {"notify": ["oncall"], "wait": "30m"},
        {"notify": ["oncall"], "repeat": "2h"},
    ]}  # fmt: skip


CHAIN = {
    "stores": [
        {
            "id": "s042", "name": "San Pedro", "country": "GT", "timezone": "America/Guatemala",
            "language": "es", "hours": {"mon-sat": "07:00-21:00", "sun": "08:00-20:00"},
        },
    ],
    "assets": [
        {"id": "s042-wic1", "store": "s042", "type": "walkin_cooler", "name": "Camara 1"},
        {"id": "s042-dc1", "store": "s042", "type": "dairy_case", "name": "Lacteos 1"},
    ],
    "sensors": [
        {"id": "wic1", "asset": "s042-wic1", "interval": "60s"},
        {"id": "dc1", "asset": "s042-dc1", "interval": "60s"},
    ],
    "contacts": [
        {"id": "ana", "name": "Ana Lopez", "phone": "+50255550101", "roles": ["store_manager"],
         "stores": ["s042"]},
        {"id": "beto", "name": "Beto", "phone": "+50255550102", "roles": ["store_manager"],
         "stores": ["s042"]},
        {"id": "noc", "name": "NOC", "phone": "+50255550199", "roles": ["oncall"]},
    ],
    "policies": [default_policy("ana")],
}  # fmt: skip


def durable(
    influx: TimeSeriesStore | None, clock: ManualClock, sensor: str, value: float,
    quantity: Quantity = Quantity.TEMPERATURE,
) -> Observation:  # fmt: skip
    """A reading of ``sensor`` (``wic1`` or ``dc1``) at the clock's now, stored in
    ``influx`` as ingest writes it (the registry's tags) when given; its observation."""
    asset = {"wic1": "s042-wic1", "dc1": "s042-dc1"}[sensor]
    ts = round(clock.time() * 1000)
    if influx is not None:
        kind = {"s042-wic1": "walkin_cooler", "s042-dc1": "dairy_case"}[asset]
        tags = (("asset", asset), ("asset_type", kind), ("sensor", sensor), ("store", "s042"))
        line = serialize(Point(quantity.value, tags, (("value", value),), ts))
        assert line is not None
        influx.write(line.encode())
    return Observation("reading", ts, sensor, sensor, "s042", asset, None, quantity, value)


class EngineHost:
    """A registry file, a clock, a notifier and the engine on them, which can restart.

    Subclasses set ``path``, ``registry``, ``clock`` and ``notifier``, then call
    :meth:`_engine`.
    """

    path: Path
    registry: Registry
    clock: ManualClock
    notifier: Notifier
    engine: AlertingEngine
    # Real delivery backoff runs on the monotonic clock: tests shorten it.
    retry_delays_s: tuple[float, ...] | None = None
    processes = 0
    # With a store, the engine warms itself from it at start-up (alerting/warmup.py).
    influx: TimeSeriesStore | None = None

    def _engine(self) -> AlertingEngine:
        # A new seed per process: alert ids are random and must not repeat after a restart.
        self.processes += 1
        engine = AlertingEngine(
            self.registry, self.notifier, self.clock, influx=self.influx,
            rng=random.Random(7 * self.processes),
        )  # fmt: skip
        if self.retry_delays_s is not None:
            engine.delivery.retry_delays_s = self.retry_delays_s
        engine.start()
        return engine

    def restart(self) -> None:
        """Stop the engine and build a new one on the same database (a process restart)."""
        self.engine.stop()
        self.registry.close()
        self.registry = Registry(self.path)
        self.engine = self._engine()


class Harness(EngineHost):
    """Engine + clock + console notifier + helpers to feed readings."""

    def __init__(
        self,
        tmp: Path,
        start: datetime,
        notifier: Notifier | None = None,
        *,
        retry_delays_s: tuple[float, ...] | None = None,
        influx: TimeSeriesStore | None = None,
    ) -> None:
        self.path = tmp / "registry.sqlite3"
        self.retry_delays_s = retry_delays_s
        self.influx = influx
        self.registry = Registry(self.path)
        self.registry.import_chain(parse_chain(CHAIN))
        self.clock = ManualClock(start)
        self.notifier = notifier or ConsoleNotifier(out=lambda _line: None)
        self.engine = self._engine()
        self.last: dict[str, float] = {}
        self.ticks = 0

    def reading(self, sensor: str, value: float, quantity: Quantity = Quantity.TEMPERATURE) -> None:
        """A durable reading: stored (when the harness has a store), then evaluated."""
        self.engine.observe([durable(self.influx, self.clock, sensor, value, quantity)])

    def minutes(self, count: int, sensor: str = "wic1", value: float = 3.0) -> None:
        """One reading a minute for ``count`` minutes, ticking the engine each minute.

        A deliberate jump (a test's failure) is confirmed by a second reading 30 s
        earlier, as a real excursion would be: single implausible jumps are held.
        """
        for _ in range(count):
            if abs(value - self.last.get(sensor, value)) > 4.0:
                self.clock.advance(30)
                self.reading(sensor, value)
                self.clock.advance(30)
            else:
                self.clock.advance(60)
            self.last[sensor] = value
            self.reading(sensor, value)
            # The other unit cycles like a healthy one (a constant value is a stuck probe).
            self.reading("dc1" if sensor == "wic1" else "wic1", 3.0 + 0.2 * (self.ticks % 2))
            self.ticks += 1
            self.engine.tick()
        self.engine.delivery.drain()

    def sent(self) -> list[tuple[str, str]]:
        sent: list[Outbound] = self.notifier.sent  # type: ignore[attr-defined]
        return [(m.to, m.body) for m in sent]


class Monotonic:
    """A process's own monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Instance:
    """An alerting process on a lease: its own registry connections, lease, console
    notifier, and (given one) the store it warms up from."""

    # The tests tick once a simulated minute: the lease must outlast a tick.
    TTL_S = 90.0

    def __init__(
        self, path: str, name: str, clock: ManualClock, influx: TimeSeriesStore | None = None
    ) -> None:
        self.mono = Monotonic()
        self.lease = Lease(Registry(path), name, clock, monotonic=self.mono, ttl_s=self.TTL_S)
        self.notifier = ConsoleNotifier(out=lambda _line: None)
        self.engine = AlertingEngine(
            Registry(path), self.notifier, clock, influx=influx, lease=self.lease
        )

    def sent(self) -> list[str]:
        return [m.to for m in self.notifier.sent]
