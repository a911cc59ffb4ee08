"""Reliability drills against the real broker and database (issue 2, "what it must show").

(a) kill -9 the ingester process with 10,000 QoS 1 readings in flight, restart it: every
    reading is in InfluxDB exactly once per (sensor, timestamp);
(b) stop InfluxDB under load, start it again: nothing lost, the spool drains;
(c) restart the broker: the ingester reconnects and resumes by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coldchain.services import InfluxDB, Mosquitto
from core.chain import Chain, parse_chain
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings, as_env
from devices.base import Publish
from simulator.publisher import Publisher
from tests.ingest.helpers import count, running_ingester, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Device time of reading 0: a day ago, so every reading (up to ~17 h later) lies within the
# ingester's plausibility window of the receive time whenever the suite runs.
BASE_TS = (int(time.time()) // 60 - 24 * 60) * 60


def _chain(devices: int) -> Chain:
    return parse_chain(
        {
            "stores": [{"id": "s001", "name": "Store 1", "timezone": "America/Mexico_City"}],
            "assets": [
                {"id": f"a{i:03d}", "store": "s001", "type": "dairy_case", "name": f"Case {i}"}
                for i in range(devices)
            ],
            "sensors": [{"id": f"dev-{i:03d}", "asset": f"a{i:03d}"} for i in range(devices)],
        }
    )


def _registry(path: Path | str, devices: int) -> Registry:
    registry = Registry(path)
    registry.import_chain(_chain(devices))
    return registry


def _readings(devices: int, per_device: int, start: int = 0) -> list[Publish]:
    """Readings interleaved across devices, each with a distinct device timestamp."""
    out = []
    for i in range(start, start + per_device):
        for d in range(devices):
            body = {"ts": BASE_TS + i * 60, "seq": i, "temperature_c": round(3 + (i % 7) / 10, 2)}
            out.append(Publish(f"coldchain/v1/dev-{d:03d}/telemetry", json.dumps(body).encode()))
    return out


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        as_env(settings),
        COLDCHAIN_MQTT_CLIENT_ID=settings.mqtt_client_id,
        # Small batches: a kill lands between many write/ack cycles, not before the first.
        COLDCHAIN_BATCH_SIZE="500",
        COLDCHAIN_LOG_LEVEL="WARNING",
    )
    return env


def _spawn_ingester(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coldchain", "ingest"],
            env=_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_kill_9_with_10k_in_flight_loses_and_duplicates_nothing(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1, tmp_path: Path
) -> None:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    _registry(settings.db, 100).close()
    messages = _readings(devices=100, per_device=100)
    assert len(messages) == 10_000
    log = tmp_path / "ingest.log"

    proc = _spawn_ingester(settings, log)
    try:
        _drill(settings, influx, proc, messages, log)
    finally:
        proc.kill()
        proc.wait()


def _drill(
    settings: Settings,
    influx: InfluxV1,
    proc: subprocess.Popen[bytes],
    messages: list[Publish],
    log: Path,
) -> None:
    pub = Publisher(settings.mqtt, "drill-pub", window=2000)
    pub.connect()
    # Warm-up: the ingester's session exists and points flow before the drill starts.
    # Until it has subscribed, the broker drops what we publish: repeat (idempotent).
    warm_up = _readings(devices=1, per_device=1, start=-1)[0]

    def warmed_up() -> bool:
        pub.publish(warm_up)
        time.sleep(0.3)
        return count(influx, "temperature") == 1

    wait_for(warmed_up, 30, "warm-up reading")

    killed_at: list[int] = []

    def killer() -> None:
        wait_for(lambda: count(influx, "temperature") > 1500, 60, "1,500 points before kill")
        proc.kill()  # SIGKILL: no drain, no acks, no goodbye
        proc.wait()
        killed_at.append(count(influx, "temperature"))

    thread = threading.Thread(target=killer)
    thread.start()
    pub.publish_many(messages)
    pub.flush()  # the broker holds all 10,000 (queued for the session if not delivered)
    thread.join()
    pub.disconnect()
    assert killed_at, "the ingester was not killed"
    assert killed_at[0] < 10_001, "the kill came after everything was written"

    proc = _spawn_ingester(settings, log)
    try:
        wait_for(lambda: count(influx, "temperature") == 10_001, 120, "all 10,001 points")
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()[-2000:]
    # Exactly once per (sensor, timestamp): one point per device per reading index.
    per_sensor = influx.query('SELECT count("value") FROM temperature GROUP BY sensor')
    counts = {s.tags["sensor"]: s.values[0][1] for s in per_sensor}
    assert counts.pop("dev-000") == 101  # 100 readings + the warm-up
    assert set(counts.values()) == {100}
    assert len(counts) == 99
    distinct = influx.query(
        "SELECT count(distinct(\"value\")) FROM temperature WHERE sensor='dev-042'"
    )
    assert distinct[0].values[0][1] == 7  # values cycle through 3.0..3.6: none garbled


def test_influxdb_outage_under_load_spools_then_drains_in_order(
    tmp_path: Path, broker: Mosquitto
) -> None:
    own = InfluxDB(tmp_path / "influx-outage")  # a private server: this test stops it
    own.start()
    try:
        settings = Settings(
            mqtt_url=broker.url,
            influx_url=own.url,
            influx_db="outage",
            db=tmp_path / "registry.sqlite3",
            spool_dir=tmp_path / "spool",
            batch_size=200,
            batch_interval_ms=100,
        )
        registry = _registry(settings.db, 20)
        influx = InfluxV1(settings)
        messages = _readings(devices=20, per_device=150)  # 3,000 readings
        with running_ingester(settings, registry) as ingester:
            pub = Publisher(settings.mqtt, "outage-pub")
            pub.connect()
            pub.publish_many(messages[:1000])
            wait_for(lambda: count(influx, "temperature") == 1000, 30, "first 1,000")
            own.stop()
            pub.publish_many(messages[1000:2500])
            pub.flush()
            # Everything published during the outage is acknowledged once spooled.
            wait_for(lambda: ingester.stats.acked.total() == 2500, 60, "2,500 acks")
            assert len(ingester.spool) > 0
            assert ingester.stats.batches_spooled.total() > 0
            assert ingester.stats.write_errors.value("unavailable") > 0
            own.start()
            pub.publish_many(messages[2500:])
            pub.disconnect()
            wait_for(lambda: len(ingester.spool) == 0, 60, "spool drained")
            wait_for(lambda: count(influx, "temperature") == 3000, 60, "all 3,000 points")
            assert ingester.stats.batches_drained.total() == ingester.stats.batches_spooled.total()
            assert ingester.stats.spool_bytes.value() == 0
        influx.close()
    finally:
        own.stop()


def test_spool_survives_an_ingester_restart(tmp_path: Path, broker: Mosquitto) -> None:
    """Spooled batches were acked: they must reach InfluxDB after a restart of ingest."""
    own = InfluxDB(tmp_path / "influx-restart")
    own.start()
    try:
        settings = Settings(
            mqtt_url=broker.url,
            influx_url=own.url,
            influx_db="restart",
            db=tmp_path / "registry.sqlite3",
            spool_dir=tmp_path / "spool",
            batch_size=100,
        )
        registry = _registry(settings.db, 5)
        influx = InfluxV1(settings)
        influx.ensure_database()
        own.stop()
        with running_ingester(settings, registry) as ingester:
            pub = Publisher(settings.mqtt, "restart-pub")
            pub.connect()
            pub.publish_many(_readings(devices=5, per_device=100))
            pub.disconnect()
            wait_for(lambda: ingester.stats.acked.total() == 500, 30, "500 acks")
        spooled = sorted((tmp_path / "spool").glob("*.lp"))
        assert spooled, "nothing was spooled while InfluxDB was down"
        own.start()
        with running_ingester(settings, registry) as ingester:
            wait_for(lambda: count(influx, "temperature") == 500, 60, "500 points")
            assert len(ingester.spool) == 0
        influx.close()
    finally:
        own.stop()


def test_broker_restart_reconnects_and_resumes(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1
) -> None:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    registry = _registry(settings.db, 10)
    with running_ingester(settings, registry) as ingester:
        pub = Publisher(settings.mqtt, "restart-pub")
        pub.connect()
        pub.publish_many(_readings(devices=10, per_device=10))
        pub.disconnect()
        wait_for(lambda: count(influx, "temperature") == 100, 30, "first 100")
        connects = ingester.source.connects
        broker.restart()
        wait_for(lambda: ingester.source.connects > connects, 60, "reconnect")
        wait_for(ingester.source.connected.is_set, 30, "connected")
        time.sleep(0.2)  # let the resubscription reach the broker
        pub = Publisher(settings.mqtt, "restart-pub-2")
        pub.connect()
        pub.publish_many(_readings(devices=10, per_device=10, start=10))
        pub.disconnect()
        wait_for(lambda: count(influx, "temperature") == 200, 30, "200 after the restart")


def test_rejected_points_are_dead_lettered_and_the_rest_written(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1
) -> None:
    """A field type conflict rejects a whole batch in InfluxDB 1.x; bisection saves the
    good points and dead-letters exactly the bad ones, with InfluxDB's reason."""
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url, "batch_size": 1000})
    registry = _registry(settings.db, 4)
    # Someone wrote humidity as an integer field into this shard before us.
    influx.write(f"humidity,sensor=legacy value=1i {BASE_TS * 1000}".encode())
    with running_ingester(settings, registry) as ingester:
        pub = Publisher(settings.mqtt, "reject-pub")
        pub.connect()
        for i in range(50):
            body = {"ts": BASE_TS + i, "temperature_c": 4.0}
            if i == 17:
                body["humidity_pct"] = 80.5
            pub.publish(Publish(f"coldchain/v1/dev-00{i % 4}/telemetry", json.dumps(body).encode()))
        pub.disconnect()
        wait_for(lambda: ingester.stats.acked.total() == 50, 30, "50 acks")
        ingester.writer.flush_now()
        wait_for(lambda: ingester.stats.dead_letters.value("influx_rejected") == 1, 30, "reject")
    assert count(influx, "temperature") == 50
    [letter] = registry.dead_letters(reason="influx_rejected")
    assert letter.payload.startswith("humidity,")
    assert "field type conflict" in letter.detail
