"""``coldchain bench simulate``: 100k simulated sensors from one process.

A generated chain of 20,000 stores x 5 units (100,000 sensors, families round-robin:
native, Tasmota, Shelly, ESPHome) reporting every 10 s is 10,000 messages per simulated
second. The runner is driven flat out for a short simulated period, twice: (1) into a sink
that only counts (physics + sensors + every family's encoder: the generation ceiling), and
(2) into a private Mosquitto at QoS 1 through the simulator's publisher. The figure is
messages per wall-clock second. Target (DESIGN.md §7): 10,000 msg/s from one process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from coldchain.services import Mosquitto
from core.settings import parse_mqtt_url
from simulator.publisher import Publisher
from simulator.runner import Runner
from simulator.scenario import Scenario

TARGET_MSG_S = 10_000


def _scenario(stores: int, seconds: float) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "bench-100k",
            "simulation": {"start": "2026-11-18T10:00-06:00", "duration": seconds, "step": 10},
            "chain": {},
            "generate": {
                "stores": stores,
                "prefix": "b",
                "assets": {"dairy_case": 2, "meat_case": 1, "frozen_case": 1, "walkin_cooler": 1},
                "families": ["native", "tasmota", "shelly", "esphome"],
                "interval": 10,
            },
        }
    )


def _rate(runner: Runner) -> tuple[float, int]:
    start = time.perf_counter()
    runner.run()
    return runner.published / (time.perf_counter() - start), runner.published


def run(argv: list[str], *, quiet: bool) -> dict[str, Any]:
    """Measure; return the figures."""
    parser = argparse.ArgumentParser(prog="coldchain bench simulate")
    parser.add_argument("--stores", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated seconds")
    args = parser.parse_args(argv)
    scenario = _scenario(args.stores, args.seconds)
    built = time.perf_counter()
    sink_runner = Runner(scenario, lambda _message: None)
    setup_s = time.perf_counter() - built
    sensors = len(sink_runner.sensors)
    sink_rate, sink_count = _rate(sink_runner)
    if not quiet:
        print(f"bench simulate: {sensors:,} sensors (set-up {setup_s:.1f} s)")
        print(f"  generate only:   {sink_rate:>9,.0f} msg/s ({sink_count:,} messages)")
    with (
        tempfile.TemporaryDirectory(prefix="coldchain-bench-") as tmp,
        Mosquitto(Path(tmp) / "mosquitto") as broker,
    ):
        publisher = Publisher(parse_mqtt_url(broker.url), "bench-sim", window=5000)
        publisher.connect()
        mqtt_runner = Runner(scenario, publisher.publish)
        mqtt_rate, mqtt_count = _rate(mqtt_runner)
        publisher.flush()
        publisher.disconnect()
    if not quiet:
        print(f"  MQTT QoS 1:      {mqtt_rate:>9,.0f} msg/s ({mqtt_count:,} messages; "
              f"target {TARGET_MSG_S:,})")  # fmt: skip
    return {
        "benchmark": "simulate",
        "sensors": sensors,
        "setup_s": round(setup_s, 1),
        "generate_msg_s": round(sink_rate),
        "mqtt_qos1_msg_s": round(mqtt_rate),
        "target_msg_s": TARGET_MSG_S,
        "ratio": round(mqtt_rate / TARGET_MSG_S, 3),
        "pass": mqtt_rate >= TARGET_MSG_S,
    }
