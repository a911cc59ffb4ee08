"""Every dashboard query, run against a real InfluxDB that the real ingester filled.

The data is :mod:`tests.grafana.scenario`: two stores, three hours of six device families
published over a real Mosquitto and ingested by :class:`~ingest.service.Ingester`, plus
alert events serialized as the alerting engine writes them. Each panel target, annotation
and template variable query is interpolated as Grafana would (:mod:`tests.grafana.dashboards`)
in two ways, then run:

- ``all``: every multi-value variable on "All" (``/^(s001|s002)$/``), ``$timeFilter`` as
  Grafana writes a relative range (``time >= now() - 6h``);
- ``one``: the first value of each variable, ``$timeFilter`` as an absolute range.

Each result must be present and of the shape the query promises (the columns and tags
:func:`tests.grafana.influxql.analyze` infers, numbers where numbers are expected); a few
panels are also checked against the figures the scenario was built to produce.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from coldchain.services import InfluxDB, Mosquitto
from core.influx import InfluxV1, Series
from core.registry import Registry
from core.settings import Settings
from tests.grafana import scenario
from tests.grafana.dashboards import (
    INFLUX_UID,
    Query,
    absolute_time_filter,
    all_queries,
    apply_variable_regex,
    interpolate,
    load_dashboards,
    relative_time_filter,
    variables_in_dashboard,
)
from tests.grafana.influxql import BOOL, NUMBER, STRING, Analysis, analyze

pytestmark = pytest.mark.integration

MODES = ("all", "one")
RANGE_HOURS = 6
INFLUX_QUERIES = [q for q in all_queries() if q.datasource == INFLUX_UID]
PANEL_QUERIES = [q for q in INFLUX_QUERIES if not q.where.startswith(("variable", "annotation"))]
ANNOTATIONS = [q for q in INFLUX_QUERIES if q.where.startswith("annotation")]
VARIABLES = [q for q in INFLUX_QUERIES if q.where.startswith("variable")]


@dataclass
class Filled:
    """The filled database and how to run a dashboard query against it."""

    influx: InfluxV1
    now_ms: int
    _variables: dict[tuple[str, str], tuple[dict[str, list[str]], set[str]]] = field(
        default_factory=dict
    )

    def time_filter(self, mode: str) -> str:
        """``$timeFilter`` as Grafana writes a relative (all) or absolute (one) range."""
        if mode == "all":
            return relative_time_filter(RANGE_HOURS)
        # Readings of clockless families are stamped on receipt, after now_ms.
        return absolute_time_filter(self.now_ms - RANGE_HOURS * 3_600_000, self.now_ms + 300_000)

    def variables(self, stem: str, mode: str) -> tuple[dict[str, list[str]], set[str]]:
        """The dashboard's variables resolved in order, as Grafana does on load."""
        key = (stem, mode)
        if key not in self._variables:
            values: dict[str, list[str]] = {}
            multi: set[str] = set()
            for variable in variables_in_dashboard(load_dashboards()[stem]):
                name = variable["name"]
                if variable["type"] == "custom":
                    values[name] = [variable["current"]["value"]]
                    continue
                text = interpolate(
                    variable["query"], values, multi, time_filter=self.time_filter(mode)
                )
                found = sorted(row[1] for s in self.influx.query(text) for row in s.values)
                options = apply_variable_regex(found, variable.get("regex", ""))
                assert options, f"{stem}: ${name} has no values ({text})"
                if variable["multi"] or variable["includeAll"]:
                    multi.add(name)
                values[name] = options if mode == "all" and name in multi else options[:1]
            self._variables[key] = (values, multi)
        return self._variables[key]

    def run(self, query: Query, mode: str, repeat_value: str | None = None) -> RunResult:
        """Interpolate and run one query."""
        values, multi = self.variables(query.dashboard, mode)
        if query.repeat and repeat_value is not None:
            values = {**values, query.repeat: [repeat_value]}
        text = interpolate(query.text, values, multi, time_filter=self.time_filter(mode))
        return RunResult(text, analyze(text), self.influx.query(text))


@dataclass
class RunResult:
    """An interpolated query, what it promises, what InfluxDB returned."""

    text: str
    expected: Analysis
    series: list[Series]

    def rows(self) -> list[dict[str, Any]]:
        """Every row of every series, tags merged in."""
        return [row for s in self.series for row in s.rows()]


