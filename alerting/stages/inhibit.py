"""Inhibit: while a store is dark (store_outage open), its other alerts do not notify.

A power cut takes every unit and the gateway down at once; the outage alert says so once
(STYLE.md §8). The held alerts keep their place in the escalation and resume when the
outage clears, if their problem is still there.
"""

from __future__ import annotations

from alerting.book import Alert
from alerting.rules import STORE_OUTAGE
from alerting.stages.base import StageContext


def inhibit(alerts: list[Alert], ctx: StageContext) -> list[Alert]:
    """Drop alerts of stores with an open store outage (but not the outage itself)."""
    dark = {a.store for a in ctx.open_alerts if a.kind == STORE_OUTAGE}
    kept = [a for a in alerts if a.kind == STORE_OUTAGE or a.store not in dark]
    ctx.dropped["inhibited"] += len(alerts) - len(kept)
    return kept
