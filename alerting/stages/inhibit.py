"""Inhibit: while a store is dark (store_outage open), its other alerts do not notify.

A power cut takes every unit and the gateway down at once; the outage alert says so once
(STYLE.md §8). The held alerts keep their place in the escalation and resume when the
outage clears, if their problem is still there. After the power comes back every
compressor starts at once and the units need 1-3 h to pull down (research §C.7), so the
hold lasts :data:`RECOVERY_HOLD_S` longer; a unit still out of range after that pages.

One level up, a pipeline stall (``pipeline_stalled``, chain-wide) holds the silence alerts
(sensor silent, device offline, store outage) of the stores it lists: their data stopped
because of the broker, the ingester or the network, which on-call fixes. When the stall
clears, the rules re-arm the stores still silent (they page after their normal grace), so
no hold follows it; nor does the store-outage pull-down hold, as the power never went.
A stall holds for at most :data:`STALL_MAX_HOLD_S`.
"""

from __future__ import annotations

from collections.abc import Callable

from alerting.book import Alert
from alerting.conditions import (
    DEFROST_OVERRUN,
    DOOR_OPEN,
    PIPELINE_STALLED,
    SILENCE_KINDS,
    STORE_OUTAGE,
    TEMPERATURE,
)
from alerting.stages.base import Dispatch, StageContext, filter_alerts

# How long after a store outage its units' own alerts stay held: research §C.7 gives 1-3 h
# of pull-down when every compressor restarts at once (a frozen coffin is the slowest).
# Too short and every unit of a store that just got its power back pages its manager; too
# long and a unit that did not restart goes unnoticed for that long.
RECOVERY_HOLD_S = 3 * 3600
# After a door left open is closed, the room needs this long to pull down before its
# temperature alert may page (research §C.4: a walk-in recovers within minutes to tens of
# minutes once the door shuts). Too short pages for a problem that is already over.
DOOR_RECOVERY_S = 30 * 60
# A pipeline stall holds the stores' silence alerts at most this long after it opened;
# then they page their managers even though on-call is on it. After two hours without data
# nobody knows what the units are doing (food codes give 2-4 h for chilled food found
# warm), so the stores must look themselves; and a regional power cut mistaken for a
# stall is not hidden for longer. Shorter pages every manager during routine central
# repairs; longer leaves stores blind for longer.
STALL_MAX_HOLD_S = 2 * 3600
# The open alerts inhibit reads (StageContext.open_alerts holds only these).
INHIBITORS = (STORE_OUTAGE, DOOR_OPEN, PIPELINE_STALLED)


def held(ctx: StageContext) -> Callable[[Alert], bool]:
    """The rule: alerts of stores in (or just after) an outage, but not the outage itself;
    an asset's temperature alert while its door is reported open (the door is the news);
    the silence alerts of the stores an open pipeline stall lists (the stall is the news).
    """
    dark = {a.store for a in ctx.open_alerts if a.kind == STORE_OUTAGE}
    dark |= {store for store, at in ctx.recovering.items() if ctx.now - at < RECOVERY_HOLD_S}
    doors = {a.asset for a in ctx.open_alerts if a.kind == DOOR_OPEN}
    doors |= {asset for asset, at in ctx.doors_closed.items() if ctx.now - at < DOOR_RECOVERY_S}
    stalled: set[str] = set()
    for stall in ctx.open_alerts:
        if stall.kind == PIPELINE_STALLED and ctx.now - stall.opened_at < STALL_MAX_HOLD_S:
            stalled.update(stall.explanation.get("stores") or ())

    def is_held(a: Alert) -> bool:
        return (
            (a.kind != STORE_OUTAGE and a.store in dark)
            or (a.kind in (TEMPERATURE, DEFROST_OVERRUN) and a.asset in doors)
            or (a.kind in SILENCE_KINDS and a.store in stalled)
        )

    return is_held


def inhibit(dispatches: list[Dispatch], ctx: StageContext) -> list[Dispatch]:
    """Drop the alerts another open alert explains (:func:`held`)."""
    is_held = held(ctx)
    return filter_alerts(dispatches, ctx, "inhibited", lambda a: not is_held(a))