@pytest.fixture(scope="module")
def filled(influxd: InfluxDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    """The scenario, ingested once for the module (a broker of the harness's own kind)."""
    root: Path = tmp_path_factory.mktemp("grafana")
    with Mosquitto(root / "mosquitto") as broker:
        settings = Settings(
            mqtt_url=broker.url,
            mqtt_client_id="grafana-test-ingest",
            influx_url=influxd.url,
            influx_db="grafana_dashboards",
            db=root / "registry.sqlite3",
            spool_dir=root / "spool",
        )
        influx = InfluxV1(settings)
        influx.ensure_database()
        registry = Registry(settings.db)
        try:
            now_ms = scenario.fill(settings, registry, influx)
        finally:
            registry.close()
    yield Filled(influx, now_ms)
    influx.close()


_KIND_TYPES: dict[str, tuple[type, ...]] = {NUMBER: (int, float), STRING: (str,), BOOL: (bool,)}


def assert_shape(result: RunResult) -> None:
    """Series present, the promised columns and tags, values of the promised kinds."""
    assert result.series, f"no data: {result.text}"
    names = [c.name for c in result.expected.columns]
    seen: dict[str, int] = dict.fromkeys(names, 0)
    for series in result.series:
        time_column = ["time"] if result.expected.has_time else []
        assert series.columns == [*time_column, *names], result.text
        assert set(series.tags) == set(result.expected.group_tags), result.text
        for row in series.values:
            if result.expected.has_time:
                assert isinstance(row[0], int), f"time {row[0]!r}"
            values = row[len(time_column) :]
            for column, value in zip(result.expected.columns, values, strict=True):
                if value is None:
                    continue
                seen[column.name] += 1
                if column.kind in _KIND_TYPES:
                    types = _KIND_TYPES[column.kind]
                    ok = isinstance(value, types) and (
                        column.kind == BOOL or not isinstance(value, bool)
                    )
                    assert ok, f"{column.name}={value!r} is not a {column.kind}: {result.text}"
    empty = [name for name, count in seen.items() if not count]
    assert not empty, f"columns always null: {empty} in {result.text}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query", PANEL_QUERIES, ids=lambda q: q.id)
def test_panel_query_returns_data_of_the_expected_shape(
    filled: Filled, query: Query, mode: str
) -> None:
    if query.repeat is None:
        assert_shape(filled.run(query, mode))
        return
    values, _ = filled.variables(query.dashboard, mode)
    for value in values[query.repeat]:  # Grafana repeats the panel once per value
        assert_shape(filled.run(query, mode, value))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query", VARIABLES, ids=lambda q: q.id)
def test_template_variable_query_lists_values(filled: Filled, query: Query, mode: str) -> None:
    result = filled.run(query, mode)
    assert_shape(result)
    assert all(row["value"] for row in result.rows())


@pytest.mark.parametrize("query", ANNOTATIONS, ids=lambda q: q.id)
def test_annotation_query_returns_the_mapped_columns(filled: Filled, query: Query) -> None:
    result = filled.run(query, "all")
    assert_shape(result)
    (annotation,) = (
        a
        for a in load_dashboards()[query.dashboard]["annotations"]["list"]
        if a.get("name") == query.where.removeprefix("annotation ")
    )
    columns = {c.name for c in result.expected.columns}
    mapped = [annotation["titleColumn"], annotation["textColumn"]]
    mapped += annotation["tagsColumn"].split(",")
    assert set(mapped) <= columns
    target = annotation["target"]
    assert target["query"] == annotation["query"]
    assert all(target[k] == annotation[k] for k in ("titleColumn", "textColumn", "tagsColumn"))


# -- the figures the scenario was built to produce ---------------------------------------


def _query(dashboard: str, title: str, ref: str = "A") -> Query:
    (found,) = (
        q for q in PANEL_QUERIES if (q.dashboard, q.where, q.ref) == (dashboard, title, ref)
    )
    return found


