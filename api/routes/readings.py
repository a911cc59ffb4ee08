"""Readings from InfluxDB: the latest of every sensor of a store, and a sensor's history.

Every value that comes from the request reaches InfluxQL as a bind parameter
(``$store``, ``$sensor``) or as an integer computed here (times); identifiers are the
fixed measurement names of :class:`~core.types.Quantity`. Nothing a client sends is
spliced into query text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from api.auth import Anyone, Principal
from api.context import Context, Ctx
from api.errors import Unprocessable, responses
from api.latest import Entry
from api.schemas import (
    ID_PATTERN,
    SENSOR_ID_PATTERN,
    HistoryOut,
    HistoryPoint,
    LatestOut,
    LatestValue,
    SensorLatest,
    utc_required,
)
from core.chain import parse_duration
from core.influx import quote_ident
from core.types import Quantity

router = APIRouter(tags=["readings"])

# Latest readings look back this far. Too short and a sensor silent for longer shows no
# value at all (it is still listed, with no readings); too long and the query opens more
# InfluxDB shards (7-day shard groups by default), which costs the 20 ms p99 target.
LATEST_LOOKBACK_S = 2 * 86400
# History: the widest range one request may ask for. Too small and a monthly HACCP review
# needs several calls; too large and one request scans months of raw points.
MAX_RANGE_S = 31 * 86400
# Default history range when start is not given.
DEFAULT_RANGE_S = 86400
# Raw points returned at most (a week at one reading a minute is 10,080). Too low and a
# week's raw curve is cut; too high and one response is tens of MB of JSON.
MAX_RAW_POINTS = 20_000
# Downsampled buckets at most per request (a month at 5 min is 8,928). Too low forces
# coarse buckets on long ranges; too high has the problem of raw points above.
MAX_BUCKETS = 10_000
# The finest downsampling bucket: finer than devices report only repeats raw points.
MIN_EVERY_S = 10.0

# Times a query may name: InfluxDB keeps int64 nanoseconds (1677-09-21 to 2262-04-11) and
# refuses anything outside; nothing a device reported predates the Unix epoch.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)

_ALL = ", ".join(quote_ident(q.value) for q in Quantity)


def _ns(ts: float) -> int:
    return round(ts * 1_000_000) * 1000


def _json(model: BaseModel) -> Response:
    """Serialise once: the hot read paths skip FastAPI's re-validation of a model built
    here (``response_model`` still documents the shape, and the tests check it)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _store_clause(who: Principal, params: dict[str, str | int | float]) -> str:
    """For a scoped key: only points written while the sensor was in one of its stores."""
    if not who.scoped:
        return ""
    names = []
    for i, store in enumerate(who.key.stores):
        params[f"s{i}"] = store
        names.append(f'"store" = $s{i}')
    return f" AND ({' OR '.join(names)})"


@router.get("/readings/latest", response_model=LatestOut, responses=responses(401, 403, 404, 503))
def latest(
    ctx: Ctx,
    who: Anyone,
    store: Annotated[str, Query(pattern=ID_PATTERN, description="Store id")],
) -> Response:
    """The last value of every quantity of every active sensor of a store.

    Served from the latest-value cache when ingest runs in this process (``coldchain
    run``) or publishes its observations (split mode; see :mod:`api.latest`), else by one
    InfluxQL statement over the five measurements, grouped by sensor. Sensors that have
    not reported within the look-back window are listed with no readings.
    """
    who.check_store(store)
    layout = ctx.layouts.get(ctx.deps.registry, store)  # 404 for an unknown store
    since = ctx.deps.clock.time() - LATEST_LOOKBACK_S
    cache = ctx.deps.latest
    if cache is not None and cache.primed(store):
        values = cache.latest(store, _ns(since))
    else:
        epoch = cache.epoch if cache is not None else 0
        values = _query_latest(ctx, store, since)
        if cache is not None:
            cache.prime(store, values, epoch)
    found = {
        sensor: {
            quantity: LatestValue(time=utc_required(ts_ms / 1000), value=value)
            for quantity, (ts_ms, value) in quantities.items()
        }
        for sensor, quantities in values.items()
    }
    out = LatestOut(
        store=store,
        since=utc_required(since),
        sensors=[
            SensorLatest(
                sensor=sensor,
                asset=asset,
                asset_type=asset_type,
                readings=found.get(sensor, {}),
            )
            for sensor, asset, asset_type in layout
        ],
    )
    return _json(out)


