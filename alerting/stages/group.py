"""Group: one message per store per recipient per round, however many alerts are due."""

from __future__ import annotations

from alerting.stages.base import Dispatch, StageContext


def group(dispatches: list[Dispatch], ctx: StageContext) -> list[Dispatch]:
    """Merge dispatches with the same route (store, phone, channel), in order of first
    appearance; the first one's contact and language speak for the bundle."""
    bundles: dict[tuple[str, str, str], Dispatch] = {}
    out: list[Dispatch] = []
    for dispatch in dispatches:
        if dispatch.contact is None:  # nobody to notify: nothing to bundle
            out.append(dispatch)
            continue
        first = bundles.get(dispatch.route)
        if first is None:
            bundles[dispatch.route] = dispatch
            out.append(dispatch)
            continue
        ctx.dropped["bundled"] += 1
        merged = first.keeping(first.alerts + dispatch.alerts)
        out[out.index(first)] = merged
        bundles[dispatch.route] = merged
    return out
