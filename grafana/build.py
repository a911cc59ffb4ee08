#!/usr/bin/env python3
"""Generate coldchain's Grafana dashboards (``grafana/dashboards/*.json``) from code.

Run from the repository root with the project's virtualenv::

    .venv/bin/python grafana/build.py          # rewrite the JSON files
    .venv/bin/python grafana/build.py --check  # exit 1 when a file is out of date

``grafana/`` is not a package of the distribution, so this is a script, not a module; the
JSON it writes is committed next to it and ``tests/grafana/test_dashboards.py`` fails when
the two disagree. The same test runs every query below against a real InfluxDB filled by
the real ingester, so a query is only as clever as InfluxDB 1.x lets it be.

Every query is InfluxQL over what ingest and alerting write (DESIGN.md §3): the readings
``temperature``, ``humidity``, ``door``, ``battery`` and ``signal`` (tags ``store``,
``asset``, ``asset_type``, ``sensor``; field ``value``), ``sensor_fault``,
``device_status`` and ``alert_event``. Three InfluxQL facts shape the queries:

- ``alert_id`` is a field, so InfluxQL cannot group by alert. An alert is followed by its
  *key* ``(store, asset, kind)``, which the alert book keeps to one open alert at a time
  (except sensor-level kinds on one asset; see grafana/README.md, "Gaps").
- A time condition on an outer query is pushed into its subqueries, so "last reading
  older than N minutes" cannot be a time filter; silence is computed by summing a 1 for
  "reported recently" and a 0 for "known" per sensor and keeping the zeros.
- ``count()`` of nothing is null, not 0; numeric flags (``last(x) * 0 + 1``) stand in.

Temperature thresholds come from the asset-type defaults in :mod:`alerting.profiles`, so
a change there shows up here as an out-of-date dashboard. The real limits are per asset
(country, store and asset overrides) and are served by the API.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from alerting.profiles import DEFAULTS, Limits

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

SCHEMA_VERSION = 39  # Grafana 10.2+; 10.x and 11.x migrate it forward on load
INFLUX = {"type": "influxdb", "uid": "coldchain-influx"}
PROM = {"type": "prometheus", "uid": "coldchain-prom"}
TAGS = ["coldchain"]

# How far back the "current state" of alerts is read, whatever the time picker says. An
# alert open longer than this drops out of the open counts; a longer window makes every
# refresh read more alert_event history (a handful of points per alert, so it is cheap).
ALERT_WINDOW = "30d"
# A unit or sensor is "known" when it reported within this window. Too short and a sensor
# dead for longer is no longer listed as silent (its sensor_silent alert still is); too
# long and every refresh runs last() over that many days of every sensor's readings.
KNOWN_WINDOW = "2d"
# Rows of the newest unregistered readings shown (more belong in /devices/discovered).
UNREGISTERED_ROWS = 50
# device_status is written only when a device connects or its last will fires, so the
# last status can be old; a device silent on the bus for longer than this is not listed.
STATUS_WINDOW = "30d"
# Battery percentage under which a sensor is listed as low (alerting's default).
LOW_BATTERY_PCT = 20

STORE = '"store" =~ /^$store$/'
ASSET = '"asset" =~ /^$asset$/'
SENSOR = '"sensor" =~ /^$sensor$/'
READINGS = ("temperature", "humidity", "door", "battery", "signal")
FROM_READINGS = ", ".join(f'"{m}"' for m in READINGS)

Json = dict[str, Any]


# -- queries ------------------------------------------------------------------------------


def last_alert_event(select: str, where: str = "") -> str:
    """The last alert_event of every alert key (store, asset, kind) in the alert window."""
    extra = f" AND {where}" if where else ""
    return (
        f'SELECT {select} FROM "alert_event" WHERE {STORE}{extra} '
        f'AND time > now() - {ALERT_WINDOW} GROUP BY "store", "asset", "kind"'
    )


def open_alerts_count(condition: str) -> str:
    """How many alert keys are open (last event not ``resolved``) and match ``condition``."""
    inner = last_alert_event('last("state") AS "state", "severity", "level"')
    return (
        f'SELECT count("state") AS "open" FROM ({inner}) '
        f"WHERE \"state\" <> 'resolved' AND {condition}"
    )


OPEN_ALERTS_NOW = (
    'SELECT "state", "severity", "level", "alert_id" FROM ('
    + last_alert_event('last("state") AS "state", "severity", "level", "alert_id"')
    + ') WHERE "state" <> \'resolved\' GROUP BY "store", "asset", "kind"'
)

# One row per store: open alert keys by severity and the highest escalation level. Two
# copies of the same subquery carry the state under different names so that one outer
# WHERE can count critical and warning keys separately (InfluxQL has no CASE).
STORES_WORST_FIRST = (
    'SELECT count("crit_state") AS "critical", count("warn_state") AS "warning", '
    'max("level") AS "max_level" FROM ('
    + last_alert_event('last("state") AS "crit_state", "severity" AS "crit_sev", "level"')
    + "), ("
    + last_alert_event('last("state") AS "warn_state", "severity" AS "warn_sev", "level"')
    + ") WHERE (\"crit_state\" <> 'resolved' AND \"crit_sev\" = 'critical') "
    'OR ("warn_state" <> \'resolved\' AND "warn_sev" = \'warning\') GROUP BY "store"'
)

# Opening time of each open alert: among the opening events (firing at level 0) and the
# resolutions of a key, the last one is an opening exactly when the alert is still open.
OPEN_ALERTS_BY_AGE = (
    'SELECT "alert_id", "severity" FROM ('
    + last_alert_event(
        'last("state") AS "state", "alert_id", "severity"',
        '("state" = \'resolved\' OR ("state" = \'firing\' AND "level" = 0))',
    )
    + ') WHERE "state" = \'firing\' GROUP BY "store", "asset", "kind"'
)


def reporting_flags(measurement: str, by: Sequence[str], value_alias: str | None = None) -> str:
    """Two subqueries per ``by`` group: r=1 if it reported within $silence, r=0 if known."""
    group = ", ".join(f'"{tag}"' for tag in by)
    extra = f', last("value") AS "{value_alias}"' if value_alias else ""
    return (
        f'(SELECT last("value") * 0 + 1 AS "r" FROM "{measurement}" '
        f"WHERE {STORE} AND time > now() - $silence GROUP BY {group}), "
        f'(SELECT last("value") * 0 AS "r"{extra} FROM "{measurement}" '
        f"WHERE {STORE} AND time > now() - {KNOWN_WINDOW} GROUP BY {group})"
    )


def _units_by_asset() -> str:
    """Per unit: 1 if any of its sensors reported a temperature within $silence, else 0."""
    flags = reporting_flags("temperature", ("store", "asset"))
    return f'SELECT max("r") AS "reporting" FROM {flags} GROUP BY "store", "asset"'


UNITS_PER_STORE = (
    'SELECT count("reporting") AS "units", sum("reporting") AS "reporting", '
    'count("reporting") - sum("reporting") AS "silent" '
    f'FROM ({_units_by_asset()}) GROUP BY "store"'
)
SILENT_UNITS = (
    f'SELECT count("reporting") - sum("reporting") AS "silent" FROM ({_units_by_asset()})'
)

_SENSOR_KEYS = ("store", "asset", "sensor")
_SILENT_SENSOR_ROWS = (
    f'SELECT max("r") AS "r", last("v") AS "last" FROM '
    f"{reporting_flags('temperature', _SENSOR_KEYS, 'v')} "
    'GROUP BY "store", "asset", "sensor"'
)
SILENT_SENSORS = (
    f'SELECT "last" FROM ({_SILENT_SENSOR_ROWS}) WHERE "r" = 0 GROUP BY "store", "asset", "sensor"'
)
SILENT_SENSORS_PER_STORE = (
    f'SELECT count("last") AS "silent" FROM ({_SILENT_SENSOR_ROWS}) WHERE "r" = 0 GROUP BY "store"'
)


DEVICES_OFFLINE = (
    'SELECT count("online") AS "offline" FROM (SELECT last("value") AS "online" '
    f'FROM "device_status" WHERE {STORE} AND time > now() - {STATUS_WINDOW} GROUP BY "device") '
    'WHERE "online" = 0'
)


def last_per_sensor(measurement: str, alias: str, where: str) -> str:
    """The last value (and, as the row time, when it came) per sensor in the known window."""
    return (
        f'SELECT last("value") AS "{alias}" FROM "{measurement}" WHERE {where} '
        f'AND time > now() - {KNOWN_WINDOW} GROUP BY "store", "asset", "sensor"'
    )


# Time to acknowledge: per alert key, keep the opening events (firing, level 0) and the
# acknowledgements; elapsed() is the time since the previous kept event and difference()
# of the level is positive only for an acknowledgement that follows an opening (an
# opening after anything is <= 0). Known error: a second acknowledgement after a
# re-escalation counts from the first one (README.md, "Gaps").
TIME_TO_ACK_PAIRS = (
    'SELECT elapsed("level", 1s) AS "tta", difference("level") AS "step" FROM "alert_event" '
    f'WHERE {STORE} AND ("state" = \'acknowledged\' OR ("state" = \'firing\' AND "level" = 0)) '
    'AND $timeFilter GROUP BY "store", "asset", "kind"'
)
TIME_TO_ACK_BY_STORE = (
    'SELECT mean("tta") AS "mean", max("tta") AS "max", count("tta") AS "acknowledged" '
    f'FROM ({TIME_TO_ACK_PAIRS}) WHERE "step" > 0 GROUP BY "store"'
)
TIME_TO_ACK_BY_HOUR = (
    'SELECT mean("tta") AS "mean", max("tta") AS "max" '
    f'FROM ({TIME_TO_ACK_PAIRS}) WHERE "step" > 0 AND $timeFilter GROUP BY time(1h) fill(none)'
)

ALERTS_OPENED = (
    'SELECT count("alert_id") AS "opened" FROM "alert_event" '
    f'WHERE {STORE} AND "state" = \'firing\' AND "level" = 0 AND $timeFilter '
    "GROUP BY time($__interval), {by} fill(none)"
)

ALERT_HISTORY = (
    'SELECT "alert_id", "state", "level", "severity", "kind", "asset", "store" '
    f'FROM "alert_event" WHERE {STORE} AND $timeFilter ORDER BY time DESC LIMIT 1000'
)


def alert_annotation_query(where: str) -> str:
    """alert_event points as annotations (title: kind, text: state)."""
    return (
        'SELECT "state", "kind", "severity", "asset", "alert_id", "level" FROM "alert_event" '
        f"WHERE {where} AND $timeFilter"
    )


# -- thresholds ---------------------------------------------------------------------------


def temperature_steps(limits: Limits) -> list[Json]:
    """Grafana threshold steps for an asset type's default limits, coldest band first.

    Bands: below the critical floor (dark blue), below the warn floor (blue), in range
    (green), above the warn limit (yellow), above the critical limit (red), above the hard
    ceiling (dark red). Equal limits keep the more severe colour.
    """
    floors = [v for v in (limits.critical_below, limits.hard_floor) if v is not None]
    floor = max(floors) if floors else None
    bands = [
        (floor, "blue" if limits.warn_below is not None else "green"),
        (limits.warn_below, "green"),
        (limits.warn_above, "yellow"),
        (limits.critical_above, "red"),
        (limits.hard_ceiling, "dark-red"),
    ]
    if floor is not None:
        base = "dark-blue"
    elif limits.warn_below is not None:
        base = "blue"
    else:
        base = "green"
    steps: list[Json] = [{"color": base, "value": None}]
    for value, color in sorted(((v, c) for v, c in bands if v is not None), key=lambda b: b[0]):
        if steps[-1]["value"] == value:
            steps[-1]["color"] = color  # sorted() is stable: the later, more severe band
        else:
            steps.append({"color": color, "value": value})
    return steps


def per_type_threshold_overrides() -> list[Json]:
    """Field overrides giving each ``... (<asset_type>)`` series its type's thresholds."""
    return [
        {
            "matcher": {"id": "byRegexp", "options": f".*\\({asset_type.value}\\)$"},
            "properties": [
                {
                    "id": "thresholds",
                    "value": {"mode": "absolute", "steps": temperature_steps(limits)},
                },
                {"id": "custom.thresholdsStyle", "value": {"mode": "line+area"}},
            ],
        }
        for asset_type, limits in DEFAULTS.items()
    ]


