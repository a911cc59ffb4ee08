"""The parameter table against the figures of domain.md §C (and §B for targets)."""

from __future__ import annotations

import pytest

from core.chain import AssetType
from simulator.units import PARAMS

OPEN_MT = (AssetType.DAIRY_CASE, AssetType.MEAT_CASE, AssetType.PRODUCE_CASE)
OPEN_LT = (AssetType.FROZEN_CASE, AssetType.ICE_CREAM_CASE)


def test_every_asset_type_has_parameters() -> None:
    assert set(PARAMS) == set(AssetType)


@pytest.mark.parametrize(
    ("kind", "low", "high"),
    [
        (AssetType.DAIRY_CASE, 0.0, 4.0),  # §C.1 entering air ~0 °C, §B.6 target 1-4
        (AssetType.MEAT_CASE, -2.0, 2.0),  # §C.1 -2 °C, §B.6 -2..+2
        (AssetType.PRODUCE_CASE, 2.0, 7.0),  # §C.1 2-7 °C
        (AssetType.FROZEN_CASE, -23.0, -18.0),  # §B.6 air -20..-23, §C.1 -18
        (AssetType.ICE_CREAM_CASE, -23.0, -20.0),  # §C.1 -21 °C
        (AssetType.WALKIN_COOLER, 2.0, 3.0),  # §C.1 set 2-3 °C
        (AssetType.WALKIN_FREEZER, -23.5, -20.5),  # §C.1 -23 °C design, -10..-5 °F set
        (AssetType.PHARMACY_FRIDGE, 4.0, 6.0),  # §B.5 2-8 °C, centred
    ],
)
def test_setpoints_follow_c1(kind: AssetType, low: float, high: float) -> None:
    assert low <= PARAMS[kind].setpoint_c <= high


def test_differentials_follow_c2() -> None:
    for kind in (AssetType.WALKIN_COOLER, AssetType.WALKIN_FREEZER):
        assert 2.0 <= PARAMS[kind].differential_k <= 3.0  # walk-in 2-3 K
    for kind in (*OPEN_MT, *OPEN_LT, AssetType.PHARMACY_FRIDGE):
        assert 1.0 <= PARAMS[kind].differential_k <= 2.0  # cases 1-2 K
    pharmacy = PARAMS[AssetType.PHARMACY_FRIDGE]
    assert pharmacy.cut_out_c > 2.0
    assert pharmacy.cut_in_c < 8.0


def test_defrost_schedules_follow_c3() -> None:
    for kind in OPEN_MT:
        p = PARAMS[kind]
        assert 1 <= p.defrosts_per_day <= 4
        assert 20 <= p.defrost_duration_min <= 45
        assert p.defrost_heat_k_per_min == 0.0  # off-cycle
    for kind in OPEN_LT:
        p = PARAMS[kind]
        assert 1 <= p.defrosts_per_day <= 4
        assert 15 <= p.defrost_duration_min <= 45
        assert p.defrost_heat_k_per_min > 0.0  # electric
        assert -5.0 <= p.defrost_termination_c <= 0.0  # air toward -5..0 °C
    assert PARAMS[AssetType.ICE_CREAM_CASE].defrosts_per_day == 1
    freezer = PARAMS[AssetType.WALKIN_FREEZER]
    assert freezer.defrosts_per_day == 4
    assert freezer.defrost_duration_min == 40
    assert 2 <= PARAMS[AssetType.WALKIN_COOLER].defrosts_per_day <= 4


@pytest.mark.parametrize(
    ("kinds", "air_min", "product_h"),
    [
        # §C.6 rows: air tau with refrigeration off (min), product tau (h).
        (OPEN_MT, (5, 15), (1, 3)),
        (OPEN_LT, (20, 60), (5, 15)),
        ((AssetType.PHARMACY_FRIDGE,), (30, 60), (2, 5)),  # closed-door MT case
        # Walk-ins: the product column holds; the air column does not (units.py explains
        # why), so the air tau is bounded by §C.2's cycle instead: well under an hour.
        ((AssetType.WALKIN_COOLER,), (15, 60), (10, 40)),
        ((AssetType.WALKIN_FREEZER,), (30, 90), (50, 150)),
    ],
)
def test_time_constants_follow_c6(
    kinds: tuple[AssetType, ...], air_min: tuple[float, float], product_h: tuple[float, float]
) -> None:
    for kind in kinds:
        p = PARAMS[kind]
        assert air_min[0] <= p.air_tau_off_min <= air_min[1], kind
        assert product_h[0] <= p.tau_product_min / 60 <= product_h[1], kind


def test_air_jump_after_a_failure_exceeds_half_the_band() -> None:
    # The thermostat can only cut in if the air, left alone, rises past cut-in: the jump
    # above the product must exceed half the differential, with margin, at a cool 18 °C.
    for kind, p in PARAMS.items():
        assert p.air_jump_k(18.0) > p.differential_k / 2 + 1.0, kind


def test_walkin_cooler_product_lumped_tau_is_near_the_usda_anchor() -> None:
    # §C.6: a closed fridge without power, 3 -> 5 °C in 4 h at 25 °C: lumped tau ~40 h.
    assert 25 <= PARAMS[AssetType.WALKIN_COOLER].product_tau_to_ambient_h() <= 80


def test_open_cases_have_curtains_and_no_doors() -> None:
    for _kind, p in PARAMS.items():
        if p.open_case:
            assert p.door_leak_factor == 1.0
            assert p.door_rate_per_h == 0.0
            assert 0.25 <= p.night_curtain_factor < 1.0  # §C.5 cuts 50-75 % of 83 %
        else:
            assert p.door_leak_factor > 1.0
            assert p.door_rate_per_h > 0.0
            assert p.night_curtain_factor == 1.0
