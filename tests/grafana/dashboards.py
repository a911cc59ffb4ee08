"""Reading the committed dashboards the way Grafana does: queries, variables, interpolation.

Interpolation follows Grafana's InfluxDB data source (InfluxQL mode):

- ``$timeFilter`` / ``$__timeFilter``: ``time >= now() - 6h`` for a relative range ending
  now, else ``time >= <from>ms and time <= <to>ms``;
- ``$__interval`` / ``$interval`` (``1m``), ``$__interval_ms`` (``60000``);
- inside a regex (``=~ /^$var$/``) a variable becomes its regex-escaped values joined as
  ``(a|b)`` (one value: the escaped value alone), as Grafana does for multi-value and
  include-all variables (escaping a single value is harmless for Grafana versions that
  do not);
- elsewhere a single-value variable is substituted as it is (the dashboards do that only
  for durations, e.g. ``now() - $silence``);
- a query variable's ``regex`` keeps the first capture group of each value, deduplicated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
INFLUX_UID = "coldchain-influx"
PROM_UID = "coldchain-prom"

Json = dict[str, Any]


@cache
def load_dashboards() -> dict[str, Json]:
    """Every committed dashboard by file stem."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


@dataclass(frozen=True)
class Query:
    """One query of a dashboard: a panel target, an annotation or a template variable."""

    dashboard: str
    where: str  # panel title, "annotation <name>" or "variable <name>"
    ref: str
    text: str
    datasource: str
    table: bool = False
    repeat: str | None = None

    @property
    def id(self) -> str:
        """A readable pytest id."""
        return f"{self.dashboard}/{self.where}/{self.ref}"


def panels(dashboard: Json) -> Iterator[Json]:
    """Every panel, including those inside (collapsed) rows; rows themselves excluded."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(stem: str, dashboard: Json) -> list[Query]:
    """Every query a dashboard runs."""
    out: list[Query] = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            uid = target.get("datasource", panel.get("datasource", {})).get("uid", "")
            text = target.get("query") if uid == INFLUX_UID else target.get("expr")
            out.append(
                Query(
                    stem,
                    panel["title"],
                    target["refId"],
                    str(text),
                    uid,
                    table=target.get("resultFormat") == "table",
                    repeat=panel.get("repeat"),
                )
            )
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("builtIn"):
            continue
        out.append(
            Query(
                stem,
                f"annotation {annotation['name']}",
                "Anno",
                annotation["query"],
                annotation["datasource"]["uid"],
                table=True,
            )
        )
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            out.append(
                Query(
                    stem,
                    f"variable {variable['name']}",
                    "Var",
                    variable["query"],
                    variable["datasource"]["uid"],
                    table=True,
                )
            )
    return out


def all_queries() -> list[Query]:
    """Every query of every dashboard."""
    return [q for stem, d in load_dashboards().items() for q in queries(stem, d)]


_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|\[\]{}/])")


def regex_escape(value: str) -> str:
    """Escape a value for an InfluxQL regex literal, as Grafana does for multi values."""
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def relative_time_filter(hours: int) -> str:
    """Grafana's ``$timeFilter`` for ``now-<hours>h`` to ``now``."""
    return f"time >= now() - {hours}h"


def absolute_time_filter(start_ms: int, end_ms: int) -> str:
    """Grafana's ``$timeFilter`` for an absolute range."""
    return f"time >= {start_ms}ms and time <= {end_ms}ms"


def interpolate(
    text: str,
    values: Mapping[str, Sequence[str]],
    multi: set[str],
    *,
    time_filter: str,
    interval: str = "1m",
    interval_ms: int = 60_000,
) -> str:
    """``text`` with Grafana's built-ins and the dashboard variables substituted."""
    builtins = {
        "timeFilter": time_filter,
        "__timeFilter": time_filter,
        "__interval": interval,
        "interval": interval,
        "__interval_ms": str(interval_ms),
    }

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in builtins:
            return builtins[name]
        if name not in values:
            raise KeyError(f"variable ${name} is not defined by the dashboard")
        chosen = values[name]
        if text[max(0, match.start() - 2) : match.start()] == "/^":
            escaped = [regex_escape(v) for v in chosen]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        if len(chosen) != 1 or name in multi:
            raise ValueError(f"multi-value ${name} outside a regex cannot be substituted")
        return chosen[0]

    # Longest names first is implicit: \w+ is greedy, so $__interval_ms is one name.
    return re.sub(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]", replace, text)


def apply_variable_regex(values: Sequence[str], regex: str) -> list[str]:
    """Grafana's variable regex: keep matching values, or their first capture group."""
    if not regex:
        return list(dict.fromkeys(values))
    pattern = re.compile(regex.strip("/"))
    out: dict[str, None] = {}
    for value in values:
        match = pattern.search(value)
        if match:
            out[match.group(1) if match.groups() else value] = None
    return list(out)


def variables_in_dashboard(dashboard: Json) -> list[Json]:
    """The dashboard's template variables, in definition order."""
    return list(dashboard.get("templating", {}).get("list", []))
