"""Rule evaluation: observations and time in, condition transitions out. No I/O.

A :class:`RuleEngine` holds per-sensor state (excursion accumulators, door timers, fault
windows) and is driven by two calls, both taking the instant as an argument:

- :meth:`RuleEngine.observe` for every stored reading, fault or availability change;
- :meth:`RuleEngine.tick` periodically, for what happens by the passing of time alone
  (a sensor goes silent, a door stays open, a device stays offline, a store goes dark).
  The silence check is vectorised over all sensors (numpy).

Both return :class:`Transition` objects (fire, upgrade, clear) of :class:`Condition`
objects; the alert book turns them into persisted alerts. Conditions are per problem, not
per reading: ``temperature:<asset>`` climbs from *rising* to *warning* to *critical* as
one problem, so a manager gets one message about the walk-in, not three.

Temperature rules (DESIGN.md §4, docs/design/alerting.md):
- an excursion spends a budget in kelvin-seconds beyond the limit, multiplied by the
  store's criticality weight at that moment; the budget spent fires the severity; a hard
  ceiling or floor fires critical at once;
- inside limits (with hysteresis) the accumulators drain at 1 K, so time back in range is
  forgiven at the rate it was spent; clearing also needs ``clear_hold_s`` back in range;
- during a scheduled defrost and its recovery, warn does not accumulate and the critical
  limit is raised to the defrost ceiling (research §B.6: MT 10 °C, LT -5 °C); the hard
  limit rises to the defrost ceiling + 3 K only; a unit still above its warn limit when
  the recovery ends raises ``defrost_overrun``;
- an asset without a declared schedule gets the same treatment in *learned* windows: rises
  of 3 K or more lasting 20-45 min that began at the same time of day on two earlier days
  and never became an alert (the alert's explanation names the learned window);
- a probe whose readings stay within 0.01 K for 90 min is stuck: ``sensor_fault`` with
  code ``stuck`` (a working probe in a cycling unit never is);
- a sustained rise faster than the profile's rate, near the limit and outside defrost, is
  an early *rising* stage of the same temperature problem.

Pipeline watchdog (DESIGN.md §5, docs/design/alerting.md "Pipeline stalls"): when many
stores fall silent together the problem is central (broker, ingester, the server's
network), not theirs. ``pipeline_stalled`` is one chain-wide condition, on the reserved
store :data:`CHAIN_STORE`, that fires when at least :data:`STALL_MIN_STORES` stores and
:data:`STALL_SHARE` of the stores reporting in the hour before went quiet within
:data:`STALL_SPREAD_S` of each other (or when the ingester reports its MQTT connection
down for :data:`INGEST_DOWN_GRACE_S`). The store-level silence alerts it explains are held
by ``alerting/stages/inhibit.py``; when most of its stores report again it clears, and the
silence rules of the stores still silent are re-armed from that moment, so they page after
their normal grace, not for the stall.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from alerting.profiles import Limits, limits_for
from alerting.weights import WeightCalendar
from core.chain import Asset, Defrost, Sensor, Store, parse_hours_value
from core.types import Quantity, split_sensor_id

# Problem kinds (stable strings: stored, shown and used in templates).
TEMPERATURE = "temperature"  # stages: rising < warning < critical (high or low)
DEFROST_OVERRUN = "defrost_overrun"
DOOR_OPEN = "door_open"
SENSOR_SILENT = "sensor_silent"
DEVICE_OFFLINE = "device_offline"
STORE_OUTAGE = "store_outage"
LOW_BATTERY = "low_battery"
SENSOR_FAULT = "sensor_fault"
PIPELINE_STALLED = "pipeline_stalled"  # chain-wide: readings stopped from many stores
# The kinds a pipeline stall explains (and holds): they are what a central stall looks
# like from each store.
SILENCE_KINDS = frozenset({SENSOR_SILENT, DEVICE_OFFLINE, STORE_OUTAGE})

# The reserved store id of chain-wide alerts (``alerts.store`` is NOT NULL, and messages,
# recipients and policies are per store). It can never be a real store: chain ids start
# with a letter or digit. Its alerts page roles regardless of their contacts' store scope,
# speak the chain's most common store language, and are invisible to store-scoped API keys.
CHAIN_STORE = "*"

WARNING, CRITICAL = "warning", "critical"
LEVELS = {"rising": 1, WARNING: 2, CRITICAL: 3}

# A sensor is silent after this many reporting intervals without a message (research §0:
# 2.5-3x for sleepy devices); fewer pages on a single lost LoRa uplink, more delay.
SILENT_INTERVALS = 3.0
# Integrate an excursion across at most this many intervals between two readings: a gap
# is the silence rule's business, not a reason to assume the worst (or the best).
MAX_GAP_INTERVALS = 3.0
# Rate of rise is measured over windows of this length: shorter reacts to door openings,
# longer reacts late to a failed compressor.
RISE_WINDOW_S = 30 * 60
# Time constant of the moving average the rise is measured on: longer than a compressor
# cycle (10-25 min, §C.2) so cycling cancels out; much longer and a failure shows late.
RISE_SMOOTHING_S = 30 * 60
# A rise counts once the smoothed temperature is within this of the warn limit. Too small
# and the early warning comes when the budget is nearly spent anyway; too large and every
# pull-down after a door opening looks like a failure.
RISE_MARGIN_K = 2.0
# Faults (85.0, -127, NaN, null ...) this many times within the window raise sensor_fault;
# one power-on 85.0 after a brown-out is not worth a page.
FAULTS_TO_ALERT = 3
FAULT_WINDOW_S = 30 * 60
# LWT offline this long before device_offline fires (a Wi-Fi blip reconnects in seconds).
OFFLINE_GRACE_S = 5 * 60
# Store outage: at least this many devices, and this share of the store's devices, down.
OUTAGE_MIN_DEVICES = 2
OUTAGE_SHARE = 0.5
# Store outage must last this long before it fires: an access point rebooting takes every
# Wi-Fi device offline for a minute or two. Too short pages on blips; too long delays the
# one message that matters during a real power cut.
OUTAGE_GRACE_S = 2 * 60
# Pipeline watchdog. A store is quiet when none of its sensors has reported for this many
# times its shortest reporting interval. It must stay under the silence rule's
# SILENT_INTERVALS (3): a stall has to be recognised before the stores' own sensor-silent
# alerts fire and page (1.5x leaves half an interval to spare, as every sensor last
# reported less than one interval before the stall). Lower and one late reading makes a
# store "quiet" (harmless alone: the chain-wide rule needs many stores at once).
STALL_QUIET_INTERVALS = 1.5
# A stall needs at least this many quiet stores ... With fewer, a chain cannot tell its
# pipeline from two stores' own outages, and paging their managers is the safe mistake.
STALL_MIN_STORES = 3
# ... and at least this share of the stores that reported in the hour before the stall
# (STALL_REPORTING_S). Lower and a regional power cut reads as a pipeline stall (managers
# not paged); higher and a stall that spares a few stores (one region's link is fine) is
# paged to every other store's manager.
STALL_SHARE = 0.5
STALL_REPORTING_S = 60 * 60
# ... all of which went quiet within this of each other ("at once"). It must exceed the
# slowest reporting interval that should be covered (stores whose sensors all report every
# 20 min are not); wider and unrelated outages minutes apart add up to a "stall".
STALL_SPREAD_S = 10 * 60
# The ingester's MQTT connection down this long is a stall at once, whatever the stores
# say (paho reconnects within seconds after a broker restart). Shorter pages on-call for a
# broker restart; longer leaves the readings-based rule to notice first.
INGEST_DOWN_GRACE_S = 2 * 60
# A jump faster than this between two readings is physically implausible for air in a
# refrigerated unit (research §C.8: reject > 3 K/min for walk-in air; long 1-Wire runs
# pick up 5-15 K spikes): the reading waits for the next one to confirm it. Too low and a
# door flung open on an open case is doubted; too high and EMI spikes hit hard ceilings.
SPIKE_K_PER_MIN = 5.0
# The next reading confirms a suspected jump when it is within this of it.
SPIKE_CONFIRM_K = 2.0
# During a defrost the hard limit is this far above the defrost ceiling. Too small and a
# normal defrost peak with a door opening is "critical at once"; too large and a stuck
# defrost is only caught by its budget.
DEFROST_HARD_MARGIN_K = 3.0
# Consecutive "open" samples before a door counts as left open (see _door_check). Too
# few and busy doors sampled every 5 min look stuck open; too many delays the alert for
# sensors that report slowly.
DOOR_SAMPLES = 3
# Battery hysteresis: clear only this far above the low limit.
BATTERY_HYSTERESIS_PCT = 5.0
# Stuck probe: readings that stay within STUCK_TOLERANCE_K of one value for STUCK_AFTER_S
# (and at least STUCK_MIN_READINGS readings) are a sensor fault. A working air probe in a
# refrigerated unit moves by >= 0.5 K within an hour (compressor cycling, doors, defrost:
# research §C.2, §C.8), and any real change crosses a probe's resolution (0.0625 K for a
# DS18B20, 0.1 K for most LoRa sensors), so the tolerance only absorbs float noise from
# unit conversions. The window is 1.5x the research's 60-min example: shorter and a
# well-damped glycol probe on a quiet night could page; longer and a frozen probe hides a
# real failure for longer (it still reports a perfect temperature).
STUCK_TOLERANCE_K = 0.01
STUCK_AFTER_S = 90 * 60
# Sparse reporters need this many identical readings too (a 20-min LoRa sensor: 2 h).
STUCK_MIN_READINGS = 6
STUCK = "stuck"  # the sensor_fault code of a stuck probe
# Learned defrost, for assets without a declared schedule (research §B.6: "learn the defrost
# schedule from data (periodic, same time every day) if it is not configured"). A defrost
# shows as a rise of LEARN_RISE_K or more above the unit's baseline, lasting (from leaving
# the baseline + LEARN_EDGE_K band to coming back into it) LEARN_MIN_S..LEARN_MAX_S, and
# starting at the same time of day (within LEARN_SLOT_S) on LEARN_DAYS earlier days.
# The rise: a compressor cycle's sawtooth stays within ~1.5 K of its mean and a defrost lifts
# air 3-8 K (§C.2, §C.3); lower and a warm afternoon cycles into a "defrost", higher and
# a product probe's damped defrost is never learned.
LEARN_RISE_K = 3.0
LEARN_EDGE_K = 1.0
# Duration bounds: door openings and restocking are shorter; a longer rise is a problem, not
# a defrost (declared defrosts last 20-40 min plus their pull-down, §C.3).
LEARN_MIN_S = 20 * 60
LEARN_MAX_S = 45 * 60
# "Same time of day": timer drift and the start being seen a reading or two late fit in
# 15 min; wider and two different defrosts merge into one long window.
LEARN_SLOT_S = 15 * 60
LEARN_DAYS = 2
# Episodes older than this are forgotten, so a changed defrost clock is unlearned in a week.
LEARN_HISTORY_S = 7 * 86400
# At most this many learned windows per asset (cases defrost up to 4-6 times a day);
# more would be a unit that is warm half the day, which must not be relaxed.
LEARN_MAX_WINDOWS = 6
# A learned window opens this long before the earliest start seen (the heater starts
# before the air crosses the band) and relaxes for LEARN_RECOVERY_S after the latest end.
# The whole window is capped by construction at LEARN_LEAD_S + LEARN_SLOT_S + LEARN_MAX_S
# + LEARN_RECOVERY_S (85 min), and only warn is relaxed: critical and hard limits stay.
LEARN_LEAD_S = 10 * 60
LEARN_RECOVERY_S = 15 * 60
# The baseline is an average this slow of readings outside rises: longer than a defrost
# so a defrost does not lift it, short enough to follow a setpoint change within hours.
BASELINE_TAU_S = 2 * 3600


@dataclass(frozen=True, slots=True)
class Condition:
    """An active problem and everything needed to explain it."""

    key: str  # "<kind>:<subject>", stable for the life of the problem
    kind: str
    severity: str  # "warning" | "critical"
    stage: str  # temperature: "rising" | "warning" | "critical"; others = severity
    store: str
    asset: str | None
    sensor: str | None
    device: str | None
    since_ms: int  # when the excursion or problem began
    value: float | None  # the reading that decided it
    limit: float | None
    explanation: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """A condition fired, got worse, or cleared, at ``at_ms``."""

    action: str  # "fire" | "upgrade" | "clear"
    condition: Condition
    at_ms: int


@dataclass(slots=True)
class _SensorState:
    """Mutable per-sensor rule state (one per registered sensor)."""

    slot: int
    sensor: str
    device: str
    store: str
    asset: str
    asset_name: str
    limits: Limits
    interval_s: float
    last_ts: float | None = None  # last temperature reading
    last_value: float | None = None
    hi_warn: float = 0.0  # kelvin-seconds spent beyond the high warn limit
    hi_crit: float = 0.0
    lo_warn: float = 0.0
    lo_crit: float = 0.0
    excursion_since: float | None = None
    clear_since: float | None = None
    level: int = 0  # 0 ok, 1 rising, 2 warning, 3 critical
    side: str = "high"
    rise_anchor: tuple[float, float] | None = None
    rise_slope: float = 0.0
    ema: float | None = None
    ema_ts: float | None = None
    suspect: tuple[float, float] | None = None  # (ts, value) of an unconfirmed jump
    spikes: int = 0
    in_defrost_prev: bool = False
    door_open_since: float | None = None
    door_samples: int = 0
    door_level: int = 0
    battery_low: bool = False
    fault_window_start: float = 0.0
    fault_count: int = 0
    last_fault_ts: float = 0.0
    fault_active: bool = False
    last_fault_code: str | None = None
    stuck_value: float | None = None  # the value readings have stayed at ...
    stuck_since: float = 0.0  # ... since this reading
    stuck_readings: int = 0
    stuck_active: bool = False
    base: float | None = None  # slow baseline for defrost learning
    base_ts: float = 0.0
    episode_start: float | None = None  # a rise out of the baseline band began here
    episode_peak: float = 0.0
    episode_tainted: bool = False  # it became (part of) an alert: never learned from
    learned_defrost: str | None = None  # the learned window the last reading was in
    silent: bool = False
    store_slot: int = 0  # index of the store in the per-store arrays


@dataclass(slots=True)
class _Stall:
    """The open pipeline stall: its condition and the stores it explains."""

    condition: Condition
    since: float  # the last reading heard from its stores (or the MQTT disconnection)
    stores: npt.NDArray[np.bool_]  # per store index: explained by this stall


class _Defrosts:
    """Scheduled defrost windows of one asset, in its store's local time."""

    def __init__(self, defrost: Defrost | None, zone: ZoneInfo) -> None:
        self.zone = zone
        self.starts = []
        if defrost is not None:
            for text in defrost.times:
                start, _ = parse_hours_value(f"{text}-23:59")[0]
                self.starts.append(start.hour * 3600 + start.minute * 60)
        self.duration = defrost.duration if defrost else 0.0
        self.recovery = defrost.recovery if defrost else 0.0

    def phase(self, ts_s: float) -> str | None:
        """``"defrost"``, ``"recovery"`` or None at epoch second ``ts_s``."""
        if not self.starts:
            return None
        local = datetime.fromtimestamp(ts_s, self.zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        seconds = (local - midnight).total_seconds()
        for start in self.starts:
            for offset in (0.0, 86400.0):  # a window that began before midnight
                elapsed = seconds + offset - start
                if 0 <= elapsed < self.duration:
                    return "defrost"
                if self.duration <= elapsed < self.duration + self.recovery:
                    return "recovery"
        return None

    def window_end(self, ts_s: float) -> float | None:
        """End of the recovery of the window containing ``ts_s`` (epoch seconds)."""
        local = datetime.fromtimestamp(ts_s, self.zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        for start in self.starts:
            for day in (0, -1):
                begin = midnight + timedelta(days=day, seconds=start)
                end = begin + timedelta(seconds=self.duration + self.recovery)
                if begin <= local < end:
                    return end.timestamp()
        return None


@dataclass(frozen=True, slots=True)
class _LearnedWindow:
    """A recurring defrost, in seconds since local midnight."""

    begin: float
    defrost_end: float
    recovery_end: float
    dates: frozenset[date]

    def explain(self) -> str:
        def clock(seconds: float) -> str:
            minute = int(seconds // 60) % 1440
            return f"{minute // 60:02d}:{minute % 60:02d}"

        days = ", ".join(d.isoformat() for d in sorted(self.dates))
        return f"learned defrost {clock(self.begin)}-{clock(self.defrost_end)} (seen {days})"


class _LearnedDefrosts:
    """Defrost windows of one asset without a declared schedule, learned from its readings.

    Cheap by design: an episode is recorded at most a few times a day per asset, windows
    are recomputed only then, and :meth:`phase` is a few comparisons per reading (nothing
    happens in ``tick``).
    """

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.episodes: list[tuple[float, float]] = []  # (start epoch s, duration s)
        self.windows: list[_LearnedWindow] = []

    def add(self, start: float, duration: float) -> None:
        """Record one defrost-like rise and relearn the windows."""
        self.episodes = [e for e in self.episodes if start - e[0] < LEARN_HISTORY_S]
        self.episodes.append((start, duration))
        seen = []
        for begin, length in self.episodes:
            local = datetime.fromtimestamp(begin, self.zone)
            second = local.hour * 3600 + local.minute * 60 + local.second
            seen.append((second, second + length, local.date()))
        seen.sort()
        groups: list[list[tuple[int, float, date]]] = []
        for item in seen:
            if groups and item[0] - groups[-1][0][0] <= LEARN_SLOT_S:
                groups[-1].append(item)
            else:
                groups.append([item])
        windows = []
        for group in groups:
            dates = frozenset(d for _, _, d in group)
            if len(dates) < LEARN_DAYS:
                continue
            end = max(e for _, e, _ in group)
            windows.append(
                _LearnedWindow(group[0][0] - LEARN_LEAD_S, end, end + LEARN_RECOVERY_S, dates)
            )
        windows.sort(key=lambda w: len(w.dates), reverse=True)
        self.windows = sorted(windows[:LEARN_MAX_WINDOWS], key=lambda w: w.begin)

    def phase(self, ts_s: float) -> tuple[str, _LearnedWindow] | None:
        """``("defrost" | "recovery", window)`` at ``ts_s``, or None.

        A window counts on a day when it was seen on LEARN_DAYS *earlier* days: today's
        own rise proves nothing about today.
        """
        if not self.windows:
            return None
        local = datetime.fromtimestamp(ts_s, self.zone)
        today = local.date()
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        for window in self.windows:
            if sum(1 for d in window.dates if d < today) < LEARN_DAYS:
                continue
            for offset in (-86400.0, 0.0, 86400.0):  # windows across midnight
                elapsed = seconds + offset
                if window.begin <= elapsed < window.defrost_end:
                    return "defrost", window
                if window.defrost_end <= elapsed < window.recovery_end:
                    return "recovery", window
        return None


class RuleEngine:
    """Evaluates every rule for a chain; see the module docstring."""

    def __init__(
        self,
        stores: Iterable[Store],
        assets: Iterable[Asset],
        sensors: Iterable[Sensor],
    ) -> None:
        self.stores = {s.id: s for s in stores}
        self.calendars = {sid: WeightCalendar(s) for sid, s in self.stores.items()}
        self.assets = {a.id: a for a in assets}
        self.defrosts: dict[str, _Defrosts] = {}
        self.learned: dict[str, _LearnedDefrosts] = {}
        # Episodes learned since the caller last took them: (asset, start, duration). The
        # engine persists them (defrost_episodes) and seeds them back after a restart.
        self.new_episodes: list[tuple[str, float, float]] = []
        self.states: dict[str, _SensorState] = {}
        self.device_store: dict[str, str] = {}
        self.store_devices: dict[str, set[str]] = {}
        for asset in self.assets.values():
            store = self.stores.get(asset.store)
            if store is not None:
                self.defrosts[asset.id] = _Defrosts(asset.defrost, ZoneInfo(store.timezone))
                if asset.defrost is None or not asset.defrost.times:
                    self.learned[asset.id] = _LearnedDefrosts(ZoneInfo(store.timezone))
        for sensor in sensors:
            owner = self.assets.get(sensor.asset)
            if owner is None or owner.store not in self.stores:
                continue
            asset = owner
            device = split_sensor_id(sensor.id)[0]
            self.states[sensor.id] = _SensorState(
                slot=len(self.states),
                sensor=sensor.id,
                device=device,
                store=asset.store,
                asset=asset.id,
                asset_name=asset.name,
                limits=limits_for(asset, self.stores[asset.store]),
                interval_s=sensor.interval,
            )
            self.device_store[device] = asset.store
            self.store_devices.setdefault(asset.store, set()).add(device)
        count = len(self.states)
        self._slots = list(self.states.values())
        self._by_asset: dict[str, list[_SensorState]] = {}
        for state in self._slots:
            self._by_asset.setdefault(state.asset, []).append(state)
        # Device and store indexes for the vectorised outage check.
        self._devices = sorted({s.device for s in self._slots})
        device_index = {d: i for i, d in enumerate(self._devices)}
        self._store_ids = sorted(self.store_devices)
        store_index = {st: i for i, st in enumerate(self._store_ids)}
        self._slot_device = np.array([device_index[s.device] for s in self._slots], dtype=np.int64)
        self._device_store = np.array(
            [store_index[self.device_store[d]] for d in self._devices], dtype=np.int64
        )
        self._device_sensors = np.bincount(self._slot_device, minlength=len(self._devices))
        self._store_device_count = np.bincount(self._device_store, minlength=len(self._store_ids))
        self._device_offline = np.zeros(len(self._devices), dtype=bool)
        self._device_index = device_index
        self._doors_open: set[str] = set()
        self._store_index = store_index
        self._outage_since: dict[str, float] = {}
        self._last_seen: npt.NDArray[np.float64] = np.full(count, np.nan)
        self._silence_after = np.array(
            [s.interval_s * SILENT_INTERVALS for s in self._slots], dtype=np.float64
        )
        self._silent = np.zeros(count, dtype=bool)
        self.device_offline_since: dict[str, float] = {}
        self.device_offline_fired: set[str] = set()
        self.store_outage: set[str] = set()
        self.active: dict[str, Condition] = {}
        self._init_watchdog()

    def _init_watchdog(self) -> None:
        """Per store, for the pipeline watchdog: the newest reading from any of its
        sensors (updated in observe, O(1)), and how long without one makes it quiet."""
        self._slot_store = self._device_store[self._slot_device]
        for state in self._slots:
            state.store_slot = self._store_index[state.store]
        self._store_last: npt.NDArray[np.float64] = np.full(len(self._store_ids), np.nan)
        self._store_quiet_after = np.full(len(self._store_ids), np.inf)
        np.minimum.at(
            self._store_quiet_after,
            self._slot_store,
            np.array([s.interval_s * STALL_QUIET_INTERVALS for s in self._slots]),
        )
        self.stall: _Stall | None = None
        # After a stall: silence is counted from here for the sensors it re-armed (None
        # when no re-arm is pending), and device-offline grace from here per device.
        self._silence_from: npt.NDArray[np.float64] | None = None
        self._silence_from_until = 0.0
        self._offline_grace_from: dict[str, float] = {}

    # -- observations -----------------------------------------------------------------

    def observe(
        self,
        kind: str,
        ts_ms: int,
        *,
        sensor: str | None = None,
        device: str | None = None,
        quantity: Quantity | None = None,
        value: float | None = None,
        code: str | None = None,
    ) -> list[Transition]:
        """Feed one stored observation (``kind`` is reading, fault or status)."""
        ts = ts_ms / 1000.0
        out: list[Transition] = []
        if kind == "status" and device is not None and value is not None:
            self._status(device, ts, online=value >= 0.5, out=out)
            return out
        state = self.states.get(sensor or "")
        if state is None:
            return out
        slot = state.slot
        seen = self._last_seen[slot]
        if np.isnan(seen) or ts > seen:
            self._last_seen[slot] = ts
            if not ts <= self._store_last[state.store_slot]:  # also when NaN
                self._store_last[state.store_slot] = ts
        if state.silent:
            state.silent = False
            self._silent[slot] = False
            self._clear(f"{SENSOR_SILENT}:{state.sensor}", ts, out)
        if kind == "fault":
            self._fault(state, ts, code or "fault", out)
        elif kind == "reading" and value is not None and quantity is not None:
            if quantity is Quantity.TEMPERATURE:
                self._temperature(state, ts, value, out)
            elif quantity is Quantity.DOOR:
                self._door(state, ts, value, out)
            elif quantity is Quantity.BATTERY:
                self._battery(state, ts, value, out)
        return out

    def _weight(self, store: str, ts: float) -> tuple[float, str]:
        weight = self.calendars[store].at(ts)
        return weight.value, weight.explain()

    def _temperature(self, s: _SensorState, ts: float, value: float, out: list[Transition]) -> None:
        if s.fault_active and ts - s.last_fault_ts >= FAULT_WINDOW_S:
            s.fault_active = False  # a whole window of good readings: the probe is fine
            if not s.stuck_active:
                self._clear(f"{SENSOR_FAULT}:{s.sensor}", ts, out)
        prev_ts, prev_value = s.last_ts, s.last_value
        if prev_ts is not None and ts <= prev_ts:
            return  # late or duplicate: stored, but the accumulators only move forward
        if prev_ts is not None and prev_value is not None and self._implausible(s, ts, value):
            return
        s.last_ts, s.last_value = ts, value
        self._stuck(s, ts, value, out)
        lim = s.limits
        defrosts = self.defrosts.get(s.asset)
        phase = defrosts.phase(ts) if defrosts else None
        learner = self.learned.get(s.asset)
        learned = learner.phase(ts) if learner is not None and phase is None else None
        if learned is not None:
            phase = learned[0]
            s.learned_defrost = learned[1].explain()
        weight, weight_text = self._weight(s.store, ts)
        self._overrun(s, ts, value, phase, out)
        if prev_ts is None or prev_value is None:
            self._hard_limits(s, ts, value, weight_text, out)
            return
        dt = min(ts - prev_ts, s.interval_s * MAX_GAP_INTERVALS)
        mean = (prev_value + value) / 2.0
        crit_above = lim.critical_above
        if phase is not None and lim.defrost_ceiling is not None and crit_above is not None:
            crit_above = max(crit_above, lim.defrost_ceiling)
        warn_armed = phase is None
        s.hi_warn = _spend(s.hi_warn, mean, lim.warn_above, dt, weight, lim, armed=warn_armed)
        s.hi_crit = _spend(s.hi_crit, mean, crit_above, dt, weight, lim, armed=True)
        s.lo_warn = _spend(s.lo_warn, -mean, _neg(lim.warn_below), dt, weight, lim, warn_armed)
        s.lo_crit = _spend(s.lo_crit, -mean, _neg(lim.critical_below), dt, weight, lim, True)
        self._rise(s, ts, value, phase)
        level, side, limit, budget_text = self._level(s, value, crit_above, weight)
        hard = _hard(value, lim, defrosting=phase is not None)
        if hard is not None:
            level, side, limit = 3, hard[0], hard[1]
            budget_text = f"hard {'ceiling' if side == 'high' else 'floor'} {limit:g} °C"
        outside = _outside(value, lim)
        if outside and s.excursion_since is None:
            s.excursion_since = prev_ts if _outside(prev_value, lim) else ts
        explanation = {
            "reading": value,
            "limit": limit,
            "budget": budget_text,
            "weight": weight_text,
            "defrost": phase,
            "interval_s": s.interval_s,
        }
        if learned is not None:
            explanation["learned_defrost"] = s.learned_defrost
        self._set_level(s, ts, level, side, value, limit, explanation, out)
        self._maybe_clear(s, ts, value, outside, out)
        if learner is not None:
            self._learn(s, ts, value, learner)
        if learned is None:
            s.learned_defrost = None

    def _learn(self, s: _SensorState, ts: float, value: float, learner: _LearnedDefrosts) -> None:
        """Track rises out of the baseline band; record the defrost-like ones."""
        if s.base is None:
            s.base, s.base_ts = value, ts
            return
        alerting = s.level > 0 or f"{TEMPERATURE}:{s.asset}" in self.active
        above = value > s.base + LEARN_EDGE_K
        if s.episode_start is None:
            if above:
                s.episode_start, s.episode_peak, s.episode_tainted = ts, value, alerting
            else:  # the baseline follows the unit outside rises only
                s.base += (value - s.base) * (1.0 - math.exp(-(ts - s.base_ts) / BASELINE_TAU_S))
            s.base_ts = ts
            return
        s.episode_peak = max(s.episode_peak, value)
        s.episode_tainted = s.episode_tainted or alerting
        duration = ts - s.episode_start
        if above:
            if duration > 2 * LEARN_MAX_S:  # not a rise but a new level: re-baseline
                s.episode_start, s.base, s.base_ts = None, value, ts
            return
        if (
            not s.episode_tainted
            and s.episode_peak - s.base >= LEARN_RISE_K
            and LEARN_MIN_S <= duration <= LEARN_MAX_S
        ):
            learner.add(s.episode_start, duration)
            self.new_episodes.append((s.asset, s.episode_start, duration))
        s.episode_start = None
        s.base_ts = ts

    @staticmethod
    def _level(
        s: _SensorState, value: float, crit_above: float | None, weight: float
    ) -> tuple[int, str, float | None, str]:
        """The stage the accumulators (and the rise) put this sensor at.

        The weight lowers the rise rate that counts as a problem, as it shortens budgets:
        on a peak day or at night a slower climb is worth an early word. (It does not widen
        the margin: 4 K below a walk-in's limit is its normal band.)
        """
        lim = s.limits
        level, side, limit, budget_text = 0, "high", None, ""
        if s.hi_crit >= lim.critical_budget_ks:
            level, limit = 3, crit_above
            budget_text = _budget(s.hi_crit, lim.critical_budget_ks)
        elif s.lo_crit >= lim.critical_budget_ks:
            level, side, limit = 3, "low", lim.critical_below
            budget_text = _budget(s.lo_crit, lim.critical_budget_ks)
        elif s.hi_warn >= lim.warn_budget_ks:
            level, limit = 2, lim.warn_above
            budget_text = _budget(s.hi_warn, lim.warn_budget_ks)
        elif s.lo_warn >= lim.warn_budget_ks:
            level, side, limit = 2, "low", lim.warn_below
            budget_text = _budget(s.lo_warn, lim.warn_budget_ks)
        elif s.rise_slope * 3600 * weight >= lim.rise_k_per_h and _near_high(
            s.ema or value, lim, margin=RISE_MARGIN_K
        ):
            level, limit = 1, lim.warn_above
            budget_text = f"rising {s.rise_slope * 3600:.1f} K/h"
        return level, side, limit, budget_text

    def _implausible(self, s: _SensorState, ts: float, value: float) -> bool:
        """A jump too fast to be air: hold it until the next reading confirms it."""
        assert s.last_ts is not None
        assert s.last_value is not None
        rate = abs(value - s.last_value) / max((ts - s.last_ts) / 60.0, 1e-6)
        if rate <= SPIKE_K_PER_MIN:
            s.suspect = None
            return False
        if s.suspect is not None and abs(value - s.suspect[1]) <= SPIKE_CONFIRM_K:
            s.suspect = None  # two readings agree: a real step change
            return False
        s.suspect = (ts, value)
        s.spikes += 1
        return True

    def _hard_limits(
        self, s: _SensorState, ts: float, value: float, weight_text: str, out: list[Transition]
    ) -> None:
        hard = _hard(value, s.limits)
        if hard is not None:
            explanation = {"reading": value, "limit": hard[1], "weight": weight_text,
                           "budget": f"hard limit {hard[1]:g} °C"}  # fmt: skip
            s.excursion_since = s.excursion_since or ts
            self._set_level(s, ts, 3, hard[0], value, hard[1], explanation, out)

    def _rise(self, s: _SensorState, ts: float, value: float, phase: str | None) -> None:
        """Slope of the smoothed temperature over the last window (K/s).

        The raw air temperature of a healthy unit is a sawtooth (a walk-in cycles 2.5 K
        every ~25 min, research §C.2), whose 30-min slopes reach several K/h; its moving
        average barely moves, while a failed compressor lifts the average steadily.
        """
        if s.ema is None or s.ema_ts is None:
            s.ema, s.ema_ts = value, ts
        else:
            s.ema += (value - s.ema) * (1.0 - math.exp(-(ts - s.ema_ts) / RISE_SMOOTHING_S))
            s.ema_ts = ts
        if phase is not None:
            s.rise_anchor, s.rise_slope = None, 0.0
            return
        if s.rise_anchor is None:
            s.rise_anchor = (ts, s.ema)
            return
        anchor_ts, anchor_value = s.rise_anchor
        if ts - anchor_ts >= RISE_WINDOW_S:
            s.rise_slope = (s.ema - anchor_value) / (ts - anchor_ts)
            s.rise_anchor = (ts, s.ema)

    def _overrun(
        self, s: _SensorState, ts: float, value: float, phase: str | None, out: list[Transition]
    ) -> None:
        """A unit still warm when its defrost recovery ended: the defrost did not end.

        It is the first stage of the asset's temperature problem (same key), so when the
        budget is spent later the same alert is upgraded rather than a second one opened.
        """
        was_in_defrost, s.in_defrost_prev = s.in_defrost_prev, phase is not None
        warn = s.limits.warn_above
        if warn is None or f"{TEMPERATURE}:{s.asset}" in self.active:
            return
        if was_in_defrost and phase is None and value > warn + s.limits.hysteresis_k:
            s.level = LEVELS[WARNING]
            s.excursion_since = s.excursion_since or ts
            explanation: dict[str, Any] = {
                "reading": value, "limit": warn, "side": "high",
                "budget": "still above the warn limit when the defrost recovery ended",
            }  # fmt: skip
            if s.learned_defrost is not None:
                explanation["learned_defrost"] = s.learned_defrost
            self._fire(
                Condition(
                    f"{TEMPERATURE}:{s.asset}", DEFROST_OVERRUN, WARNING, WARNING, s.store,
                    s.asset, s.sensor, s.device, round(s.excursion_since * 1000), value, warn,
                    explanation,
                ),
                ts,
                out,
            )  # fmt: skip

    def _set_level(
        self,
        s: _SensorState,
        ts: float,
        level: int,
        side: str,
        value: float,
        limit: float | None,
        explanation: dict[str, Any],
        out: list[Transition],
    ) -> None:
        if level <= s.level:
            return
        if s.excursion_since is None:
            s.excursion_since = ts  # the problem starts at its first stage (maybe "rising")
        s.level, s.side = level, side
        stage = {1: "rising", 2: WARNING, 3: CRITICAL}[level]
        since = s.excursion_since if s.excursion_since is not None else ts
        condition = Condition(
            key=f"{TEMPERATURE}:{s.asset}",
            kind=TEMPERATURE,
            severity=CRITICAL if level == 3 else WARNING,
            stage=stage,
            store=s.store,
            asset=s.asset,
            sensor=s.sensor,
            device=s.device,
            since_ms=round(since * 1000),
            value=value,
            limit=limit,
            explanation={**explanation, "side": side, "stage": stage},
        )
        self._fire(condition, ts, out)

    def _maybe_clear(
        self, s: _SensorState, ts: float, value: float, outside: bool, out: list[Transition]
    ) -> None:
        lim = s.limits
        back_in = not _outside(value, lim, margin=lim.hysteresis_k)
        # A "rising" problem is below the limit by definition: it clears when the rise
        # stops (half the alarm rate), not merely for being in range.
        still_rising = s.level == 1 and s.rise_slope * 3600 >= lim.rise_k_per_h / 2
        if not back_in or still_rising:
            s.clear_since = None
            return
        if s.level == 0 and not outside:
            s.excursion_since = None
            return
        if s.clear_since is None:
            s.clear_since = ts
        if s.level > 0 and ts - s.clear_since >= lim.clear_hold_s:
            s.level = 0
            s.hi_warn = s.hi_crit = s.lo_warn = s.lo_crit = 0.0
            s.excursion_since = None
            s.clear_since = None
            s.rise_slope = 0.0
            self._clear(f"{TEMPERATURE}:{s.asset}", ts, out, sensor=s.sensor, value=value)

    def _door(self, s: _SensorState, ts: float, value: float, out: list[Transition]) -> None:
        if value >= 0.5:
            s.door_samples += 1
            if s.door_open_since is None:
                s.door_open_since = ts
                self._doors_open.add(s.sensor)
            self._door_check(s, ts, out)
        else:
            s.door_samples = 0
            s.door_open_since = None
            self._doors_open.discard(s.sensor)
            if s.door_level:
                s.door_level = 0
                self._clear(f"{DOOR_OPEN}:{s.asset}", ts, out)

    def _door_check(self, s: _SensorState, now: float, out: list[Transition]) -> None:
        # Devices that sample the door with their other readings (not on change) can
        # catch two different openings in a row: a few consecutive open samples prove
        # one opening that lasted.
        if s.door_open_since is None or s.door_samples < DOOR_SAMPLES:
            return
        weight, weight_text = self._weight(s.store, now)
        open_s = now - s.door_open_since
        lim = s.limits
        level = 0
        if open_s * weight >= lim.door_critical_s:
            level = 3
        elif open_s * weight >= lim.door_warn_s:
            level = 2
        if level > s.door_level:
            s.door_level = level
            self._fire(
                Condition(
                    f"{DOOR_OPEN}:{s.asset}", DOOR_OPEN, CRITICAL if level == 3 else WARNING,
                    CRITICAL if level == 3 else WARNING, s.store, s.asset, s.sensor, s.device,
                    round(s.door_open_since * 1000), open_s, lim.door_warn_s,
                    {"open_s": round(open_s), "weight": weight_text,
                     "limit": f"{lim.door_warn_s / 60:g}/{lim.door_critical_s / 60:g} min"},
                ),
                now,
                out,
            )  # fmt: skip

    def _battery(self, s: _SensorState, ts: float, value: float, out: list[Transition]) -> None:
        low = s.limits.low_battery_pct
        key = f"{LOW_BATTERY}:{s.sensor}"
        if value < low and not s.battery_low:
            s.battery_low = True
            self._fire(
                Condition(key, LOW_BATTERY, WARNING, WARNING, s.store, s.asset, s.sensor,
                          s.device, round(ts * 1000), value, low,
                          {"battery_pct": value, "limit": low}),
                ts,
                out,
            )  # fmt: skip
        elif value >= low + BATTERY_HYSTERESIS_PCT and s.battery_low:
            s.battery_low = False
            self._clear(key, ts, out)

    def _fault(self, s: _SensorState, ts: float, code: str, out: list[Transition]) -> None:
        if ts - s.fault_window_start > FAULT_WINDOW_S:
            s.fault_window_start, s.fault_count = ts, 0
        s.fault_count += 1
        s.last_fault_code = code
        s.last_fault_ts = ts
        if s.fault_count >= FAULTS_TO_ALERT and not s.fault_active:
            s.fault_active = True
            self._fire(
                Condition(f"{SENSOR_FAULT}:{s.sensor}", SENSOR_FAULT, WARNING, WARNING,
                          s.store, s.asset, s.sensor, s.device,
                          round(s.fault_window_start * 1000), None, None,
                          {"code": code, "faults": s.fault_count,
                           "window_min": FAULT_WINDOW_S // 60}),
                ts,
                out,
            )  # fmt: skip

    def _stuck(self, s: _SensorState, ts: float, value: float, out: list[Transition]) -> None:
        """A probe whose readings no longer move is a fault, whatever value it repeats."""
        moved = s.stuck_value is not None and abs(value - s.stuck_value) > STUCK_TOLERANCE_K
        if s.stuck_value is None or moved:
            s.stuck_value, s.stuck_since, s.stuck_readings = value, ts, 1
            if moved and s.stuck_active:
                s.stuck_active = False
                if not s.fault_active:
                    self._clear(f"{SENSOR_FAULT}:{s.sensor}", ts, out)
            return
        s.stuck_readings += 1
        unchanged = ts - s.stuck_since
        if s.stuck_active or unchanged < STUCK_AFTER_S or s.stuck_readings < STUCK_MIN_READINGS:
            return
        s.stuck_active = True
        self._fire(
            Condition(f"{SENSOR_FAULT}:{s.sensor}", SENSOR_FAULT, WARNING, WARNING, s.store,
                      s.asset, s.sensor, s.device, round(s.stuck_since * 1000), value, None,
                      {"code": STUCK, "reading": value, "readings": s.stuck_readings,
                       "unchanged_min": round(unchanged / 60),
                       "tolerance_k": STUCK_TOLERANCE_K}),
            ts,
            out,
        )  # fmt: skip

    def _status(self, device: str, ts: float, *, online: bool, out: list[Transition]) -> None:
        index = self._device_index.get(device)
        if index is not None:
            self._device_offline[index] = not online
        if online:
            self.device_offline_since.pop(device, None)
            self._offline_grace_from.pop(device, None)
            if device in self.device_offline_fired:
                self.device_offline_fired.discard(device)
                self._clear(f"{DEVICE_OFFLINE}:{device}", ts, out)
            if device in self.device_store:
                self._outage_check(ts, out)
        else:
            self.device_offline_since.setdefault(device, ts)

    # -- time -------------------------------------------------------------------------

    def tick(self, now_ms: int, *, ingest_down_since_ms: int | None = None) -> list[Transition]:
        """Everything that happens by time alone, up to ``now_ms``.

        ``ingest_down_since_ms``: when the ingester's MQTT connection went down, if it is
        down now (``coldchain run`` knows; None elsewhere).
        """
        now = now_ms / 1000.0
        out: list[Transition] = []
        seen = self._last_seen
        counted_from = seen
        if self._silence_from is not None:
            if now > self._silence_from_until:
                self._silence_from = None  # every re-armed sensor reported or fired again
            else:
                counted_from = np.fmax(seen, self._silence_from)
        with np.errstate(invalid="ignore"):
            overdue = (now - counted_from) > self._silence_after
        newly = np.flatnonzero(overdue & ~self._silent)
        for slot in newly:
            s = self._slots[int(slot)]
            s.silent = True
            self._silent[slot] = True
            weight, weight_text = self._weight(s.store, now)
            self._fire(
                Condition(f"{SENSOR_SILENT}:{s.sensor}", SENSOR_SILENT, WARNING, WARNING,
                          s.store, s.asset, s.sensor, s.device, round(float(seen[slot]) * 1000),
                          None, None,
                          {"last_seen_ms": round(float(seen[slot]) * 1000),
                           "silent_after_s": float(self._silence_after[slot]),
                           "weight": weight_text}),
                now,
                out,
            )  # fmt: skip
        for sensor in list(self._doors_open):
            self._door_check(self.states[sensor], now, out)
        for device, since in list(self.device_offline_since.items()):
            store = self.device_store.get(device)
            if store is None or device in self.device_offline_fired:
                continue
            weight, weight_text = self._weight(store, now)
            start = max(since, self._offline_grace_from.get(device, since))
            if (now - start) * weight >= OFFLINE_GRACE_S:
                self.device_offline_fired.add(device)
                self._fire(
                    Condition(f"{DEVICE_OFFLINE}:{device}", DEVICE_OFFLINE, WARNING, WARNING,
                              store, None, None, device, round(since * 1000), None, None,
                              {"offline_since_ms": round(since * 1000), "weight": weight_text}),
                    now,
                    out,
                )  # fmt: skip
        self._outage_check(now, out)
        down_since = ingest_down_since_ms / 1000.0 if ingest_down_since_ms is not None else None
        self._stall_check(now, down_since, out)
        return out

    def _down_mask(self) -> npt.NDArray[np.bool_]:
        """Per device: offline (LWT) or every one of its sensors silent."""
        silent_sensors = np.bincount(self._slot_device[self._silent], minlength=len(self._devices))
        all_silent: npt.NDArray[np.bool_] = silent_sensors == self._device_sensors
        return np.logical_or(self._device_offline, all_silent)

    def down_devices(self, store: str) -> set[str]:
        """Devices of a store that are offline (LWT) or whose sensors are all silent."""
        down = self._down_mask()
        return {
            d for i, d in enumerate(self._devices)
            if down[i] and self.device_store[d] == store
        }  # fmt: skip

    def _outage_check(self, now: float, out: list[Transition]) -> None:
        """Vectorised over stores: fire or clear ``store_outage`` where the share changed."""
        if not self._store_ids:
            return
        down = self._down_mask()
        down_per_store = np.bincount(self._device_store[down], minlength=len(self._store_ids))
        share = down_per_store / np.maximum(self._store_device_count, 1)
        firing = (down_per_store >= OUTAGE_MIN_DEVICES) & (share >= OUTAGE_SHARE)
        clearing = share < OUTAGE_SHARE / 2
        for store in list(self._outage_since):
            if not firing[self._store_index[store]]:
                del self._outage_since[store]  # came back within the grace period
        for index in np.flatnonzero(firing | clearing):
            store = self._store_ids[int(index)]
            key = f"{STORE_OUTAGE}:{store}"
            total = int(self._store_device_count[index])
            if firing[index] and store not in self.store_outage:
                since = self._outage_since.setdefault(store, now)
                if now - since < OUTAGE_GRACE_S:
                    continue
                self.store_outage.add(store)
                self._fire(
                    Condition(key, STORE_OUTAGE, CRITICAL, CRITICAL, store, None, None, None,
                              round(since * 1000), float(down_per_store[index]), float(total),
                              {"down": sorted(self.down_devices(store)), "devices": total}),
                    now,
                    out,
                )  # fmt: skip
            elif clearing[index] and store in self.store_outage:
                self.store_outage.discard(store)
                # Back while a stall explains it: not a power cut, so no pull-down hold.
                during = self.stall is not None and bool(self.stall.stores[index])
                self._clear(key, now, out, extra={"during_stall": True} if during else None)

    # -- pipeline watchdog --------------------------------------------------------------

    def _stall_check(self, now: float, ingest_down: float | None, out: list[Transition]) -> None:
        """Vectorised over stores: open, extend or clear the chain-wide stall."""
        last = self._store_last
        known = ~np.isnan(last)
        with np.errstate(invalid="ignore"):
            quiet = known & ((now - last) > self._store_quiet_after)
        if self.stall is None:
            if ingest_down is not None and now - ingest_down >= INGEST_DOWN_GRACE_S:
                self._open_stall(known, ingest_down, now, "mqtt_disconnected", out)
                return
            if int(np.count_nonzero(quiet)) < STALL_MIN_STORES:
                return
            newest = float(np.max(last[quiet]))
            cluster = quiet & (last >= newest - STALL_SPREAD_S)
            reporting = known & (last >= newest - STALL_REPORTING_S)
            stalled = int(np.count_nonzero(cluster))
            if stalled >= STALL_MIN_STORES and stalled >= STALL_SHARE * np.count_nonzero(reporting):
                self._open_stall(cluster, newest, now, "silence", out)
            return
        stall = self.stall
        # Stores that fell quiet with the stall, later than it (slower reporters): it
        # explains them too.
        joining = quiet & ~stall.stores & (last >= stall.since - STALL_SPREAD_S)
        if joining.any():
            stall.stores = stall.stores | joining
            stall.condition = self._stall_condition(stall.stores, stall.since, stall.condition)
            self.active[stall.condition.key] = stall.condition
            out.append(Transition("upgrade", stall.condition, round(now * 1000)))
        with np.errstate(invalid="ignore"):
            back = stall.stores & (last > stall.since)
        members = int(np.count_nonzero(stall.stores))
        still = members - int(np.count_nonzero(back))
        if ingest_down is None and (members == 0 or still < STALL_SHARE * members):
            self._close_stall(now, out)

    def _stall_condition(
        self, stores: npt.NDArray[np.bool_], since: float, previous: Condition | None = None,
        cause: str = "silence",
    ) -> Condition:  # fmt: skip
        last = self._store_last
        known = ~np.isnan(last)
        reporting = known & (last >= since - STALL_REPORTING_S)
        total = int(np.count_nonzero(reporting | stores))
        ids = [self._store_ids[int(i)] for i in np.flatnonzero(stores)]
        newest = float(np.max(last[known])) if known.any() else since
        cause = str(previous.explanation.get("cause", cause)) if previous else cause
        rule = (
            f"the ingester's MQTT connection down >= {INGEST_DOWN_GRACE_S // 60} min"
            if cause == "mqtt_disconnected"
            else f">= {STALL_MIN_STORES} stores and >= {STALL_SHARE:.0%} of the stores "
            f"reporting in the hour before went quiet within {STALL_SPREAD_S // 60} min"
        )
        explanation: dict[str, Any] = {
            "cause": cause,
            "stores": ids,
            "stalled": len(ids),
            "reporting": total,
            "last_reading_ms": round(newest * 1000),
            "rule": rule,
        }
        return Condition(
            f"{PIPELINE_STALLED}:{CHAIN_STORE}", PIPELINE_STALLED, CRITICAL, CRITICAL,
            CHAIN_STORE, None, None, None, round(since * 1000), float(len(ids)), float(total),
            explanation,
        )  # fmt: skip

    def _open_stall(
        self, stores: npt.NDArray[np.bool_], since: float, now: float, cause: str,
        out: list[Transition],
    ) -> None:  # fmt: skip
        condition = self._stall_condition(stores, since, cause=cause)
        self.stall = _Stall(condition, since, stores.copy())
        self._fire(condition, now, out)

    def _close_stall(self, now: float, out: list[Transition]) -> None:
        """Most stores report again: clear, and re-arm the stores still silent, so that
        they page after their normal grace from now, not for the stall."""
        assert self.stall is not None
        stores, self.stall = self.stall.stores, None
        self._clear(f"{PIPELINE_STALLED}:{CHAIN_STORE}", now, out)
        rearmed = {"rearmed": True}
        slots = stores[self._slot_store]
        for slot in np.flatnonzero(slots & self._silent):  # only sensors still silent
            state = self._slots[int(slot)]
            state.silent = False
            self._silent[slot] = False
            self._clear(f"{SENSOR_SILENT}:{state.sensor}", now, out, extra=rearmed)
        rearm = slots & ~np.isnan(self._last_seen)
        if rearm.any():
            if self._silence_from is None:
                self._silence_from = np.full(len(self._slots), np.nan)
            self._silence_from[rearm] = now
            self._silence_from_until = max(
                self._silence_from_until, now + float(np.max(self._silence_after[rearm]))
            )
        for device in list(self.device_offline_since):
            store = self.device_store.get(device)
            if store is None or not stores[self._store_index[store]]:
                continue
            self._offline_grace_from[device] = now
            if device in self.device_offline_fired:
                self.device_offline_fired.discard(device)
                self._clear(f"{DEVICE_OFFLINE}:{device}", now, out, extra=rearmed)
        for index in np.flatnonzero(stores):
            store = self._store_ids[int(index)]
            self._outage_since.pop(store, None)
            if store in self.store_outage:
                self.store_outage.discard(store)
                self._clear(f"{STORE_OUTAGE}:{store}", now, out, extra=rearmed)

    # -- restart and manual resolution -------------------------------------------------

    def adopt_learned(self, previous: RuleEngine) -> None:
        """Keep the defrost windows ``previous`` learned (a registry reload rebuilds the
        rules; learning again would take days). Assets that now declare a schedule drop
        theirs."""
        for asset, learner in previous.learned.items():
            if asset in self.learned:
                self.learned[asset] = learner

    def seed_learned(self, episodes: Iterable[tuple[str, float, float]]) -> None:
        """Relearn from persisted episodes ``(asset, start, duration)``, oldest first (a
        restart). Assets that declare a schedule, or are gone, ignore theirs."""
        for asset, start, duration in sorted(episodes, key=lambda e: e[1]):
            learner = self.learned.get(asset)
            if learner is not None:
                learner.add(start, duration)

    def restore(self, c: Condition) -> None:
        """Re-adopt a condition whose alert is still open (after a restart or reload), so
        that it can clear, instead of firing again or staying open forever."""
        self.active[c.key] = c
        state = self.states.get(c.sensor or "")
        since = c.since_ms / 1000.0
        if c.kind == PIPELINE_STALLED:
            members = set(c.explanation.get("stores") or [])
            mask = np.array([s in members for s in self._store_ids], dtype=bool)
            self.stall = _Stall(c, since, mask)
        elif c.kind == STORE_OUTAGE:
            self.store_outage.add(c.store)
        elif c.kind == DEVICE_OFFLINE and c.device is not None:
            self.device_offline_fired.add(c.device)
            self.device_offline_since.setdefault(c.device, since)
            if (index := self._device_index.get(c.device)) is not None:
                self._device_offline[index] = True
        elif state is None:
            return
        elif c.kind in (TEMPERATURE, DEFROST_OVERRUN):
            state.level = LEVELS.get(c.stage, 2)
            state.side = str(c.explanation.get("side", "high"))
            state.excursion_since = since
        elif c.kind == DOOR_OPEN:
            state.door_level = LEVELS.get(c.stage, 2)
            state.door_open_since = since
            state.door_samples = DOOR_SAMPLES
            self._doors_open.add(state.sensor)
        elif c.kind == SENSOR_SILENT:
            state.silent = True
            self._silent[state.slot] = True
            if np.isnan(self._last_seen[state.slot]):  # so a re-arm can count from it
                self._last_seen[state.slot] = since
        elif c.kind == LOW_BATTERY:
            state.battery_low = True
        elif c.kind == SENSOR_FAULT and c.explanation.get("code") == STUCK:
            state.stuck_active = True  # clears when a reading moves off the next one seen
        elif c.kind == SENSOR_FAULT:
            state.fault_active = True
            state.fault_window_start = since

    def forget(self, key: str) -> None:
        """A person resolved the alert: drop the condition so it fires again if the
        problem is still there (the spent budgets are kept, so it fires on the next
        reading rather than after a whole new budget)."""
        c = self.active.pop(key, None)
        if c is None:
            return
        state = self.states.get(c.sensor or "")
        if c.kind == PIPELINE_STALLED:
            self.stall = None  # still stalled: the next tick opens it again
        elif c.kind == STORE_OUTAGE:
            self.store_outage.discard(c.store)
        elif c.kind == DEVICE_OFFLINE and c.device is not None:
            self.device_offline_fired.discard(c.device)
        elif state is None:
            return
        elif c.kind in (TEMPERATURE, DEFROST_OVERRUN):
            for other in self._by_asset.get(state.asset, []):
                other.level = 0
        elif c.kind == DOOR_OPEN:
            state.door_level = 0
        elif c.kind == SENSOR_SILENT:
            state.silent = False
            self._silent[state.slot] = False
        elif c.kind == LOW_BATTERY:
            state.battery_low = False
        elif c.kind == SENSOR_FAULT:
            state.fault_active = False
            state.fault_count = 0
            state.stuck_active = False

    # -- bookkeeping ------------------------------------------------------------------

    def _fire(self, condition: Condition, ts: float, out: list[Transition]) -> None:
        previous = self.active.get(condition.key)
        action = "fire" if previous is None else "upgrade"
        if previous is not None and LEVELS.get(condition.stage, 0) <= LEVELS.get(previous.stage, 0):
            return
        self.active[condition.key] = condition
        out.append(Transition(action, condition, round(ts * 1000)))

    def _clear(
        self,
        key: str,
        ts: float,
        out: list[Transition],
        sensor: str | None = None,
        value: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        condition = self.active.get(key)
        if condition is None:
            return
        if sensor is not None and key.startswith(f"{TEMPERATURE}:"):
            # Another sensor of the same asset may still be out of range.
            others = self._by_asset.get(condition.asset or "", [])
            if any(o.level > 0 for o in others if o.sensor != sensor):
                return
        del self.active[key]
        if value is not None:  # the clearing reading, for the "back to normal" message
            condition = replace(condition, explanation={**condition.explanation, "now": value})
        if extra:  # how it cleared (a pipeline stall explained it, or re-armed it)
            condition = replace(condition, explanation={**condition.explanation, **extra})
        out.append(Transition("clear", condition, round(ts * 1000)))


def _neg(value: float | None) -> float | None:
    return -value if value is not None else None


def _spend(
    acc: float,
    mean: float,
    limit: float | None,
    dt: float,
    weight: float,
    lim: Limits,
    armed: bool,
) -> float:
    """Spend (beyond ``limit``) or drain (back inside with hysteresis) one accumulator."""
    if limit is None:
        return 0.0
    excess = mean - limit
    if excess > 0:
        return acc + excess * dt * weight if armed else acc
    if excess < -lim.hysteresis_k:
        return max(0.0, acc - dt)  # drain at 1 K: time back in range forgives
    return acc


def _hard(value: float, lim: Limits, *, defrosting: bool = False) -> tuple[str, float] | None:
    ceiling = lim.hard_ceiling
    if defrosting and ceiling is not None and lim.defrost_ceiling is not None:
        # Defrost air normally peaks near the defrost ceiling (LT cases at -5..0 °C, MT
        # units +6-8 K, §C.3), above an LT case's -9 °C hard ceiling and close to a
        # walk-in's: during a defrost the hard limit sits DEFROST_HARD_MARGIN_K above the
        # defrost ceiling (whose own budget keeps counting).
        ceiling = max(ceiling, lim.defrost_ceiling + DEFROST_HARD_MARGIN_K)
    if ceiling is not None and value >= ceiling:
        return "high", ceiling
    if lim.hard_floor is not None and value <= lim.hard_floor:
        return "low", lim.hard_floor
    return None


def _outside(value: float, lim: Limits, margin: float = 0.0) -> bool:
    if lim.warn_above is not None and value > lim.warn_above - margin:
        return True
    return lim.warn_below is not None and value < lim.warn_below + margin


def _near_high(value: float, lim: Limits, margin: float) -> bool:
    """Within ``margin`` of the warn limit (a rise far below it is a normal pull-up)."""
    return lim.warn_above is not None and value >= lim.warn_above - margin


def _budget(spent: float, budget: float) -> str:
    return f"{spent / 60:.0f} of {budget / 60:.0f} K·min spent"
