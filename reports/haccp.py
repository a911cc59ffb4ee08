"""The HACCP temperature record of one store for one local day.

What an auditor asks of a cold-holding control point (research/domain.md §B.2): the
critical limit, the actual values with date and time and device, every deviation with its
duration and size, the corrective action and who took it, and the verification
(calibration). Per temperature sensor, grouped by the asset it was on when it took each
reading (a moved sensor's history stays where it was measured):

- readings, min, max, arithmetic mean; mean kinetic temperature for pharmacy fridges;
- the reading at each of the store's check times (the manual rounds it replaces);
- excursions beyond the asset's alarm limits, with duration, peak and degree-minutes;
- gaps: time not covered by any reading (a record with holes must say so);
- calibration dates;

and the store's alerts open at any moment of the day, with who acknowledged and resolved
them, when, how, and their notes (the corrective-action record).

Definitions, so anyone can recompute the figures from the raw readings:

- The day is local midnight to local midnight in the store's timezone (23 or 25 hours on
  a DST change), cut at "now" while it is still running.
- Each reading stands for the time until the next reading of the same sensor, at most
  :data:`HOLD_INTERVALS` times the sensor's reporting interval, and not past the day's end.
  Time no reading stands for is a gap. The last reading before midnight stands into the
  day the same way (it is not counted among the day's readings).
- An excursion is a run of consecutive readings beyond the same limit (strictly above the
  upper or below the lower) with no gap inside; it starts at its first reading and ends
  where its last reading's time ends. Degree-minutes are the sum over its readings of
  (distance beyond the limit in K) x (time the reading stands for, in minutes).
- The reading at a check time is the last reading at or before it, if that reading still
  stands for the check time; otherwise there is none.
- MKT is computed over the readings with equal weights, dH/R = 10,000 K (USP; §B.5).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from alerting.book import Alert, AlertBook
from alerting.profiles import limits_for
from core.chain import Asset, AssetType, Defrost, Sensor, Store
from core.clock import Clock
from core.errors import NotFound
from core.influx import TimeSeriesStore
from core.registry import Registry

# A reading stands for at most this many reporting intervals: the alerting rules call a
# sensor silent after about three missed intervals (DESIGN.md §4), and the record uses the
# same line. Lower and ordinary jitter shows as gaps; higher and an hour-long outage of
# a 10-minute sensor would be papered over by its last reading.
HOLD_INTERVALS = 3.0
# dH/R for mean kinetic temperature: 83.144 kJ/mol / 8.3144 J/(mol K), USP <1150>.
MKT_DH_OVER_R = 10_000.0
KELVIN = 273.15
# A registered sensor silent all day is listed when it measured temperature this recently.
# Shorter and a probe dead since last week vanishes from the record (its silence alert
# still fired); longer scans more InfluxDB shards for every report.
SILENT_LOOKBACK_S = 7 * 86400.0
# The last reading before midnight is looked for this far back. It stands into the day
# for up to HOLD_INTERVALS reporting intervals: 2 h covers sensors reporting every 40 min.
LEAD_S = 2 * 3600.0
# Used when a sensor has left the registry since (its interval is no longer known).
DEFAULT_INTERVAL_S = 300.0

Direction = Literal["above", "below"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CheckReading(_Out):
    """The reading that stood at one of the store's check times."""

    check: str  # local "HH:MM"
    due: datetime
    at: datetime | None  # when that reading was taken; None when no reading stood then
    value_c: float | None


class Excursion(_Out):
    """A run of readings beyond one limit (see the module docstring)."""

    direction: Direction
    limit_c: float
    start: datetime
    end: datetime
    duration_min: float
    peak_c: float
    degree_minutes: float
    readings: int
    in_defrost: bool  # overlaps a declared defrost window (and its recovery)
    from_previous_day: bool  # already beyond the limit when the day began
    into_next_day: bool  # still beyond the limit when the day (or the record) ended


class Gap(_Out):
    """Time no reading stood for."""

    start: datetime
    end: datetime
    minutes: float


