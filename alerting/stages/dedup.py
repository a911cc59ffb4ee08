"""Dedup: the same alert to the same number twice in one round is sent once (two contacts
sharing a phone, or one contact reached through two roles)."""

from __future__ import annotations

from alerting.stages.base import Dispatch, StageContext


def dedup(dispatches: list[Dispatch], ctx: StageContext) -> list[Dispatch]:
    """Drop alerts already going to the same phone and channel; drop dispatches left
    empty (a step with nobody to notify is never a duplicate)."""
    seen: set[tuple[str, str, str]] = set()
    out: list[Dispatch] = []
    for dispatch in dispatches:
        if dispatch.contact is None:
            out.append(dispatch)
            continue
        kept = []
        for alert in dispatch.alerts:
            key = (alert.id, dispatch.phone, dispatch.channel)
            if key in seen:
                ctx.dropped["duplicate"] += 1
                continue
            seen.add(key)
            kept.append(alert)
        if kept:
            out.append(dispatch.keeping(tuple(kept)))
    return out
