"""Publishes native readings at a fixed rate, stamped with the publish time (ms).

``python -m bench.live_publisher MQTT_URL RATE SECONDS DEVICES``; prints the count sent.
Runs as its own process so its CPU does not share the ingester's interpreter lock.
"""

from __future__ import annotations

import json
import sys
import time

from core.settings import parse_mqtt_url
from devices.base import Publish
from simulator.publisher import Publisher


def main() -> None:
    """Publish for the given time at the given rate."""
    url, rate, seconds, devices = (
        sys.argv[1],
        int(sys.argv[2]),
        float(sys.argv[3]),
        int(sys.argv[4]),
    )
    pub = Publisher(parse_mqtt_url(url), "bench-live", window=5000)
    pub.connect()
    start = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = start + sent / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = {"ts": round(time.time(), 3), "temperature_c": 3.5}
        topic = f"coldchain/v1/bench-{sent % devices:05d}/telemetry"
        pub.publish(Publish(topic, json.dumps(body).encode()))
        sent += 1
    pub.disconnect()
    print(sent)


if __name__ == "__main__":
    main()
