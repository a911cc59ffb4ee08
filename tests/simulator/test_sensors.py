"""The probe layer: DS18B20 quantisation, noise, and the sensor faults of domain.md §C.8."""

from __future__ import annotations

import numpy as np
import pytest

from core.types import FaultCode
from simulator.sensors import (
    DS18B20_STEP_C,
    FAULT_CODES,
    NO_FAULT,
    SensorBank,
    battery_curve,
    code_of,
    fault_code,
)

DAY = 86_400.0


def bank(n: int, seed: int = 1, **kwargs: float) -> SensorBank:
    return SensorBank(n, np.random.default_rng(seed), **kwargs)


def test_values_sit_on_the_12_bit_grid() -> None:
    b = bank(1000)
    values, codes = b.read(np.linspace(-30, 10, 1000), 0.0)
    steps = values / DS18B20_STEP_C
    np.testing.assert_array_equal(steps, np.round(steps))
    assert np.all(codes == NO_FAULT)


def test_noise_statistics_match_sigma_plus_quantisation() -> None:
    b = bank(200_000, noise_c=0.08)
    values, _ = b.read(np.full(200_000, 3.3), 0.0)
    # Rounding to 0.0625 K adds a uniform error of variance step²/12.
    want = np.sqrt(0.08**2 + DS18B20_STEP_C**2 / 12)
    assert values.mean() == pytest.approx(3.3, abs=0.002)
    assert values.std() == pytest.approx(want, rel=0.02)
    quiet = bank(1000, noise_c=0.0)
    v, _ = quiet.read(np.full(1000, 3.3), 0.0)
    assert np.all(v == 3.3125)  # nearest step


def test_range_is_clipped_to_the_datasheet() -> None:
    values, _ = bank(2, noise_c=0.0).read(np.array([-80.0, 200.0]), 0.0)
    np.testing.assert_array_equal(values, [-55.0, 125.0])


def test_stuck_probe_repeats_its_last_value_while_the_truth_moves() -> None:
    b = bank(2)
    first, _ = b.read(np.array([2.0, 2.0]), 0.0)
    b.stick(0)
    for k in range(1, 7):  # six identical readings in an hour: §C.8's example rule
        values, codes = b.read(np.array([2.0 + k, 2.0 + k]), k * 600.0)
        assert values[0] == first[0]
        assert values[1] == pytest.approx(2.0 + k, abs=0.5)
        assert codes[0] == NO_FAULT
    b.clear(0)
    values, _ = b.read(np.array([10.0, 10.0]), 7 * 600.0)
    assert values[0] == pytest.approx(10.0, abs=0.5)


def test_85_once_then_normal_and_by_probability() -> None:
    b = bank(3)
    b.fault_85(1)
    values, codes = b.read(np.full(3, 4.0), 0.0)
    assert values[1] == 85.0
    assert fault_code(int(codes[1])) is FaultCode.POWER_ON_RESET
    assert codes[0] == codes[2] == NO_FAULT
    values, codes = b.read(np.full(3, 4.0), 60.0)
    assert values[1] == pytest.approx(4.0, abs=0.5)
    assert codes[1] == NO_FAULT

    many = bank(20_000)
    many.fault_85(np.arange(10_000), probability=0.1)
    values, codes = many.read(np.full(20_000, -20.0), 0.0)
    hit = codes == code_of(FaultCode.POWER_ON_RESET)
    assert hit[:10_000].mean() == pytest.approx(0.1, abs=0.01)
    assert not hit[10_000:].any()
    np.testing.assert_array_equal(values[hit], 85.0)


def test_a_stuck_probe_keeps_its_good_value_through_an_85_glitch() -> None:
    b = bank(1)
    good, _ = b.read(np.array([3.0]), 0.0)
    b.stick(0)
    b.fault_85(0)
    glitch, _ = b.read(np.array([5.0]), 60.0)
    after, _ = b.read(np.array([6.0]), 120.0)
    assert glitch[0] == 85.0
    assert after[0] == good[0]