def _steps(*pairs: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in pairs]}


# -- panels -------------------------------------------------------------------------------


def influx(query: str, ref: str = "A", *, table: bool = False, alias: str = "") -> Json:
    """A raw InfluxQL target."""
    target: Json = {
        "datasource": INFLUX,
        "refId": ref,
        "rawQuery": True,
        "query": query,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        target["alias"] = alias
    return target


def prom(expr: str, ref: str, legend: str) -> Json:
    """A PromQL target on the optional Prometheus data source."""
    return {"datasource": PROM, "refId": ref, "expr": expr, "legendFormat": legend}


def panel(
    kind: str,
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    size: tuple[int, int] = (12, 8),
    unit: str | None = None,
    decimals: int | None = None,
    thresholds: Json | None = None,
    custom: Json | None = None,
    overrides: Iterable[Json] = (),
    options: Json | None = None,
    no_value: str | None = None,
    mappings: Sequence[Json] = (),
    transformations: Sequence[Json] = (),
    repeat: str | None = None,
    interval: str | None = None,
) -> Json:
    """One panel; ``size`` is (width, height) in grid units, placed by :class:`Grid`."""
    defaults: Json = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if thresholds:
        defaults["thresholds"] = thresholds
    if custom:
        defaults["custom"] = custom
    if no_value is not None:
        defaults["noValue"] = no_value
    if mappings:
        defaults["mappings"] = list(mappings)
    out: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"] if targets else INFLUX,
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": options or {},
        "targets": list(targets),
        "_size": size,
    }
    if transformations:
        out["transformations"] = list(transformations)
    if repeat:
        out["repeat"] = repeat
        out["repeatDirection"] = "h"
        out["maxPerRow"] = 2
    if interval:
        out["interval"] = interval
    return out


