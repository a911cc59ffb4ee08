"""Publishes native readings at a fixed rate, stamped with the publish time (ms).

``python -m bench.live_publisher MQTT_URL RATE SECONDS DEVICES [PROBES_PER_S]``; prints the
count sent (all acknowledged by the broker). Every reading has its own (sensor, time), so
the stored count tells what was lost. With ``PROBES_PER_S``, that many readings a second
go to the sensor ``bench-probe``, whose points the benchmark polls for latency.
Runs as its own process so its CPU does not share the measured process's interpreter lock.
"""

from __future__ import annotations

import sys
import time

from core.settings import parse_mqtt_url
from devices.base import Publish
from simulator.publisher import Publisher

PROBE_DEVICE = "bench-probe"


def main() -> None:
    """Publish for the given time at the given rate."""
    url, rate, seconds, devices = (
        sys.argv[1],
        int(sys.argv[2]),
        float(sys.argv[3]),
        int(sys.argv[4]),
    )
    probes = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    probe_every = max(1, rate // probes) if probes else 0
    topics = [f"coldchain/v1/bench-{d:05d}/telemetry" for d in range(devices)]
    probe_topic = f"coldchain/v1/{PROBE_DEVICE}/telemetry"
    pub = Publisher(parse_mqtt_url(url), "bench-live", window=5000)
    pub.connect()
    last_ms: dict[int, int] = {}
    start = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = start + sent / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        probe = probe_every and sent % probe_every == 0
        device = -1 if probe else sent % devices
        # Millisecond timestamps, strictly increasing per sensor: a publisher catching up
        # in a burst must not give two readings of one sensor the same time (InfluxDB
        # would keep one point and the bench would count a loss).
        ts_ms = max(int(time.time() * 1000), last_ms.get(device, 0) + 1)
        last_ms[device] = ts_ms
        body = b'{"ts":%d.%03d,"temperature_c":3.5}' % divmod(ts_ms, 1000)
        pub.publish(Publish(probe_topic if probe else topics[device], body))
        sent += 1
    pub.disconnect()
    print(sent)


if __name__ == "__main__":
    main()