def test_disconnect_reports_the_family_code_and_no_number() -> None:
    b = bank(3)
    b.disconnect(0)
    b.disconnect(1, FaultCode.NULL)
    values, codes = b.read(np.full(3, 1.0), 0.0)
    assert np.isnan(values[:2]).all()
    assert fault_code(int(codes[0])) is FaultCode.DISCONNECTED
    assert fault_code(int(codes[1])) is FaultCode.NULL
    assert fault_code(int(codes[2])) is None
    assert not np.isnan(values[2])
    with pytest.raises(ValueError, match="fault_85"):
        b.disconnect(2, FaultCode.POWER_ON_RESET)
    b.clear([0, 1])
    values, codes = b.read(np.full(3, 1.0), 60.0)
    assert np.all(codes == NO_FAULT)
    assert not np.isnan(values).any()


def test_spikes_are_5_to_15_k() -> None:
    b = bank(10_000, noise_c=0.0)
    b.spikes(np.arange(5_000), probability=1.0)
    values, codes = b.read(np.full(10_000, 2.0), 0.0)
    jump = np.abs(values - 2.0)
    assert np.all((jump[:5_000] >= 5.0 - DS18B20_STEP_C) & (jump[:5_000] <= 15.0 + DS18B20_STEP_C))
    assert 0.4 < (values[:5_000] > 2.0).mean() < 0.6  # both signs
    assert np.all(jump[5_000:] < DS18B20_STEP_C)
    assert np.all(codes == NO_FAULT)  # a spike is a value; rate rules must catch it
    with pytest.raises(ValueError, match="probability"):
        b.spikes(0, 1.5)


def test_drift_accumulates_per_day() -> None:
    b = bank(2, noise_c=0.0)
    b.read(np.array([0.0, 0.0]), 0.0)
    b.drift(0, 0.5)
    values, _ = b.read(np.array([0.0, 0.0]), 4 * DAY)
    assert values[0] == pytest.approx(2.0, abs=DS18B20_STEP_C)
    assert values[1] == 0.0


def test_battery_curve_is_a_plateau_then_a_knee() -> None:
    u = np.linspace(0, 1, 1001)
    pct = battery_curve(u)
    assert pct[0] == 100.0
    assert pct[-1] == 0.0
    assert np.all(np.diff(pct) < 0)  # strictly decreasing
    assert pct[500] > 80  # half the capacity used, still on the plateau
    assert (pct[900] - pct[1000]) > 2 * (pct[0] - pct[500])  # the knee is steep


def test_freezer_cold_drains_the_battery_twice_as_fast() -> None:
    b = bank(2, life_days=100.0)
    for day in range(51):
        b.read(np.array([3.0, -22.0]), day * DAY)
    pct = b.battery_pct
    np.testing.assert_allclose(pct, battery_curve([0.5, 1.0]))
    assert pct[1] == 0.0
    b.replace_battery(1)
    assert b.battery_pct[1] == 100.0


def test_time_cannot_go_backwards() -> None:
    b = bank(1)
    b.read(np.array([1.0]), 100.0)
    with pytest.raises(ValueError, match="before"):
        b.read(np.array([1.0]), 50.0)


def test_fault_codes_round_trip() -> None:
    assert fault_code(NO_FAULT) is None
    for fault in FaultCode:
        assert fault_code(code_of(fault)) is fault
    assert len(FAULT_CODES) == len(FaultCode)


def test_same_seed_same_readings() -> None:
    def run(seed: int) -> np.ndarray:
        b = bank(500, seed=seed)
        b.spikes(np.arange(0, 500, 5), 0.2)
        b.fault_85(np.arange(0, 500, 7), 0.1)
        return np.stack([b.read(np.full(500, 1.0), k * 60.0)[0] for k in range(5)])

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))
