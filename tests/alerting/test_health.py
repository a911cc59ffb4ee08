"""What a watcher outside alerting reads (alerting/health.py), as Prometheus would read it:
the lease heartbeat moves with ticks, and the in-process queue shows a blocked pump."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from alerting.engine import AlertingEngine
from alerting.lease import Lease
from alerting.notifiers.console import ConsoleNotifier
from coldchain.compose import OBSERVATION_QUEUE_BATCHES, ObservationPump
from core.chain import parse_chain
from core.clock import ManualClock
from core.metrics import Family, parse
from core.metrics import Registry as MetricsRegistry
from core.registry import Registry
from core.types import Quantity
from ingest.pipeline import Observation
from tests.alerting.harness import CHAIN, GT
from tests.processes import wait_for

START = datetime(2026, 11, 18, 23, 0, tzinfo=GT)


class Engine:
    """A real engine on a real registry, its metrics in a registry of the test's own."""

    def __init__(self, tmp: Path) -> None:
        self.registry = Registry(tmp / "registry.sqlite3")
        self.registry.import_chain(parse_chain(CHAIN))
        self.clock = ManualClock(START)
        self.metrics = MetricsRegistry()
        self.engine = AlertingEngine(
            self.registry, ConsoleNotifier(out=lambda _line: None), self.clock,
            metrics=self.metrics,
        )  # fmt: skip
        self.engine.start()

    def scrape(self) -> dict[str, Family]:
        return parse(self.metrics.render())

    def value(self, name: str, sample: str | None = None) -> float:
        value = self.scrape()[name].value(sample)
        assert value is not None, name
        return value

    def close(self) -> None:
        self.engine.stop()
        self.registry.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(tmp_path)
    yield engine
    engine.close()


def _batch(host: Engine, value: float) -> list[Observation]:
    ts = round(host.clock.time() * 1000)
    return [Observation("reading", ts, "wic1", "wic1", "s042", "s042-wic1", "walkin_cooler",
                        Quantity.TEMPERATURE, value)]  # fmt: skip


def test_the_lease_heartbeat_and_last_tick_advance_with_ticks(host: Engine) -> None:
    heartbeat = "coldchain_alerting_lease_heartbeat_timestamp_seconds"
    assert host.value("coldchain_alerting_is_leader") == 0  # nothing ticked yet
    assert host.value(heartbeat) == 0
    host.engine.tick()
    assert host.value("coldchain_alerting_is_leader") == 1  # alone, so leader
    assert host.value(heartbeat) == START.timestamp()
    assert host.value("coldchain_alerting_last_tick_timestamp_seconds") == START.timestamp()
    host.clock.advance(60)
    host.engine.tick()
    assert host.value(heartbeat) == START.timestamp() + 60
    assert host.value("coldchain_alerting_seconds_since_last_tick") < 5
    assert host.engine.stats.health.healthy()
    assert not host.engine.stats.health.healthy(stall_s=0.0)


def test_a_lease_object_can_take_leadership_away(host: Engine) -> None:
    health = host.engine.stats.health
    health.lease(leader=True, heartbeat_at=1_800_000_000.0)
    health.lease(leader=False)  # lost: the heartbeat stays where it was
    assert host.value("coldchain_alerting_is_leader") == 0
    assert host.value("coldchain_alerting_lease_heartbeat_timestamp_seconds") == 1.8e9


def test_the_queue_depth_shows_a_blocked_pump_and_the_lag_its_wait(host: Engine) -> None:
    pump = ObservationPump(host.engine)
    pump.start()
    assert host.value("coldchain_alerting_queue_capacity_batches") == OBSERVATION_QUEUE_BATCHES
    try:
        with host.engine._lock:  # the engine is busy (a registry reload, a slow round)
            for value in (3.0, 3.2, 3.4, 3.6):
                pump.put(_batch(host, value))
                host.clock.advance(60)
            # One batch taken and waiting for the engine, three queued behind it.
            wait_for("the pump to block", lambda: pump._queue.qsize() == 3)
            assert host.value("coldchain_alerting_queued_batches") == 3
            time.sleep(0.3)  # the batches' wait becomes their lag
        pump.join()
        assert host.value("coldchain_alerting_queued_batches") == 0
        families = host.scrape()
        lag = families["coldchain_alerting_evaluation_lag_seconds"]
        assert lag.value("coldchain_alerting_evaluation_lag_seconds_count") == 4
        assert lag.value("coldchain_alerting_evaluation_lag_seconds_bucket", le="0.2") == 0
        assert (host.value("coldchain_alerting_evaluation_lag_last_seconds")) >= 0.3
        assert families["coldchain_alerting_observations_evaluated"].value() == 4
    finally:
        pump.stop()


def test_the_lease_moves_the_leader_gauge_and_only_the_holder_heartbeats(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    Registry(path).import_chain(parse_chain(CHAIN))
    clock = ManualClock(START)
    monotonic = {"one": [1000.0], "two": [1000.0]}
    hosts: dict[str, tuple[AlertingEngine, MetricsRegistry]] = {}

    def own_clock(name: str) -> Callable[[], float]:
        return lambda: monotonic[name][0]

    for name in monotonic:
        lease = Lease(Registry(path), name, clock, monotonic=own_clock(name), ttl_s=90.0)
        metrics = MetricsRegistry()
        engine = AlertingEngine(Registry(path), ConsoleNotifier(out=lambda _line: None), clock,
                                lease=lease, metrics=metrics)  # fmt: skip
        engine.start()
        hosts[name] = (engine, metrics)

    def gauges(name: str) -> tuple[float | None, float | None]:
        families = parse(hosts[name][1].render())
        heartbeat = families["coldchain_alerting_lease_heartbeat_timestamp_seconds"]
        return families["coldchain_alerting_is_leader"].value(), heartbeat.value()

    def minute(names: list[str]) -> None:
        clock.advance(60)
        for name in names:
            monotonic[name][0] += 1
            hosts[name][0].tick()

    try:
        minute(["one", "two"])
        assert gauges("one") == (1, START.timestamp() + 60)
        assert gauges("two") == (0, 0)  # standing by: never renewed
        for _ in range(3):  # one hangs; two takes over once the lease expires
            minute(["two"])
        assert gauges("two") == (1, START.timestamp() + 240)
        monotonic["one"][0] += 600
        minute(["one", "two"])  # one wakes up: the lease is two's
        assert gauges("one") == (0, START.timestamp() + 60)  # its last renewal, stale
        assert gauges("two") == (1, START.timestamp() + 300)
        assert hosts["one"][0].stats.health.healthy()  # a standby still ticks
    finally:
        for engine, _ in hosts.values():
            engine.stop()
