"""Readings through the API against the real InfluxDB: latest per store, history of a
sensor (raw and downsampled), and a discovered device registered by a technician whose
next readings, ingested for real from MQTT, appear under its asset."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import api.routes.readings as readings_module
from coldchain.services import Mosquitto
from core.clock import SystemClock
from core.influx import InfluxV1
from core.settings import Settings
from devices.base import Publish
from simulator.publisher import Publisher
from tests.api.conftest import NIGHT, Api, api_settings
from tests.ingest.helpers import running_ingester, wait_for

pytestmark = pytest.mark.integration

NOW_MS = round(NIGHT.timestamp() * 1000)
MINUTE_MS = 60_000


def _write(api: Api, measurement: str, tags: str, values: list[tuple[int, float]]) -> None:
    lines = [f"{measurement},{tags} value={v} {t}" for t, v in values]
    api.influx.write("\n".join(lines).encode())


WIC1 = "store=s042,asset=s042-wic1,asset_type=walkin_cooler,sensor=wic1"
DC1 = "store=s042,asset=s042-dc1,asset_type=dairy_case,sensor=dc1"
Z10 = "store=s043,asset=s043-wic1,asset_type=walkin_cooler,sensor=z10-wic1"


def test_latest_gives_every_active_sensor_of_the_store(api: Api) -> None:
    _write(api, "temperature", WIC1, [(NOW_MS - 120_000, 3.5), (NOW_MS - 60_000, 3.75)])
    _write(api, "humidity", WIC1, [(NOW_MS - 60_000, 81.0)])
    _write(api, "door", WIC1, [(NOW_MS - 30_000, 1.0)])
    _write(api, "temperature", Z10, [(NOW_MS - 60_000, -20.0)])
    # Older than the look-back window: not shown.
    _write(api, "temperature", DC1, [(NOW_MS - 3 * 86400_000, 4.0)])
    body = api.client("manager").get("/api/v1/readings/latest", params={"store": "s042"}).json()
    by_sensor = {s["sensor"]: s for s in body["sensors"]}
    assert set(by_sensor) == {"wic1", "dc1"}
    wic1 = by_sensor["wic1"]
    assert (wic1["asset"], wic1["asset_type"]) == ("s042-wic1", "walkin_cooler")
    assert {q: r["value"] for q, r in wic1["readings"].items()} == {
        "temperature": 3.75,
        "humidity": 81.0,
        "door": 1.0,
    }
    when = datetime.fromisoformat(wic1["readings"]["temperature"]["time"])
    assert when == NIGHT - timedelta(minutes=1)
    assert by_sensor["dc1"]["readings"] == {}  # registered, silent
    assert api.client("manager").get(
        "/api/v1/readings/latest", params={"store": "nope"}
    ).status_code in (403, 404)
    assert (
        api.client("admin").get("/api/v1/readings/latest", params={"store": "nope"}).status_code
        == 404
    )


def test_history_raw_and_downsampled(api: Api) -> None:
    values = [(NOW_MS - i * MINUTE_MS, 2.0 + (i % 10) / 10) for i in range(1, 121)]
    _write(api, "temperature", WIC1, values)
    tech = api.client("technician")
    raw = tech.get("/api/v1/readings", params={"sensor": "wic1"}).json()
    assert len(raw["points"]) == 120
    assert raw["truncated"] is False
    assert [p["time"] for p in raw["points"]] == sorted(p["time"] for p in raw["points"])
    assert {p["asset"] for p in raw["points"]} == {"s042-wic1"}
    start = (NIGHT - timedelta(hours=1)).isoformat()
    mean = tech.get(
        "/api/v1/readings", params={"sensor": "wic1", "start": start, "every": "10m"}
    ).json()
    assert len(mean["points"]) == 6
    # Each 10-minute bucket holds one reading of each tenth: the mean is 2.45.
    assert all(p["value"] == pytest.approx(2.45) for p in mean["points"])
    expected = statistics.mean(v for t, v in values if t >= NOW_MS - 3600_000)
    assert statistics.mean(p["value"] for p in mean["points"]) == pytest.approx(expected)


def test_history_limits(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    tech = api.client("technician")
    end = NIGHT.isoformat()
    cases = {
        "range over 31 days": {"start": (NIGHT - timedelta(days=32)).isoformat(), "end": end},
        "start after end": {"start": end, "end": (NIGHT - timedelta(hours=1)).isoformat()},
        "naive": {"start": "2026-11-17T00:00:00"},
        "before 1970": {"start": "1900-01-01T00:00:00Z"},
        "too many buckets": {"start": (NIGHT - timedelta(days=30)).isoformat(), "every": "10s"},
        "bucket too small": {"every": "5s"},
        "bucket too large": {"every": "9507582d"},
        "bad bucket": {"every": "5 minutes"},
        "unknown quantity": {"quantity": "pressure"},
    }
    for case, params in cases.items():
        response = tech.get("/api/v1/readings", params={"sensor": "wic1", **params})
        assert response.status_code == 422, (case, response.text)
        assert response.json()["message"], case
    assert tech.get("/api/v1/readings", params={"sensor": "nope"}).status_code == 404
    _write(api, "temperature", WIC1, [(NOW_MS - i * MINUTE_MS, 3.0) for i in range(1, 11)])
    monkeypatch.setattr(readings_module, "MAX_RAW_POINTS", 4)
    cut = tech.get("/api/v1/readings", params={"sensor": "wic1"}).json()
    assert (len(cut["points"]), cut["truncated"]) == (4, True)


def test_history_of_a_moved_sensor_keeps_where_each_reading_was_taken(api: Api) -> None:
    _write(api, "temperature", WIC1, [(NOW_MS - 3 * MINUTE_MS, 3.0)])
    tech = api.client("technician")
    assert tech.put("/api/v1/sensors/wic1", json={"id": "wic1", "asset": "s043-wic1"}).is_success
    moved = "store=s043,asset=s043-wic1,asset_type=walkin_cooler,sensor=wic1"
    _write(api, "temperature", moved, [(NOW_MS - MINUTE_MS, 4.0)])
    history = tech.get("/api/v1/readings", params={"sensor": "wic1"}).json()
    assert [(p["asset"], p["value"]) for p in history["points"]] == [
        ("s042-wic1", 3.0),
        ("s043-wic1", 4.0),
    ]
    # The manager of s043 sees the sensor now, but not what it measured in s042.
    seen = api.client("manager_b").get("/api/v1/readings", params={"sensor": "wic1"}).json()
    assert [p["asset"] for p in seen["points"]] == ["s043-wic1"]
    assert (
        api.client("manager").get("/api/v1/readings", params={"sensor": "wic1"}).status_code == 403
    )


@pytest.fixture
def live(influx_settings: Settings, influx: InfluxV1, broker: Mosquitto) -> Iterator[Api]:
    """The API on the wall clock (ingest checks device timestamps against it)."""
    settings = api_settings(influx_settings, mqtt_url=broker.url)
    harness = Api(settings, influx, SystemClock(), with_engine=False)
    yield harness
    harness.close()


def _native(device: str, temperature: float) -> Publish:
    body = {"ts": time.time(), "temperature_c": temperature, "battery_pct": 97.0}
    return Publish(f"coldchain/v1/{device}/telemetry", json.dumps(body).encode())


def test_a_technician_registers_a_discovered_device_and_its_readings_appear(
    live: Api, broker: Mosquitto
) -> None:
    tech = live.client("technician")
    with running_ingester(live.settings, live.registry) as ingester:
        publisher = Publisher(live.settings.mqtt, "test-installer")
        publisher.connect()
        try:
            publisher.publish(_native("cc-new-7", 4.0))
            publisher.flush()

            def discovered() -> list[dict[str, object]]:
                listed: list[dict[str, object]] = tech.get("/api/v1/devices/discovered").json()
                return listed

            wait_for(lambda: bool(discovered()), what="the device in the discovered list")
            [device] = discovered()
            assert (device["device_id"], device["family"], device["sensors"]) == (
                "cc-new-7",
                "native",
                ["cc-new-7"],
            )
            registered = tech.post(
                "/api/v1/sensors/register",
                json={"sensor": "cc-new-7", "asset": "s042-dc1", "offset": -0.5},
            )
            assert registered.status_code == 201, registered.text
            sensor = registered.json()
            assert sensor["sensor"]["family"] == "native"
            assert sensor["sensor"]["interval"] == 60.0  # the native family's interval
            assert sensor["limits"]["warn_above"] == 5.0  # a dairy case's, from the asset
            assert tech.get("/api/v1/devices/discovered").json() == []
            again = tech.post(
                "/api/v1/sensors/register", json={"sensor": "cc-new-7", "asset": "s042-dc1"}
            )
            assert again.status_code == 409

            def latest() -> dict[str, object]:
                body = tech.get("/api/v1/readings/latest", params={"store": "s042"}).json()
                return next(s for s in body["sensors"] if s["sensor"] == "cc-new-7")

            # Its next readings (once ingest has picked up the registration) are stored
            # under the asset, calibrated, and show in the store's latest readings.
            def arrived() -> bool:
                publisher.publish(_native("cc-new-7", 4.25))
                publisher.flush()
                return bool(latest()["readings"])

            wait_for(arrived, timeout=30, what="the reading under the asset")
            entry = latest()
            assert entry["asset"] == "s042-dc1"
            readings = entry["readings"]
            assert isinstance(readings, dict)
            assert readings["temperature"]["value"] == pytest.approx(3.75)  # 4.25 - 0.5
            assert readings["battery"]["value"] == 97.0
        finally:
            publisher.disconnect()
        assert ingester.stats.unknown_sensor.total() >= 1  # the first one, before registering
    at = datetime.fromisoformat(entry["readings"]["temperature"]["time"])  # type: ignore[index]
    assert abs(at - datetime.now(UTC)) < timedelta(minutes=1)


def test_latest_follows_registry_changes(api: Api) -> None:
    """The store's sensor list is remembered between requests, never past a change."""
    manager, tech = api.client("manager"), api.client("technician")

    def listed() -> set[str]:
        body = manager.get("/api/v1/readings/latest", params={"store": "s042"}).json()
        return {s["sensor"] for s in body["sensors"]}

    assert listed() == {"wic1", "dc1"}
    added = tech.put("/api/v1/sensors/dc1-b", json={"id": "dc1-b", "asset": "s042-dc1"})
    assert added.status_code in (200, 201), added.text
    assert listed() == {"wic1", "dc1", "dc1-b"}
    # A change by another process (another registry connection) is seen as well.
    api.registry.retire_sensor("dc1-b", at=api.clock.time())
    assert listed() == {"wic1", "dc1"}