class SensorDay(_Out):
    """One temperature sensor's day on one asset."""

    sensor: str
    interval_s: float
    readings: int
    min_c: float | None
    max_c: float | None
    mean_c: float | None
    mkt_c: float | None  # pharmacy fridges only
    coverage_pct: float
    minutes_above: float
    minutes_below: float
    checks: list[CheckReading]
    excursions: list[Excursion]
    gaps: list[Gap]
    calibrated_at: date | None
    calibration_due: date | None
    calibration_overdue: bool


class Window(_Out):
    """A declared defrost window, with its recovery allowance."""

    start: datetime
    end: datetime


class AssetDay(_Out):
    """One asset's record: its limits and the sensors that measured it."""

    asset: str
    name: str
    type: AssetType | None  # None for an asset deleted from the registry since
    upper_c: float | None
    lower_c: float | None
    defrost: list[Window]
    sensors: list[SensorDay]


class AlertRecord(_Out):
    """An alert of the day and what people did about it."""

    id: str
    kind: str
    severity: str
    state: str
    asset: str | None
    sensor: str | None
    opened_at: datetime
    since: datetime
    level: int
    value: float | None
    limit_value: float | None
    acked_at: datetime | None
    acked_by: str | None  # a contact id, an API key's name, ...
    acked_by_name: str | None  # the contact's name when acked_by is a contact
    ack_via: str | None
    ack_note: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolved_by_name: str | None
    resolve_note: str | None


class HaccpReport(_Out):
    """The HACCP temperature record of one store for one local day."""

    store: str
    store_name: str
    country: str
    timezone: str
    date: date
    start: datetime
    end: datetime  # the day's end, or the time the record was made while the day runs
    complete: bool  # False while the day is still running
    generated_at: datetime
    check_times: list[str]
    assets: list[AssetDay]
    alerts: list[AlertRecord]
    excursions: int
    readings: int


@dataclass(frozen=True, slots=True)
class Limits:
    """The alarm limits an excursion is measured against (°C; None = no such limit)."""

    upper: float | None
    lower: float | None


@dataclass(slots=True)
class HaccpDay:
    """The report and the readings behind it (the HTML page draws them)."""

    report: HaccpReport
    # (asset, sensor) -> readings (epoch seconds, °C), in time order
    series: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def day_bounds(day: date, zone: ZoneInfo) -> tuple[float, float]:
    """Local midnight to the next local midnight, as epoch seconds (DST-aware)."""
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return start.timestamp(), end.timestamp()


def local_instants(day: date, clocks: Iterable[str], zone: ZoneInfo) -> list[tuple[str, float]]:
    """``"HH:MM"`` local times of ``day`` as epoch seconds.

    A time that does not exist (skipped by a DST change) is taken after the jump, as the
    wall clock shows it; a repeated one is taken at its first occurrence (PEP 495 fold=0
    does both).
    """
    out = []
    for text in clocks:
        hour, minute = (int(p) for p in text.split(":")[:2])
        out.append((text, datetime.combine(day, time(hour, minute), zone).timestamp()))
    return out


def defrost_windows(
    defrost: Defrost | None, day: date, zone: ZoneInfo
) -> list[tuple[float, float]]:
    """Declared defrost windows (defrost + recovery) touching ``day``, epoch seconds.

    Yesterday's late windows are included: a 23:30 defrost runs past midnight.
    """
    if defrost is None:
        return []
    start, end = day_bounds(day, zone)
    span = defrost.duration + defrost.recovery
    out = []
    for offset in (-1, 0):
        for _, begin in local_instants(day + timedelta(days=offset), defrost.times, zone):
            if begin < end and begin + span > start:
                out.append((begin, begin + span))
    return sorted(out)


def mkt_c(values: Sequence[float]) -> float:
    """Mean kinetic temperature of equally spaced readings (°C)."""
    mean = math.fsum(math.exp(-MKT_DH_OVER_R / (v + KELVIN)) for v in values) / len(values)
    return MKT_DH_OVER_R / -math.log(mean) - KELVIN


