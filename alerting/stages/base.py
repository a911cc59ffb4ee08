"""What every stage handles and shares (STYLE.md §1).

One signature for every stage: ``(list[Dispatch], StageContext) -> list[Dispatch]``. A
:class:`Dispatch` is one message planned for this round, to one recipient, about one or
more alerts; nothing is written or sent until the last stage has run
(:func:`alerting.pipeline.run_round`), so what a stage drops never reaches the
notification log (alertmanager's order). Each stage counts what it drops in
``ctx.dropped``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from alerting.book import Alert


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One planned message: to one recipient, about one or more alerts of one store.

    ``contact`` is None for the placeholder of a step that has nobody to notify: it goes
    through the stages like a message (an inhibited alert keeps its place even then), and
    is written as the step's audit row only.
    """

    alerts: tuple[Alert, ...]
    store: str
    contact: str | None
    phone: str
    channel: str
    language: str

    @property
    def route(self) -> tuple[str, str, str]:
        """Where it goes: messages with the same route in one round become one."""
        return self.store, self.phone, self.channel

    def keeping(self, alerts: tuple[Alert, ...]) -> Dispatch:
        """The same message about fewer (or more) alerts."""
        return replace(self, alerts=alerts)


@dataclass
class StageContext:
    """Shared, read-mostly state of one round."""

    now: float
    # alerting.book.Alert: the open ones of the kinds that inhibit others (inhibit.INHIBITORS)
    open_alerts: list[Any]
    silences: list[dict[str, Any]]
    # Stores whose power came back recently (store -> when): their units are pulling down.
    recovering: dict[str, float] = field(default_factory=dict)
    # Assets whose door alert cleared recently (asset -> when): the room is pulling down.
    doors_closed: dict[str, float] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)


Stage = Callable[[list[Dispatch], StageContext], list[Dispatch]]


def filter_alerts(
    dispatches: list[Dispatch], ctx: StageContext, name: str, keep: Callable[[Alert], bool]
) -> list[Dispatch]:
    """Drop the alerts ``keep`` refuses from every dispatch (and dispatches left empty);
    count each alert dropped once under ``name``."""
    out: list[Dispatch] = []
    dropped: set[str] = set()
    for dispatch in dispatches:
        kept = tuple(a for a in dispatch.alerts if keep(a))
        dropped.update(a.id for a in dispatch.alerts if a not in kept)
        if kept:
            out.append(dispatch if len(kept) == len(dispatch.alerts) else dispatch.keeping(kept))
    ctx.dropped[name] += len(dropped)
    return out
