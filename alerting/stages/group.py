"""Group: one message per store per recipient per round, however many alerts are due."""

from __future__ import annotations

from dataclasses import dataclass

from alerting.stages.base import StageContext


@dataclass(frozen=True, slots=True)
class Page:
    """A pending notification of one round, before it is handed to delivery."""

    notification_id: int
    alert_id: str
    store: str
    phone: str
    channel: str


def group(pages: list[Page], ctx: StageContext) -> list[list[Page]]:
    """Bundle pages for the same (store, phone, channel); order of first appearance."""
    bundles: dict[tuple[str, str, str], list[Page]] = {}
    for page in pages:
        bundles.setdefault((page.store, page.phone, page.channel), []).append(page)
    out = list(bundles.values())
    ctx.dropped["bundled"] += len(pages) - len(out)
    return out