def timeseries(title: str, description: str, targets: Sequence[Json], **kw: Any) -> Json:
    """A time series panel; ``bars=True`` draws bars (counts per bucket)."""
    bars = kw.pop("bars", False)
    custom: Json = {"drawStyle": "bars", "fillOpacity": 60} if bars else {"lineWidth": 1}
    custom.update({"spanNulls": False, "showPoints": "never"})
    custom.update(kw.pop("custom", {}))
    options = {
        "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, description, targets, custom=custom, options=options, **kw)


def table(
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    sort: tuple[str, bool] | None = None,
    **kw: Any,
) -> Json:
    """A table panel; ``sort`` is (column, descending)."""
    options: Json = {"showHeader": True, "cellHeight": "sm"}
    if sort:
        options["sortBy"] = [{"displayName": sort[0], "desc": sort[1]}]
    return panel("table", title, description, targets, options=options, **kw)


def stat(title: str, description: str, targets: Sequence[Json], **kw: Any) -> Json:
    """A stat panel of the last value of each series."""
    fields = kw.pop("fields", "")
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": False},
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "value_and_name",
        "justifyMode": "auto",
    }
    return panel("stat", title, description, targets, options=options, **kw)


def bargauge(title: str, description: str, targets: Sequence[Json], **kw: Any) -> Json:
    """A horizontal bar gauge of the last value of each series."""
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
    }
    return panel("bargauge", title, description, targets, options=options, **kw)


def rename(column: str, name: str, unit: str | None = None, **extra: Any) -> Json:
    """A table override: display ``column`` as ``name`` (and with ``unit``)."""
    properties: list[Json] = [{"id": "displayName", "value": name}]
    if unit:
        properties.append({"id": "unit", "value": unit})
    properties.extend({"id": key.replace("__", "."), "value": v} for key, v in extra.items())
    return {"matcher": {"id": "byName", "options": column}, "properties": properties}


def link_to(dashboard_uid: str, variable: str) -> Json:
    """A table override making ``variable``'s column a link to another dashboard.

    A link to the asset dashboard also carries the row's store (that dashboard's store
    variable is single-valued and the asset list depends on it).
    """
    url = f"/d/{dashboard_uid}?var-{variable}=${{__value.raw}}&${{__url_time_range}}"
    if variable == "asset":
        url += "&var-store=${__data.fields.store}"
    return {
        "matcher": {"id": "byName", "options": variable},
        "properties": [
            {
                "id": "links",
                "value": [{"title": f"Open {variable} ${{__value.raw}}", "url": url}],
            }
        ],
    }


HIDE_EPOCH_TIME = {"id": "organize", "options": {"excludeByName": {"Time": True}}}
AGE = "dateTimeFromNow"
ONLINE_MAPPING = {
    "type": "value",
    "options": {
        "0": {"text": "offline", "color": "red", "index": 0},
        "1": {"text": "online", "color": "green", "index": 1},
    },
}
ALERT_STATE_MAPPING = {
    "type": "value",
    "options": {
        "firing": {"color": "red", "index": 0},
        "escalated": {"color": "dark-red", "index": 1},
        "acknowledged": {"color": "yellow", "index": 2},
        "resolved": {"color": "green", "index": 3},
    },
}
SEVERITY_COLORS = [
    {
        "matcher": {"id": "byName", "options": "severity"},
        "properties": [
            {
                "id": "mappings",
                "value": [
                    {
                        "type": "value",
                        "options": {
                            "critical": {"color": "red", "index": 0},
                            "warning": {"color": "orange", "index": 1},
                        },
                    }
                ],
            },
            {"id": "custom.cellOptions", "value": {"type": "color-text"}},
        ],
    }
]


def row(title: str, panels: Sequence[Json] = (), *, collapsed: bool = False) -> Json:
    """A dashboard row; a collapsed row carries its panels inside it."""
    return {
        "type": "row",
        "title": title,
        "collapsed": collapsed,
        "panels": list(panels),
        "_size": (24, 1),
    }


