"""The monitoring docs (docs/operations.md, section 8) name what coldchain exports: every
``coldchain_*`` series in the scrape config and alert rules exists, every job a rule names
is scraped, and the YAML parses. (``promtool check rules`` and ``promtool test rules``
passed on them when written; Prometheus is not a test dependency.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from alerting.engine import AlertingStats
from api.context import ApiStats
from core.metrics import Registry as MetricsRegistry
from core.metrics import parse
from ingest.stats import IngestStats

DOC = Path(__file__).parents[2] / "docs" / "operations.md"


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## 8. Monitoring") : text.index("## 9. Scaling out")]


def _yaml_blocks() -> list[Any]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", _section(), re.S)]


def _exported() -> set[str]:
    registry = MetricsRegistry()
    AlertingStats(registry)
    IngestStats(registry)
    ApiStats(registry)
    registry.describe_process("run")
    names: set[str] = set()
    for family in parse(registry.render()).values():
        names |= {name for name, _, _ in family.samples} | {family.name}
        if family.type == "counter":  # labelled ones have no sample before their first inc
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
    return names


def test_the_rules_and_scrape_config_name_exported_series_and_scraped_jobs() -> None:
    scrape, rules, alertmanager = _yaml_blocks()
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\bcoldchain_\w+", expr)}
    assert used, exprs
    assert used <= _exported(), used - _exported()
    for expr in exprs:
        for pattern in re.findall(r'job=~?"([^"]+)"', expr):
            assert any(re.fullmatch(pattern, job) for job in jobs), (pattern, jobs)
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"ColdchainProcessDown", "ColdchainIngestMembersDown", "ColdchainLeaseHeartbeatStale",
            "ColdchainEvaluationLagHigh", "ColdchainSpoolGrowing", "ColdchainDeadLetters",
            "ColdchainSideRecordsDropped", "Watchdog"} <= names  # fmt: skip
    receivers = {r["name"] for r in alertmanager["receivers"]}
    assert {route["receiver"] for route in alertmanager["route"]["routes"]} <= receivers
