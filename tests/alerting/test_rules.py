"""Rule evaluation as timelines (STYLE.md §13): fixed, timezone-aware instants, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from alerting.conditions import (
    DEFROST_OVERRUN,
    DOOR_OPEN,
    SENSOR_FAULT,
    SENSOR_SILENT,
    STORE_OUTAGE,
    TEMPERATURE,
    Transition,
)
from alerting.rules import RuleEngine
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
    assert engine.temperature.states["dev1"].spikes == 1
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
    assert engine.temperature.states["dev1"].spikes == 1


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
    assert not np.any(np.isnan(engine.availability.last_seen[::2]))


def _cycling(minutes: int, base: float = 3.0) -> list[float]:
    """A healthy walk-in's air: a 2 K sawtooth every 20 min, at the DS18B20's 1/16 K steps."""
    return [round((base + 2.0 * ((m % 20) / 20)) * 16) / 16 for m in range(minutes)]


def test_a_stuck_probe_is_a_sensor_fault_not_a_temperature() -> None:
    """The probe freezes on its last value at 10:30; at 12:00 it is a fault; it is replaced
    at 12:30 and reads a moving temperature again."""
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    temps = [*_cycling(30), *[3.4375] * 120, *_cycling(30, base=3.1)]
    events = _feed(engine, start, len(temps), temps)
    assert [(m, t.action, t.condition.kind) for m, t in events] == [
        (120, "fire", SENSOR_FAULT),  # the same 3.4375 since 10:30: 90 min
        (150, "clear", SENSOR_FAULT),
    ]
    fault = events[0][1].condition
    assert fault.explanation["code"] == "stuck"
    assert fault.explanation["unchanged_min"] == 90
    assert fault.since_ms == _ms(start + timedelta(minutes=30))


def test_a_cycling_unit_is_never_stuck_and_a_sparse_sensor_needs_six_readings() -> None:
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    assert _feed(engine, start, 8 * 60, _cycling(8 * 60)) == []
    # A quiet probe that still moves by one 1/16 K step now and then is not stuck either.
    quiet = [3.0 + 0.0625 * ((m // 25) % 2) for m in range(8 * 60)]
    assert _feed(engine, start + timedelta(hours=8), len(quiet), quiet, sensor="dev2") == []
    # A sensor reporting every 30 min: 90 min is only 4 identical readings; 6 are needed.
    sparse = _engine()
    events = []
    for n in range(7):
        events += sparse.observe(
            "reading", _ms(start + timedelta(minutes=30 * n)), sensor="dev1",
            quantity=Quantity.TEMPERATURE, value=2.5,
        )  # fmt: skip
        assert bool(events) == (n >= 5), n


def test_a_stuck_alert_survives_a_restart_until_the_probe_moves() -> None:
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    [(_, fired)] = _feed(engine, start, 100, 4.0)
    restarted = _engine()
    restarted.restore(fired.condition)
    later = start + timedelta(minutes=100)
    assert _feed(restarted, later, 30, 4.0) == []  # still stuck: no second alert, no clear
    # 85.0 power-on values meanwhile are the same probe's problem: still one alert.
    for minute in range(3):
        assert not restarted.observe(
            "fault", _ms(later + timedelta(minutes=30, seconds=10 * minute)), sensor="dev1",
            quantity=Quantity.TEMPERATURE, code="power_on_reset",
        )  # fmt: skip
    [(_, clear)] = _feed(restarted, later + timedelta(minutes=31), 40, _cycling(40))
    # It moves at once, but the 85.0 faults keep the alert until a clean 30 min window.
    assert (clear.action, clear.condition.key) == ("clear", fired.condition.key)
    assert clear.at_ms >= _ms(later + timedelta(minutes=30 + 30))


def _case_day(
    peak: float | None = None, *, hold: int = 5, at: int = 14 * 60, ramp: int = 15
) -> list[float]:
    """A day of a dairy case, a reading a minute from 00:00: cycling 0.5-2 °C, and a defrost
    from ``at`` climbing to ``peak`` in ``ramp`` min, holding ``hold`` min, back as fast."""
    day = [round((0.5 + 1.5 * ((m % 20) / 20)) * 16) / 16 for m in range(1440)]
    if peak is not None:
        for m in range(2 * ramp + hold):
            up = min(m / ramp, 1.0) if m < ramp + hold else max(0.0, 1 - (m - ramp - hold) / ramp)
            day[at + m] += (peak - day[at + m]) * up
    return day


def _days(engine: RuleEngine, first: datetime, *days: list[float]) -> list[tuple[int, Transition]]:
    out = []
    for n, day in enumerate(days):
        out += [(n * 1440 + m, t) for m, t in _feed(engine, first + timedelta(days=n), 1440, day)]
    return out


MONDAY = datetime(2026, 11, 16, 0, 0, tzinfo=GT)


def test_a_defrost_seen_at_the_same_time_on_two_days_is_learned() -> None:
    """No schedule declared. Monday and Tuesday at 14:00 the case rises to 5 °C for half
    an hour (no alert); on Wednesday the same defrost peaks at 7.5 °C for 20 min, which
    would spend the 30 K·min warn budget of a case without a defrost."""
    wednesday = _case_day(7.5, hold=20)
    learned = _engine("dairy_case")
    assert _days(learned, MONDAY, _case_day(5.0), _case_day(5.0), wednesday) == []
    [window] = learned.learned["a1"].windows
    assert window.explain().startswith("learned defrost 13:")
    assert "seen 2026-11-16, 2026-11-17" in window.explain()
    # The same Wednesday without the two days before it, or with only one: a warning.
    for history in ([], [_case_day(5.0)]):
        unlearned = _engine("dairy_case")
        wednesday_at = MONDAY + timedelta(days=2)
        _days(unlearned, wednesday_at - timedelta(days=len(history)), *history)
        [(_, warn), (_, clear)] = _feed(unlearned, wednesday_at, 1440, wednesday)
        assert (warn.condition.kind, warn.condition.stage) == (TEMPERATURE, "warning")
        assert clear.action == "clear"
    # A declared schedule is never second-guessed.
    declared = _engine("dairy_case", defrost={"times": ["03:00"]})
    assert "a1" not in declared.learned


def test_learned_episodes_are_handed_out_and_seed_a_fresh_engine() -> None:
    """What a restart needs: the episodes learned (for the engine to persist) rebuild the
    same windows in a new RuleEngine, which then relaxes Wednesday's defrost too."""
    first = _engine("dairy_case")
    _days(first, MONDAY, _case_day(5.0), _case_day(5.0))
    episodes = first.new_episodes
    assert [(asset, round(duration / 60)) for asset, _, duration in episodes] == [
        ("a1", 27),
        ("a1", 27),
    ]
    restarted = _engine("dairy_case")
    restarted.seed_learned(reversed(episodes))  # any order
    assert restarted.learned["a1"].windows == first.learned["a1"].windows
    assert restarted.new_episodes == []  # seeds are not new
    wednesday = _case_day(7.5, hold=20)
    assert _feed(restarted, MONDAY + timedelta(days=2), 1440, wednesday) == []


