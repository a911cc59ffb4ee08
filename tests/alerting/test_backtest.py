"""Backtest against the real InfluxDB: stored history in, the would-have-fired list out."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from coldchain.cli import main
from core.chain import parse_chain
from core.influx import InfluxV1
from core.lineprotocol import serialize_many
from core.registry import Registry
from core.settings import Settings
from core.types import Point

pytestmark = pytest.mark.integration
GT = ZoneInfo("America/Guatemala")
CHAIN = {
    "stores": [{"id": "s042", "name": "San Pedro", "timezone": "America/Guatemala",
                "hours": {"mon-sun": "07:00-21:00"}}],
    "assets": [{"id": "s042-wic1", "store": "s042", "type": "walkin_cooler", "name": "Camara 1"}],
    "sensors": [{"id": "wic1", "asset": "s042-wic1", "interval": "60s"}],
}  # fmt: skip


def _history(influx: InfluxV1, start: datetime) -> None:
    """Normal until 23:10, then the compressor fails: +1.5 K/h for 6 hours."""
    points = []
    for minute in range(8 * 60):
        at = start + timedelta(minutes=minute)
        failed = max(0, minute - 70)
        value = 3.0 + 1.5 * failed / 60
        tags = (("asset", "s042-wic1"), ("asset_type", "walkin_cooler"), ("sensor", "wic1"),
                ("store", "s042"))  # fmt: skip
        points.append(Point("temperature", tags, (("value", value),), round(at.timestamp() * 1000)))
    influx.write(serialize_many(points))


def _run(settings: Settings, *args: str, capsys: pytest.CaptureFixture[str]) -> str:
    env = {"COLDCHAIN_DB": str(settings.db), "COLDCHAIN_INFLUX_URL": settings.influx_url,
           "COLDCHAIN_INFLUX_DB": settings.influx_db}  # fmt: skip
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["alerting", "backtest", *args]) == 0
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return capsys.readouterr().out


def test_backtest_replays_the_night(
    influx_settings: Settings, influx: InfluxV1, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Registry(influx_settings.db).import_chain(parse_chain(CHAIN))
    start = datetime(2026, 11, 17, 22, 0, tzinfo=GT)
    _history(influx, start)
    out = _run(influx_settings, "--store", "s042", "--from", "2026-11-17T22:00",
               "--to", "2026-11-18T06:00", capsys=capsys)  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith("480 observations replayed for San Pedro (s042); ")
    fired = [line.split()[1] + " " + line.split()[4] for line in lines[1:]]
    # 5 °C is crossed at 00:30 (23:10 + 80 min at 1.5 K/h). Beyond it the excess after t
    # minutes is t/40 K, spent at x2 (closed overnight): 3t K·s per minute, 1.5 t² in all;
    # the 1800 K·s budget is gone at t = 34.6 min -> 01:05. 7 °C is crossed at 01:50 and
    # the critical budget is gone the same 35 min later -> 02:25. The rise rule sees
    # +1.5 K/h within 2 K of the limit at the first 30-min window after 00:00 -> 00:01.
    assert fired[:3] == ["00:01 rising", "01:05 warning", "02:25 critical"]
    assert "weight=x2 (closed overnight x2)" in lines[2]
    # The same night under a laxer rule file: warn at 9 °C, critical 11 °C, no rise rule.
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "assets:\n  - {id: s042-wic1, store: s042, type: walkin_cooler, name: Camara 1,\n"
        "     thresholds: {warn_above: 9.0, critical_above: 11.0, hard_ceiling: 14.0}}\n"
    )
    lax = _run(influx_settings, "--store", "s042", "--from", "2026-11-17T22:00",
               "--to", "2026-11-18T06:00", "--rules", str(rules), capsys=capsys)  # fmt: skip
    fired = [line.split()[1] + " " + line.split()[2] + " " + line.split()[4]
             for line in lax.splitlines()[1:]]  # fmt: skip
    # 9 °C is crossed at 03:10 and 11 °C at 04:30; each budget is spent 35 min later. The
    # rising stage needs the 30-min moving average (which trails a 1.5 K/h ramp by ~0.75 K)
    # within 2 K of the limit, 7 °C, at the close of a 30-min slope window: 02:20. It does
    # not flap.
    assert fired == ["02:20 fire rising", "03:45 upgrade warning", "05:05 upgrade critical"]
