"""The golden corpus count, printed at the end of every run that ran golden cases.

One line per device family (its own golden cases plus the LoRaWAN corpus cases decoded
through it) and one per vendor (cases whose payload comes from that vendor's code, docs or
firmware, each naming its file or page), with how many failed; cases written by the
project from a research note count under ``(project)``.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

import devices

_DEVICES = Path(devices.__file__).parent
# test_golden[<family>/<case>] and test_corpus[<family>/<vendor dir>/<case>]
_GOLDEN = re.compile(r"::test_golden\[(?P<family>[^/\]]+)/(?P<case>[^\]]+)\]$")
_CORPUS = re.compile(r"::test_corpus\[(?P<family>[^/\]]+)/(?P<vendor>[^/\]]+)/(?P<case>[^\]]+)\]$")


@functools.cache
def _case_vendor(path: Path) -> str:
    """The vendor a golden case names (``vendor:``), or ``(project)``."""
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    vendor = case.get("vendor") if isinstance(case, dict) else None
    return str(vendor) if vendor else "(project)"


def _tally(
    reports: dict[str, list[pytest.TestReport]],
) -> tuple[Counter[str], Counter[str], Counter[str], Counter[str]]:
    """(cases per family, failures per family, cases per vendor, failures per vendor)."""
    family_runs: Counter[str] = Counter()
    family_fails: Counter[str] = Counter()
    vendor_cases: dict[str, set[str]] = {}
    vendor_fails: dict[str, set[str]] = {}
    for outcome, items in reports.items():
        for report in items:
            if not isinstance(report, pytest.TestReport) or report.when != "call":
                continue
            if match := _GOLDEN.search(report.nodeid):
                family = match["family"]
                path = _DEVICES / family / "testdata" / f"{match['case']}.yaml"
                vendor, key = _case_vendor(path), f"{family}/{match['case']}"
            elif match := _CORPUS.search(report.nodeid):
                family = match["family"]
                path = _DEVICES / "corpus" / "lorawan" / match["vendor"] / f"{match['case']}.yaml"
                vendor, key = _case_vendor(path), f"{match['vendor']}/{match['case']}"
            else:
                continue
            family_runs[family] += 1
            vendor_cases.setdefault(vendor, set()).add(key)
            if outcome == "failed":
                family_fails[family] += 1
                vendor_fails.setdefault(vendor, set()).add(key)
    vendors = Counter({vendor: len(keys) for vendor, keys in vendor_cases.items()})
    failed = Counter({vendor: len(keys) for vendor, keys in vendor_fails.items()})
    return family_runs, family_fails, vendors, failed


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the corpus count per family and per vendor (only when golden cases ran)."""
    family_runs, family_fails, vendors, vendor_fails = _tally(terminalreporter.stats)
    if not family_runs:
        return
    write = terminalreporter.write_line
    terminalreporter.section("golden payload corpus")
    total = sum(vendors.values())
    from_vendors = total - vendors.get("(project)", 0)
    write(f"{total} cases ({from_vendors} from vendor code, docs or firmware, each naming it)")
    write("per family (its golden cases + LoRaWAN corpus cases decoded through it):")
    for family, runs in sorted(family_runs.items()):
        write(f"  {family:<12} {runs:>4} run, {family_fails[family]} failed")
    write("per vendor (distinct cases):")
    for vendor, count in sorted(vendors.items(), key=lambda item: (-item[1], item[0])):
        write(f"  {vendor:<12} {count:>4} cases, {vendor_fails[vendor]} failed")
