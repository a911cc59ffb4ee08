"""Rule evaluation as timelines (STYLE.md §13): fixed, timezone-aware instants, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from alerting.rules import (
    DEFROST_OVERRUN,
    DOOR_OPEN,
    SENSOR_FAULT,
    SENSOR_SILENT,
    STORE_OUTAGE,
    TEMPERATURE,
    RuleEngine,
    Transition,
)
from alerting.weights import WeightCalendar
from core.chain import parse_chain
from core.types import Quantity

GT = ZoneInfo("America/Guatemala")  # UTC-6, no DST


def _engine(asset_type: str = "walkin_cooler", **asset: object) -> RuleEngine:
    chain = parse_chain(
        {
            "stores": [
                {
                    "id": "s042",
                    "name": "San Pedro",
                    "country": "GT",
                    "timezone": "America/Guatemala",
                    "hours": {"mon-sat": "07:00-21:00", "sun": "08:00-20:00"},
                    "calendar": [{"date": "2026-05-10", "name": "Dia de la Madre", "weight": 2.0}],
                }
            ],
            "assets": [
                {"id": "a1", "store": "s042", "type": asset_type, "name": "Unit 1", **asset},
                {"id": "a2", "store": "s042", "type": "dairy_case", "name": "Unit 2"},
            ],
            "sensors": [
                {"id": "dev1", "asset": "a1", "interval": "60s"},
                {"id": "dev2", "asset": "a2", "interval": "60s"},
            ],
        }
    )
    return RuleEngine(chain.stores, chain.assets, chain.sensors)


def _ms(local: datetime) -> int:
    return round(local.timestamp() * 1000)


def _feed(
    engine: RuleEngine,
    start: datetime,
    minutes: int,
    temp: float | list[float],
    sensor: str = "dev1",
) -> list[tuple[int, Transition]]:
    """One reading a minute; returns (minute, transition) for everything that happened."""
    out = []
    for minute in range(minutes):
        value = temp[minute] if isinstance(temp, list) else temp
        at = start + timedelta(minutes=minute)
        for t in engine.observe(
            "reading", _ms(at), sensor=sensor, quantity=Quantity.TEMPERATURE, value=value
        ):
            out.append((minute, t))
    return out


def test_same_excursion_fires_twice_as_fast_on_mothers_day() -> None:
    """A dairy case at 6.5 °C (1.5 K over): budget 30 K·min -> 20 min on an ordinary
    Tuesday afternoon; Mother's Day weighs 2.0 -> 10 min."""
    tuesday = datetime(2026, 5, 12, 15, 0, tzinfo=GT)
    mothers_day = datetime(2026, 5, 10, 15, 0, tzinfo=GT)  # a Sunday, open 08:00-20:00
    fired = {}
    for name, start in (("tuesday", tuesday), ("mothers_day", mothers_day)):
        engine = _engine()
        _feed(engine, start - timedelta(minutes=5), 5, 3.0, sensor="dev2")
        events = _feed(engine, start, 40, 6.5, sensor="dev2")
        warnings = [(m, t) for m, t in events if t.condition.stage == "warning"]
        fired[name] = warnings[0][0]
        assert (
            warnings[0][1]
            .condition.explanation["weight"]
            .startswith("x2 (Dia de la Madre" if name == "mothers_day" else "x1")
        )
    # Minute 0 spends nothing (the trapezoid from 3.0 to 6.5 averages 4.75 °C, inside the
    # limit); each later minute spends 1.5 K x 60 s x weight of the 1800 K·s budget.
    assert fired == {"tuesday": 20, "mothers_day": 10}


def test_san_pedro_overnight_rising_then_warning_then_critical() -> None:
    """Compressor fails at 23:10 in a closed store; the walk-in warms ~1.5 K/h."""
    engine = _engine()
    start = datetime(2026, 11, 17, 22, 0, tzinfo=GT)  # a Tuesday, closed after 21:00
    temps = [3.0] * 70 + [3.0 + 1.5 * (m / 60) for m in range(1, 400)]  # fail at 23:10
    events = _feed(engine, start, len(temps), temps)
    stages = [(m, t.action, t.condition.stage) for m, t in events]
    assert [s for _, _, s in stages] == ["rising", "warning", "critical"]
    assert [a for _, a, _ in stages] == ["fire", "upgrade", "upgrade"]
    minute_of = {s: m for m, _, s in stages}
    # warn limit 5 °C reached at 23:10 + 80 min = 00:30; closed overnight (x2) from 00:00:
    # 30 K·min at x2 needs sqrt(2 * 15 / 1.5 K/h) ... solved numerically below.
    spent, minute = 0.0, 0
    for minute in range(1, len(temps)):
        mean = (temps[minute - 1] + temps[minute]) / 2 - 5.0
        if mean > 0:
            at = start + timedelta(minutes=minute)
            weight = 2.0 if at.hour < 6 else 1.5
            spent += mean * 60 * weight
        if spent >= 30 * 60:
            break
    assert minute_of["warning"] == minute
    assert minute_of["rising"] < minute_of["warning"]
    critical = events[-1][1].condition
    assert critical.explanation["weight"] == "x2 (closed overnight x2)"
    assert critical.since_ms <= _ms(start + timedelta(minutes=minute_of["rising"]))


