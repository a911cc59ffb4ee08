"""A flood of made-up device ids, through the real broker, ingester and InfluxDB (issue 13).

One compromised device (or a misconfigured gateway) publishing under ever new ids: each
id used to become a new series (the ``sensor`` tag) and a discovered-device row, so 100k
ids reached InfluxDB's max-values-per-tag, after which every sensor registered later was
refused, and the registry grew to 218 MB.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from alerting.rules import RuleEngine
from coldchain.services import Mosquitto
from core.chain import Sensor, parse_chain
from core.influx import InfluxV1
from core.settings import Settings
from core.types import Quantity
from devices.base import Publish
from simulator.publisher import Publisher
from tests.ingest.helpers import CHAIN, count, make_registry, running_ingester, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLOOD = 20_000


def _native(device: str, value: float) -> Publish:
    body = {"ts": round(time.time(), 3), "temperature_c": value}
    return Publish(f"coldchain/v1/{device}/telemetry", json.dumps(body).encode())


def _series(influx: InfluxV1) -> int:
    found = influx.query("SHOW SERIES CARDINALITY")
    return int(found[0].values[0][0]) if found else 0


def test_a_flood_of_invented_ids_grew_series_and_the_registry_without_bound(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1, tmp_path: Path
) -> None:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url, "db": tmp_path / "r.db"})
    registry = make_registry(settings.db)
    with running_ingester(settings, registry) as ingester:
        flood = Publisher(settings.mqtt, "compromised")
        flood.connect()
        for i in range(FLOOD):
            flood.publish(_native(f"fake-{i:06d}", 4.0))
            if i % 5 == 0:  # and junk, and offline statuses of invented devices
                flood.publish(Publish(f"tele/fake-{i}/LWT", b"Offline", retain=False))
                flood.publish(Publish(f"coldchain/v1/fake-{i}/telemetry", b"{nope"))
        flood.flush()
        flood.disconnect()
        total = FLOOD + 2 * (FLOOD // 5)
        wait_for(lambda: ingester.stats.acked.total() >= total, 120, "the flood acknowledged")
        ingester.pipeline.housekeeping(force=True)
        # A technician registers a new sensor afterwards: its readings are stored as ever.
        registry.add_sensor(Sensor(id="cc-new-1", asset="s042-dc1"))
        honest = Publisher(settings.mqtt, "honest")
        honest.connect()
        honest.publish(_native("cc-new-1", 3.5))
        honest.flush()
        honest.disconnect()
        wait_for(lambda: count(influx, "temperature", "store='s042'") == 1, 30, "the reading")
    # Nothing lost: every invented id's reading is kept, its id a field, in few series.
    assert count(influx, "unregistered", "quantity='temperature'") == FLOOD
    assert _series(influx) < 5_000  # was one per invented id (and per offline status)
    # The registry stays bounded: discovery spends a budget, the rest is counted.
    discovered = len(registry.discovered(limit=100_000))
    assert discovered < 2_000
    dropped = ingester.stats.side_dropped.total()
    assert dropped > FLOOD / 2
    assert len(registry.dead_letters(limit=100_000)) <= 2_000
    assert Path(settings.db).stat().st_size < 20 * 1024 * 1024
    registry.close()


def test_offline_statuses_of_invented_devices_grew_alerting_state() -> None:
    """Was: every status of any device, registered or not, was kept by the availability
    rule and walked at every tick (150k "offline" statuses stalled everything)."""
    chain = parse_chain(CHAIN)
    rules = RuleEngine(chain.stores, chain.assets, chain.sensors)
    now = round(time.time() * 1000)
    for i in range(50_000):
        rules.observe("status", now, device=f"fake-{i}", value=0.0)
    assert rules.availability.offline_since == {}
    rules.observe("status", now, device="cc-s042-wic1", value=0.0)
    assert set(rules.availability.offline_since) == {"cc-s042-wic1"}
    assert rules.tick(now + 1000) == []
    rules.observe("reading", now, sensor="cc-s042-wic1", quantity=Quantity.TEMPERATURE, value=3.0)