def test_stores_worst_first_counts_open_alerts_by_severity(filled: Filled) -> None:
    rows = filled.run(_query("chain-overview", "Stores, worst first"), "all").rows()
    got = {r["store"]: {k: r[k] for k in ("critical", "warning", "max_level")} for r in rows}
    assert got == scenario.OPEN_BY_STORE


def test_open_alerts_by_escalation_level(filled: Filled) -> None:
    got = {}
    for ref, label in zip("ABCD", scenario.OPEN_BY_LEVEL, strict=True):
        rows = filled.run(_query("chain-overview", "Open alerts by escalation level", ref), "all")
        got[label] = rows.rows()[0]["open"]
    assert got == scenario.OPEN_BY_LEVEL


def test_open_alerts_by_age_shows_when_each_open_alert_opened(filled: Filled) -> None:
    rows = filled.run(_query("chain-overview", "Open alerts by age"), "all").rows()
    opened = {r["alert_id"]: (filled.now_ms - r["time"]) / 60_000 for r in rows}
    assert opened == pytest.approx(scenario.OPENED_MINUTES_AGO, abs=0.01)


def test_open_alerts_table_shows_current_state_and_level(filled: Filled) -> None:
    rows = filled.run(_query("alerts", "Open alerts"), "all").rows()
    by_id = {r["alert_id"]: (r["state"], r["severity"], r["level"]) for r in rows}
    assert by_id["A1"] == ("acknowledged", "critical", 2)
    assert by_id["B3"] == ("escalated", "critical", 3)
    assert set(by_id) == set(scenario.OPENED_MINUTES_AGO)


def test_time_to_acknowledge_by_store(filled: Filled) -> None:
    rows = filled.run(_query("alerts", "Time to acknowledge by store"), "all").rows()
    got = {(r["store"], k): r[k] for r in rows for k in ("mean", "max", "acknowledged")}
    expected = {(store, k): v for store, d in scenario.TIME_TO_ACK.items() for k, v in d.items()}
    assert got == pytest.approx(expected)


def test_time_to_acknowledge_by_hour_covers_every_acknowledgement(filled: Filled) -> None:
    rows = filled.run(_query("alerts", "Time to acknowledge by hour"), "all").rows()
    assert max(r["max"] for r in rows) == pytest.approx(2280.0)


def test_silent_sensors_and_units(filled: Filled) -> None:
    rows = filled.run(_query("fleet-health", "Silent sensors"), "all").rows()
    assert {r["sensor"] for r in rows} == scenario.SILENT_SENSORS
    units = filled.run(_query("chain-overview", "Units per store"), "all").rows()
    assert {r["store"]: (r["units"], r["reporting"], r["silent"]) for r in units} == {
        "s001": (3, 2, 1),
        "s002": (3, 2, 1),
    }


def test_devices_offline_come_from_last_wills(filled: Filled) -> None:
    rows = filled.run(_query("fleet-health", "Device availability"), "all").rows()
    offline = {r["device"] for r in rows if r["online"] == 0}
    assert offline == scenario.OFFLINE_DEVICES
    count = filled.run(_query("fleet-health", "Devices offline"), "all").rows()
    assert count[0]["offline"] == len(scenario.OFFLINE_DEVICES)


def test_unregistered_sensors_and_corrected_timestamps(filled: Filled) -> None:
    rows = filled.run(_query("fleet-health", "Unregistered sensors"), "all").rows()
    assert {r["sensor"] for r in rows} == scenario.UNREGISTERED
    corrected = filled.run(_query("fleet-health", "Timestamps corrected"), "all").rows()
    assert sum(r["corrected"] or 0 for r in corrected) == 1


def test_low_batteries_and_fault_codes(filled: Filled) -> None:
    low = filled.run(_query("fleet-health", "Batteries under 20 %"), "all").rows()
    assert low[0]["low"] == 1
    faults = filled.run(_query("fleet-health", "Sensor faults by code"), "all")
    assert {s.tags["code"] for s in faults.series} == {"nan", "absent_probe", "disconnected"}


def test_door_openings_count_closed_to_open_transitions(filled: Filled) -> None:
    rows = filled.run(_query("store", "Door openings per hour"), "one").rows()
    # s001's dairy case opens every 30 min from -180: 6 transitions after the first.
    assert sum(r["openings"] for r in rows if r["asset"] == "s001-dc1") == 6
