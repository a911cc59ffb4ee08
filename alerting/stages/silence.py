"""Silence: maintenance windows hold notifications for a store, an asset or a sensor."""

from __future__ import annotations

from typing import Any

from alerting.book import Alert
from alerting.stages.base import Dispatch, StageContext, filter_alerts


def _covers(silence: dict[str, Any], alert: Alert) -> bool:
    for field in ("store", "asset", "sensor"):
        scope = silence.get(field)
        if scope is not None and scope != getattr(alert, field):
            return False
    return True


def silenced(alert: Alert, ctx: StageContext) -> bool:
    """A silence in force covers the alert."""
    return any(_covers(s, alert) for s in ctx.silences)


def silence(dispatches: list[Dispatch], ctx: StageContext) -> list[Dispatch]:
    """Drop alerts covered by a silence in force."""
    return filter_alerts(dispatches, ctx, "silenced", lambda a: not silenced(a, ctx))