class Grid:
    """Places panels left to right on Grafana's 24-column grid, assigning ids."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.line_height = 0
        self.next_id = 1

    def layout(self, items: Sequence[Json]) -> list[Json]:
        """Every item placed; rows start a line and close it."""
        placed: list[Json] = []
        for item in items:
            body = dict(item)
            width, height = body.pop("_size")
            if self.x + width > 24 or body["type"] == "row":
                self.newline()
            head = {
                "id": self.next_id,
                "gridPos": {"x": self.x, "y": self.y, "w": width, "h": height},
            }
            self.next_id += 1
            if body["type"] == "row":
                inner = Grid()
                inner.y, inner.next_id = self.y + 1, self.next_id
                body["panels"] = inner.layout(body["panels"])
                self.next_id = inner.next_id
                self.y += 1
                placed.append(head | body)
                continue
            self.x += width
            self.line_height = max(self.line_height, height)
            placed.append(head | body)
        return placed

    def newline(self) -> None:
        """Start a new line below the tallest panel of the current one."""
        if self.x:
            self.y += self.line_height
        self.x = 0
        self.line_height = 0


# -- template variables and annotations ---------------------------------------------------


def query_var(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool = True,
    regex: str = "",
    hide: int = 0,
) -> Json:
    """A variable filled by an InfluxQL ``SHOW TAG VALUES`` query."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": INFLUX,
        "query": query,
        "definition": query,
        "regex": regex,
        "refresh": 1,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        # Multi-value variables start on "All"; single-value ones on the first value.
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "options": [],
        "hide": hide,
    }


def tag_values(key: str, measurement: str = "temperature", where: str = "") -> str:
    """``SHOW TAG VALUES`` of one tag key."""
    clause = f" WHERE {where}" if where else ""
    return f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{key}"{clause}'


STORE_VAR = query_var("store", "Store", tag_values("store"))
SINGLE_STORE_VAR = query_var("store", "Store", tag_values("store"), multi=False)
ASSET_VAR = query_var("asset", "Asset", tag_values("asset", where=STORE))
SILENCE_VAR: Json = {
    "name": "silence",
    "label": "Silent after",
    "type": "custom",
    "query": "15m,30m,1h,3h",
    "current": {"text": "30m", "value": "30m", "selected": True},
    "options": [
        {"text": v, "value": v, "selected": v == "30m"} for v in ("15m", "30m", "1h", "3h")
    ],
    "multi": False,
    "includeAll": False,
    "hide": 0,
}

