"""Rule state survives what a real fleet does around it: side-table writes by other
connections, registry edits, reloads (docs/design/state-continuity.md).

Each test runs the same timeline twice, once quiet and once with the disturbance, and
asserts that the same messages go to the same people at the same minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerting.book import AlertBook
from alerting.rules import RuleEngine
from core.chain import Sensor, parse_chain
from core.registry import DiscoveredDevice, Registry
from core.types import Quantity
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
    "sensor_registered_elsewhere": _new_sensor_elsewhere,
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


# -- rule level: a reload every few minutes changes nothing ------------------------------

RULE_CHAIN: dict[str, list[dict[str, Any]]] = {
    "stores": [
        {"id": "s1", "name": "Uno", "country": "GT", "timezone": "America/Guatemala",
         "hours": {"mon-sun": "07:00-21:00"}},
        {"id": "s2", "name": "Dos", "country": "MX", "timezone": "America/Mexico_City",
         "hours": {"mon-sun": "08:00-22:00"}},
    ],
    "assets": [
        {"id": "s1-wic", "store": "s1", "type": "walkin_cooler", "name": "Camara"},
        {"id": "s1-dc", "store": "s1", "type": "dairy_case", "name": "Lacteos"},
        {"id": "s2-fz", "store": "s2", "type": "walkin_freezer", "name": "Congelador"},
        {"id": "s2-dc", "store": "s2", "type": "dairy_case", "name": "Lacteos"},
    ],
    "sensors": [
        {"id": "gw1:wic", "asset": "s1-wic", "interval": "60s"},
        {"id": "gw1:door", "asset": "s1-wic", "interval": "60s"},
        {"id": "dc1", "asset": "s1-dc", "interval": "60s"},
        {"id": "fz2", "asset": "s2-fz", "interval": "60s"},
        {"id": "dc2", "asset": "s2-dc", "interval": "60s"},
        {"id": "dc2b", "asset": "s2-dc", "interval": "60s"},
    ],
}  # fmt: skip


def _chain(extra: int = 0) -> Any:
    """RULE_CHAIN, plus ``extra`` sensors on a store of their own (a technician at work)."""
    chain = dict(RULE_CHAIN)
    if extra:
        chain["stores"] = [
            *RULE_CHAIN["stores"],
            {"id": "x99", "name": "Nueva", "timezone": "America/Guatemala"},
        ]
        chain["assets"] = [
            *RULE_CHAIN["assets"],
            {"id": "x99-dc", "store": "x99", "type": "dairy_case", "name": "N"},
        ]
        chain["sensors"] = [
            *RULE_CHAIN["sensors"],
            *({"id": f"x99-{i}", "asset": "x99-dc"} for i in range(extra)),
        ]
    return parse_chain(chain)  # fmt: skip


def _rules(extra: int = 0) -> RuleEngine:
    chain = _chain(extra)
    return RuleEngine(chain.stores, chain.assets, chain.sensors)


def _observations(minute: int) -> list[dict[str, Any]]:
    """Six hours of one busy night: a walk-in warming with its door ajar, a freezer probe
    throwing faults, a dairy probe going silent, a device offline and back, a battery."""
    out: list[dict[str, Any]] = []
    wic = 3.0 + 0.1 * (minute % 2) if minute < 60 else min(3.0 + (minute - 60) / 20, 12.0)
    out.append({"sensor": "gw1:wic", "quantity": Quantity.TEMPERATURE, "value": wic})
    door = 1.0 if 100 <= minute < 130 else 0.0
    out.append({"sensor": "gw1:door", "quantity": Quantity.DOOR, "value": door})
    if minute < 200:  # then dc1 falls silent
        out.append({"sensor": "dc1", "quantity": Quantity.TEMPERATURE,
                    "value": 3.5 + 0.2 * (minute % 3)})  # fmt: skip
    if 150 <= minute < 160:
        out.append({"kind": "fault", "sensor": "fz2", "code": "disconnected"})
    else:
        out.append({"sensor": "fz2", "quantity": Quantity.TEMPERATURE,
                    "value": -20.0 + 0.3 * (minute % 4)})  # fmt: skip
    for sensor in ("dc2", "dc2b"):
        out.append(
            {
                "sensor": sensor,
                "quantity": Quantity.TEMPERATURE,
                "value": 4.0 + 0.1 * (minute % 5) + (3.0 if 240 <= minute < 300 else 0),
            }
        )
        out.append({"sensor": sensor, "quantity": Quantity.BATTERY,
                    "value": 30.0 - minute / 10})  # fmt: skip
    if minute == 250:
        out.append({"kind": "status", "device": "fz2", "value": 0.0})
    if minute == 290:
        out.append({"kind": "status", "device": "fz2", "value": 1.0})
    return out


def _run(reload_every: int | None) -> tuple[list[tuple[int, str, str]], dict[str, Any]]:
    engine = _rules()
    start = datetime(2026, 11, 17, 21, 0, tzinfo=GT)
    seen: list[tuple[int, str, str]] = []
    for minute in range(360):
        at = round((start + timedelta(minutes=minute)).timestamp() * 1000)
        if reload_every and minute % reload_every == 0:
            fresh = _rules(extra=minute // reload_every)  # a sensor more each time
            fresh.carry(engine)
            engine = fresh
        out = []
        for o in _observations(minute):
            kind = o.pop("kind", "reading")
            out += engine.observe(kind, at, **o)
        out += engine.tick(at + 30_000)
        seen += [(minute, t.action, t.condition.key) for t in out]
    return seen, _without_extra(engine.snapshot())


def _without_extra(value: Any) -> Any:
    """The snapshot without what belongs to the extra store."""
    if isinstance(value, dict):
        return {k: _without_extra(v) for k, v in value.items() if "x99" not in str(k)}
    if isinstance(value, list):
        return [_without_extra(v) for v in value if "x99" not in str(v)]
    return value


def test_rule_state_carries_across_reloads_with_registry_changes() -> None:
    """Rebuilding the rules every 7 minutes, each time with one more sensor registered in
    another store, fires and clears exactly what an engine never rebuilt does, and ends in
    the same state: budgets, stages, door and silence timers, faults, outages, batteries."""
    quiet, quiet_state = _run(None)
    reloaded, reloaded_state = _run(7)
    kinds = {key.split(":")[0] for _, _, key in quiet}
    assert {"temperature", "door_open", "sensor_silent", "sensor_fault", "low_battery",
            "device_offline"} <= kinds  # fmt: skip
    assert reloaded == quiet
    assert reloaded_state == quiet_state


def test_a_moved_sensor_starts_its_excursion_afresh() -> None:
    """Carry follows (sensor, asset): a probe moved to another unit brings no budget."""
    engine = _rules()
    start = datetime(2026, 11, 17, 21, 0, tzinfo=GT)
    for minute in range(20):
        at = round((start + timedelta(minutes=minute)).timestamp() * 1000)
        engine.observe("reading", at, sensor="dc2", quantity=Quantity.TEMPERATURE, value=9.0)
    assert engine.temperature.states["dc2"].hi_warn > 0
    chain = _chain()
    moved = [s.model_copy(update={"asset": "s2-fz"}) if s.id == "dc2" else s
             for s in chain.sensors]  # fmt: skip
    fresh = RuleEngine(chain.stores, chain.assets, moved)
    fresh.carry(engine)
    assert fresh.temperature.states["dc2"].hi_warn == 0
    assert fresh.availability.last_seen[fresh.topo.by_sensor["dc2"].slot] > 0  # same probe
