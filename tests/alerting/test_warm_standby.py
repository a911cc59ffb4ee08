"""A warm standby (alerting/engine.py ``_stand_by``): it replays history once, when it
starts, then keeps its rules in step with the live stream, so a takeover costs the lease
TTL and a reconciliation with the book, not a replay of hours of history.

Was: the standby stood by cold and replayed ``COLDCHAIN_WARMUP`` at the takeover:
``coldchain bench failover`` measured 29-30 s from kill -9 to the new leader at 3,000
sensors (lease TTL 10 s, then a 19-20 s warm-up over 1.08 M stored observations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from alerting.engine import STANDBY_STALE_S
from core.chain import parse_chain
from core.clock import ManualClock
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings
from tests.alerting.harness import CHAIN, GT, Harness, Instance, durable

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 17, 23, 0, tzinfo=GT)  # a Tuesday night, store closed
ANA, NOC = "+50255550101", "+50255550199"


def _walkin(minute: int) -> float:
    """1 K over the walk-in's 5 °C limit from 23:03: Ana after ~20 min, on-call 20 later."""
    return 3.0 if minute < 3 else 6.0


@pytest.fixture
def store(influx_settings: Settings) -> Iterator[Callable[[str], InfluxV1]]:
    made: list[InfluxV1] = []

    def fresh(name: str) -> InfluxV1:
        influx = InfluxV1(
            influx_settings.model_copy(update={"influx_db": f"{influx_settings.influx_db}{name}"})
        )
        influx.ensure_database()
        made.append(influx)
        return influx

    yield fresh
    for influx in made:
        influx.close()


def _straight(tmp_path: Path, influx: InfluxV1, minutes: int) -> list[tuple[int, str]]:
    """The pages of one engine that never fails."""
    harness = Harness(tmp_path / "straight", START, influx=influx)
    sent: list[tuple[int, str]] = []
    try:
        for minute in range(minutes):
            harness.minutes(1, value=_walkin(minute))
            sent += [(minute, to) for to, _ in harness.sent()[len(sent) :]]
    finally:
        harness.engine.stop()
    return sent


def _pair(
    tmp_path: Path, influx: InfluxV1, minutes: int, *, dies_at: int, quiet_standby: bool = False
) -> tuple[list[tuple[int, str]], Instance, Instance]:
    """``a`` leads, ``b`` stands by (started after an hour of history); ``a`` stops dead
    (kill -9) at ``dies_at``. Both hear the live stream while alive, unless
    ``quiet_standby``: then ``b`` hears nothing (its broker session lost)."""
    path = str(tmp_path / "pair.sqlite3")
    Registry(path).import_chain(parse_chain(CHAIN))
    clock = ManualClock(START)
    a, b = Instance(path, "a", clock, influx), Instance(path, "b", clock, influx)
    a.engine.start()
    alive = [a]
    sent: list[tuple[int, str]] = []
    for minute in range(minutes):
        if minute == 10:
            b.engine.start()  # warms from the 10 minutes stored so far, then stands by
            alive.append(b)
        if minute == dies_at:
            alive.remove(a)
        clock.advance(60)
        stream = [
            durable(influx, clock, "wic1", _walkin(minute)),
            durable(influx, clock, "dc1", 3.0 + 0.2 * (minute % 2)),
        ]
        for instance in alive:
            instance.mono.now += 60
            if not (quiet_standby and instance is b and not b.engine.leading):
                instance.engine.observe(stream)
            instance.engine.tick()
            instance.engine.delivery.drain()
        sent += [(minute, to) for to in (a.sent() + b.sent())[len(sent) :]]
    return sent, a, b


def test_a_warm_standby_takes_over_without_a_replay_and_pages_at_the_same_minutes(
    tmp_path: Path, store: Callable[[str], InfluxV1]
) -> None:
    straight = _straight(tmp_path, store("straight"), 50)
    assert [to for _, to in straight][:2] == [ANA, NOC]
    # a dies at minute 15, mid-excursion, with Ana's page still 5+ minutes away.
    sent, a, b = _pair(tmp_path, store("pair"), 50, dies_at=15)
    try:
        assert b.engine.leading
        assert sent == straight
        assert (a.sent(), b.sent()) == ([], [ANA, NOC])
        health = b.engine.stats.health  # its takeover replayed nothing
        assert health.warmup_observations.value() == 0
        assert b.engine.warmed is not None  # ... its start did, once
        # two sensors, 9 minutes: those at its start's own instant arrive live (the manual
        # clock stands still; the replay's window ends before now)
        assert b.engine.warmed.events == 2 * 9
    finally:
        b.engine.stop()


def test_a_standby_that_heard_nothing_lately_replays_history_at_the_takeover(
    tmp_path: Path, store: Callable[[str], InfluxV1]
) -> None:
    straight = _straight(tmp_path, store("straight"), 50)
    dies_at = 10 + round(STANDBY_STALE_S / 60) + 2  # b deaf for longer than the limit
    sent, _a, b = _pair(tmp_path, store("pair"), 50, dies_at=dies_at, quiet_standby=True)
    try:
        assert b.engine.leading
        assert b.engine.warmed is not None
        assert b.engine.stats.health.warmup_observations.value() == b.engine.warmed.events
        # everything stored before the takeover, one tick after a's death (TTL 90 s)
        assert b.engine.warmed.events == 2 * (dies_at + 1)
        assert sent == straight
    finally:
        b.engine.stop()