def _beyond(value: float, limits: Limits) -> tuple[Direction, float] | None:
    if limits.upper is not None and value > limits.upper:
        return "above", limits.upper
    if limits.lower is not None and value < limits.lower:
        return "below", limits.lower
    return None


def sensor_day(
    sensor: str,
    samples: Sequence[tuple[float, float]],
    *,
    window: tuple[float, float],
    interval_s: float,
    limits: Limits,
    before: tuple[float, float] | None = None,
    checks: Sequence[tuple[str, float]] = (),
    defrost: Sequence[tuple[float, float]] = (),
    pharmacy: bool = False,
    calibration: Sensor | None = None,
    today: date | None = None,
) -> SensorDay:
    """One sensor's figures for the day (a pure function; see the module docstring).

    Args:
        sensor: the sensor id.
        samples: (epoch seconds, °C) readings inside ``window``, in time order.
        window: the day's [start, end) in epoch seconds (end cut at "now" while running).
        interval_s: the sensor's reporting interval.
        limits: the asset's alarm limits.
        before: the last reading before the day, if any. While it still stands it covers
            the day's first moments (time, excursions, a 00:00 check), but it is not one of
            the day's readings (count, min, max, mean, MKT).
        checks: (label, epoch seconds) of the store's check times that day.
        defrost: declared defrost windows, epoch seconds.
        pharmacy: compute the mean kinetic temperature.
        calibration: the registered sensor, for its calibration dates.
        today: the store's local date, to tell an overdue calibration.
    """
    start, end = window
    cap = HOLD_INTERVALS * interval_s
    values = [v for _, v in samples]
    # Each point: (where its time in the day begins, value, when it was taken).
    points = [(ts, v, ts) for ts, v in samples]
    lead = before is not None and before[0] < start < before[0] + cap
    if before is not None and lead:
        points.insert(0, (start, before[1], before[0]))
    nexts = [p[0] for p in points[1:]] + [end] if points else []
    holds = [
        max(0.0, min(nxt, taken + cap, end) - ts)
        for (ts, _, taken), nxt in zip(points, nexts, strict=True)
    ]

    gaps: list[Gap] = []
    cursor = start
    for (ts, _, _), hold in zip(points, holds, strict=True):
        if ts > cursor:
            gaps.append(_gap(cursor, ts))
        cursor = max(cursor, ts + hold)
    if end > cursor:
        gaps.append(_gap(cursor, end))

    excursions: list[Excursion] = []
    run: list[int] = []
    run_side: tuple[Direction, float] | None = None
    minutes = {"above": 0.0, "below": 0.0}

    def close() -> None:
        assert run_side is not None
        excursions.append(_excursion(run, run_side, points, holds, defrost, lead=lead, day_end=end))

    for i, (ts, value, _) in enumerate(points):
        side = _beyond(value, limits)
        if side is not None:
            minutes[side[0]] += holds[i] / 60.0
        joined = (
            run
            and side == run_side
            and points[run[-1]][0] + holds[run[-1]] >= ts  # no gap inside a run
        )
        if run and not joined:
            close()
            run = []
        if side is not None:
            run.append(i)
            run_side = side
    if run:
        close()

    covered = math.fsum(holds)
    due = calibration.calibration_due if calibration else None
    return SensorDay(
        sensor=sensor,
        interval_s=interval_s,
        readings=len(samples),
        min_c=min(values) if values else None,
        max_c=max(values) if values else None,
        mean_c=math.fsum(values) / len(values) if values else None,
        mkt_c=mkt_c(values) if pharmacy and values else None,
        coverage_pct=100.0 * covered / (end - start) if end > start else 0.0,
        minutes_above=minutes["above"],
        minutes_below=minutes["below"],
        checks=[_check(label, at, points, holds) for label, at in checks],
        excursions=excursions,
        gaps=gaps,
        calibrated_at=calibration.calibrated_at if calibration else None,
        calibration_due=due,
        calibration_overdue=due is not None and today is not None and due < today,
    )


