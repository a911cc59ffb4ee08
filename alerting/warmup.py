"""Start-up continuity: the rules are warmed from stored history before they go live.

A process that starts (a deploy, a crash, a kill -9, a standby starting) would
otherwise begin every excursion budget, silence clock, door timer and stuck-probe window
from zero: an excursion 25 minutes into a 30-minute budget would wait another 30, and a
store that died while nothing was running would never be reported. So at start-up the
engine replays the last :data:`WARMUP_S` of what ingest stored (the backtest's replay,
:mod:`alerting.backtest`) through fresh rules, then :func:`reconcile` makes them agree
with the alert book, which stays the truth for what was already said (a warm standby
taking over reconciles its live rules the same way, without a replay):

- an alert open in the book and active after the replay: kept, at the higher stage of
  the two (an upgrade the replay saw, and the book did not, is applied now);
- open in the book, not active after the replay: restored as it was (the live rules clear
  it on live data, never silently at start-up);
- active after the replay, not in the book: it happened while nothing was running, and is
  opened now (late, but said).

Ticks in the replay stop at the last stored reading, and the live rules do not judge
absence (silence, a quiet store) until :data:`STARTUP_GRACE_S` after start: the broker is
still delivering the backlog it kept for our persistent session (docs/design/
state-continuity.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from alerting import backtest
from alerting.conditions import Condition, Transition, stage_level
from alerting.rules import RuleEngine
from core.influx import TimeSeriesStore

# How much history the rules are warmed with: at least the longest excursion that can
# still be spending a budget (120 K·min critical budgets at 0.5 K over: 4 h unweighted),
# plus the clear hold, the stuck-probe window (90 min) and the learning baseline (2 h).
# Shorter and a slow excursion that began before the window restarts its budget at a
# restart; longer costs start-up time (replay runs ~50-100k observations a second:
# docs/performance.md) while alerting is not yet live.
WARMUP_S = 6 * 3600
# History is read in chunks of this much, so memory holds one chunk of the chain, not
# the window. Smaller means more queries; larger, more memory at start-up.
CHUNK_S = 3600
# After start-up, absence (sensor silent, store quiet) is judged only this long after
# going live. It covers the backlog the broker kept for our session while we were down
# (thousands of messages a second drain it within seconds). Shorter and a restart pages
# stores (or on-call) for readings still in flight; longer delays reporting a store that
# died while nothing was running.
STARTUP_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class Warmup:
    """What a warm-up replayed."""

    events: int
    first_ms: int | None
    last_ms: int | None


def warm(rules: RuleEngine, influx: TimeSeriesStore, now_s: float, window_s: float) -> Warmup:
    """Replay ``window_s`` of stored history up to ``now_s`` through ``rules`` (its
    transitions are dropped: :func:`reconcile` decides what the book lacks)."""
    end_ms = round(now_s * 1000)
    start_ms = end_ms - round(window_s * 1000)
    count, first, last = 0, None, None

    def counted() -> Iterator[backtest.Event]:
        nonlocal count, first, last
        for event in backtest.history(influx, None, start_ms, end_ms, CHUNK_S * 1000):
            count += 1
            first = event.ts_ms if first is None else first
            last = event.ts_ms
            yield event

    backtest.replay(rules, counted(), start_ms, None)
    return Warmup(count, first, last)


def reconcile(rules: RuleEngine, open_alerts: list[Condition], at_ms: int) -> list[Transition]:
    """Make warmed ``rules`` agree with the book's open alerts; return the transitions the
    book lacks (see the module docstring)."""
    out: list[Transition] = []
    booked = {c.key: c for c in open_alerts}
    for key, condition in list(rules.active.items()):
        held = booked.get(key)
        if held is None:
            out.append(Transition("fire", condition, at_ms))
        elif stage_level(condition.stage) > stage_level(held.stage):
            out.append(Transition("upgrade", condition, at_ms))
    for key, held in booked.items():
        active = rules.active.get(key)
        if active is None or stage_level(held.stage) > stage_level(active.stage):
            rules.restore(held)
    return out
