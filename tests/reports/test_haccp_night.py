"""The HACCP record of the San Pedro night, through the real API, checked against InfluxDB.

The san-pedro-overnight scenario runs through real MQTT ingest and alerting (the
acceptance harness); on-call acknowledges by SMS with a note. Then the API serves the
record of Wednesday 18 November (the failure began on Tuesday at 23:10, so the day opens
mid-excursion), and every figure is recomputed here from the raw points in InfluxDB with
numpy, independently of reports/haccp.py. Finally headless Chromium renders the HTML
page to a PNG, the proof that it is a page a person can read and print.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import struct
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest

from api import ApiDeps, ApiServer
from coldchain.services import Mosquitto
from core.influx import InfluxV1
from core.metrics import Registry as MetricsRegistry
from core.registry import Registry
from core.settings import Settings
from tests.acceptance.harness import Run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOC = "+50255550199"
GT = ZoneInfo("America/Guatemala")
DAY = date(2026, 11, 18)
WALKIN = "cc-s042-wic1"
PAGE_MIN_BYTES = 20_000  # a blank page is ~2 KB; a rendered record with charts far more


def _night(tmp: Path, influx_settings: Settings, broker: Mosquitto) -> Run:
    run = Run("san-pedro-overnight", tmp, influx_settings, broker)
    acked: list[str] = []

    def on_call_answers(r: Run) -> None:
        to_noc = [m for m in r.sms() if m.to == NOC]
        if to_noc and not acked and r.local() >= to_noc[0].at + timedelta(minutes=5):
            code = re.search(r"OK (\d{4})", to_noc[0].body)
            assert code is not None
            acked.append(r.stack.engine.handle_sms(NOC, f"OK {code.group(1)} voy en camino").text)

    run.hooks.append(on_call_answers)
    run.run()
    assert acked
    return run


def _raw(influx: InfluxV1, start: float, end: float) -> dict[str, np.ndarray]:
    """(time s, value) per sensor, straight from InfluxDB."""
    series = influx.query(
        f'SELECT "value", "sensor" FROM "temperature" WHERE "store" = \'s042\' '
        f"AND time >= {int(start * 1000)}ms AND time < {int(end * 1000)}ms"
    )
    out: dict[str, list[tuple[float, float]]] = {}
    for s in series:
        for row in s.values:
            out.setdefault(row[2], []).append((row[0] / 1000, row[1]))
    return {k: np.array(sorted(v)) for k, v in out.items()}


def test_haccp_record_of_the_san_pedro_night(
    influx_settings: Settings, broker: Mosquitto, tmp_path: Path
) -> None:
    run = _night(tmp_path, influx_settings, broker)
    # The record is read at 06:00 on Wednesday, when the simulated night ends.
    influx = InfluxV1(run.settings)
    registry = Registry(run.settings.db)
    key = registry.create_api_key("manager", ["s042"], name="ana-key")
    other = registry.create_api_key("manager", ["s017"], name="zona10-key")
    deps = ApiDeps(settings=run.settings, registry=registry, influx=influx, engine=None,
                   clock=run.clock, metrics=MetricsRegistry())  # fmt: skip
    server = ApiServer(deps, "127.0.0.1", 0)
    server.start()
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"},
                          timeout=30)  # fmt: skip
    try:
        params = {"store": "s042", "date": DAY.isoformat()}
        report = client.get("/api/v1/reports/haccp", params=params).json()
        as_csv = client.get("/api/v1/reports/haccp", params={**params, "format": "csv"})
        page = client.get("/api/v1/reports/haccp", params={**params, "format": "html"})
        forbidden = client.get(
            "/api/v1/reports/haccp", params=params, headers={"Authorization": f"Bearer {other}"}
        )
        anonymous = httpx.get(f"{server.url}/api/v1/reports/haccp", params=params)
        midnight = datetime(2026, 11, 18, tzinfo=GT).timestamp()
        lead = _raw(influx, midnight - 3 * 60.0, midnight)
        raw = _raw(influx, midnight, run.clock.time())
    finally:
        client.close()
        server.stop()
        registry.close()
        influx.close()

    assert (forbidden.status_code, anonymous.status_code) == (403, 401)
    assert report["complete"] is False  # read at 06:00: the day runs on
    assert datetime.fromisoformat(report["end"]) == run.clock.now()
    sensors = {s["sensor"]: (a, s) for a in report["assets"] for s in a["sensors"]}
    assert set(sensors) == set(raw)
    for sensor, points in raw.items():
        _, got = sensors[sensor]
        values = points[:, 1]
        assert got["readings"] == len(values)
        assert got["min_c"] == pytest.approx(values.min())
        assert got["max_c"] == pytest.approx(values.max())
        assert got["mean_c"] == pytest.approx(values.mean())

    # The walk-in: beyond 5 °C from midnight until the repaired compressor pulls it back.
    asset, wic = sensors[WALKIN]
    assert (asset["asset"], asset["upper_c"]) == ("s042-wic1", 5.0)
    t, v, hold, counted = _stood(
        raw[WALKIN], lead[WALKIN][-1], start=midnight, end=run.clock.time(), cap=3 * 60.0
    )
    expected = _runs_above(t, v, hold, counted, limit=5.0)
    got = [
        (datetime.fromisoformat(e["start"]).timestamp(), datetime.fromisoformat(e["end"])
         .timestamp(), e["readings"], e["peak_c"], e["degree_minutes"])
        for e in wic["excursions"]
    ]  # fmt: skip
    assert len(got) == len(expected) >= 2
    for mine, theirs in zip(expected, got, strict=True):
        assert theirs == pytest.approx(mine)
    failure, *defrosts = wic["excursions"]
    # The failure: already beyond 5 °C at midnight, past 8 °C, not a defrost.
    assert failure["from_previous_day"]
    assert not failure["in_defrost"]
    assert failure["peak_c"] > 8.0  # the Monday question: it passed 8 °C overnight
    assert datetime.fromisoformat(failure["end"]).astimezone(GT).hour == 2
    # The rest are the 04:00 defrost's warm air, marked as such.
    assert all(e["in_defrost"] for e in defrosts)
    assert wic["minutes_above"] == pytest.approx(hold[v > 5.0].sum() / 60)
    # 08:00 and 20:00 have not come yet at 06:00.
    assert wic["checks"] == []
    # Coverage: from midnight to 06:00, every minute stood for by a reading.
    assert wic["coverage_pct"] == pytest.approx(100.0, abs=0.5)

    # The corrective-action record: who acknowledged, how, when, with what note.
    [alert] = [a for a in report["alerts"] if a["asset"] == "s042-wic1"]
    assert (alert["acked_by"], alert["acked_by_name"], alert["ack_via"]) == (
        "noc",
        "NOC Guatemala",
        "sms",
    )
    assert alert["ack_note"] == "voy en camino"
    assert datetime.fromisoformat(alert["acked_at"]).astimezone(GT).strftime("%H:%M") == "00:14"
    assert datetime.fromisoformat(alert["resolved_at"]).astimezone(GT).strftime("%H:%M") == "02:18"

    # CSV: the same record, one flat table, local times.
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert as_csv.headers["content-type"].startswith("text/csv")
    csv_excursion = next(r for r in rows if r["record"] == "excursion" and r["sensor"] == WALKIN)
    assert float(csv_excursion["degree_minutes"]) == pytest.approx(expected[0][4], abs=0.05)
    assert csv_excursion["start_local"].startswith("2026-11-18T00:00")
    assert csv_excursion["start_local"].endswith("-06:00")
    assert sum(r["record"] == "summary" for r in rows) == len(raw)
    [csv_alert] = [r for r in rows if r["record"] == "alert" and r["asset"] == "s042-wic1"]
    assert csv_alert["acked_by"] == "NOC Guatemala (noc, sms)"
    assert csv_alert["note"].startswith("voy en camino")

    # HTML: a self-contained page that Chromium renders.
    assert page.headers["content-type"].startswith("text/html")
    assert "Camara fria 1" in page.text
    assert "<svg" in page.text
    html = tmp_path / "haccp.html"
    html.write_text(page.text)
    png = screenshot(html, tmp_path / "haccp.png")
    width, height = png_size(png)
    assert (width, height) == (1280, 2000)
    assert png.stat().st_size > PAGE_MIN_BYTES


def _stood(
    points: np.ndarray, before: np.ndarray, *, start: float, end: float, cap: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Times, values, how long each stood and whether it is the day's own reading, with
    the reading before midnight standing into the day (the definition in reports/haccp.py;
    computed with numpy)."""
    taken = np.concatenate([[before[0]], points[:, 0]])
    t = np.concatenate([[start], points[:, 0]])
    v = np.concatenate([[before[1]], points[:, 1]])
    until = np.minimum(np.minimum(np.append(t[1:], end), taken + cap), end)
    counted = np.arange(len(t)) > 0
    return t, v, np.maximum(until - t, 0.0), counted