def _gap(start: float, end: float) -> Gap:
    return Gap(start=_utc(start), end=_utc(end), minutes=(end - start) / 60.0)


def _excursion(
    run: list[int],
    side: tuple[Direction, float],
    points: Sequence[tuple[float, float, float]],
    holds: Sequence[float],
    defrost: Sequence[tuple[float, float]],
    *,
    lead: bool,
    day_end: float,
) -> Excursion:
    direction, limit = side
    first, last = points[run[0]][0], points[run[-1]][0] + holds[run[-1]]
    beyond = [abs(points[i][1] - limit) for i in run]
    return Excursion(
        direction=direction,
        limit_c=limit,
        start=_utc(first),
        end=_utc(last),
        duration_min=(last - first) / 60.0,
        peak_c=(max if direction == "above" else min)(points[i][1] for i in run),
        degree_minutes=math.fsum(b * holds[i] / 60.0 for b, i in zip(beyond, run, strict=True)),
        readings=sum(1 for i in run if i > 0 or not lead),
        in_defrost=any(a < last and first < b for a, b in defrost),
        from_previous_day=lead and run[0] == 0,
        into_next_day=last >= day_end,
    )


def _check(
    label: str,
    at: float,
    points: Sequence[tuple[float, float, float]],
    holds: Sequence[float],
) -> CheckReading:
    found = None
    for (ts, value, taken), hold in zip(points, holds, strict=True):
        if ts > at:
            break
        found = (taken, value) if ts + hold > at or ts == at else None
    return CheckReading(
        check=label,
        due=_utc(at),
        at=_utc(found[0]) if found else None,
        value_c=found[1] if found else None,
    )


def alert_record(alert: Alert, names: dict[str, str] | None = None) -> AlertRecord:
    """An alert as the record shows it; ``names`` maps contact ids to people's names."""
    names = names or {}

    def opt(ts: float | None) -> datetime | None:
        return _utc(ts) if ts is not None else None

    return AlertRecord(
        id=alert.id, kind=alert.kind, severity=alert.severity, state=alert.state,
        asset=alert.asset, sensor=alert.sensor, opened_at=_utc(alert.opened_at),
        since=_utc(alert.since), level=alert.level, value=alert.value,
        limit_value=alert.limit_value, acked_at=opt(alert.acked_at), acked_by=alert.acked_by,
        acked_by_name=names.get(alert.acked_by or ""), ack_via=alert.ack_via,
        ack_note=alert.ack_note, resolved_at=opt(alert.resolved_at),
        resolved_by=alert.resolved_by, resolved_by_name=names.get(alert.resolved_by or ""),
        resolve_note=alert.resolve_note,
    )  # fmt: skip


def asset_limits(asset: Asset | None, store: Store) -> Limits:
    """The warn limits of the asset's alarm profile: the line food safety draws."""
    if asset is None:
        return Limits(None, None)
    lim = limits_for(asset, store)
    return Limits(lim.warn_above, lim.warn_below)