def test_a_learned_defrost_does_not_hide_a_failure() -> None:
    history = (_case_day(5.0), _case_day(5.0))
    # Wednesday 14:00 the defrost heater sticks on: 9 °C and staying there.
    stuck_on = _case_day(9.0, hold=200)
    overrun = _engine("dairy_case")
    events = _days(overrun, MONDAY, *history, stuck_on)
    [(minute, first), *_] = events
    assert first.condition.kind == DEFROST_OVERRUN  # when the learned recovery ends
    assert 2 * 1440 + 14 * 60 + 30 <= minute <= 2 * 1440 + 15 * 60
    assert first.condition.explanation["learned_defrost"].startswith("learned defrost 13:")
    # A reading past the hard limit inside the learned window is critical at once.
    hot = _case_day(14.0, hold=10)
    hard = _engine("dairy_case")
    [(_, fired), *_] = _days(hard, MONDAY, *history, hot)
    why = fired.condition.explanation
    assert (fired.condition.stage, why["defrost"]) == ("critical", "defrost")
    assert "hard ceiling 13" in why["budget"]  # the defrost ceiling 10 + 3 K, no more
    assert why["learned_defrost"].startswith("learned defrost")


def test_rises_that_became_alerts_or_do_not_look_like_defrosts_are_not_learned() -> None:
    # Monday and Tuesday the 14:00 rise is bad enough to warn: never learned from.
    warned = _engine("dairy_case")
    events = _days(warned, MONDAY, _case_day(9.0, hold=20), _case_day(9.0, hold=20))
    assert [t.action for _, t in events].count("fire") == 2
    assert warned.learned["a1"].windows == []
    # Too short (a door), too long, or not the same time of day: nothing learned.
    for days in (
        [_case_day(5.5, hold=5, ramp=5)] * 3,  # out of the band ~12 min: a door, say
        [_case_day(5.0, hold=40)] * 3,  # out of the band for ~65 min
        [_case_day(5.0, at=9 * 60), _case_day(5.0, at=13 * 60), _case_day(5.0, at=17 * 60)],
    ):
        engine = _engine("dairy_case")
        _days(engine, MONDAY, *days)
        assert engine.learned["a1"].windows == [], days