def _runs_above(
    t: np.ndarray, v: np.ndarray, hold: np.ndarray, counted: np.ndarray, *, limit: float
) -> list[tuple[float, float, int, float, float]]:
    """(start, end, readings, peak, degree-minutes) of each run of points above ``limit``,
    a run broken where no reading stood."""
    above = v > limit
    stands_to_next = t[:-1] + hold[:-1] >= t[1:]
    joined = np.concatenate([[False], above[:-1] & stands_to_next])
    out = []
    for first in np.flatnonzero(above & ~joined):
        last = first
        while last + 1 < len(t) and above[last + 1] and joined[last + 1]:
            last += 1
        sl = slice(first, last + 1)
        degree_minutes = float(((v[sl] - limit) * hold[sl]).sum() / 60)
        out.append((float(t[first]), float(t[last] + hold[last]), int(counted[sl].sum()),
                    float(v[sl].max()), degree_minutes))  # fmt: skip
    return out


def screenshot(html: Path, png: Path) -> Path:
    """Render ``html`` in headless Chromium (Debian's ``chromium``) to ``png``."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is installed by scripts/ensure-system-deps.sh (make test)"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-dev-shm-usage", f"--user-data-dir={png.parent / 'chromium-profile'}",
         "--window-size=1280,2000", f"--screenshot={png}", html.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return png


def png_size(png: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height