def build_report(
    *,
    registry: Registry,
    influx: TimeSeriesStore,
    clock: Clock,
    store_id: str,
    day: date,
) -> HaccpDay:
    """Query the day's temperatures and alerts and compute the record.

    Raises:
        NotFound: the store is not registered.
        ValueError: the day has not begun yet in the store's timezone.
    """
    store = registry.store(store_id)
    zone = ZoneInfo(store.timezone)
    start, day_end = day_bounds(day, zone)
    now = clock.time()
    if start > now:
        raise ValueError(f"{day} has not begun yet in {store.timezone}")
    end = min(day_end, now)
    series = influx.query(
        'SELECT "value" FROM "temperature" WHERE "store" = $store '
        f"AND time >= {int(start * 1000)}ms AND time < {int(end * 1000)}ms "
        'GROUP BY "asset", "sensor"',
        {"store": store_id},
    )
    previous = influx.query(
        'SELECT last("value") FROM "temperature" WHERE "store" = $store '
        f"AND time >= {int((start - LEAD_S) * 1000)}ms AND time < {int(start * 1000)}ms "
        'GROUP BY "asset", "sensor"',
        {"store": store_id},
    )
    before = {
        (s.tags.get("asset", ""), s.tags.get("sensor", "")): (
            s.values[0][0] / 1000.0,
            float(s.values[0][1]),
        )
        for s in previous
        if s.values and s.values[0][1] is not None
    }
    readings: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for s in series:
        key = (s.tags.get("asset", ""), s.tags.get("sensor", ""))
        readings.setdefault(key, []).extend(
            (row[0] / 1000.0, float(row[1])) for row in s.values if row[1] is not None
        )
    assets = {a.id: a for a in registry.assets(store_id)}
    # A registered sensor that measured temperature here in the week before but sent
    # nothing today gets an empty row: a silent probe is what the record must show. (The
    # registry does not say which sensors measure temperature; door contacts do not.)
    recent = influx.query(
        'SELECT last("value") FROM "temperature" WHERE "store" = $store '
        f"AND time >= {int((start - SILENT_LOOKBACK_S) * 1000)}ms "
        f'AND time < {int(end * 1000)}ms GROUP BY "sensor"',
        {"store": store_id},
    )
    measured = {s.tags.get("sensor") for s in recent}
    for sensor, _ in registry.sensors_with_state(assets=assets):
        if sensor.id in measured and not any(k[1] == sensor.id for k in readings):
            readings[(sensor.asset, sensor.id)] = []

    checks = local_instants(day, store.check_times, zone)
    today = datetime.fromtimestamp(now, zone).date()
    by_asset: dict[str, list[SensorDay]] = {}
    for (asset_id, sensor_id), samples in sorted(readings.items()):
        samples.sort()
        asset = assets.get(asset_id)
        registered = _sensor_or_none(registry, sensor_id)
        by_asset.setdefault(asset_id, []).append(
            sensor_day(
                sensor_id,
                samples,
                window=(start, end),
                interval_s=registered.interval if registered else DEFAULT_INTERVAL_S,
                limits=asset_limits(asset, store),
                before=before.get((asset_id, sensor_id)),
                checks=[(label, at) for label, at in checks if at < end],
                defrost=defrost_windows(asset.defrost if asset else None, day, zone),
                pharmacy=asset is not None and asset.type is AssetType.PHARMACY_FRIDGE,
                calibration=registered,
                today=today,
            )
        )
    asset_days = []
    for asset_id, sensors in by_asset.items():
        asset = assets.get(asset_id)
        lim = asset_limits(asset, store)
        asset_days.append(
            AssetDay(
                asset=asset_id,
                name=asset.name if asset else asset_id,
                type=asset.type if asset else None,
                upper_c=lim.upper,
                lower_c=lim.lower,
                defrost=[
                    Window(start=_utc(a), end=_utc(b))
                    for a, b in defrost_windows(asset.defrost if asset else None, day, zone)
                ],
                sensors=sensors,
            )
        )
    names = {c.id: c.name for c in registry.contacts()}
    alerts = [alert_record(a, names) for a in AlertBook(registry).overlapping(store_id, start, end)]
    report = HaccpReport(
        store=store.id,
        store_name=store.name,
        country=store.country,
        timezone=store.timezone,
        date=day,
        start=_utc(start),
        end=_utc(end),
        complete=end >= day_end,
        generated_at=_utc(now),
        check_times=store.check_times,
        assets=asset_days,
        alerts=alerts,
        excursions=sum(len(s.excursions) for a in asset_days for s in a.sensors),
        readings=sum(s.readings for a in asset_days for s in a.sensors),
    )
    return HaccpDay(report=report, series=readings)


def _sensor_or_none(registry: Registry, sensor_id: str) -> Sensor | None:
    try:
        sensor, _retired = registry.sensor(sensor_id)
    except NotFound:
        return None
    return sensor
