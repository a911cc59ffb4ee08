"""Ingest end to end against the real Mosquitto and InfluxDB."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from coldchain.services import Mosquitto
from core.influx import InfluxV1
from core.settings import Settings
from devices.base import Publish
from simulator.publisher import Publisher
from tests.ingest.helpers import count, make_registry, running_ingester, wait_for

pytestmark = pytest.mark.integration

TS = int(time.time()) - 3600  # an hour ago: inside the plausibility window


def _settings(influx_settings: Settings, broker: Mosquitto, **extra: object) -> Settings:
    return influx_settings.model_copy(update={"mqtt_url": broker.url, **extra})


def _native(device: str, ts: float, temp: float, **more: object) -> Publish:
    body = {"ts": ts, "temperature_c": temp, **more}
    return Publish(f"coldchain/v1/{device}/telemetry", json.dumps(body).encode())


def test_native_readings_land_with_tags_and_offset(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1, tmp_path: Path
) -> None:
    settings = _settings(influx_settings, broker)
    registry = make_registry(settings.db)
    with running_ingester(settings, registry) as ingester:
        pub = Publisher(settings.mqtt, "test-pub")
        pub.connect()
        pub.publish(_native("cc-s042-wic1", TS, 3.4, humidity_pct=88.0))
        pub.publish(_native("cc-s042-dc1", TS, 4.25))
        pub.disconnect()
        wait_for(lambda: count(influx, "temperature") == 2, what="2 temperatures")
        # Points are queryable as soon as /write returns; the acks follow that answer.
        wait_for(lambda: ingester.stats.acked.total() == 2, what="2 acks")
    rows = influx.query("SELECT * FROM temperature GROUP BY *")
    by_sensor = {s.tags["sensor"]: s for s in rows}
    wic = by_sensor["cc-s042-wic1"]
    assert wic.tags == {
        "sensor": "cc-s042-wic1",
        "store": "s042",
        "asset": "s042-wic1",
        "asset_type": "walkin_cooler",
    }
    assert wic.values[0][0] == TS * 1000
    assert wic.values[0][wic.columns.index("value")] == pytest.approx(2.9)  # offset -0.5
    assert count(influx, "humidity") == 1


def test_bad_input_is_dead_lettered_and_unknown_devices_discovered(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1
) -> None:
    settings = _settings(influx_settings, broker)
    registry = make_registry(settings.db)
    with running_ingester(settings, registry) as ingester:
        pub = Publisher(settings.mqtt, "test-pub")
        pub.connect()
        pub.publish(Publish("coldchain/v1/cc-s042-wic1/telemetry", b"{not json"))
        pub.publish(Publish("coldchain/v1/cc-s042-wic1/telemetry", b'{"temperature_c": 85.0}'))
        pub.publish(_native("cc-new-1", TS, 5.5))
        pub.publish(Publish("coldchain/v1/bad id!/telemetry", b'{"temperature_c": 3}'))
        pub.disconnect()
        wait_for(lambda: ingester.stats.acked.total() == 4, what="4 acks")
    reasons = {d.reason for d in registry.dead_letters()}
    assert reasons == {"bad_json", "bad_device_id"}
    bad = next(d for d in registry.dead_letters() if d.reason == "bad_json")
    assert bad.payload == "{not json"
    assert bad.topic == "coldchain/v1/cc-s042-wic1/telemetry"
    discovered = registry.discovered()
    assert [d.device_id for d in discovered] == ["cc-new-1"]
    assert discovered[0].sensors == ["cc-new-1"]
    # the unregistered reading is kept (its id a field), the fault is a fault
    assert count(influx, "unregistered", "sensor='cc-new-1'") == 1
    assert count(influx, "temperature") == 0
    assert count(influx, "sensor_fault", "code='power_on_reset'") == 1


def test_wait_connected_returns_only_once_subscribed_so_the_first_message_lands(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1
) -> None:
    """Caught by a flaky API test: ``wait_connected`` returned at the CONNACK, before the
    broker had our SUBSCRIBE, and a device publishing at once (a new session: nothing
    queued for us yet) reached no one."""
    settings = _settings(influx_settings, broker)
    registry = make_registry(settings.db)
    with running_ingester(settings, registry) as ingester:
        assert ingester.source.subscribed.is_set()
        pub = Publisher(settings.mqtt, "test-first")
        pub.connect()
        pub.publish(_native("cc-s042-wic1", TS, 3.4))
        pub.disconnect()
        wait_for(lambda: count(influx, "temperature") == 1, what="the first reading")
