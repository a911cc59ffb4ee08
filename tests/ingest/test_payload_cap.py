"""The payload cap (issue 13) end to end against the real broker and database.

An oversized message is dead-lettered with a truncated payload and reason
``payload_too_large``, counted and acknowledged, and the readings around it are stored;
the broker's own ``max_packet_size`` refuses a larger one at the publisher.
"""

from __future__ import annotations

import json
import time

import pytest

from coldchain.services import MAX_PACKET_SIZE, Mosquitto
from core.influx import InfluxV1
from core.registry import PAYLOAD_KEEP_BYTES
from core.settings import Settings, parse_mqtt_url
from devices.base import Publish
from simulator.publisher import Publisher, PublishError
from tests.ingest.helpers import count, make_registry, running_ingester, wait_for

pytestmark = pytest.mark.integration

TS = int(time.time()) - 3600


def _reading(device: str, ts: int) -> Publish:
    body = json.dumps({"ts": ts, "temperature_c": 4.0}).encode()
    return Publish(f"coldchain/v1/{device}/telemetry", body)


def test_oversized_payload_is_dead_lettered_counted_and_acked(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1
) -> None:
    settings = influx_settings.model_copy(
        update={"mqtt_url": broker.url, "max_payload_bytes": 4096}
    )
    registry = make_registry(settings.db)
    padded = {"ts": TS + 1, "temperature_c": 4.0, "note": "x" * 10_000}
    big = Publish("coldchain/v1/cc-s042-dc1/telemetry", json.dumps(padded).encode())
    with running_ingester(settings, registry) as ingester:
        pub = Publisher(settings.mqtt, "cap-pub")
        pub.connect()
        pub.publish_many([_reading("cc-s042-dc1", TS), big, _reading("cc-s042-dc1", TS + 2)])
        pub.disconnect()
        wait_for(lambda: ingester.stats.acked.total() == 3, 20, "3 acks")
        assert ingester.stats.dead_letters.value("payload_too_large") == 1
        assert ingester.source.oversized == 1
    assert count(influx, "temperature") == 2  # the neighbours are stored, the big one not
    [letter] = registry.dead_letters(reason="payload_too_large")
    assert letter.topic == big.topic
    assert letter.payload.startswith('{"ts": ')
    assert len(letter.payload) <= PAYLOAD_KEEP_BYTES + 1  # truncated (with an ellipsis)
    assert f"{len(big.payload)} bytes" in letter.detail
    registry.close()


def test_the_broker_refuses_a_packet_over_its_max_packet_size(broker: Mosquitto) -> None:
    pub = Publisher(parse_mqtt_url(broker.url), "huge-pub", ack_timeout=5)
    pub.connect()
    try:
        pub.publish(Publish("coldchain/v1/x/telemetry", b"x" * (MAX_PACKET_SIZE + 1)))
        with pytest.raises(PublishError):
            pub.flush(timeout=5)
    finally:
        pub.drop()
    assert "max_packet_size" in broker.config.read_text()
