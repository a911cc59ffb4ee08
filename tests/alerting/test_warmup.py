"""Restart continuity: a restarted engine warms its rules from what InfluxDB holds and
fires at the minute it would have without the restart (docs/design/state-continuity.md).

Each timeline runs twice on the real InfluxDB: once straight through, once with the
process restarted (a new engine on the same registry) in the middle; the messages must
be the same, to the same people, at the same minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from alerting.warmup import STARTUP_GRACE_S
from core.influx import InfluxV1
from core.settings import Settings
from tests.alerting.harness import GT, Harness

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 17, 23, 0, tzinfo=GT)  # a Tuesday night, store closed

Timeline = Callable[[Harness, int], None]  # drives one minute (the minute's index)


@pytest.fixture
def run(
    tmp_path: Path, influx_settings: Settings
) -> Iterator[Callable[..., list[tuple[int, str]]]]:
    made: list[Harness] = []
    adapters: list[InfluxV1] = []

    def play(
        name: str, minutes: int, step: Timeline, restart_at: set[int] | None = None
    ) -> list[tuple[int, str]]:
        settings = influx_settings.model_copy(
            update={"influx_db": f"{influx_settings.influx_db}{name}"}
        )
        influx = InfluxV1(settings)
        influx.ensure_database()
        adapters.append(influx)
        harness = Harness(tmp_path / name, START, influx=influx)
        made.append(harness)
        sent: list[tuple[int, str]] = []
        for minute in range(minutes):
            if minute in (restart_at or set()):
                harness.restart()
            step(harness, minute)
            sent += [(minute, to) for to, _ in harness.sent()[len(sent) :]]
        return sent

    yield play
    for harness in made:
        harness.engine.stop()
    for adapter in adapters:
        adapter.close()


def _walkin_at_6c(harness: Harness, minute: int) -> None:
    """1 K over the walk-in's 5 °C limit from 23:00: the warn budget (30 K·min, x1.5 at
    night) is spent after ~20 min; then on-call after 20 min more."""
    harness.minutes(1, value=3.0 if minute < 3 else 6.0)


def test_a_restart_mid_excursion_fires_at_the_same_minute(
    run: Callable[..., list[tuple[int, str]]],
) -> None:
    """Was: a restart 15 minutes into the excursion started its budget from zero, so the
    manager heard of it 15 minutes late (and on-call 15 minutes later too)."""
    straight = run("straight", 60, _walkin_at_6c)
    restarted = run("restarted", 60, _walkin_at_6c, restart_at={15})
    assert [to for _, to in straight][:2] == ["+50255550101", "+50255550199"]
    assert restarted == straight


def test_a_restart_mid_escalation_neither_repeats_nor_skips(
    run: Callable[..., list[tuple[int, str]]],
) -> None:
    straight = run("straight", 80, _walkin_at_6c)
    restarted = run("restarted", 80, _walkin_at_6c, restart_at={30, 31, 50})
    assert len(straight) >= 3
    assert restarted == straight


def test_a_store_that_died_while_nothing_ran_is_reported_after_the_grace(
    tmp_path: Path, influx: InfluxV1
) -> None:
    """Was: after a restart nothing knew when a sensor was last heard of, so a store that
    lost power while the process was down never alerted (silence clocks never started)."""
    harness = Harness(tmp_path, START, influx=influx)
    try:
        harness.minutes(30)  # both units healthy, stored
        harness.engine.stop()
        harness.clock.advance(40 * 60)  # down 40 min; the store lost power meanwhile
        harness.restart()
        assert harness.engine.warmed is not None
        assert harness.engine.warmed.events >= 60
        health = harness.engine.stats.health  # what /metrics says the warm-up cost
        assert health.warmup_observations.value() == harness.engine.warmed.events
        assert 0 < health.warmup_seconds.value() < 30
        heard: list[tuple[float, str]] = []
        for tick in range(1, 8 * 6 + 1):  # 8 minutes after the restart, ticking every 10 s
            harness.clock.advance(10)
            harness.engine.tick()
            harness.engine.delivery.drain()
            heard += [(tick * 10, body) for _, body in harness.sent()[len(heard) :]]
        # What a live engine says about a store that goes dark without a last will: the
        # silent units first (bundled), then the outage; here once the grace is over.
        assert [to for to, _ in harness.sent()] == ["+50255550101"] * 2
        (silent_at, silent), (outage_at, outage) = heard
        assert "sin datos desde 23:30" in silent
        assert "2 de 2 equipos sin conexion" in outage
        assert STARTUP_GRACE_S < silent_at <= STARTUP_GRACE_S + 10
        assert outage_at - silent_at <= 3 * 60
    finally:
        harness.engine.stop()