# -- caught by the noisy acceptance background (duplicates and late copies) -------------


def test_a_redelivered_spike_does_not_confirm_itself() -> None:
    """Was: a QoS 1 duplicate of a held spike (same reading, same time) "agreed" with it,
    confirmed it as a real step and fired critical on an EMI spike (sensor-faults)."""
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    _feed(engine, start, 5, 3.0)
    spike = _ms(start + timedelta(minutes=5))
    for _ in range(2):  # the device's PUBACK was lost: the broker has it twice
        assert engine.observe(
            "reading", spike, sensor="dev1", quantity=Quantity.TEMPERATURE, value=18.0
        ) == []  # fmt: skip
    assert _feed(engine, start + timedelta(minutes=6), 30, 3.0) == []


def test_duplicate_and_late_faults_count_once() -> None:
    """Was: every redelivered 85.0 counted as a new fault, so one probe that had recovered
    fired sensor_fault eight times in a morning (sensor-faults)."""
    engine = _engine()
    start = datetime(2026, 11, 17, 10, 0, tzinfo=GT)
    _feed(engine, start, 3, 3.0)
    fault = _ms(start + timedelta(minutes=3))
    events = []
    for at in (fault, fault, fault - 60_000, fault):  # twice, a late copy, again
        events += engine.observe(
            "fault", at, sensor="dev1", quantity=Quantity.TEMPERATURE, code="power_on_reset"
        )
    assert events == []  # one fault seen, not four: FAULTS_TO_ALERT is 3


def test_a_late_door_reading_neither_reopens_nor_closes_the_door() -> None:
    """Was: a copy of a "closed" sample from minutes before, arriving late, reset an open
    door's timer (the page came 4 min late); a late "open" one started a timer on a closed
    door (door-left-open, normal-day)."""
    engine = _engine()
    start = datetime(2026, 11, 17, 21, 0, tzinfo=GT)
    fired = []
    for minute in range(20):
        at = start + timedelta(minutes=minute)
        fired += engine.observe("reading", _ms(at), sensor="dev1", quantity=Quantity.DOOR,
                                value=1.0 if minute >= 5 else 0.0)  # fmt: skip
        late = at - timedelta(minutes=4)  # the copy of an older sample
        fired += engine.observe("reading", _ms(late), sensor="dev1", quantity=Quantity.DOOR,
                                value=1.0 if minute - 4 >= 5 else 0.0)  # fmt: skip
        fired += engine.tick(_ms(at + timedelta(seconds=30)))
    opened = [t for t in fired if t.condition.kind == DOOR_OPEN]
    # Open since 21:05, closed store (x1.5): the 5 min warning at 21:08:20, seen by the
    # 21:08:30 tick (third consecutive open sample at 21:07).
    assert opened[0].at_ms == _ms(start + timedelta(minutes=8, seconds=30))