def test_recovery_clears_only_after_hysteresis_and_hold() -> None:
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    _feed(engine, start, 5, 3.0)
    events = _feed(engine, start + timedelta(minutes=5), 60, 7.5)
    assert events[-1][1].condition.stage in ("warning", "critical")
    # 4.8 °C is below the 5 °C limit but inside the 0.5 K hysteresis: no clear
    assert _feed(engine, start + timedelta(minutes=65), 30, 4.8) == []
    events = _feed(engine, start + timedelta(minutes=95), 20, 3.5)
    clears = [(m, t) for m, t in events if t.action == "clear"]
    assert [m for m, _ in clears] == [10]  # held 10 min inside 4.5 °C


def test_hard_ceiling_fires_critical_at_once() -> None:
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    _feed(engine, start, 3, 3.0)
    # 7.5 K in a minute is not air: the first such reading waits for confirmation ...
    assert _feed(engine, start + timedelta(minutes=3), 1, 10.5) == []
    assert engine.states["dev1"].spikes == 1
    # ... which the next one gives: critical at once, without spending a budget.
    events = _feed(engine, start + timedelta(minutes=3, seconds=30), 1, 10.5)
    assert [(t.action, t.condition.stage) for _, t in events] == [("fire", "critical")]
    assert "hard ceiling" in events[0][1].condition.explanation["budget"]


def test_a_single_spike_is_held_and_forgotten() -> None:
    """EMI on a long 1-Wire run: one reading 15 K off, then back to normal."""
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    temps = [3.0] * 5 + [18.0] + [3.0] * 30
    assert _feed(engine, start, len(temps), temps) == []
    assert engine.states["dev1"].spikes == 1


def test_defrost_does_not_warn_but_a_defrost_that_does_not_end_does() -> None:
    engine = _engine("walkin_cooler", defrost={"times": ["02:00"], "duration": "30m",
                                               "recovery": "30m"})  # fmt: skip
    night = datetime(2026, 11, 17, 1, 30, tzinfo=GT)
    normal = [3.0] * 30 + [3.0 + 0.25 * m for m in range(24)] + [9.0] * 6 + [3.0] * 60
    assert _feed(engine, night, len(normal), normal) == []  # peaks at 9 °C inside defrost

    stuck = _engine("walkin_cooler", defrost={"times": ["02:00"], "duration": "30m",
                                              "recovery": "30m"})  # fmt: skip
    temps = [3.0] * 30 + [3.0 + 0.25 * m for m in range(24)] + [9.0] * 80
    events = _feed(stuck, night, len(temps), temps)
    kinds = [(m, t.condition.kind) for m, t in events]
    assert kinds[0] == (90, DEFROST_OVERRUN)  # 02:00 + 30 min defrost + 30 min recovery
    assert TEMPERATURE in {k for _, k in kinds[1:]}  # and the budget runs from then on


def test_door_open_too_long() -> None:
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    for minute in range(3):  # open at 10:00, still open at 10:01 and 10:02 (one opening)
        at = _ms(start + timedelta(minutes=minute))
        engine.observe("reading", at, sensor="dev1", quantity=Quantity.DOOR, value=1.0)

    def door_events(minutes: float) -> list[Transition]:
        events = engine.tick(_ms(start + timedelta(minutes=minutes)))
        return [t for t in events if t.condition.kind == DOOR_OPEN]

    assert door_events(4) == []
    [warn] = door_events(5.02)
    assert (warn.condition.kind, warn.condition.severity) == (DOOR_OPEN, "warning")
    [crit] = door_events(15.02)
    assert (crit.action, crit.condition.severity) == ("upgrade", "critical")
    closed = engine.observe(
        "reading", _ms(start + timedelta(minutes=16)), sensor="dev1",
        quantity=Quantity.DOOR, value=0.0,
    )  # fmt: skip
    assert [(t.action, t.condition.kind) for t in closed if t.condition.kind == DOOR_OPEN] == [
        ("clear", DOOR_OPEN)
    ]


def test_two_openings_sampled_in_a_row_are_not_a_door_left_open() -> None:
    """A busy door sampled every 5 min: open at 10:00 and 10:05 (two customers)."""
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    for minute, value in ((0, 1.0), (5, 1.0), (10, 0.0), (15, 1.0)):
        at = _ms(start + timedelta(minutes=minute))
        events = engine.observe("reading", at, sensor="dev1", quantity=Quantity.DOOR, value=value)
        assert [t for t in events if t.condition.kind == DOOR_OPEN] == []


