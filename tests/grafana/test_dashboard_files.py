"""The dashboards and provisioning files, read without a database.

- the committed JSON is what ``grafana/build.py`` generates;
- every InfluxQL query (panels, annotations, template variables) stays inside what ingest
  and alerting write: measurements, fields and tags of DESIGN.md §3, nothing else;
- template variables are used the way Grafana can substitute them;
- the optional Prometheus panels name metrics that coldchain really exports;
- the provisioning YAML parses and points at the dashboards folder the README mounts.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from alerting.engine import AlertingStats
from core.metrics import Registry as MetricsRegistry
from ingest.stats import IngestStats
from tests.grafana.dashboards import (
    DASHBOARDS,
    GRAFANA,
    INFLUX_UID,
    PROM_UID,
    PROVISIONING,
    ROOT,
    Query,
    all_queries,
    interpolate,
    load_dashboards,
    panels,
    relative_time_filter,
    variables_in_dashboard,
)
from tests.grafana.influxql import SCHEMA, QueryError, analyze, variables_in

INFLUX_QUERIES = [q for q in all_queries() if q.datasource == INFLUX_UID]
PROM_QUERIES = [q for q in all_queries() if q.datasource == PROM_UID]
BUILTINS = {"timeFilter", "__timeFilter", "__interval", "interval", "__interval_ms"}


def _sample_values(query: Query) -> tuple[dict[str, list[str]], set[str]]:
    """Two values for every multi variable, the current value of the others."""
    values: dict[str, list[str]] = {}
    multi: set[str] = set()
    for variable in variables_in_dashboard(load_dashboards()[query.dashboard]):
        name = variable["name"]
        if variable.get("multi") or variable.get("includeAll"):
            multi.add(name)
            values[name] = [f"{name}-1", f"{name}.2:x"]
        else:
            values[name] = [str(variable.get("current", {}).get("value") or "v")]
    return values, multi


def test_committed_json_is_what_build_py_generates() -> None:
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "build.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_dashboard_is_modern_unique_and_filtered_by_store() -> None:
    dashboards = load_dashboards()
    assert set(dashboards) == {"chain-overview", "store", "asset", "fleet-health", "alerts"}
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    for stem, dashboard in dashboards.items():
        assert dashboard["schemaVersion"] >= 38, stem
        names = {v["name"] for v in variables_in_dashboard(dashboard)}
        assert "store" in names, stem
        ids = [p["id"] for p in panels(dashboard)] + [
            p["id"] for p in dashboard["panels"] if p["type"] == "row"
        ]
        assert len(ids) == len(set(ids)), f"{stem}: duplicate panel ids"
        titles = [p["title"] for p in panels(dashboard)]
        assert len(titles) == len(set(titles)), f"{stem}: duplicate panel titles"
        for panel in panels(dashboard):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{stem}/{panel['title']}"
            assert panel["datasource"]["uid"] in (INFLUX_UID, PROM_UID), panel["title"]
            assert panel["targets"], f"{stem}/{panel['title']} has no query"
            assert panel.get("description"), f"{stem}/{panel['title']} has no description"
    for stem in ("store", "asset"):
        variables = {v["name"]: v for v in variables_in_dashboard(dashboards[stem])}
        assert variables["asset"]["query"].startswith("SHOW TAG VALUES"), stem
        assert variables["store"]["query"].startswith("SHOW TAG VALUES"), stem


def test_prometheus_panels_are_only_in_the_optional_row() -> None:
    for stem, dashboard in load_dashboards().items():
        for panel in dashboard["panels"]:
            if panel["type"] == "row" and panel["title"].startswith("Optional"):
                assert panel["collapsed"]
                continue
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == INFLUX_UID, f"{stem}/{panel['title']}"


@pytest.mark.parametrize("query", INFLUX_QUERIES, ids=lambda q: q.id)
def test_query_uses_only_what_ingest_and_alerting_write(query: Query) -> None:
    values, multi = _sample_values(query)
    text = interpolate(query.text, values, multi, time_filter=relative_time_filter(6))
    analysis = analyze(text)
    assert analysis.measurements, "reads no measurement"
    for measurement, names in analysis.used.items():
        schema = SCHEMA[measurement]
        assert names <= set(schema.fields) | schema.tags, (measurement, names)


@pytest.mark.parametrize("query", INFLUX_QUERIES, ids=lambda q: q.id)
def test_template_variables_are_defined_and_used_as_grafana_substitutes_them(
    query: Query,
) -> None:
    dashboard = load_dashboards()[query.dashboard]
    variables = {v["name"]: v for v in variables_in_dashboard(dashboard)}
    for name, position in variables_in(query.text):
        if name in BUILTINS:
            continue
        assert name in variables, f"${name} is not a variable of {query.dashboard}"
        variable = variables[name]
        if variable["type"] == "query":
            # A multi value becomes (a|b): only meaningful inside an anchored regex.
            window = query.text[position - 2 : position + len(name) + 3]
            assert window == f"/^${name}$/", f"${name} outside /^...$/ in {query.text}"
        else:
            assert query.text[position - 8 : position] == "now() - ", (
                f"single-value ${name} is only used as a duration"
            )


def test_a_variable_depends_only_on_variables_defined_before_it() -> None:
    for stem, dashboard in load_dashboards().items():
        seen: set[str] = set()
        for variable in variables_in_dashboard(dashboard):
            used = {name for name, _ in variables_in(variable.get("query", ""))}
            assert used <= seen, f"{stem}: ${variable['name']} uses {used - seen}"
            seen.add(variable["name"])


@pytest.mark.parametrize(
    "bad",
    [
        'SELECT mean("value") FROM "temp" WHERE time > now() - 1h',
        'SELECT mean("value") FROM "temperature" WHERE "zone" = \'a\'',
        'SELECT mean("celsius") FROM "temperature"',
        'SELECT mean("value") FROM "temperature" GROUP BY "code"',
        'SELECT mean(value) FROM "temperature"',
        'SELECT mean("state") FROM "alert_event"',
        'SELECT "x" FROM (SELECT last("value") AS "y" FROM "battery")',
        'SELECT count("value") * 2 FROM "door"',
        'SELECT "ts_corrected" FROM "device_status"',
        'SHOW TAG VALUES FROM "temperature" WITH KEY = "device"',
        "SHOW MEASUREMENTS",
        'SELECT * FROM "temperature"',
    ],
)
def test_the_schema_check_refuses_what_coldchain_does_not_write(bad: str) -> None:
    with pytest.raises(QueryError):
        analyze(bad)


def _exported_metrics() -> set[str]:
    registry = MetricsRegistry()
    AlertingStats(registry)
    text = IngestStats(registry).registry.render()
    names: set[str] = set()
    for kind_line in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        name, kind = kind_line.groups()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


@pytest.mark.parametrize("query", PROM_QUERIES, ids=lambda q: q.id)
def test_prometheus_queries_name_exported_metrics(query: Query) -> None:
    used = set(re.findall(r"\bcoldchain_\w+", query.text))
    assert used, query.text
    assert used <= _exported_metrics(), used - _exported_metrics()


def _yaml(path: Any) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_influx_datasource_takes_url_database_and_credentials_from_the_environment() -> None:
    config = _yaml(PROVISIONING / "datasources" / "coldchain.yaml")
    (source,) = config["datasources"]
    assert config["apiVersion"] == 1
    assert source["uid"] == INFLUX_UID
    assert source["type"] == "influxdb"
    assert source["url"] == "${COLDCHAIN_INFLUX_URL}"
    assert source["jsonData"]["dbName"] == "${COLDCHAIN_INFLUX_DB}"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["user"] == "${COLDCHAIN_INFLUX_USER}"
    assert source["secureJsonData"] == {"password": "${COLDCHAIN_INFLUX_PASSWORD}"}

    token = _yaml(PROVISIONING / "datasources" / "coldchain-token.yaml.example")
    (variant,) = token["datasources"]
    assert variant["uid"] == INFLUX_UID
    assert variant["jsonData"]["httpHeaderName1"] == "Authorization"
    assert variant["secureJsonData"]["httpHeaderValue1"] == "Token ${COLDCHAIN_INFLUX_TOKEN}"

    prometheus = _yaml(PROVISIONING / "datasources" / "coldchain-prometheus.yaml.example")
    (prom,) = prometheus["datasources"]
    assert (prom["uid"], prom["type"]) == (PROM_UID, "prometheus")
    assert prom["url"] == "${COLDCHAIN_PROMETHEUS_URL}"


def test_dashboard_provider_loads_the_folder_the_readme_mounts() -> None:
    config = _yaml(PROVISIONING / "dashboards" / "coldchain.yaml")
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    readme = (GRAFANA / "README.md").read_text(encoding="utf-8")
    assert f"grafana/dashboards:{path}" in readme
    assert "grafana/provisioning:/etc/grafana/provisioning" in readme
    assert sorted(p.name for p in DASHBOARDS.glob("*.json"))
