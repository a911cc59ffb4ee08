"""The pipeline watchdog as timelines: when many stores fall silent at once, on-call hears
of one pipeline stall and no store manager is paged (fake clock, console notifier, real
SQLite registry).

Each store has two units on two devices reporting every minute (one at :00, one at :30);
the engine ticks every 10 s, as the scheduler would (every second) give or take.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from alerting.book import RESOLVED, Alert
from alerting.conditions import (
    CHAIN_STORE,
    PIPELINE_STALLED,
    SENSOR_SILENT,
    STORE_OUTAGE,
    TEMPERATURE,
)
from alerting.engine import STALL_REARMED_NOTE
from alerting.notifiers.base import Outbound
from alerting.notifiers.console import ConsoleNotifier
from core.chain import parse_chain
from core.clock import ManualClock
from core.registry import Registry
from core.types import Quantity
from ingest.pipeline import Observation
from tests.alerting.harness import GT, EngineHost, default_policy

NOC = "+50255550199"
START = datetime(2026, 11, 17, 10, 0, tzinfo=GT)  # a Tuesday morning, stores open


def _phone(store: int) -> str:
    return f"+5025555{store:04d}"


def _chain(stores: int) -> dict[str, Any]:
    ids = [f"s{n:03d}" for n in range(1, stores + 1)]
    return {
        "stores": [
            {"id": s, "name": f"Tienda {s}", "country": "GT", "timezone": "America/Guatemala",
             "language": "es"}
            for s in ids
        ],
        "assets": [
            {"id": f"{s}-{unit}", "store": s, "type": kind, "name": name}
            for s in ids
            for unit, kind, name in (("wic1", "walkin_cooler", "Camara 1"),
                                     ("dc1", "dairy_case", "Lacteos 1"))
        ],
        "sensors": [
            {"id": f"{s}-{unit}", "asset": f"{s}-{unit}", "interval": "60s"}
            for s in ids
            for unit in ("wic1", "dc1")
        ],
        "contacts": [
            *({"id": f"mgr-{s}", "name": f"Gerente {s}", "phone": _phone(n),
               "roles": ["store_manager"], "stores": [s]}
              for n, s in enumerate(ids, start=1)),
            {"id": "noc", "name": "NOC", "phone": NOC, "roles": ["oncall"]},
        ],
        "policies": [default_policy("store_manager")],
    }  # fmt: skip


class Chain(EngineHost):
    """A chain of ``stores`` stores on one engine; :meth:`until` plays time forward."""

    notifier: ConsoleNotifier

    def __init__(self, tmp: Path, stores: int) -> None:
        self.path = tmp / "registry.sqlite3"
        self.registry = Registry(self.path)
        self.registry.import_chain(parse_chain(_chain(stores)))
        self.stores = [f"s{n:03d}" for n in range(1, stores + 1)]
        self.clock = ManualClock(START)
        self.notifier = ConsoleNotifier(out=lambda _line: None)
        self.engine = self._engine()
        self.silent: set[str] = set()  # stores whose readings do not arrive
        self.warm: dict[str, float] = {}  # sensor -> value, for a unit that fails
        self.steps = 0

    def until(self, hh_mm: str) -> None:
        """Readings and ticks every 10 s up to ``hh_mm`` (same day)."""
        hour, minute = (int(x) for x in hh_mm.split(":"))
        end = START.replace(hour=hour, minute=minute).timestamp()
        while self.clock.time() < end:
            self.clock.advance(10)
            second = round(self.clock.time()) % 60
            if second in (0, 30):
                unit = "wic1" if second == 0 else "dc1"
                self.steps += 1
                ts = round(self.clock.time() * 1000)
                batch = []
                for store in self.stores:
                    if store in self.silent:
                        continue
                    sensor = f"{store}-{unit}"
                    # Healthy units move a little (a constant value is a stuck probe).
                    value = self.warm.get(sensor, 3.0 + 0.2 * (self.steps // 2 % 2))
                    batch.append(
                        Observation("reading", ts, sensor, sensor, store, sensor, None,
                                    Quantity.TEMPERATURE, value)
                    )  # fmt: skip
                self.engine.observe(batch)
            self.engine.tick()
        self.engine.delivery.drain()

    def sent(self) -> list[tuple[str, str, str]]:
        """(local time, to, body) of every message so far."""
        sent: list[Outbound] = self.notifier.sent
        notes = {n.body: n for n in self.engine.book.notifications()}
        return [
            (
                datetime.fromtimestamp(notes[m.body].created_at, GT).strftime("%H:%M:%S"),
                m.to,
                m.body,
            )
            for m in sent
        ]

    def alerts(self, kind: str | None = None) -> list[Alert]:
        return self.engine.book.alerts(kind=kind, limit=10_000)


@pytest.fixture
def five(tmp_path: Path) -> Iterator[Chain]:
    chain = Chain(tmp_path, 5)
    yield chain
    chain.engine.stop()


def test_many_stores_silent_at_once_is_one_page_to_oncall(five: Chain) -> None:
    five.until("10:30")  # a normal morning
    assert five.sent() == []
    # 10:30:00 the broker dies: the last readings are 10:30:00's; nothing after.
    five.silent = set(five.stores)
    five.until("11:00")
    # 10:31:40, 1.5 intervals after the last reading: every store is quiet, one page to
    # on-call. At 10:33 the sensors go silent and at 10:35 the stores "go dark": those
    # alerts exist (visible) but are held.
    [(at, to, body)] = five.sent()
    assert (at, to) == ("10:31:40", NOC)
    [stall] = five.alerts(PIPELINE_STALLED)
    assert stall.store == CHAIN_STORE
    assert body == (
        "COLDCHAIN central: ingesta detenida: 5 de 5 tiendas sin datos desde 10:30, ultima "
        f"lectura 10:30 (broker, ingestor o red?). Responda OK {stall.ack_code}"
    )
    assert stall.explanation["stores"] == five.stores
    assert len(five.alerts(SENSOR_SILENT)) == 10
    assert len(five.alerts(STORE_OUTAGE)) == 5
    # 11:00 the broker is back; the first readings (11:00:30) tell on-call it is over.
    five.silent = set()
    five.until("11:01")
    assert [(at, to) for at, to, _ in five.sent()] == [("10:31:40", NOC), ("11:00:30", NOC)]
    assert five.sent()[1][2] == (
        "COLDCHAIN central: RESUELTO datos de las tiendas llegan de nuevo a las 11:00 "
        f"({stall.ack_code})"
    )
    assert all(a.state == RESOLVED for a in five.alerts())
    # The store outages were no power cuts: no 3 h pull-down hold. A unit failing at
    # 11:30 pages its manager at once, as on any day.
    five.until("11:30")
    five.warm["s002-wic1"] = 12.0
    five.until("11:32")
    assert [(to, body[:38]) for _, to, body in five.sent()[2:]] == [
        (_phone(2), "COLDCHAIN Tienda s002: CRITICO Camara ")
    ]
    assert len(five.alerts(TEMPERATURE)) == 1


def test_one_store_silent_alone_is_its_own_outage_for_its_manager(five: Chain) -> None:
    five.until("10:30")
    five.silent = {"s003"}  # a power cut at one store (no LWT: its router died too)
    five.until("11:00")
    sent = five.sent()
    assert {to for _, to, _ in sent} == {_phone(3)}  # its manager only; on-call not yet
    assert five.alerts(PIPELINE_STALLED) == []
    [outage] = five.alerts(STORE_OUTAGE)
    assert (outage.store, outage.state) == ("s003", "firing")
    assert any("2 de 2 equipos sin conexion desde 10:33" in body for _, _, body in sent)


def test_two_of_three_stores_silent_are_two_store_outages(tmp_path: Path) -> None:
    """Decided: with fewer than 3 quiet stores the chain cannot tell its pipeline from two
    stores' own outages, and one store still reporting says the pipeline works; paging
    both managers is the safe mistake."""
    three = Chain(tmp_path, 3)
    try:
        three.until("10:30")
        three.silent = {"s001", "s002"}
        three.until("11:00")
        assert three.alerts(PIPELINE_STALLED) == []
        assert sorted(a.store for a in three.alerts(STORE_OUTAGE)) == ["s001", "s002"]
        assert {to for _, to, _ in three.sent()} == {_phone(1), _phone(2)}
    finally:
        three.engine.stop()


def test_three_of_three_stores_silent_is_a_stall(tmp_path: Path) -> None:
    three = Chain(tmp_path, 3)
    try:
        three.until("10:30")
        three.silent = set(three.stores)
        three.until("11:00")
        assert [(at, to) for at, to, _ in three.sent()] == [("10:31:40", NOC)]
        assert "3 de 3 tiendas sin datos" in three.sent()[0][2]
    finally:
        three.engine.stop()


def test_a_store_still_silent_after_the_stall_pages_after_its_normal_grace(
    five: Chain,
) -> None:
    five.until("10:30")
    five.silent = set(five.stores)
    five.until("11:00")
    # 11:00 the broker is back, but s005 lost its power meanwhile: it stays silent.
    five.silent = {"s005"}
    five.until("11:30")
    sent = five.sent()
    assert [(at, to) for at, to, _ in sent[:2]] == [("10:31:40", NOC), ("11:00:30", NOC)]
    # Its stall-time alerts were re-armed, not paged: its sensors count as silent from
    # 11:00:30 (3 min: 11:03:30) and the store is dark 2 min later, like any outage.
    rearmed = [
        a for a in five.alerts() if a.store == "s005" and a.resolve_note == STALL_REARMED_NOTE
    ]
    assert sorted(a.kind for a in rearmed) == [SENSOR_SILENT, SENSOR_SILENT, STORE_OUTAGE]
    assert [(at, to) for at, to, _ in sent[2:]] == [
        ("11:03:40", _phone(5)),  # its two sensors, one message
        ("11:05:40", _phone(5)),  # the store outage
    ]
    # The truth: last heard at 10:29:30 and 10:30.
    assert sent[2][2].startswith("COLDCHAIN Tienda s005: 2 alertas: Lacteos 1: sensor")
    assert "sin datos desde 10:29" in sent[2][2]
    assert "sin datos desde 10:30" in sent[2][2]
    [outage] = [a for a in five.alerts(STORE_OUTAGE) if a.open]
    assert outage.store == "s005"


def test_a_restart_during_a_stall_neither_repeats_nor_loses_it(five: Chain) -> None:
    five.until("10:30")
    five.silent = set(five.stores)
    five.until("10:40")
    five.restart()  # the process comes back with the stall open in the book
    five.until("10:50")
    assert [to for _, to, _ in five.sent()] == [NOC]
    five.silent = {"s005"}  # the pipeline is back; s005 is dark for real
    five.until("11:00")
    assert [(at, to) for at, to, _ in five.sent()] == [
        ("10:31:40", NOC),
        ("10:50:30", NOC),  # resolved
        ("10:53:40", _phone(5)),  # s005's sensors, silent 3 min after the recovery
        ("10:55:40", _phone(5)),  # s005 dark
    ]
    assert "RESUELTO" in five.sent()[1][2]
    assert [a.store for a in five.alerts() if a.open] == ["s005", "s005", "s005"]


def test_the_ingester_cut_off_from_mqtt_is_a_stall_even_for_two_stores(
    tmp_path: Path,
) -> None:
    """Two stores cannot tell a stall from their data alone; the ingester's own MQTT
    connection can: down for 2 min, it is a stall."""
    two = Chain(tmp_path, 2)
    connected = [True]
    two.engine.ingest_connected = lambda: connected[0]
    try:
        two.until("10:30")
        connected[0] = False
        two.silent = set(two.stores)
        two.until("10:45")
        [(at, to, body)] = two.sent()
        assert (at, to) == ("10:32:10", NOC)
        assert body.startswith(
            "COLDCHAIN central: ingestor sin conexion al broker MQTT desde 10:30"
        )
        # Connected again but no data yet: still open. Data back: resolved.
        connected[0] = True
        two.until("10:46")
        assert len(two.sent()) == 1
        two.silent = set()
        two.until("10:47")
        assert [to for _, to, _ in two.sent()] == [NOC, NOC]
        assert all(a.state == RESOLVED for a in two.alerts())
    finally:
        two.engine.stop()


def test_a_long_stall_releases_the_store_alerts_after_two_hours(five: Chain) -> None:
    """After 2 h without data nobody knows what the units do: the stores must look."""
    five.until("10:30")
    five.silent = set(five.stores)
    five.until("12:32")
    sent = five.sent()
    # On-call, and again every hour (PIPELINE_POLICY) ...
    assert [at for at, to, _ in sent if to == NOC] == ["10:31:40", "11:31:40", "12:31:40"]
    # ... and at 12:31:40 the stall's hold ends: each manager hears of their store, once.
    managers = [(at, to) for at, to, _ in sent if to != NOC]
    assert managers == [("12:31:40", _phone(n)) for n in range(1, 6)]
    assert all("2 de 2 equipos sin conexion desde 10:33" in b for _, to, b in sent if to != NOC)
