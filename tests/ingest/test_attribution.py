"""Sensor ids a technician cannot get wrong, and nothing a device says disappears (issue 12),
through the real Mosquitto, ingester and InfluxDB.

- a single-probe device registered by its bare id is attributed (rule 2 of ingest.index);
- a bare id over several probes attributes nothing and says why in the device listing;
- an LHT65N registered as ``<dev>`` and ``<dev>:ds`` keeps its built-in sensor on ``<dev>``;
- ignored messages are counted by reason and listed with their device; keys a registered
  device sends that are not stored are listed too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from coldchain.services import Mosquitto
from core.chain import Sensor
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings
from core.types import Quantity
from devices.base import Publish
from ingest.pipeline import Observation
from simulator.publisher import Publisher
from tests.devices.uplinks import chirpstack_up
from tests.ingest.helpers import count, make_registry, running_ingester, wait_for

pytestmark = pytest.mark.integration


def _settings(influx_settings: Settings, broker: Mosquitto) -> Settings:
    return influx_settings.model_copy(update={"mqtt_url": broker.url})


def _tasmota(topic: str, probes: dict[str, float]) -> Publish:
    """A Tasmota SENSOR message with Time carrying its offset (an absolute time)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60))
    body: dict[str, object] = {"Time": stamp}
    body.update({key: {"Temperature": value} for key, value in probes.items()})
    body["TempUnit"] = "C"
    return Publish(f"tele/{topic}/SENSOR", json.dumps(body).encode())


def _series(influx: InfluxV1, measurement: str) -> dict[str, dict[str, str]]:
    """sensor tag -> the full tag set of each series of a measurement."""
    rows = influx.query(f'SELECT * FROM "{measurement}" GROUP BY *')
    return {row.tags["sensor"]: row.tags for row in rows}


def _publish(settings: Settings, *messages: Publish) -> None:
    publisher = Publisher(settings.mqtt, "test-installer")
    publisher.connect()
    for message in messages:
        publisher.publish(message)
    publisher.flush()
    publisher.disconnect()


def _register(registry: Registry, sensor: str, asset: str = "s042-wic1") -> None:
    registry.add_sensor(Sensor(id=sensor, asset=asset, family="tasmota"))


def test_single_probe_device_registered_by_its_device_id_is_attributed(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1
) -> None:
    """The issue's Tasmota: one DS18B20 registered as cc-s900-wic2 (no channel)."""
    settings = _settings(influx_settings, broker)
    registry = make_registry(settings.db)
    _register(registry, "cc-s900-wic2")
    with running_ingester(settings, registry) as ingester:
        _publish(settings, _tasmota("cc-s900-wic2", {"DS18B20": 3.5}))
        wait_for(lambda: count(influx, "temperature") == 1, what="the probe's reading")
        wait_for(lambda: ingester.stats.acked.total() == 1, what="the ack")
    assert _series(influx, "temperature") == {
        "cc-s900-wic2": {
            "sensor": "cc-s900-wic2",
            "store": "s042",
            "asset": "s042-wic1",
            "asset_type": "walkin_cooler",
        }
    }
    assert ingester.stats.unknown_sensor.total() == 0
    assert registry.discovered() == []


def test_bare_id_over_several_probes_attributes_nothing_and_says_why(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1
) -> None:
    settings = _settings(influx_settings, broker)
    registry = make_registry(settings.db)
    _register(registry, "tasmota-s042-wic1")
    two = {"DS18B20-1": 3.4, "DS18B20-2": -19.8}
    with running_ingester(settings, registry) as ingester:
        _publish(settings, _tasmota("tasmota-s042-wic1", two))
        wait_for(lambda: ingester.stats.acked.total() == 1, what="the ack")
        ingester.pipeline.housekeeping(force=True)
    assert _series(influx, "temperature") == {}, "no probe taken at random"
    kept = influx.query('SELECT "sensor", "value" FROM "unregistered"')
    assert {(row[1], row[2]) for row in kept[0].values} == {
        ("tasmota-s042-wic1:DS18B20-1", 3.4),
        ("tasmota-s042-wic1:DS18B20-2", -19.8),
    }  # nothing lost
    [device] = registry.discovered()
    assert device.sensors == ["tasmota-s042-wic1:DS18B20-1", "tasmota-s042-wic1:DS18B20-2"]
    assert device.quantities == {
        "tasmota-s042-wic1:DS18B20-1": ["temperature"],
        "tasmota-s042-wic1:DS18B20-2": ["temperature"],
    }
    assert "tasmota-s042-wic1:DS18B20-1, tasmota-s042-wic1:DS18B20-2" in device.note
    # Once one probe has its own id, the bare id covers the one left.
    registry.add_sensor(Sensor(id="tasmota-s042-wic1:DS18B20-2", asset="s042-dc1"))
    with running_ingester(settings, registry) as ingester:
        _publish(settings, _tasmota("tasmota-s042-wic1", two))
        wait_for(lambda: count(influx, "temperature", "store='s042'") == 2, what="both stored")
    stored = {
        (row.tags["sensor"], row.tags["asset"])
        for row in influx.query("SELECT * FROM temperature WHERE store='s042' GROUP BY *")
    }
    assert stored == {
        ("tasmota-s042-wic1", "s042-wic1"),
        ("tasmota-s042-wic1:DS18B20-2", "s042-dc1"),
    }
    assert registry.discovered() == []


