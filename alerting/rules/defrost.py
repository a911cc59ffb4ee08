"""Defrost windows: declared in the chain file, or learned from an asset's readings.

During a defrost and its recovery the temperature rule suspends warn and raises the
critical limit to the defrost ceiling (research §B.6); this module only says *when*.

An asset without a declared schedule gets *learned* windows (research §B.6: "learn the
defrost schedule from data (periodic, same time every day) if it is not configured"): rises
of LEARN_RISE_K or more above the unit's baseline, lasting LEARN_MIN_S..LEARN_MAX_S, that
began at the same time of day on LEARN_DAYS earlier days and never became an alert. What was
learned is persisted by the engine (``defrost_episodes``) and seeded back after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from alerting.rules.base import SensorSpec, Topology, plain
from core.chain import Defrost, parse_hours_value

# A defrost shows as a rise of LEARN_RISE_K or more above the unit's baseline, lasting
# (from leaving the baseline + LEARN_EDGE_K band to coming back into it)
# LEARN_MIN_S..LEARN_MAX_S, and starting at the same time of day (within LEARN_SLOT_S) on
# LEARN_DAYS earlier days. The rise: a compressor cycle's sawtooth stays within ~1.5 K of
# its mean and a defrost lifts air 3-8 K (§C.2, §C.3); lower and a warm afternoon cycles
# into a "defrost", higher and a product probe's damped defrost is never learned.
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

DEFROST, RECOVERY = "defrost", "recovery"


class Scheduled:
    """Declared defrost windows of one asset, in its store's local time."""

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
                    return DEFROST
                if self.duration <= elapsed < self.duration + self.recovery:
                    return RECOVERY
        return None


@dataclass(frozen=True, slots=True)
class LearnedWindow:
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


class Learned:
    """Defrost windows of one asset without a declared schedule, learned from its readings.

    Cheap by design: an episode is recorded at most a few times a day per asset, windows
    are recomputed only then, and :meth:`phase` is a few comparisons per reading.
    """

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.episodes: list[tuple[float, float]] = []  # (start epoch s, duration s)
        self.windows: list[LearnedWindow] = []

    def add(self, start: float, duration: float) -> None:
        """Record one defrost-like rise and relearn the windows (an episode already
        recorded, as after a restart's history replay, is not counted twice)."""
        if any(abs(start - s) < 1.0 for s, _ in self.episodes):
            return
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
                LearnedWindow(group[0][0] - LEARN_LEAD_S, end, end + LEARN_RECOVERY_S, dates)
            )
        windows.sort(key=lambda w: len(w.dates), reverse=True)
        self.windows = sorted(windows[:LEARN_MAX_WINDOWS], key=lambda w: w.begin)

    def phase(self, ts_s: float) -> tuple[str, LearnedWindow] | None:
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
                    return DEFROST, window
                if window.defrost_end <= elapsed < window.recovery_end:
                    return RECOVERY, window
        return None


@dataclass(slots=True)
class _Learning:
    """Per sensor: the slow baseline and the rise being watched."""

    base: float | None = None
    base_ts: float = 0.0
    episode_start: float | None = None  # a rise out of the baseline band began here
    episode_peak: float = 0.0
    episode_tainted: bool = False  # it became (part of) an alert: never learned from


class DefrostRule:
    """Declared and learned defrost windows of every asset; learns from readings."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.scheduled: dict[str, Scheduled] = {}
        self.learned: dict[str, Learned] = {}
        # Episodes learned since the caller last took them: (asset, start, duration). The
        # engine persists them (defrost_episodes) and seeds them back after a restart.
        self.new_episodes: list[tuple[str, float, float]] = []
        for asset in topo.assets.values():
            zone = ZoneInfo(topo.stores[asset.store].timezone)
            self.scheduled[asset.id] = Scheduled(asset.defrost, zone)
            if asset.defrost is None or not asset.defrost.times:
                self.learned[asset.id] = Learned(zone)
        self.states = {s.sensor: _Learning() for s in topo.sensors}

    def phase(self, asset: str, ts: float) -> tuple[str | None, LearnedWindow | None]:
        """The defrost phase of ``asset`` at ``ts``, and the learned window it comes from
        (None for a declared one)."""
        scheduled = self.scheduled.get(asset)
        phase = scheduled.phase(ts) if scheduled is not None else None
        if phase is not None:
            return phase, None
        learner = self.learned.get(asset)
        found = learner.phase(ts) if learner is not None else None
        if found is None:
            return None, None
        return found

    def learns(self, asset: str) -> bool:
        """The asset has no declared schedule, so its windows are learned."""
        return asset in self.learned

    def learn(self, spec: SensorSpec, ts: float, value: float, *, alerting: bool) -> None:
        """Track rises out of the baseline band; record the defrost-like ones."""
        learner = self.learned.get(spec.asset)
        if learner is None:
            return
        s = self.states[spec.sensor]
        if s.base is None:
            s.base, s.base_ts = value, ts
            return
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
            self.new_episodes.append((spec.asset, s.episode_start, duration))
        s.episode_start = None
        s.base_ts = ts

    def seed(self, episodes: Iterable[tuple[str, float, float]]) -> None:
        """Relearn from persisted episodes ``(asset, start, duration)`` (a restart).
        Assets that declare a schedule, or are gone, ignore theirs."""
        for asset, start, duration in sorted(episodes, key=lambda e: e[1]):
            learner = self.learned.get(asset)
            if learner is not None:
                learner.add(start, duration)

    def carry(self, previous: DefrostRule) -> None:
        """Keep what was learned for assets that still learn, and each sensor's baseline
        and rise in progress where it stayed on its asset."""
        for asset, learner in previous.learned.items():
            if asset in self.learned:
                self.learned[asset] = learner
        for sensor, state in previous.states.items():
            if self.topo.same_place(previous.topo, sensor):
                self.states[sensor] = state
        self.new_episodes = previous.new_episodes

    def snapshot(self) -> dict[str, Any]:
        return {
            "learned": {a: plain(sorted(x.episodes)) for a, x in sorted(self.learned.items())},
            "sensors": {k: asdict(v) for k, v in sorted(self.states.items())},
        }
