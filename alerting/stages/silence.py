"""Silence: maintenance windows hold notifications for a store, an asset or a sensor."""

from __future__ import annotations

from typing import Any

from alerting.book import Alert
from alerting.stages.base import StageContext


def _covers(silence: dict[str, Any], alert: Alert) -> bool:
    for field in ("store", "asset", "sensor"):
        scope = silence.get(field)
        if scope is not None and scope != getattr(alert, field):
            return False
    return True


def silence(alerts: list[Alert], ctx: StageContext) -> list[Alert]:
    """Drop alerts covered by a silence in force."""
    kept = [a for a in alerts if not any(_covers(s, a) for s in ctx.silences)]
    ctx.dropped["silenced"] += len(alerts) - len(kept)
    return kept