BUILTIN_ANNOTATION: Json = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def alert_annotation(where: str) -> Json:
    """Alert events as annotations (legacy fields and the target form Grafana 10+ reads)."""
    query = alert_annotation_query(where)
    columns = {
        "titleColumn": "kind",
        "textColumn": "state",
        "tagsColumn": "severity,asset,alert_id",
    }
    return {
        "name": "Alert events",
        "datasource": INFLUX,
        "enable": True,
        "iconColor": "red",
        "query": query,
        **columns,
        "target": {"refId": "Anno", "rawQuery": True, "query": query, **columns},
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: Sequence[Json],
    variables: Sequence[Json],
    *,
    annotations: Sequence[Json] = (),
    time_from: str = "now-6h",
) -> Json:
    """A whole dashboard."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [
            {
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "title": "coldchain",
                "icon": "external link",
            }
        ],
        "annotations": {"list": [BUILTIN_ANNOTATION, *annotations]},
        "templating": {"list": list(variables)},
        "panels": Grid().layout(panels),
    }


# -- dashboards ---------------------------------------------------------------------------

OPEN_ALERT_COLUMNS = [
    rename("Time", "Last change", AGE),
    rename("state", "State", custom__cellOptions={"type": "color-text"}),
    rename("level", "Level"),
    link_to("coldchain-store", "store"),
    link_to("coldchain-asset", "asset"),
    *SEVERITY_COLORS,
]


def chain_overview() -> Json:
    """Every store at a glance: open alerts by severity, age and level; silent units."""
    alert_thresholds = _steps((None, "green"), (1, "red"))
    panels = [
        stat(
            "Open critical alerts",
            "Alert keys (store, asset, kind) whose last alert_event is not 'resolved'.",
            [influx(open_alerts_count("\"severity\" = 'critical'"), alias="critical")],
            size=(6, 4),
            thresholds=alert_thresholds,
            no_value="0",
        ),
        stat(
            "Open warnings",
            "Alert keys whose last alert_event is not 'resolved', severity warning.",
            [influx(open_alerts_count("\"severity\" = 'warning'"), alias="warning")],
            size=(6, 4),
            thresholds=_steps((None, "green"), (1, "orange")),
            no_value="0",
        ),
        stat(
            "Silent units",
            f"Units that reported a temperature in the last {KNOWN_WINDOW} but none in the "
            "last $silence.",
            [influx(SILENT_UNITS, alias="silent")],
            size=(6, 4),
            thresholds=_steps((None, "green"), (1, "purple")),
            no_value="0",
        ),
        stat(
            "Devices offline",
            "Devices whose last availability message (MQTT last will) says offline. "
            "LoRaWAN devices have no last will and are never listed here.",
            [influx(DEVICES_OFFLINE, alias="offline")],
            size=(6, 4),
            thresholds=_steps((None, "green"), (1, "red")),
            no_value="0",
        ),
        table(
            "Stores, worst first",
            "Open alert keys per store by severity and the highest escalation level reached "
            "(0: not yet paged). Only stores with open alerts are listed; click a store "
            "to open its dashboard.",
            [influx(STORES_WORST_FIRST, table=True)],
            size=(12, 9),
            sort=("critical", True),
            no_value="0",
            overrides=[
                rename("critical", "Critical", custom__cellOptions={"type": "color-background"}),
                rename("warning", "Warning"),
                rename("max_level", "Highest level"),
                link_to("coldchain-store", "store"),
            ],
            thresholds=_steps((None, "transparent"), (1, "red")),
            transformations=[HIDE_EPOCH_TIME],
        ),
        table(
            "Units per store",
            f"Units (assets) that reported a temperature in the last {KNOWN_WINDOW}, "
            "those that reported in the last $silence, and the silent rest. Whether a "
            "unit is in range needs its limits, which live in the registry: see the "
            "open alerts instead.",
            [influx(UNITS_PER_STORE, table=True)],
            size=(12, 9),
            sort=("silent", True),
            overrides=[
                rename("units", "Units"),
                rename("reporting", "Reporting"),
                rename("silent", "Silent", custom__cellOptions={"type": "color-background"}),
                link_to("coldchain-store", "store"),
            ],
            thresholds=_steps((None, "transparent"), (1, "purple")),
            transformations=[HIDE_EPOCH_TIME],
        ),
        table(
            "Open alerts by age",
            "Each open alert with the time it opened (its first 'firing' event), oldest "
            "first. Severity is the one it opened with; the Alerts dashboard shows the "
            "current one and the escalation level.",
            [influx(OPEN_ALERTS_BY_AGE, table=True)],
            size=(14, 9),
            sort=("Opened", False),
            overrides=[
                rename("Time", "Opened", AGE),
                link_to("coldchain-store", "store"),
                link_to("coldchain-asset", "asset"),
                *SEVERITY_COLORS,
            ],
        ),
        bargauge(
            "Open alerts by escalation level",
            "Open alert keys by the number of escalation steps run: 0 = not yet paged, "
            "1 = first contact paged, 2 and more = escalated.",
            [
                influx(open_alerts_count('"level" = 0'), "A", alias="level 0"),
                influx(open_alerts_count('"level" = 1'), "B", alias="level 1"),
                influx(open_alerts_count('"level" = 2'), "C", alias="level 2"),
                influx(open_alerts_count('"level" >= 3'), "D", alias="level 3+"),
            ],
            size=(10, 9),
            thresholds=_steps((None, "green"), (1, "orange")),
            no_value="0",
        ),
        timeseries(
            "Alerts opened per store",
            "Alerts opened (first 'firing' event) per store and interval.",
            [influx(ALERTS_OPENED.format(by='"store"'), alias="$tag_store")],
            size=(24, 8),
            bars=True,
        ),
    ]
    return dashboard(
        "coldchain-overview",
        "coldchain · Chain overview",
        "Every store's open alerts, silent units and offline devices.",
        panels,
        [STORE_VAR, SILENCE_VAR],
    )


def store_dashboard() -> Json:
    """One store: temperatures against their limits, doors, faults, alert annotations."""
    asset_type_var = query_var(
        "asset_type",
        "Asset type",
        tag_values("asset_type", where=f"{STORE} AND {ASSET}"),
        hide=2,
    )
    temperature_by_type = (
        'SELECT max("value") AS "temperature" FROM "temperature" '
        f'WHERE {STORE} AND {ASSET} AND "asset_type" =~ /^$asset_type$/ AND $timeFilter '
        'GROUP BY time($__interval), "asset", "asset_type" fill(null)'
    )
    door_openings = (
        'SELECT count("opened") AS "openings" FROM (SELECT difference("value") AS "opened" '
        f'FROM "door" WHERE {STORE} AND {ASSET} AND $timeFilter GROUP BY "asset", "sensor") '
        'WHERE "opened" > 0 AND $timeFilter GROUP BY time(1h), "asset" fill(0)'
    )
    door_share = (
        'SELECT mean("value") * 100 AS "open" FROM "door" '
        f"WHERE {STORE} AND {ASSET} AND $timeFilter "
        'GROUP BY time($__interval), "asset" fill(null)'
    )
    humidity = (
        'SELECT mean("value") AS "humidity" FROM "humidity" '
        f"WHERE {STORE} AND {ASSET} AND $timeFilter "
        'GROUP BY time($__interval), "asset" fill(null)'
    )
    faults = (
        'SELECT count("value") AS "faults" FROM "sensor_fault" '
        f"WHERE {STORE} AND {ASSET} AND $timeFilter "
        'GROUP BY time($__interval), "asset", "code" fill(none)'
    )
    panels = [
        row("Temperature against the asset type's default limits"),
        timeseries(
            "Temperature · $asset_type",
            "Warmest probe of each unit per interval. Bands are the asset type's default "
            "limits (blue too cold, yellow warn, red critical, dark red hard ceiling); "
            "the limits that alerting applies are per asset (country, store and asset "
            "overrides) and are served by the API (GET /api/v1/assets). Defrost windows "
            "are not in InfluxDB and are not shaded; alert events are annotations.",
            [influx(temperature_by_type, alias="$tag_asset ($tag_asset_type)")],
            size=(12, 9),
            unit="celsius",
            decimals=1,
            overrides=per_type_threshold_overrides(),
            repeat="asset_type",
        ),
        row("Doors and humidity"),
        timeseries(
            "Door openings per hour",
            "Closed-to-open transitions per unit and hour, from the door readings.",
            [influx(door_openings, alias="$tag_asset")],
            size=(12, 8),
            bars=True,
            decimals=0,
        ),
        timeseries(
            "Door open (share of readings)",
            "Share of door readings that said open, per interval. Devices that report on "
            "change (ESPHome, Shelly) send few readings, so treat it as a hint.",
            [influx(door_share, alias="$tag_asset")],
            size=(12, 8),
            unit="percent",
            custom={"fillOpacity": 20},
        ),
        timeseries(
            "Humidity",
            "Mean relative humidity per unit.",
            [influx(humidity, alias="$tag_asset")],
            size=(12, 8),
            unit="humidity",
        ),
        timeseries(
            "Sensor faults",
            "Values that sensors reported as faults (85 °C power-on reset, -127 °C "
            "disconnected, nan, null, absent probe ...), per unit and code.",
            [influx(faults, alias="$tag_asset $tag_code")],
            size=(12, 8),
            bars=True,
            decimals=0,
        ),
        row("Alerts"),
        table(
            "Open alerts in this store",
            "Current state of every open alert key: last change, state, severity, "
            "escalation level.",
            [influx(OPEN_ALERTS_NOW, table=True)],
            size=(24, 7),
            sort=("Last change", True),
            overrides=OPEN_ALERT_COLUMNS,
            mappings=[ALERT_STATE_MAPPING],
        ),
    ]
    return dashboard(
        "coldchain-store",
        "coldchain · Store",
        "One store: each unit's temperature against its limits, doors, faults, alerts.",
        panels,
        [STORE_VAR, ASSET_VAR, asset_type_var],
        annotations=[alert_annotation(STORE)],
    )


def asset_dashboard() -> Json:
    """One unit and its sensors: every quantity, when each was last seen, faults, device."""
    asset = query_var("asset", "Asset", tag_values("asset", where=STORE), multi=False)
    sensor = query_var("sensor", "Sensor", tag_values("sensor", where=ASSET))
    # Device ids are the sensor ids before the first ':' (core.types.sensor_id).
    device = query_var(
        "device", "Device", tag_values("sensor", where=ASSET), regex="/^([^:]+)/", hide=2
    )
    where = f"{ASSET} AND {SENSOR}"

    def by_sensor(measurement: str, alias: str, extra_group: str = "") -> str:
        return (
            f'SELECT mean("value") AS "{alias}" FROM "{measurement}" '
            f"WHERE {where} AND $timeFilter "
            f'GROUP BY time($__interval), "sensor"{extra_group} fill(null)'
        )

    last_seen = [
        influx(
            f'SELECT last("value") AS "last" FROM "{m}" '
            f"WHERE {where} AND time > now() - {KNOWN_WINDOW}",
            chr(ord("A") + i),
            alias=m,
        )
        for i, m in enumerate(READINGS)
    ]
    faults = (
        'SELECT count("value") AS "faults", last("raw") AS "last_raw" FROM "sensor_fault" '
        f'WHERE {where} AND $timeFilter GROUP BY "sensor", "quantity", "code"'
    )
    device_status = (
        'SELECT last("value") AS "online" FROM "device_status" '
        f'WHERE "device" =~ /^$device$/ AND time > now() - {STATUS_WINDOW} '
        'GROUP BY "device", "family"'
    )
    panels = [
        stat(
            "Last seen",
            f"When each quantity last arrived from this unit's sensors (last {KNOWN_WINDOW}).",
            last_seen,
            size=(24, 4),
            unit=AGE,
            fields="/^Time$/",
            thresholds=_steps((None, "text")),
        ),
        timeseries(
            "Temperature by sensor",
            "Mean temperature per sensor and interval, with the asset type's default "
            "limits (the asset's own limits are in the API).",
            [
                influx(
                    by_sensor("temperature", "temperature", ', "asset_type"'),
                    alias="$tag_sensor ($tag_asset_type)",
                )
            ],
            size=(24, 9),
            unit="celsius",
            decimals=1,
            overrides=per_type_threshold_overrides(),
        ),
        timeseries(
            "Humidity",
            "Mean relative humidity per sensor.",
            [influx(by_sensor("humidity", "humidity"), alias="$tag_sensor")],
            size=(12, 7),
            unit="humidity",
        ),
        timeseries(
            "Door open (share of readings)",
            "Mean of the door readings (1 open, 0 closed) per interval.",
            [influx(by_sensor("door", "door"), alias="$tag_sensor")],
            size=(12, 7),
            unit="percentunit",
            custom={"fillOpacity": 20},
        ),
        timeseries(
            "Battery",
            f"Battery per sensor; alerting warns at {LOW_BATTERY_PCT} % by default.",
            [influx(by_sensor("battery", "battery"), alias="$tag_sensor")],
            size=(12, 7),
            unit="percent",
            thresholds=_steps((None, "red"), (LOW_BATTERY_PCT, "green")),
            custom={"thresholdsStyle": {"mode": "line"}},
        ),
        timeseries(
            "Signal",
            "Radio signal per sensor (Wi-Fi RSSI or the best LoRaWAN gateway RSSI).",
            [influx(by_sensor("signal", "signal"), alias="$tag_sensor")],
            size=(12, 7),
            unit="dBm",
        ),
        table(
            "Sensors",
            "Each sensor's last temperature and when it arrived.",
            [
                influx(
                    last_per_sensor("temperature", "temperature", where),
                    table=True,
                )
            ],
            size=(12, 7),
            sort=("Last reading", False),
            overrides=[rename("Time", "Last reading", AGE), rename("temperature", "°C")],
        ),
        table(
            "Sensor faults",
            "Fault values per sensor, quantity and code, with the last raw value.",
            [influx(faults, table=True)],
            size=(12, 7),
            sort=("faults", True),
            transformations=[HIDE_EPOCH_TIME],
        ),
        table(
            "Devices",
            "Availability of the devices carrying these sensors, from their last will "
            "(LoRaWAN devices have none).",
            [influx(device_status, table=True)],
            size=(12, 7),
            mappings=[ONLINE_MAPPING],
            overrides=[
                rename("Time", "Since", AGE),
                rename("online", "Status", custom__cellOptions={"type": "color-text"}),
            ],
        ),
    ]
    return dashboard(
        "coldchain-asset",
        "coldchain · Asset and sensors",
        "One unit: temperature, humidity, door, battery, signal, last seen, faults.",
        panels,
        [SINGLE_STORE_VAR, asset, sensor, device],
        annotations=[alert_annotation(ASSET)],
        time_from="now-24h",
    )


def fleet_dashboard() -> Json:
    """Sensors and devices: silence, batteries, faults, availability, ingest volume."""
    lowest_batteries = last_per_sensor("battery", "battery", STORE)
    low_battery_count = (
        f'SELECT count("battery") AS "low" FROM ({lowest_batteries}) '
        f'WHERE "battery" < {LOW_BATTERY_PCT}'
    )
    faults_by_code = (
        'SELECT count("value") AS "faults" FROM "sensor_fault" '
        f'WHERE {STORE} AND $timeFilter GROUP BY time($__interval), "code" fill(none)'
    )
    faults_by_sensor = (
        'SELECT count("value") AS "faults", last("raw") AS "last_raw" FROM "sensor_fault" '
        f'WHERE {STORE} AND $timeFilter GROUP BY "store", "asset", "sensor", "code"'
    )
    device_status = (
        'SELECT last("value") AS "online" FROM "device_status" '
        f'WHERE {STORE} AND time > now() - {STATUS_WINDOW} GROUP BY "store", "device", "family"'
    )
    points_per_minute = (
        'SELECT count("value") * 60000 / $__interval_ms AS "points" '
        f'FROM {FROM_READINGS}, "sensor_fault" WHERE {STORE} AND $timeFilter '
        "GROUP BY time($__interval) fill(0)"
    )
    # Unknown ids are stored in "unregistered" with the id as a field (a flood of invented
    # ids must make no series): counted by quantity; the newest readings listed.
    unregistered_rate = (
        'SELECT count("value") AS "readings" FROM "unregistered" '
        'WHERE $timeFilter GROUP BY time($__interval), "quantity" fill(none)'
    )
    unregistered_sensors = (
        'SELECT "sensor", "value" AS "temperature", "family" FROM "unregistered" '
        f"WHERE \"quantity\" = 'temperature' AND time > now() - {KNOWN_WINDOW} "
        f"ORDER BY time DESC LIMIT {UNREGISTERED_ROWS}"
    )
    corrected = (
        f'SELECT count("value") AS "corrected" FROM {FROM_READINGS} '
        'WHERE "ts_corrected" = true AND $timeFilter GROUP BY time($__interval) fill(none)'
    )
    prometheus_row = row(
        "Optional: ingest internals (Prometheus data source 'coldchain-prom')",
        [
            timeseries(
                "Spool",
                "Batches and bytes waiting on the ingester's local spool (InfluxDB "
                "unreachable or refusing).",
                [
                    prom("sum(coldchain_ingest_spool_batches)", "A", "batches"),
                    prom("sum(coldchain_ingest_spool_bytes)", "B", "bytes"),
                ],
                size=(12, 8),
            ),
            timeseries(
                "Dead letters by reason",
                "Messages or points that could not be stored, per second (inspect them "
                "with GET /api/v1/devices/discovered and the dead-letter endpoints).",
                [
                    prom(
                        "sum by (reason) (rate(coldchain_ingest_dead_letters_total[5m]))",
                        "A",
                        "{{reason}}",
                    )
                ],
                size=(12, 8),
            ),
            timeseries(
                "MQTT messages by family",
                "Messages received per second.",
                [
                    prom(
                        "sum by (family) (rate(coldchain_ingest_messages_total[5m]))",
                        "A",
                        "{{family}}",
                    )
                ],
                size=(12, 8),
            ),
            timeseries(
                "Unregistered readings by family",
                "Readings per second from sensors not in the registry: discovered devices "
                "waiting for a technician (listed by GET /api/v1/devices/discovered).",
                [
                    prom(
                        "sum by (family) (rate(coldchain_ingest_unregistered_readings_total[5m]))",
                        "A",
                        "{{family}}",
                    )
                ],
                size=(12, 8),
            ),
            stat(
                "Broker connection",
                "1 while the ingester is connected to the MQTT broker.",
                [prom("min(coldchain_ingest_mqtt_connected)", "A", "connected")],
                size=(6, 4),
                thresholds=_steps((None, "red"), (1, "green")),
            ),
            stat(
                "Last InfluxDB write",
                "Seconds since InfluxDB last accepted a write from the ingester.",
                [
                    prom(
                        "time() - max(coldchain_ingest_last_write_timestamp_seconds)",
                        "A",
                        "age",
                    )
                ],
                size=(6, 4),
                unit="s",
                thresholds=_steps((None, "green"), (120, "orange"), (600, "red")),
            ),
            stat(
                "alert_event write errors",
                "Failed writes of alert events to InfluxDB (retried) in the last hour.",
                [
                    prom(
                        "sum(increase(coldchain_alert_event_write_errors_total[1h]))",
                        "A",
                        "errors",
                    )
                ],
                size=(6, 4),
                thresholds=_steps((None, "green"), (1, "orange")),
            ),
            stat(
                "Ingest latency p99",
                "Device timestamp to durable (written or spooled), 99th percentile.",
                [
                    prom(
                        "histogram_quantile(0.99, "
                        "sum by (le) (rate(coldchain_ingest_latency_seconds_bucket[5m])))",
                        "A",
                        "p99",
                    )
                ],
                size=(6, 4),
                unit="s",
                thresholds=_steps((None, "green"), (2, "orange")),
            ),
        ],
        collapsed=True,
    )
    panels = [
        row("Silent sensors"),
        table(
            "Silent sensors",
            f"Sensors that reported a temperature in the last {KNOWN_WINDOW} but none in "
            "the last $silence, with their last value. When they went quiet is in "
            "'Last temperature per sensor'.",
            [influx(SILENT_SENSORS, table=True)],
            size=(12, 8),
            overrides=[
                rename("last", "Last °C"),
                link_to("coldchain-asset", "asset"),
            ],
            transformations=[HIDE_EPOCH_TIME],
        ),
        bargauge(
            "Silent sensors per store",
            "Count of the sensors in 'Silent sensors', per store.",
            [influx(SILENT_SENSORS_PER_STORE, alias="$tag_store")],
            size=(12, 8),
            thresholds=_steps((None, "green"), (1, "purple")),
        ),
        table(
            "Last temperature per sensor (oldest first)",
            "Every sensor's last temperature and how long ago it arrived: the top rows "
            "are the quietest sensors.",
            [influx(last_per_sensor("temperature", "temperature", STORE), table=True)],
            size=(24, 8),
            sort=("Last reading", False),
            overrides=[
                rename("Time", "Last reading", AGE),
                rename("temperature", "°C"),
                link_to("coldchain-asset", "asset"),
            ],
        ),
        row("Batteries"),
        table(
            "Lowest batteries",
            f"Last battery level per sensor, lowest first; red under {LOW_BATTERY_PCT} %.",
            [influx(lowest_batteries, table=True)],
            size=(16, 8),
            sort=("Battery", False),
            thresholds=_steps((None, "red"), (LOW_BATTERY_PCT, "orange"), (40, "green")),
            overrides=[
                rename("Time", "Reported", AGE),
                rename(
                    "battery",
                    "Battery",
                    "percent",
                    custom__cellOptions={"type": "color-background"},
                ),
            ],
        ),
        stat(
            f"Batteries under {LOW_BATTERY_PCT} %",
            "Sensors whose last battery reading is below the default low-battery level.",
            [influx(low_battery_count, alias="low")],
            size=(8, 8),
            thresholds=_steps((None, "green"), (1, "red")),
            no_value="0",
        ),
        row("Sensor faults"),
        timeseries(
            "Sensor faults by code",
            "Fault values per code and interval (power_on_reset, disconnected, nan, null, "
            "absent_probe, unparsable, out_of_range).",
            [influx(faults_by_code, alias="$tag_code")],
            size=(12, 8),
            bars=True,
            decimals=0,
        ),
        table(
            "Sensor faults by sensor",
            "Fault values per sensor and code in the time range, with the last raw value.",
            [influx(faults_by_sensor, table=True)],
            size=(12, 8),
            sort=("faults", True),
            transformations=[HIDE_EPOCH_TIME],
        ),
        row("Devices"),
        table(
            "Device availability",
            "Each device's last availability message (its MQTT last will: online or "
            "offline) and when it came. LoRaWAN devices have no last will: their "
            "silence shows in 'Silent sensors'.",
            [influx(device_status, table=True)],
            size=(16, 8),
            sort=("Status", False),
            mappings=[ONLINE_MAPPING],
            overrides=[
                rename("Time", "Since", AGE),
                rename("online", "Status", custom__cellOptions={"type": "color-background"}),
            ],
        ),
        stat(
            "Devices offline",
            "Devices whose last availability message says offline.",
            [influx(DEVICES_OFFLINE, alias="offline")],
            size=(8, 8),
            thresholds=_steps((None, "green"), (1, "red")),
            no_value="0",
        ),
        row("Ingest (from InfluxDB)"),
        timeseries(
            "Points written per minute",
            "Readings and faults stored per minute, by measurement, at the devices' "
            "timestamps (late data fills in past minutes).",
            [influx(points_per_minute, alias="$m")],
            size=(12, 8),
            interval="1m",
            custom={"stacking": {"mode": "normal"}, "fillOpacity": 30},
        ),
        timeseries(
            "Readings from unregistered sensors",
            "Readings from ids not in the registry (kept in the 'unregistered' measurement, "
            "the id as a field): devices publishing that are not registered yet "
            "(GET /api/v1/devices/discovered lists them, with the ids to register).",
            [influx(unregistered_rate, alias="$tag_quantity")],
            size=(12, 8),
            bars=True,
            decimals=0,
        ),
        table(
            "Unregistered sensors",
            "The newest temperature readings from sensors with no registry entry.",
            [influx(unregistered_sensors, table=True)],
            size=(12, 8),
            overrides=[rename("Time", "Last reading", AGE), rename("temperature", "°C")],
        ),
        timeseries(
            "Timestamps corrected",
            "Readings whose device timestamp was absurd (future, or older than 35 days) "
            "and was replaced by the receive time (ts_corrected=true).",
            [influx(corrected, alias="$m")],
            size=(12, 8),
            bars=True,
            decimals=0,
        ),
        prometheus_row,
    ]
    return dashboard(
        "coldchain-fleet",
        "coldchain · Fleet health",
        "Silent sensors, batteries, faults, device availability and ingest volume.",
        panels,
        [STORE_VAR, SILENCE_VAR],
    )


def alerts_dashboard() -> Json:
    """Alert history and time to acknowledge."""
    escalations = (
        'SELECT count("alert_id") AS "escalations" FROM "alert_event" '
        f'WHERE {STORE} AND "state" = \'escalated\' AND $timeFilter GROUP BY "store"'
    )
    panels = [
        table(
            "Open alerts",
            "Current state of every open alert key (store, asset, kind): last change, "
            "state, severity and escalation level.",
            [influx(OPEN_ALERTS_NOW, table=True)],
            size=(24, 8),
            sort=("Last change", True),
            overrides=OPEN_ALERT_COLUMNS,
            mappings=[ALERT_STATE_MAPPING],
        ),
        table(
            "Time to acknowledge by store",
            "From an alert's opening to its first acknowledgement, for the alerts "
            "acknowledged in the time range (mean, max, count).",
            [influx(TIME_TO_ACK_BY_STORE, table=True)],
            size=(10, 8),
            sort=("Mean", True),
            overrides=[
                rename("mean", "Mean", "s"),
                rename("max", "Max", "s"),
                rename("acknowledged", "Acknowledged"),
                link_to("coldchain-store", "store"),
            ],
            transformations=[HIDE_EPOCH_TIME],
        ),
        timeseries(
            "Time to acknowledge by hour",
            "Mean and max time to acknowledge of the acknowledgements made in each hour.",
            [influx(TIME_TO_ACK_BY_HOUR, alias="$col")],
            size=(14, 8),
            unit="s",
            bars=True,
        ),
        timeseries(
            "Alerts opened by kind",
            "Alerts opened per kind and interval.",
            [influx(ALERTS_OPENED.format(by='"kind"'), alias="$tag_kind")],
            size=(14, 8),
            bars=True,
            decimals=0,
            custom={"stacking": {"mode": "normal"}},
        ),
        bargauge(
            "Escalations by store",
            "Escalation steps beyond the first page, per store, in the time range.",
            [influx(escalations, alias="$tag_store")],
            size=(10, 8),
            thresholds=_steps((None, "green"), (1, "orange"), (5, "red")),
        ),
        table(
            "History",
            "Every alert event in the time range, newest first (1000 at most).",
            [influx(ALERT_HISTORY, table=True)],
            size=(24, 12),
            sort=("Time", True),
            mappings=[ALERT_STATE_MAPPING],
            overrides=[
                rename("state", "state", custom__cellOptions={"type": "color-text"}),
                link_to("coldchain-store", "store"),
                *SEVERITY_COLORS,
            ],
        ),
    ]
    return dashboard(
        "coldchain-alerts",
        "coldchain · Alerts",
        "Open alerts, history, escalations and time to acknowledge.",
        panels,
        [STORE_VAR],
        annotations=[alert_annotation(STORE)],
        time_from="now-7d",
    )


DASHBOARDS = {
    "chain-overview.json": chain_overview,
    "store.json": store_dashboard,
    "asset.json": asset_dashboard,
    "fleet-health.json": fleet_dashboard,
    "alerts.json": alerts_dashboard,
}


def render(build: Any) -> str:
    """A dashboard as the committed JSON text."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboards, or with ``--check`` report the stale ones and exit 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    expected = set(DASHBOARDS)
    extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in expected)
    if args.check and (stale or extra):
        sys.stderr.write(
            f"out of date: {', '.join(stale) or '-'}; not generated: {', '.join(extra) or '-'}\n"
            "run: .venv/bin/python grafana/build.py\n"
        )
        return 1
    if not args.check:
        sys.stderr.write(f"wrote {len(stale)} of {len(DASHBOARDS)} dashboards to {OUT}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
