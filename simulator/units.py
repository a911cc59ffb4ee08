"""Thermal parameters of each refrigerated asset type, for :mod:`simulator.physics`.

Every number is based on ``research/domain.md`` §C, cited beside it; where §C gives a
range the value is inside it unless a comment says why not. The model is the two-node one
of §C.9 (an air node and a product node)::

    dTa/dt = g_leak·(Tamb - Ta) + g_ap·(Tp - Ta) - on·cooling + heater·defrost_heat
    dTp/dt = g_p·(Ta - Tp)          with g = 1/tau

§C.6 tabulates, per asset, figures that are *derived* from these parameters; the
calibration tests (``tests/simulator/test_units.py``) check them:

- the air time constant with refrigeration off, ``1/(g_leak + g_ap)``
  (:attr:`UnitParams.air_tau_off_min`);
- how far the air jumps above the product within minutes of losing cooling,
  ``g_leak/(g_leak + g_ap)·(Tamb - Tp)`` (:meth:`UnitParams.air_jump_k`); the thermostat
  only works if this exceeds half the differential;
- the product time constant toward the air, ``tau_product_min``, and toward ambient with
  refrigeration off (:meth:`UnitParams.product_tau_to_ambient_h`, the USDA-style figure).

**The one compromise.** A single air node cannot both cycle every 10-25 min inside a
2.5 K differential (§C.2) and take 1-3 h to warm after a compressor failure (§C.6): the
off-cycle rise *is* the air warming with refrigeration off. We keep §C.2's cycling and the
failure timings that alerting depends on (§C.7; a walk-in cooler reaching 8 °C some hours
after an overnight failure), so walk-in air time constants are ~25 min (cooler) and ~50 min
(freezer) instead of §C.6's 1-3 h and 3-8 h. After a failure the air therefore rises
~3-5 K within the first hour and then creeps with the product (0.3-0.5 K/h for a walk-in
cooler) instead of rising at a steady 1-2 K/h. A third (coil) node would remove the
compromise if it is ever needed.

**Tuning** (what goes wrong when a parameter is off):

- ``cooling_k_per_min`` sets the duty cycle (load / cooling). Too low: duty near 100 %,
  defrost recovery over an hour, no margin for a hot afternoon. Too high: duty under 20 %,
  the air overshoots the cut-out between sub-steps, a leak takes forever to show.
- ``tau_leak_min`` and ``tau_air_product_min`` set the off-cycle rise and the jump after a
  failure. Leak too short (or coupling too long): the air runs to ambient within minutes
  of a failure. Leak too long: the jump is below half the differential and the compressor
  never cuts in again (tests guard this).
- ``tau_product_min``: too short and the product follows every defrost and door opening;
  too long and a failed unit's product never reaches an alarm within a night.
- ``door_leak_factor``: too high and every opening is a defrost-sized bump; too low and a
  door left ajar is invisible (§C.4 wants 3-6 K in 10-20 min).
- ``drip_min``: too short and recovery after defrost is faster than §C.3's 15-45 min; too
  long and the air keeps rising after termination.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.chain import AssetType


@dataclass(frozen=True, slots=True)
class UnitParams:
    """The thermal behaviour of one asset type (all temperatures °C, differences K).

    Attributes:
        setpoint_c: thermostat setpoint of the air probe; the compressor cuts in at
            ``setpoint + differential/2`` and out at ``setpoint - differential/2``.
        differential_k: thermostat hysteresis band (the air sawtooth's height).
        cooling_k_per_min: how fast the running compressor cools the air node, before
            the leak and the product push back.
        tau_leak_min: air-to-ambient time constant with the door shut and no curtain.
        door_leak_factor: leak conductance multiplier while the door is open (1 = no door).
        tau_product_min: product-to-air time constant.
        tau_air_product_min: air-to-product time constant (the air is light, so it is
            short: the product holds the air near itself).
        defrosts_per_day: default number of scheduled defrosts, evenly spaced.
        defrost_duration_min: longest a defrost lasts (the timer's fail-safe).
        defrost_heat_k_per_min: electric heater's effect on the air node (0 = off-cycle
            defrost: the compressor just stops).
        defrost_termination_c: air temperature that ends a defrost early; it is also the
            heater's limiter, so a stuck defrost hovers near it.
        drip_min: compressor hold-off after a defrost (drain time and fan delay).
        door_rate_per_h: mean door openings per hour while the store is open.
        night_curtain_factor: leak conductance multiplier with the night curtain drawn
            (open cases; 1 = no curtain).
        open_case: an open display case (no door; curtain at night).
    """

    setpoint_c: float
    differential_k: float
    cooling_k_per_min: float
    tau_leak_min: float
    door_leak_factor: float
    tau_product_min: float
    tau_air_product_min: float
    defrosts_per_day: int
    defrost_duration_min: float
    defrost_heat_k_per_min: float
    defrost_termination_c: float
    drip_min: float
    door_rate_per_h: float
    night_curtain_factor: float
    open_case: bool

    @property
    def cut_in_c(self) -> float:
        """Air temperature at which the compressor starts."""
        return self.setpoint_c + self.differential_k / 2

    @property
    def cut_out_c(self) -> float:
        """Air temperature at which the compressor stops."""
        return self.setpoint_c - self.differential_k / 2

    @property
    def air_tau_off_min(self) -> float:
        """Time constant of the air's first rise when cooling stops (door shut)."""
        return 1.0 / (1.0 / self.tau_leak_min + 1.0 / self.tau_air_product_min)

    def air_jump_k(self, ambient_c: float) -> float:
        """How far above the product the air settles, minutes after cooling stops."""
        weight = self.tau_air_product_min / (self.tau_air_product_min + self.tau_leak_min)
        return weight * (ambient_c - self.setpoint_c)

    def product_tau_to_ambient_h(self) -> float:
        """Lumped product time constant toward ambient with refrigeration off (USDA-style fit).

        Once the air has jumped, the product warms at ``jump/tau_prod``; as a first-order
        curve toward ambient that is ``tau_prod·(tau_leak + tau_ap)/tau_ap``.
        """
        ratio = (self.tau_leak_min + self.tau_air_product_min) / self.tau_air_product_min
        return self.tau_product_min * ratio / 60.0


# Open medium-temperature multideck cases (§C.6 row "Open MT multideck"): infiltration
# dominated air tau 5-15 min, product tau 1-3 h, +5-10 K in the first 30-60 min of a failure,
# past 5 °C within 20-40 min (§C.7). Band 1-2 K on a rack solenoid (§C.2). Off-cycle
# defrost, 1-4 per day of 20-45 min (§C.3). Night curtain: infiltration is ≈83 % of the
# load (§C.1) and a curtain cuts it by 50-75 % (§C.5), so the leak conductance falls to
# about 1 - 0.83·0.6 ≈ 0.5 of its day value.
_OPEN_MT_CURTAIN = 0.5

PARAMS: dict[AssetType, UnitParams] = {
    AssetType.DAIRY_CASE: UnitParams(
        setpoint_c=1.0,  # Hussmann open dairy entering air ~0 °C; target 1-4 °C (§C.1, §B.6)
        differential_k=1.5,  # case solenoid band 1-2 K (§C.2)
        cooling_k_per_min=0.75,  # duty ~0.7 open / ~0.35 curtained at 24 °C (§C.2)
        tau_leak_min=45.0,  # with tau_ap: air tau off 11 min (§C.6 5-15 min)
        door_leak_factor=1.0,  # open case: no door
        tau_product_min=120.0,  # §C.6 open MT product tau 1-3 h
        tau_air_product_min=14.0,  # jump ~5.5 K: +5-10 K in 30-60 min (§C.6)
        defrosts_per_day=3,  # §C.3 MT cases 1-4/day
        defrost_duration_min=30.0,  # §C.3 20-45 min
        defrost_heat_k_per_min=0.0,  # off-cycle (§C.3)
        defrost_termination_c=8.0,  # ends an off-cycle defrost once the air is +7 K
        drip_min=8.0,  # drip + fan delay: recovery 15-25 min (§C.3 15-45)
        door_rate_per_h=0.0,
        night_curtain_factor=_OPEN_MT_CURTAIN,
        open_case=True,
    ),
    AssetType.MEAT_CASE: UnitParams(
        setpoint_c=-1.0,  # Hussmann open meat entering air -2 °C; target -2..+2 (§C.1)
        differential_k=1.5,
        cooling_k_per_min=0.75,
        tau_leak_min=45.0,
        door_leak_factor=1.0,
        tau_product_min=120.0,
        tau_air_product_min=14.0,
        defrosts_per_day=4,  # meat cases sit at the top of §C.3's 1-4/day
        defrost_duration_min=30.0,
        defrost_heat_k_per_min=0.0,
        defrost_termination_c=6.0,
        drip_min=8.0,
        door_rate_per_h=0.0,
        night_curtain_factor=_OPEN_MT_CURTAIN,
        open_case=True,
    ),
    AssetType.PRODUCE_CASE: UnitParams(
        setpoint_c=3.0,  # processed produce 2 °C, unprocessed 7 °C; target 2-7 (§C.1)
        differential_k=2.0,
        cooling_k_per_min=0.75,
        tau_leak_min=45.0,
        door_leak_factor=1.0,
        tau_product_min=150.0,
        tau_air_product_min=14.0,
        defrosts_per_day=2,
        defrost_duration_min=30.0,
        defrost_heat_k_per_min=0.0,
        defrost_termination_c=10.0,
        drip_min=8.0,
        door_rate_per_h=0.0,
        night_curtain_factor=_OPEN_MT_CURTAIN,
        open_case=True,
    ),
    # Open LT coffins (§C.6 row "Open LT/frozen coffin"): air tau 20-60 min, product tau 5-15 h,
    # +3-6 K/h. Electric defrost 1-4/day, 15-40 min, air rising toward -5..0 °C (§C.3).
    AssetType.FROZEN_CASE: UnitParams(
        setpoint_c=-21.0,  # air -20 to -23 °C (§B.6); entering air -18 °C (§C.1)
        differential_k=2.0,
        cooling_k_per_min=0.35,  # duty ~0.43 open / ~0.27 covered at 24 °C
        tau_leak_min=300.0,  # air tau off 27 min (§C.6 20-60), +3 K in 1 h
        door_leak_factor=1.0,
        tau_product_min=300.0,  # §C.6 5-15 h: lower end so defrost moves product 2-4 K
        tau_air_product_min=30.0,
        defrosts_per_day=2,  # §C.3 LT 1-4/day
        defrost_duration_min=40.0,  # §C.3 15-40 min
        defrost_heat_k_per_min=0.7,  # electric: ~18 K in 35-40 min (§C.3)
        defrost_termination_c=-2.0,  # §C.3 LT air rises to about -5…0 °C
        drip_min=5.0,
        door_rate_per_h=0.0,
        night_curtain_factor=0.6,  # island night covers/lids (§C.5, smaller gain than MT)
        open_case=True,
    ),
    AssetType.ICE_CREAM_CASE: UnitParams(
        setpoint_c=-21.0,  # Hussmann ice cream entering air -21 °C (§C.1)
        differential_k=2.0,
        cooling_k_per_min=0.35,
        tau_leak_min=300.0,
        door_leak_factor=1.0,
        tau_product_min=300.0,
        tau_air_product_min=30.0,
        defrosts_per_day=1,  # §C.3 ice cream often 1/day, 30-45 min
        defrost_duration_min=45.0,
        defrost_heat_k_per_min=0.6,
        defrost_termination_c=-4.0,
        drip_min=5.0,
        door_rate_per_h=0.0,
        night_curtain_factor=0.6,
        open_case=True,
    ),
    # Walk-in cooler (§C.1 set 2-3 °C; §C.2 differential 2-3 K, cycle 10-25 min; §C.3
    # off-cycle defrost 2-4/day; §C.4 door traffic "dozens per hour" when busy).
    AssetType.WALKIN_COOLER: UnitParams(
        setpoint_c=2.5,
        differential_k=2.5,
        cooling_k_per_min=0.5,  # duty ~0.57 open / ~0.36 closed at 24 °C
        tau_leak_min=120.0,  # air tau off 24 min: cycles every ~22 min (§C.2)
        door_leak_factor=12.0,  # a 30-60 s opening adds 1-2 K (§C.4)
        tau_product_min=600.0,  # §C.6 10-40 h (lower end; see the module docstring)
        tau_air_product_min=30.0,  # jump ~4.5 K at 25 °C, 8 °C in 2-9 h (§C.7)
        defrosts_per_day=3,  # §C.3 coolers 2-4/day, off-cycle
        defrost_duration_min=30.0,
        defrost_heat_k_per_min=0.0,
        defrost_termination_c=9.0,  # not reached off-cycle; the timer ends it
        drip_min=10.0,  # recovery 15-25 min (§C.3)
        door_rate_per_h=10.0,  # store-hours mean; busy peaks are higher (§C.4)
        night_curtain_factor=1.0,
        open_case=False,
    ),
    # Walk-in freezer (§C.1 design -23 °C; §C.3 4 defrosts/day of up to 40 min, electric,
    # early termination; §C.2 long on-times, duty 50-80 % in hot weather).
    AssetType.WALKIN_FREEZER: UnitParams(
        setpoint_c=-23.0,
        differential_k=2.5,
        cooling_k_per_min=0.3,  # duty ~0.6 open / ~0.45 closed (§C.2 50-80 % hot)
        tau_leak_min=360.0,  # air tau off 51 min (compromise; §C.6 says 3-8 h)
        door_leak_factor=12.0,
        tau_product_min=3000.0,  # §C.6 50-150 h
        tau_air_product_min=60.0,
        defrosts_per_day=4,
        defrost_duration_min=40.0,
        defrost_heat_k_per_min=0.4,  # electric (§C.3)
        defrost_termination_c=-12.0,  # ends ~25 min in; recovery ~40 min
        drip_min=5.0,
        door_rate_per_h=5.0,
        night_curtain_factor=1.0,
        open_case=False,
    ),
    # Pharmacy fridge: a closed-door reach-in (§C.6 row "Closed-door MT case": air tau
    # 30-60 min, product tau 2-5 h, +2-4 K/h), kept at 2-8 °C (§B.5) with setpoint 5 °C and
    # a ~2 K band so the sawtooth stays inside the range.
    AssetType.PHARMACY_FRIDGE: UnitParams(
        setpoint_c=5.0,
        differential_k=2.0,
        cooling_k_per_min=0.3,  # duty ~0.5 open / ~0.4 closed at 24 °C
        tau_leak_min=160.0,  # air tau off 32 min, +3-4 K in 1 h (§C.6)
        door_leak_factor=10.0,  # a reach-in door is most of its front
        tau_product_min=180.0,  # §C.6 closed-door MT 2-5 h
        tau_air_product_min=40.0,
        defrosts_per_day=2,  # [E] auto-cycle reach-in; §C.3 gives 1-4/day for MT cases
        defrost_duration_min=20.0,
        defrost_heat_k_per_min=0.0,
        defrost_termination_c=7.0,  # keep the off-cycle peak inside 2-8 °C
        drip_min=4.0,
        door_rate_per_h=4.0,
        night_curtain_factor=1.0,
        open_case=False,
    ),
}