def test_faults_are_faults_not_excursions() -> None:
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    _feed(engine, start, 3, 3.0)
    events = []
    for minute in range(3, 6):
        events += engine.observe(
            "fault", _ms(start + timedelta(minutes=minute)), sensor="dev1",
            quantity=Quantity.TEMPERATURE, code="power_on_reset",
        )  # fmt: skip
    assert [t.condition.kind for t in events] == [SENSOR_FAULT]
    assert events[0].condition.explanation["code"] == "power_on_reset"
    assert not any(c.kind == TEMPERATURE for c in engine.active.values())


def test_silence_and_whole_store_outage_vectorised() -> None:
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    _feed(engine, start, 1, 3.0, sensor="dev1")
    _feed(engine, start, 1, 3.0, sensor="dev2")
    assert engine.tick(_ms(start + timedelta(minutes=2))) == []
    events = engine.tick(_ms(start + timedelta(minutes=3, seconds=1)))
    kinds = sorted(t.condition.kind for t in events)
    assert kinds == [SENSOR_SILENT, SENSOR_SILENT]  # the outage has a 2 min grace
    assert engine.tick(_ms(start + timedelta(minutes=4))) == []
    [outage] = engine.tick(_ms(start + timedelta(minutes=5, seconds=2)))
    assert outage.condition.kind == STORE_OUTAGE
    assert outage.condition.since_ms == _ms(start + timedelta(minutes=3, seconds=1))
    # data comes back: silences clear, and the outage with them
    back = _feed(engine, start + timedelta(minutes=10), 1, 3.0, sensor="dev1")
    back += _feed(engine, start + timedelta(minutes=10), 1, 3.0, sensor="dev2")
    back_events = [t for _, t in back] + engine.tick(_ms(start + timedelta(minutes=10)))
    assert sorted((t.action, t.condition.kind) for t in back_events) == [
        ("clear", SENSOR_SILENT),
        ("clear", SENSOR_SILENT),
        ("clear", STORE_OUTAGE),
    ]


def test_pharmacy_freezing_is_critical_immediately() -> None:
    engine = _engine("pharmacy_fridge")
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    _feed(engine, start, 2, 5.0)
    _feed(engine, start + timedelta(minutes=1, seconds=30), 1, -0.2)  # jump, then confirmed
    events = _feed(engine, start + timedelta(minutes=2), 1, -0.2)
    assert [(t.condition.stage, t.condition.explanation["side"]) for _, t in events] == [
        ("critical", "low")
    ]


@pytest.mark.parametrize(
    ("zone", "utc", "local_hour", "weight"),
    [
        # Mexico City still had DST in 2021: 12:30Z on 2021-04-04 is 07:30 CDT (open);
        # a fixed UTC-6 offset would say 06:30 (closed).
        ("America/Mexico_City", datetime(2021, 4, 4, 12, 30, tzinfo=UTC), 7, 1.0),
        # ... and since 2022 it has none: 12:30Z on 2023-04-02 is 06:30 (closed).
        ("America/Mexico_City", datetime(2023, 4, 2, 12, 30, tzinfo=UTC), 6, 1.5),
        # Santiago springs forward at 24:00 on 2026-09-05: 10:30Z next day is 07:30 (open).
        ("America/Santiago", datetime(2026, 9, 6, 10, 30, tzinfo=UTC), 7, 1.0),
        ("America/Santiago", datetime(2026, 9, 6, 4, 30, tzinfo=UTC), 1, 2.0),
    ],
)
def test_weights_follow_the_store_clock_across_dst(
    zone: str, utc: datetime, local_hour: int, weight: float
) -> None:
    store = parse_chain(
        {
            "stores": [
                {"id": "s1", "name": "S", "timezone": zone, "hours": {"mon-sun": "07:00-21:00"}}
            ]
        }
    ).stores[0]
    assert utc.astimezone(ZoneInfo(zone)).hour == local_hour
    assert WeightCalendar(store).at(utc.timestamp()).value == weight


def test_tick_handles_100k_sensors() -> None:
    """Shape check of the vectorised path (speed lives in bench/, not here)."""
    sensors = [{"id": f"d{i}", "asset": f"a{i % 1000}", "interval": 60} for i in range(100_000)]
    chain = parse_chain(
        {
            "stores": [{"id": f"s{i}", "name": f"S{i}"} for i in range(10)],
            "assets": [
                {"id": f"a{i}", "store": f"s{i % 10}", "type": "dairy_case", "name": "x"}
                for i in range(1000)
            ],
            "sensors": sensors,
        }
    )
    engine = RuleEngine(chain.stores, chain.assets, chain.sensors)
    now = 1_795_000_000_000
    for i in range(0, 100_000, 2):  # half of them report
        engine.observe("reading", now, sensor=f"d{i}", quantity=Quantity.TEMPERATURE, value=3.0)
    events = engine.tick(now + 181_000)
    silent = [t for t in events if t.condition.kind == SENSOR_SILENT]
    assert len(silent) == 50_000
    assert not np.any(np.isnan(engine._last_seen[::2]))
