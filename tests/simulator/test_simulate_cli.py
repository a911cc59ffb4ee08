"""`coldchain simulate` against a running ingester: the night lands in InfluxDB."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coldchain.services import Mosquitto
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings
from simulator.scenario import load_scenario
from tests.ingest.helpers import running_ingester, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_san_pedro_night_lands_in_influxdb(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1, tmp_path: Path
) -> None:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    env = dict(os.environ, COLDCHAIN_MQTT_URL=broker.url, COLDCHAIN_DB=str(settings.db))
    seeded = subprocess.run(
        [
            sys.executable,
            "-m",
            "coldchain",
            "simulate",
            "--scenario",
            "san-pedro-overnight",
            "--seed-registry",
            "--speed",
            "max",
            "--start",
            "2000-01-01T20:00",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )  # fmt: skip  (a dry run into the void seeds the registry; the broker drops it all)
    assert "seeded" in seeded.stdout
    registry = Registry(settings.db)
    with running_ingester(settings, registry) as ingester:
        done = subprocess.run(
            [sys.executable, "-m", "coldchain", "simulate", "--scenario",
             "san-pedro-overnight", "--speed", "max"],
            env=env, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        published = int(done.stdout.strip().splitlines()[-1].split()[1].replace(",", ""))
        wait_for(lambda: ingester.stats.acked.total() >= published, 120, "every message")
        assert ingester.stats.ts_corrected.total() == 0
    scenario = load_scenario("san-pedro-overnight").shifted_to_end_before(datetime.now(UTC))
    failure = scenario.when(scenario.timeline[0])
    repair = scenario.when(scenario.timeline[1])

    def max_between(start: datetime, end: datetime) -> float:
        series = influx.query(
            "SELECT max(value) FROM temperature WHERE sensor = $sensor "
            f"AND time >= {round(start.timestamp() * 1000)}ms "
            f"AND time < {round(end.timestamp() * 1000)}ms",
            {"sensor": "cc-s042-wic1"},
        )
        return float(series[0].values[0][1])

    defrost = scenario.start() + timedelta(hours=2)  # the 22:00 defrost warms it a little
    assert max_between(scenario.start(), defrost) < 5.0  # a healthy evening
    assert max_between(defrost, failure) < 7.0
    assert max_between(failure, repair) > 8.0  # the compressor failure, overnight
    assert max_between(repair + timedelta(hours=1), repair + timedelta(hours=2)) < 5.0  # fixed
    points = influx.query("SELECT count(value) FROM temperature WHERE sensor = 'cc-s042-wic1'")
    assert points[0].values[0][1] == 600  # one a minute for 10 h: the whole night
