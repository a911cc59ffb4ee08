"""What every stage receives besides its list: the instant, the open alerts, counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageContext:
    """Shared, read-mostly state of one pipeline run."""

    now: float
    # alerting.book.Alert: the open ones of the kinds that inhibit others (inhibit.INHIBITORS)
    open_alerts: list[Any]
    silences: list[dict[str, Any]]
    # Stores whose power came back recently (store -> when): their units are pulling down.
    recovering: dict[str, float] = field(default_factory=dict)
    # Assets whose door alert cleared recently (asset -> when): the room is pulling down.
    doors_closed: dict[str, float] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
