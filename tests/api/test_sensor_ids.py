"""Registering sensors through the API as a technician does it (issue 12).

- registration takes effect on the next message: a reading published right after the 201
  is stored under its store, with the periodic index refresh out of the way (the API and
  the ingester on their own registry connections, as in split mode and in `coldchain
  run`, whose components each hold one);
- a bare device id over several probes is refused with the probes' ids; once all but one
  have their own id, the bare id is accepted for the one left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

import ingest.pipeline as pipeline_module
from coldchain.services import Mosquitto
from core.clock import SystemClock
from core.influx import InfluxV1
from core.registry import DiscoveredDevice, Registry
from core.settings import Settings
from devices.base import Publish
from simulator.publisher import Publisher
from tests.api.conftest import Api, api_settings
from tests.ingest.helpers import count, running_ingester, wait_for


@pytest.fixture
def live(influx_settings: Settings, influx: InfluxV1, broker: Mosquitto) -> Iterator[Api]:
    """The API on the wall clock (ingest checks device timestamps against it)."""
    harness = Api(api_settings(influx_settings, mqtt_url=broker.url), influx, SystemClock(),
                  with_engine=False)  # fmt: skip
    yield harness
    harness.close()


def _probe(device: str, value: float) -> Publish:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    body = {"Time": stamp, "DS18B20": {"Id": "030597946B04", "Temperature": value}}
    return Publish(f"tele/{device}/SENSOR", json.dumps(body).encode())


@pytest.mark.integration
def test_registration_takes_effect_on_the_next_message(
    live: Api, influx: InfluxV1, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer's periodic refresh must not be what makes it work: push it out of reach.
    monkeypatch.setattr(pipeline_module, "SIDE_FLUSH_INTERVAL_S", 24 * 3600.0)
    tech = live.client("technician")
    device = "cc-s900-wic2"
    ingest_registry = Registry(live.settings.db)  # the ingester's own connection
    with running_ingester(live.settings, ingest_registry) as ingester:
        publisher = Publisher(live.settings.mqtt, "test-installer")
        publisher.connect()
        try:
            publisher.publish(_probe(device, 9.5))
            publisher.flush()
            wait_for(lambda: count(influx, "unregistered") == 1, what="the unregistered reading")
            put = tech.put(
                f"/api/v1/sensors/{device}",
                json={"id": device, "asset": "s042-wic1", "family": "tasmota"},
            )
            assert put.status_code == 201, put.text
            publisher.publish(_probe(device, 3.25))  # right after the answer
            publisher.flush()
            wait_for(lambda: count(influx, "temperature") == 1, what="the next reading")
        finally:
            publisher.disconnect()
        assert ingester.pipeline.index.rechecks >= 1
    rows = influx.query("SELECT * FROM temperature WHERE store='s042' GROUP BY *")
    assert [(r.tags["sensor"], r.tags["asset"]) for r in rows] == [(device, "s042-wic1")]
    assert [v[rows[0].columns.index("value")] for v in rows[0].values] == [3.25]
    ingest_registry.close()


def _seen(registry: Registry, device: str, quantities: dict[str, list[str]]) -> None:
    sensors = [s for s in quantities if s != device]
    registry.record_discovered(
        [
            DiscoveredDevice(device, "tasmota", 1.0, 2.0, 1, sensors, f"tele/{device}/SENSOR",
                             "{}", quantities=quantities)
        ]
    )  # fmt: skip


def test_a_bare_device_id_over_several_probes_is_refused_with_the_probes(api: Api) -> None:
    tech = api.client("technician")
    device = "tasmota-s042-wic7"
    one, two = f"{device}:DS18B20-1", f"{device}:DS18B20-2"
    _seen(api.registry, device, {one: ["temperature"], two: ["temperature"],
                                 f"{device}:Switch1": ["door"], device: ["signal"]})  # fmt: skip
    body = {"id": device, "asset": "s042-wic1"}
    refused = tech.put(f"/api/v1/sensors/{device}", json=body)
    assert refused.status_code == 409
    answer = refused.json()
    assert answer["channels"] == {one: ["temperature"], two: ["temperature"]}
    assert one in answer["detail"]
    assert two in answer["detail"]
    register = tech.post("/api/v1/sensors/register", json={"sensor": device, "asset": "s042-wic1"})
    assert register.status_code == 409
    assert register.json()["channels"] == answer["channels"]
    # The technician registers the freezer probe by its id; the bare id then means the
    # one probe left, and is accepted.
    placed = tech.put(f"/api/v1/sensors/{two}", json={"id": two, "asset": "s042-dc1"})
    assert placed.status_code == 201, placed.text
    accepted = tech.post("/api/v1/sensors/register", json={"sensor": device, "asset": "s042-wic1"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["sensor"]["family"] == "tasmota"


def test_a_bare_device_id_that_measures_itself_or_has_one_probe_is_accepted(api: Api) -> None:
    tech = api.client("technician")
    _seen(api.registry, "24e124136b000009", {"24e124136b000009": ["temperature", "door"]})
    _seen(api.registry, "cc-s900-wic2", {"cc-s900-wic2:DS18B20": ["temperature"]})
    for device in ("24e124136b000009", "cc-s900-wic2", "never-seen-device"):
        put = tech.put(f"/api/v1/sensors/{device}", json={"id": device, "asset": "s042-wic1"})
        assert put.status_code == 201, (device, put.text)


def test_the_discovered_listing_shows_ids_reasons_and_unstored_keys(api: Api) -> None:
    api.registry.record_discovered(
        [
            DiscoveredDevice(
                "tasmota-s042-new", "tasmota", 1.0, 2.0, 2, [], "tele/tasmota-s042-new/SENSOR",
                '{"ANALOG":{"Range1":412}}', ignored={"no_sensor": 2},
                last_ignored="no_sensor: keys: ANALOG.Range1", unused=["ANALOG.Range1"],
            )
        ]
    )  # fmt: skip
    [listed] = api.client("technician").get("/api/v1/devices/discovered").json()
    assert listed["device_id"] == "tasmota-s042-new"
    assert listed["ignored"] == {"no_sensor": 2}
    assert listed["unused"] == ["ANALOG.Range1"]
    assert listed["last_ignored"] == "no_sensor: keys: ANALOG.Range1"
