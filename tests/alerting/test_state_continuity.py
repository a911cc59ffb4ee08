"""Rule state survives what a real fleet does around it: side-table writes by other
connections, registry edits, reloads (docs/design/state-continuity.md).

Each test runs the same timeline twice, once quiet and once with the disturbance, and
asserts that the same messages go to the same people at the same minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from alerting.book import AlertBook
from core.chain import Sensor, parse_chain
from core.registry import DiscoveredDevice, Registry
from tests.alerting.harness import CHAIN, GT, Harness

START = datetime(2026, 11, 17, 23, 0, tzinfo=GT)  # a Tuesday night, store closed

# Something another process does to the registry once a minute while the walk-in warms.
Disturbance = Callable[[Registry, int], None]


def _dead_letter(other: Registry, minute: int) -> None:
    other.add_dead_letters(
        [(START.timestamp() + minute * 60, "bad_json", "native", "coldchain/v1/x/telemetry",
          "{not json", "Expecting property name")]
    )  # fmt: skip


def _discovered(other: Registry, minute: int) -> None:
    now = START.timestamp() + minute * 60
    other.record_discovered(
        [DiscoveredDevice(f"stranger-{minute}", "native", now, now, 1, [f"stranger-{minute}"],
                          "coldchain/v1/stranger/telemetry", "{}")]
    )  # fmt: skip


def _silence_elsewhere(other: Registry, minute: int) -> None:
    now = START.timestamp() + minute * 60
    AlertBook(other).add_silence(
        store=None, asset=None, sensor="some-other-sensor", starts=now, ends=now + 600,
        reason="maintenance", by="tech", at=now,
    )  # fmt: skip


def _api_key(other: Registry, minute: int) -> None:
    other.create_api_key("oncall", name=f"noc-{minute}")


def _unchanged_import(other: Registry, minute: int) -> None:
    other.import_chain(parse_chain(CHAIN), actor="ci")


def _new_sensor_elsewhere(other: Registry, minute: int) -> None:
    # A technician registers a sensor on another unit of the chain every minute.
    other.add_sensor(Sensor(id=f"dc1-extra-{minute}", asset="s042-dc1"), actor="tech")


NOISE: dict[str, Disturbance] = {
    "dead_letter": _dead_letter,
    "discovered_device": _discovered,
    "silence_for_another_sensor": _silence_elsewhere,
    "api_key": _api_key,
    "unchanged_registry_import": _unchanged_import,
}


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[[str], Harness]]:
    made: list[Harness] = []

    def build(name: str) -> Harness:
        harness = Harness(tmp_path / name, START)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.engine.stop()


def _walkin_at_7c_for_2h(harness: Harness, disturb: Disturbance | None) -> list[tuple[str, str]]:
    """The walk-in (limit 5 °C, budget 30 K·min) at 7 °C: one SMS per minute-timeline."""
    other = Registry(harness.path)
    sent: list[tuple[str, str]] = []
    for minute in range(120):
        harness.minutes(1, value=7.0)
        if disturb is not None:
            disturb(other, minute)
        sent += [(f"{minute:03d}", to) for to, _ in harness.sent()[len(sent) :]]
    other.close()
    return sent


@pytest.mark.parametrize("noise", sorted(NOISE))
def test_dead_letter_writes_and_registry_noise_keep_excursion_budgets(
    make: Callable[[str], Harness], noise: str
) -> None:
    """Was: any commit by another connection (a dead letter a minute) rebuilt the rules,
    so the walk-in's budget restarted every minute and nobody was paged (4 SMS -> 0)."""
    quiet = _walkin_at_7c_for_2h(make("quiet"), None)
    noisy = _walkin_at_7c_for_2h(make("noisy"), NOISE[noise])
    assert len(quiet) >= 3  # manager, on-call, on-call again: the timeline pages
    assert noisy == quiet
