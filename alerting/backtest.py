"""Backtest: replay stored history through a rule set and say what it would have fired.

The same replay warms the live rules at start-up (:mod:`alerting.warmup`).

``coldchain alerting backtest --store S --from 2026-11-17T20:00 --to 2026-11-18T08:00
[--rules FILE]`` reads the store's readings, faults and device statuses from InfluxDB,
feeds them in time order to a fresh :class:`~alerting.rules.RuleEngine` (ticking it every
simulated minute, so silence and door timers behave as live), and prints every
transition with its explanation. ``--rules`` takes a chain-format YAML whose stores and
assets override the registry's (thresholds, defrost schedules, calendars): "what would
this rule have fired last week at store 123?".
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from alerting.conditions import Transition
from alerting.rules import RuleEngine
from core.chain import Chain
from core.influx import TimeSeriesStore, quote_ident
from core.registry import Registry
from core.types import Quantity

# Rules that depend on time alone (silence, open doors) are evaluated this often.
TICK_S = 60
# Points read per query; a day of one-minute readings of 300 sensors is ~430k.
MAX_POINTS = 2_000_000


@dataclass(frozen=True, slots=True)
class Event:
    """One historical observation, sortable by time."""

    ts_ms: int
    kind: str
    sensor: str | None
    device: str | None
    quantity: Quantity | None
    value: float | None
    code: str | None


def load_events(
    influx: TimeSeriesStore, store: str | None, start_ms: int, end_ms: int
) -> list[Event]:
    """Readings, faults and statuses of one store (or of every registered sensor and
    device when ``store`` is None), in time order."""
    if store is not None:
        where = f"store = $store AND time >= {start_ms}ms AND time < {end_ms}ms"
        params = {"store": store}
    else:  # what ingest attributed to a store: unregistered ids carry no store tag
        where = f"store =~ /./ AND time >= {start_ms}ms AND time < {end_ms}ms"
        params = {}
    streams: list[list[Event]] = []
    for quantity in (Quantity.TEMPERATURE, Quantity.DOOR, Quantity.BATTERY):
        query = (
            f'SELECT "value" FROM {quote_ident(quantity.value)} WHERE {where} '
            f"GROUP BY sensor LIMIT {MAX_POINTS}"
        )
        for s in influx.query(query, params):
            sensor = s.tags["sensor"]
            rows = [(int(t), v) for t, v in s.values if v is not None]
            streams.append(
                [Event(t, "reading", sensor, None, quantity, float(v), None) for t, v in rows]
            )
    faults = f'SELECT "value" FROM "sensor_fault" WHERE {where} GROUP BY sensor, code'
    for s in influx.query(faults, params):
        sensor, code = s.tags["sensor"], s.tags.get("code")
        streams.append(
            [Event(int(t), "fault", sensor, None, None, None, code) for t, _ in s.values]
        )
    statuses = f'SELECT "value" FROM "device_status" WHERE {where} GROUP BY device'
    for s in influx.query(statuses, params):
        device = s.tags["device"]
        streams.append(
            [Event(int(t), "status", None, device, None, float(v), None) for t, v in s.values]
        )
    return list(heapq.merge(*streams, key=lambda e: e.ts_ms))


def history(
    influx: TimeSeriesStore, store: str | None, start_ms: int, end_ms: int, chunk_ms: int
) -> Iterator[Event]:
    """:func:`load_events` in time chunks, so memory holds one chunk, not the window."""
    begin = start_ms
    while begin < end_ms:
        stop = min(begin + chunk_ms, end_ms)
        yield from load_events(influx, store, begin, stop)
        begin = stop


def replay(
    engine: RuleEngine, events: Iterable[Event], start_ms: int, end_ms: int | None
) -> list[Transition]:
    """Feed ``events`` and minute ticks to ``engine``; every transition, in order.

    Ticks run up to ``end_ms``, or when it is None up to the last event only (a warm-up
    must not tick across a gap in the data: silence there is the live rules' call).
    """
    out: list[Transition] = []
    next_tick = start_ms + TICK_S * 1000
    for event in events:
        while next_tick <= event.ts_ms:
            out += engine.tick(next_tick)
            next_tick += TICK_S * 1000
        out += engine.observe(
            event.kind, event.ts_ms, sensor=event.sensor, device=event.device,
            quantity=event.quantity, value=event.value, code=event.code,
        )  # fmt: skip
    while end_ms is not None and next_tick <= end_ms:
        out += engine.tick(next_tick)
        next_tick += TICK_S * 1000
    return out


def engine_for(registry: Registry, store: str, overrides: Chain | None = None) -> RuleEngine:
    """A rule engine for one store, with a rules file's stores and assets taking over."""
    stores = {s.id: s for s in registry.stores() if s.id == store}
    assets = {a.id: a for a in registry.assets(store)}
    if overrides is not None:
        stores.update({s.id: s for s in overrides.stores if s.id == store})
        assets.update({a.id: a for a in overrides.assets if a.store == store})
    sensors = [s for s in registry.sensors() if s.asset in assets]
    return RuleEngine(stores.values(), assets.values(), sensors)


def describe(t: Transition, zone: str) -> str:
    """One line per transition, in the store's local time."""
    when = datetime.fromtimestamp(t.at_ms / 1000, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    c = t.condition
    subject = c.asset or c.sensor or c.device or c.store
    why = ", ".join(f"{k}={v}" for k, v in c.explanation.items() if v not in (None, "", []))
    return f"{when}  {t.action:<7} {c.kind:<15} {c.stage:<8} {subject:<20} {why}"