def _query_latest(ctx: Context, store: str, since: float) -> dict[str, dict[Quantity, Entry]]:
    """The newest (ms, value) per sensor and quantity of ``store`` after ``since``."""
    series = ctx.deps.influx.query(
        f'SELECT last("value") FROM {_ALL} WHERE "store" = $store AND time > {_ns(since)} '
        'GROUP BY "sensor"',
        {"store": store},
    )
    found: dict[str, dict[Quantity, Entry]] = {}
    for s in series:
        sensor = s.tags.get("sensor")
        if sensor is None or not s.values or s.values[0][1] is None:
            continue
        found.setdefault(sensor, {})[Quantity(s.name)] = (
            int(s.values[0][0]),
            float(s.values[0][1]),
        )
    return found


@router.get("/readings", response_model=HistoryOut, responses=responses(401, 403, 404, 503))
def history(
    ctx: Ctx,
    who: Anyone,
    sensor: Annotated[str, Query(pattern=SENSOR_ID_PATTERN, description="Sensor id")],
    start: Annotated[
        datetime | None, Query(description="ISO 8601 with a UTC offset; default end - 24 h")
    ] = None,
    end: Annotated[
        datetime | None, Query(description="ISO 8601 with a UTC offset; default now")
    ] = None,
    every: Annotated[
        str | None,
        Query(pattern=r"^[1-9][0-9]{0,6}[smhd]$", description="Bucket for mean(), e.g. 5m"),
    ] = None,
    quantity: Quantity = Quantity.TEMPERATURE,
) -> Response:
    """A sensor's readings of one quantity in ``[start, end)``, raw or averaged per bucket.

    Each point carries the asset the sensor was on when it was written, so the history of
    a moved sensor shows where each reading was taken.
    """
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise Unprocessable(["query", name], "needs a UTC offset (e.g. 2026-05-10T00:00Z)")
        if value is not None and not EARLIEST <= value < LATEST:
            raise Unprocessable(["query", name], f"must be between {EARLIEST:%Y} and {LATEST:%Y}")
    end = end or ctx.deps.clock.now()
    start = start or max(EARLIEST, end - timedelta(seconds=DEFAULT_RANGE_S))
    if start >= end:
        raise Unprocessable(["query", "start"], "must be before end")
    span = (end - start).total_seconds()
    if span > MAX_RANGE_S:
        raise Unprocessable(["query", "end"], f"the range is at most {MAX_RANGE_S // 86400} days")
    every_s = parse_duration(every) if every else None
    if every_s is not None:
        if not MIN_EVERY_S <= every_s <= MAX_RANGE_S:
            raise Unprocessable(
                ["query", "every"], f"between {MIN_EVERY_S:g}s and {MAX_RANGE_S // 86400}d"
            )
        if span / every_s > MAX_BUCKETS:
            raise Unprocessable(
                ["query", "every"],
                f"{span / every_s:.0f} buckets; at most {MAX_BUCKETS}: use a larger every",
            )
    registry = ctx.deps.registry
    found, _retired = registry.sensor(sensor)  # 404 for an unknown sensor
    if who.scoped:
        who.check_store(registry.asset(found.asset).store)
    params: dict[str, str | int | float] = {"sensor": sensor}
    where = (
        f'"sensor" = $sensor AND time >= {_ns(start.timestamp())} AND time < {_ns(end.timestamp())}'
        + _store_clause(who, params)
    )
    measurement = quote_ident(quantity.value)
    points: list[HistoryPoint] = []
    truncated = False
    if every_s is None:
        series = ctx.deps.influx.query(
            f'SELECT "value", "asset" FROM {measurement} WHERE {where} '
            f"ORDER BY time LIMIT {MAX_RAW_POINTS + 1}",
            params,
        )
        rows: list[dict[str, Any]] = [r for s in series for r in s.rows()]
        truncated = len(rows) > MAX_RAW_POINTS
        rows = rows[:MAX_RAW_POINTS]
    else:
        series = ctx.deps.influx.query(
            f'SELECT mean("value") AS "value" FROM {measurement} WHERE {where} '
            f'GROUP BY time({int(every_s)}s), "asset" fill(none)',
            params,
        )
        rows = sorted((r for s in series for r in s.rows()), key=lambda r: r["time"])
    for row in rows:
        value = row.get("value")
        if value is None:
            continue
        points.append(
            HistoryPoint(
                time=utc_required(row["time"] / 1000), value=float(value), asset=row.get("asset")
            )
        )
    return _json(
        HistoryOut(
            sensor=sensor,
            quantity=quantity,
            start=start,
            end=end,
            every=every,
            points=points,
            truncated=truncated,
        )
    )