def test_lht65n_registered_as_device_and_probe_keeps_its_built_in_sensor_on_the_device(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1
) -> None:
    """Registrations made when the built-in SHT was ``<dev>`` keep working now it is
    ``<dev>:sht``: the bare id covers the one probe not registered on its own."""
    settings = _settings(influx_settings, broker)
    registry = make_registry(settings.db)
    dev = "a840418371886f2b"
    registry.add_sensor(Sensor(id=dev, asset="s042-wic1", family="chirpstack"))
    registry.add_sensor(Sensor(id=f"{dev}:ds", asset="s042-dc1", family="chirpstack"))
    codec_output = {"BatV": 3.05, "TempC_SHT": "3.02", "Hum_SHT": "89.5", "TempC_DS": "327.67"}
    topic, payload = chirpstack_up(dev, 2, "CBEA012E037F017FFF7FFF", codec_output)
    body = json.loads(payload)
    body["time"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60))
    with running_ingester(settings, registry) as ingester:
        _publish(settings, Publish(topic, json.dumps(body).encode()))
        wait_for(lambda: ingester.stats.acked.total() == 1, what="the ack")
    readings = {
        (measurement, row.tags["sensor"], row.tags.get("asset"))
        for measurement in ("temperature", "humidity", "battery")
        for row in influx.query(f'SELECT * FROM "{measurement}" GROUP BY *')
    }
    assert readings == {
        ("temperature", dev, "s042-wic1"),
        ("humidity", dev, "s042-wic1"),
        ("battery", dev, "s042-wic1"),
    }
    faults = influx.query("SELECT * FROM sensor_fault GROUP BY *")
    assert [(row.tags["sensor"], row.tags["asset"]) for row in faults] == [
        (f"{dev}:ds", "s042-dc1")
    ]


def test_ignored_messages_are_counted_by_reason_and_listed_with_their_device(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1, tmp_path: Path
) -> None:
    settings = _settings(influx_settings, broker)
    registry = make_registry(settings.db)
    registry.add_sensor(Sensor(id="tasmota-s042-dc9", asset="s042-dc1", family="tasmota"))
    unknown_probe = Publish(
        "tele/tasmota-s042-new/SENSOR", b'{"Time":"2024-05-10T03:15:00","ANALOG":{"Range1":412}}'
    )
    uptime = Publish("cr-s042-dc3/sensor/uptime/state", b"86400")
    with_new_key = _tasmota("tasmota-s042-dc9", {"DS18B20": 3.2})
    body = json.loads(with_new_key.payload)
    body["BMP280"] = {"Pressure": 1013.2}  # a sensor object with nothing we store
    with running_ingester(settings, registry) as ingester:
        _publish(
            settings,
            unknown_probe,
            unknown_probe,
            uptime,
            Publish(with_new_key.topic, json.dumps(body).encode()),
        )
        wait_for(lambda: ingester.stats.acked.total() == 4, what="4 acks")
        ingester.pipeline.housekeeping(force=True)
        counts = ingester.stats.ignored.items()
    assert counts == {("tasmota", "no_sensor"): 2.0, ("esphome", "not_a_quantity"): 1.0}
    listed = {d.device_id: d for d in registry.discovered()}
    assert set(listed) == {"tasmota-s042-new", "cr-s042-dc3"}, "nothing stored: listed"
    new = listed["tasmota-s042-new"]
    assert new.ignored == {"no_sensor": 2}
    assert new.unused == ["ANALOG.Range1"]
    assert new.last_ignored == "no_sensor: keys: ANALOG.Range1"
    assert listed["cr-s042-dc3"].unused == ["sensor/uptime"]
    # A registered device's unstored key shows in the full listing, not as a to-do.
    everything = {d.device_id: d for d in registry.discovered(include_registered=True)}
    assert everything["tasmota-s042-dc9"].unused == ["BMP280"]
    assert count(influx, "temperature", "asset='s042-dc1'") == 1


def test_stored_records_are_written_at_their_own_time(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1
) -> None:
    """A Milesight history record (datalog re-sent after an outage) lands where it belongs;
    a record whose clock is absurd lands at receive time, flagged."""
    settings = _settings(influx_settings, broker)
    registry = make_registry(settings.db)
    dev = "24e124136b000042"
    registry.add_sensor(Sensor(id=dev, asset="s042-wic1", family="chirpstack"))
    record_at = int(time.time()) - 3 * 3600  # three hours ago, during the outage
    history = {
        "history": [
            {"timestamp": record_at, "temperature": 7.5, "humidity": 81.0},
            {"timestamp": 12, "temperature": 7.0},  # a clock never set: 1970
        ]
    }
    topic, payload = chirpstack_up(dev, 85, "20CE", history)
    body = json.loads(payload)
    body["time"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    seen: list[Observation] = []
    with running_ingester(settings, registry, on_durable=seen.extend) as ingester:
        _publish(settings, Publish(topic, json.dumps(body).encode()))
        wait_for(lambda: ingester.stats.acked.total() == 1, what="the ack")
    # History is not news: alerting hears only the uplink's own (gateway) signal.
    assert [(o.kind, o.quantity) for o in seen] == [("reading", Quantity.SIGNAL)]
    rows = influx.query("SELECT value, ts_corrected FROM temperature WHERE asset='s042-wic1'")
    by_value = {row[1]: (row[0], row[2]) for row in rows[0].values}
    assert by_value[7.5] == (record_at * 1000, None)  # at its own time
    corrected_at, flagged = by_value[7.0]
    assert flagged is True  # a 1970 clock: at receive time, flagged
    assert abs(corrected_at - time.time() * 1000) < 60_000
    humidity = influx.query("SELECT value FROM humidity")
    assert humidity[0].values == [[record_at * 1000, 81.0]]
