"""Dedup: the same alert to the same number twice in one round is sent once."""

from __future__ import annotations

from alerting.stages.base import StageContext
from alerting.stages.group import Page


def dedup(bundles: list[list[Page]], ctx: StageContext) -> list[list[Page]]:
    """Drop repeated (alert, phone) pairs inside each bundle, and bundles left empty."""
    out: list[list[Page]] = []
    for bundle in bundles:
        seen: set[tuple[str, str]] = set()
        kept = []
        for page in bundle:
            key = (page.alert_id, page.phone)
            if key in seen:
                ctx.dropped["duplicate"] += 1
                continue
            seen.add(key)
            kept.append(page)
        if kept:
            out.append(kept)
    return out
