"""Alarm profiles: limits and excursion budgets by asset type, country, store and asset.

Resolution order, later wins field by field: asset-type default (research/domain.md §B.6)
-> country profile (cold-holding limit: US Food Code and Brazil RDC 216 5 °C, Mexico
NOM-251 7 °C) -> the store's override for that asset type -> the asset's own override.

Budgets are excursion budgets in kelvin-seconds: a budget of "30 min" means 30 minutes at
1 K beyond the limit, or 10 minutes at 3 K beyond, or 60 minutes at 0.5 K. Bigger
excursions fire sooner; a sensor hovering a tenth of a degree over the line does not page
anyone at 3 a.m. A hard ceiling (or floor) fires critical at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.chain import Asset, AssetType, Store, Thresholds

MIN = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Everything the temperature rules need for one asset (°C and seconds)."""

    warn_above: float | None
    warn_below: float | None
    critical_above: float | None
    critical_below: float | None
    hard_ceiling: float | None
    hard_floor: float | None
    warn_budget_ks: float  # kelvin-seconds beyond a warn limit before warn fires
    critical_budget_ks: float
    # Critical ceiling that still applies during a defrost (warn is suspended then).
    defrost_ceiling: float | None
    # Clearing needs the temperature this far back inside the limit, for clear_hold_s:
    # a case cycling around its limit must not fire and resolve every few minutes.
    hysteresis_k: float = 0.5
    clear_hold_s: float = 10 * MIN
    # Door open this long is an alert (warn, then critical); research §C.4.
    door_warn_s: float = 5 * MIN
    door_critical_s: float = 15 * MIN
    # A sustained rise faster than this (outside defrost) is an early warning of a failed
    # compressor or fan, before any budget is spent: §C.7 gives +1-2 K/h for a loaded
    # walk-in and +5-10 K in 30-60 min for an open case.
    rise_k_per_h: float = 3.0
    low_battery_pct: float = 20.0


def _p(
    warn_above: float | None,
    warn_min: float,
    critical_above: float | None,
    critical_min: float,
    hard_ceiling: float | None,
    defrost_ceiling: float | None,
    *,
    warn_below: float | None = None,
    critical_below: float | None = None,
    hard_floor: float | None = None,
    rise_k_per_h: float = 3.0,
) -> Limits:
    return Limits(
        warn_above=warn_above,
        warn_below=warn_below,
        critical_above=critical_above,
        critical_below=critical_below,
        hard_ceiling=hard_ceiling,
        hard_floor=hard_floor,
        warn_budget_ks=warn_min * MIN,
        critical_budget_ks=critical_min * MIN,
        defrost_ceiling=defrost_ceiling,
        rise_k_per_h=rise_k_per_h,
    )


# research/domain.md §B.6, with durations read as budgets at 1 K beyond the limit.
DEFAULTS: dict[AssetType, Limits] = {
    AssetType.DAIRY_CASE: _p(5.0, 30, 8.0, 30, 12.0, 10.0, warn_below=-1.0),
    AssetType.MEAT_CASE: _p(4.0, 30, 5.0, 120, 10.0, 10.0, warn_below=-3.0),
    AssetType.PRODUCE_CASE: _p(8.0, 60, 10.0, 120, 15.0, 14.0, warn_below=0.0),
    # LT case air normally peaks at -5..0 °C in a defrost (§C.3): the defrost ceiling is 0.
    AssetType.FROZEN_CASE: _p(-15.0, 30, -12.0, 60, -9.0, 0.0),
    AssetType.ICE_CREAM_CASE: _p(-18.0, 30, -12.0, 30, -9.0, 0.0),
    AssetType.WALKIN_COOLER: _p(5.0, 30, 7.0, 30, 10.0, 10.0, warn_below=0.0, rise_k_per_h=1.0),
    AssetType.WALKIN_FREEZER: _p(-15.0, 30, -10.0, 60, -5.0, -5.0, rise_k_per_h=0.75),
    # WHO 2-8 °C: out of range 15 min warns; >8 °C for 60 min or any reading at or below
    # 0 °C (freeze damage to vaccines) is critical.
    AssetType.PHARMACY_FRIDGE: _p(
        8.0, 15, 8.0, 60, 12.0, 12.0, warn_below=2.0, critical_below=None, hard_floor=0.0
    ),
}

# Cold-holding limit by country for medium-temperature food assets (§B.1, §B.4).
_CHILLED_FOOD = (AssetType.DAIRY_CASE, AssetType.WALKIN_COOLER)
COUNTRY_COLD_HOLDING: dict[str, float] = {"MX": 7.0, "US": 5.0, "BR": 5.0}


def limits_for(asset: Asset, store: Store) -> Limits:
    """The effective limits of ``asset`` in ``store``."""
    limits = DEFAULTS[asset.type]
    cold = COUNTRY_COLD_HOLDING.get(store.country)
    if cold is not None and asset.type in _CHILLED_FOOD and cold != limits.warn_above:
        # Keep the critical limit above the warn limit by the default margin.
        margin = (limits.critical_above or cold) - (limits.warn_above or cold)
        limits = replace(limits, warn_above=cold, critical_above=cold + max(margin, 1.0))
    store_override = store.thresholds.get(asset.type)
    if store_override is not None:
        limits = apply_override(limits, store_override)
    if asset.thresholds is not None:
        limits = apply_override(limits, asset.thresholds)
    return limits


def apply_override(limits: Limits, override: Thresholds) -> Limits:
    """Limits with every field the override sets replaced."""
    changes: dict[str, float] = {}
    for name in (
        "warn_above",
        "warn_below",
        "critical_above",
        "critical_below",
        "hard_ceiling",
        "hard_floor",
    ):
        value = getattr(override, name)
        if value is not None:
            changes[name] = value
    if override.warn_budget is not None:
        changes["warn_budget_ks"] = override.warn_budget
    if override.critical_budget is not None:
        changes["critical_budget_ks"] = override.critical_budget
    return replace(limits, **changes)
