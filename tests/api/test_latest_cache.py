"""The latest-value cache behind ``/readings/latest`` (api/latest.py) against the real
InfluxDB: it answers exactly what the InfluxDB query answers; in ``coldchain run`` ingest
feeds it, and in split mode the observations ingest publishes feed a standalone API's
(coldchain/latest_feed.py), which queries InfluxDB whenever that feed is down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from api import ApiServer
from api.latest import LatestCache
from coldchain.compose import build_stack
from coldchain.latest_feed import LatestFeed
from coldchain.services import Mosquitto
from core.clock import ManualClock, SystemClock
from core.influx import InfluxV1
from core.settings import Settings
from core.types import Quantity
from devices.base import Publish
from ingest import observations
from ingest.pipeline import Observation
from ingest.service import Ingester
from simulator.publisher import Publisher
from tests.api.conftest import NIGHT, PLACES, Api, api_settings
from tests.ingest.helpers import wait_for

pytestmark = pytest.mark.integration

NOW_MS = round(NIGHT.timestamp() * 1000)
MINUTE_MS = 60_000
DAY_MS = 86_400_000


class Cached:
    """A second API server over the same deps, with a latest-value cache."""

    def __init__(self, api: Api) -> None:
        self.cache = LatestCache()
        self.server = ApiServer(replace(api.deps, latest=self.cache), "127.0.0.1", 0)
        self.server.start()
        self.clients: dict[str, httpx.Client] = {}
        self.api = api

    def get(self, role: str, store: str) -> httpx.Response:
        if role not in self.clients:
            self.clients[role] = httpx.Client(
                base_url=self.server.url,
                headers={"Authorization": f"Bearer {self.api.keys[role]}"},
                timeout=15,
            )
        return self.clients[role].get("/api/v1/readings/latest", params={"store": store})

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.server.stop()


@pytest.fixture
def cached(api: Api) -> Iterator[Cached]:
    harness = Cached(api)
    yield harness
    harness.close()


def _ingest(api: Api, cached: Cached, sensor: str, quantity: Quantity, ts: int, value: float,
            store: str | None = None) -> None:  # fmt: skip
    """What ingest does with a reading: write it, then hand the observation on."""
    home, asset = PLACES[sensor]
    store = store or home
    api.influx.write(
        f"{quantity.value},store={store},asset={asset},sensor={sensor} value={value} {ts}".encode()
    )
    cached.cache.observe(
        [Observation("reading", ts, sensor, sensor, store, asset, None, quantity, value)]
    )


def _plain(api: Api, store: str) -> dict[str, Any]:
    body: dict[str, Any] = (
        api.client("admin").get("/api/v1/readings/latest", params={"store": store}).json()
    )
    return body


def test_the_cache_answers_what_the_query_answers(api: Api, cached: Cached) -> None:
    assert isinstance(api.clock, ManualClock)
    wic1 = "store=s042,asset=s042-wic1,sensor=wic1"
    api.influx.write(
        "\n".join(
            [
                f"temperature,{wic1} value=3.5 {NOW_MS - 2 * MINUTE_MS}",
                f"humidity,{wic1} value=81 {NOW_MS - 2 * MINUTE_MS}",
                f"temperature,store=s042,asset=s042-dc1,sensor=dc1 value=4 {NOW_MS - 3 * DAY_MS}",
                f"temperature,store=s043,asset=s043-wic1,sensor=z10-wic1 value=-20 {NOW_MS}",
            ]
        ).encode()
    )
    # The first request of a store primes the cache from InfluxDB.
    assert not cached.cache.primed("s042")
    assert cached.get("admin", "s042").json() == _plain(api, "s042")
    assert cached.cache.primed("s042")
    assert not cached.cache.primed("s043")

    # Then ingest goes on, and only the cache is asked.
    _ingest(api, cached, "wic1", Quantity.TEMPERATURE, NOW_MS - MINUTE_MS, 3.75)
    _ingest(api, cached, "wic1", Quantity.TEMPERATURE, NOW_MS - 5 * MINUTE_MS, 9.0)  # late
    _ingest(api, cached, "dc1", Quantity.BATTERY, NOW_MS - 30_000, 97.0)
    _ingest(api, cached, "dc1", Quantity.BATTERY, NOW_MS - 30_000, 96.0)  # same time: rewrite
    _ingest(api, cached, "wic1", Quantity.DOOR, NOW_MS, 1.0, store="s043")  # taken elsewhere
    body = cached.get("admin", "s042").json()
    assert body == _plain(api, "s042")
    by_sensor = {s["sensor"]: s["readings"] for s in body["sensors"]}
    assert by_sensor["wic1"]["temperature"]["value"] == 3.75
    assert "door" not in by_sensor["wic1"]
    assert by_sensor["dc1"] == {"battery": {"time": "2026-11-18T04:59:30Z", "value": 96.0}}
    assert cached.get("admin", "s043").json() == _plain(api, "s043")

    # Readings leave the look-back window at the same moment in both.
    api.clock.advance(2 * 86400 - 90)
    body = cached.get("admin", "s042").json()
    assert body == _plain(api, "s042")
    assert {q for s in body["sensors"] for q in s["readings"]} == {"temperature", "battery"}


def test_store_scope_holds_with_the_cache(api: Api, cached: Cached) -> None:
    _ingest(api, cached, "z10-wic1", Quantity.TEMPERATURE, NOW_MS, -19.0)
    assert cached.get("manager_b", "s043").status_code == 200
    denied = cached.get("manager", "s043")
    assert denied.status_code == 403
    assert "-19" not in denied.text
    assert cached.get("admin", "nope").status_code == 404


def test_coldchain_run_feeds_the_cache_from_ingest(
    influx_settings: Settings, influx: InfluxV1, broker: Mosquitto
) -> None:
    settings = api_settings(influx_settings, mqtt_url=broker.url, api_bind="127.0.0.1:0")
    seed = Api(settings, influx, SystemClock(), with_engine=False)  # chain and keys
    stack = build_stack(settings, SystemClock())
    assert stack.api is not None
    cache = stack.api.deps.latest
    assert cache is not None
    stack.start()
    client = httpx.Client(
        base_url=stack.api.url, headers={"Authorization": f"Bearer {seed.keys['admin']}"}
    )
    publisher = Publisher(settings.mqtt, "test-latest-cache")
    try:
        assert stack.ingester.wait_connected(10)

        def latest() -> dict[str, Any]:
            body = client.get("/api/v1/readings/latest", params={"store": "s042"}).json()
            return {s["sensor"]: s["readings"] for s in body["sensors"]}

        assert latest()["wic1"] == {}
        assert cache.primed("s042")
        # Written behind the process's back: the primed cache does not see it (the
        # documented limit), so what shows next can only have come through ingest.
        now_ms = round(time.time() * 1000)
        seed.influx.write(f"door,store=s042,asset=s042-wic1,sensor=wic1 value=1 {now_ms}".encode())
        publisher.connect()
        body = {"ts": time.time(), "temperature_c": 4.5}
        publisher.publish(Publish("coldchain/v1/wic1/telemetry", json.dumps(body).encode()))
        publisher.flush()
        wait_for(lambda: bool(latest()["wic1"]), timeout=20, what="the reading in latest")
        readings = latest()["wic1"]
        assert set(readings) == {"temperature"}
        assert readings["temperature"]["value"] == 4.5
    finally:
        publisher.disconnect()
        client.close()
        stack.stop()
        seed.close()


def test_latest_window_matches_the_query_bound() -> None:
    cache = LatestCache()
    ts = NOW_MS - MINUTE_MS
    obs = Observation("reading", ts, "d", "s1", "st", "a", None, Quantity.TEMPERATURE, 2.0)
    cache.observe([obs, Observation("fault", ts, "d", "s1", "st", "a", None, Quantity.HUMIDITY)])
    after_ns = ts * 1_000_000
    assert cache.latest("st", after_ns - 1) == {"s1": {Quantity.TEMPERATURE: (ts, 2.0)}}
    assert cache.latest("st", after_ns) == {}  # `time >` is strict, and it is gone now
    assert cache.latest("st", 0) == {}


def test_a_priming_query_from_before_a_feed_drop_primes_nothing() -> None:
    """A reading written while the feed was down is in neither the feed nor a query that
    ran before it came back: only a query begun while the feed was live primes."""
    cache = LatestCache()
    before = cache.epoch
    cache.suspend()
    cache.prime("st", {}, cache.epoch)  # while down: merged, never served from memory
    assert not cache.primed("st")
    cache.resume()
    cache.prime("st", {}, before)  # begun before the drop
    assert not cache.primed("st")
    cache.prime("st", {"s1": {Quantity.TEMPERATURE: (NOW_MS, 1.0)}}, cache.epoch)
    assert cache.primed("st")
    cache.suspend()
    assert not cache.primed("st")
    assert cache.latest("st", 0) == {"s1": {Quantity.TEMPERATURE: (NOW_MS, 1.0)}}


def test_split_mode_feeds_a_standalone_api_from_what_ingest_publishes(
    influx_settings: Settings, influx: InfluxV1, broker: Mosquitto
) -> None:
    settings = api_settings(influx_settings, mqtt_url=broker.url, publish_observations=True)
    seed = Api(settings, influx, SystemClock(), with_engine=False)  # chain, keys, deps
    holder: list[Ingester] = []
    ingester = Ingester(
        settings, seed.deps.registry, influx, SystemClock(),
        on_durable=lambda batch: observations.publish(holder[0].source, batch),
    )  # fmt: skip
    holder.append(ingester)
    feed = LatestFeed(settings, LatestCache())
    server = ApiServer(replace(seed.deps, latest=feed.cache), "127.0.0.1", 0)
    server.start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {seed.keys['admin']}"}
    )
    publisher = Publisher(settings.mqtt, "test-split-latest")

    def latest() -> dict[str, Any]:
        body = client.get("/api/v1/readings/latest", params={"store": "s042"}).json()
        return {s["sensor"]: s["readings"] for s in body["sensors"]}

    def reading(value: float) -> None:
        body = {"ts": time.time(), "temperature_c": value}
        publisher.publish(Publish("coldchain/v1/wic1/telemetry", json.dumps(body).encode()))
        publisher.flush()

    try:
        ingester.start()
        feed.start()
        assert ingester.wait_connected(10)
        wait_for(feed.source.subscribed.is_set, 10, "the feed's SUBACK")
        assert latest()["wic1"] == {}
        assert feed.cache.primed("s042")
        # Written behind the API's back: a cache serving from memory does not see it, so
        # what shows next can only have come through ingest's published observations.
        now_ms = round(time.time() * 1000)
        influx.write(f"door,store=s042,asset=s042-wic1,sensor=wic1 value=1 {now_ms}".encode())
        publisher.connect()
        reading(4.5)
        wait_for(lambda: bool(latest()["wic1"]), 20, "the reading in latest")
        assert set(latest()["wic1"]) == {"temperature"}
        assert feed.batches >= 1

        # The feed goes down (the broker with it): nothing is served from memory, the
        # query answers, and it sees what was written behind the API's back.
        publisher.disconnect()
        publisher = Publisher(settings.mqtt, "test-split-latest-2")
        broker.stop()
        wait_for(lambda: not feed.cache.primed("s042"), 20, "the cache suspended")
        assert set(latest()["wic1"]) == {"temperature", "door"}
        assert not feed.cache.primed("s042")  # and no query primes while it is down

        broker.start()
        wait_for(feed.source.subscribed.is_set, 30, "the feed back")
        assert set(latest()["wic1"]) == {"temperature", "door"}
        assert feed.cache.primed("s042")
        assert ingester.wait_connected(30)
        publisher.connect()
        reading(5.25)
        wait_for(lambda: latest()["wic1"]["temperature"]["value"] == 5.25, 20, "the new reading")
    finally:
        publisher.disconnect()
        client.close()
        feed.stop()
        ingester.stop()
        server.stop()
        seed.close()
