"""``coldchain bench simulate``: 100k simulated sensors from one process.

A generated chain of 20,000 stores x 5 units (100,000 sensors, families round-robin:
native, Tasmota, Shelly, ESPHome) reporting every 10 s is 10,000 messages per simulated
second. The runner is driven flat out for a short simulated period, twice: (1) into a sink
that only counts (physics + sensors + every family's encoder: the generation ceiling), and
(2) into a private Mosquitto at QoS 1 through the simulator's publisher, until the last
PUBACK (``flush``). In between, the first messages of (1) are published again without
generating them (the publisher's own ceiling on this machine, broker included).
Generation and publishing share one interpreter, so the best one process can do is the
serial sum of both CPU costs: ``serial_ceiling_msg_per_cpu_s`` (``ceiling_ratio`` is how
close (2) comes to it). The figure is messages per wall-clock second. Target (DESIGN.md
§7): 10,000 msg/s from one process.

Everything shares the machine's cores with Mosquitto and whatever else runs: the JSON
line carries the 1-minute load average, the process's CPU share in each run (1.0 = one
core) and each rate per CPU second (what the process does with a core of its own), so a
starved run can be told from a slow one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coldchain.services import Mosquitto
from core.settings import parse_mqtt_url
from devices.base import Publish
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


# Messages kept from the generation run for the publish-only run: enough for seconds
# of publishing, few enough to hold in memory (~25 MB).
SAMPLE = 100_000


class _Sink:
    """Counts what the runner publishes and keeps the first ``SAMPLE`` messages."""

    def __init__(self) -> None:
        self.kept: list[Publish] = []

    def __call__(self, message: Publish) -> None:
        if len(self.kept) < SAMPLE:
            self.kept.append(message)


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and this process's CPU share (1.0 = one core) while ``work`` runs."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    elapsed = time.perf_counter() - wall
    return elapsed, (time.process_time() - cpu) / elapsed


def _run_and_flush(runner: Runner, publisher: Publisher) -> None:
    runner.run()
    publisher.flush()  # counted: the broker holds every message when the clock stops


def _publish_all(publisher: Publisher, messages: list[Publish]) -> None:
    for message in messages:
        publisher.publish(message)
    publisher.flush()


def run(argv: list[str], *, quiet: bool) -> dict[str, Any]:
    """Measure; return the figures."""
    parser = argparse.ArgumentParser(prog="coldchain bench simulate")
    parser.add_argument("--stores", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated seconds")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    scenario = _scenario(args.stores, args.seconds)
    built = time.perf_counter()
    sink = _Sink()
    sink_runner = Runner(scenario, sink)
    setup_s = time.perf_counter() - built
    sensors = len(sink_runner.sensors)
    elapsed, sink_share = _timed(sink_runner.run)
    sink_rate = sink_runner.published / elapsed
    if not quiet:
        print(f"bench simulate: {sensors:,} sensors (set-up {setup_s:.1f} s, load {load:.1f})")
        print(f"  generate only:   {sink_rate:>9,.0f} msg/s ({sink_runner.published:,} messages, "
              f"CPU {sink_share:.0%})")  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="coldchain-bench-") as tmp,
        Mosquitto(Path(tmp) / "mosquitto") as broker,
    ):
        target = parse_mqtt_url(broker.url)
        alone = Publisher(target, "bench-sim-publish")
        alone.connect()
        elapsed, publish_share = _timed(lambda: _publish_all(alone, sink.kept))
        alone.disconnect()
        publish_rate = len(sink.kept) / elapsed
        sink.kept.clear()
        # One interpreter generating and publishing in turn, with a core of its own.
        ceiling = 1 / (publish_share / publish_rate + sink_share / sink_rate)
        if not quiet:
            print(f"  publish only:    {publish_rate:>9,.0f} msg/s (QoS 1, pre-built messages, "
                  f"CPU {publish_share:.0%})")  # fmt: skip
            print(f"  serial ceiling:  {ceiling:>9,.0f} msg/CPU-s (generate + publish in turn)")
        publisher = Publisher(target, "bench-sim")
        publisher.connect()
        mqtt_runner = Runner(scenario, publisher.publish)
        elapsed, cpu_share = _timed(lambda: _run_and_flush(mqtt_runner, publisher))
        publisher.disconnect()
    mqtt_rate = mqtt_runner.published / elapsed
    if not quiet:
        print(f"  MQTT QoS 1:      {mqtt_rate:>9,.0f} msg/s ({mqtt_runner.published:,} messages, "
              f"CPU {cpu_share:.0%} = {mqtt_rate / cpu_share:,.0f} msg/CPU-s; "
              f"target {TARGET_MSG_S:,})")  # fmt: skip
    return {
        "benchmark": "simulate",
        "sensors": sensors,
        "setup_s": round(setup_s, 1),
        "loadavg_1m": round(load, 2),
        "generate_msg_s": round(sink_rate),
        "publish_only_msg_s": round(publish_rate),
        "mqtt_qos1_msg_s": round(mqtt_rate),
        "generate_cpu_share": round(sink_share, 2),
        "publish_only_cpu_share": round(publish_share, 2),
        "mqtt_cpu_share": round(cpu_share, 2),
        # Per second of this process's CPU: the rate with a core of its own.
        "generate_msg_per_cpu_s": round(sink_rate / sink_share),
        "publish_only_msg_per_cpu_s": round(publish_rate / publish_share),
        "serial_ceiling_msg_per_cpu_s": round(ceiling),
        "mqtt_qos1_msg_per_cpu_s": round(mqtt_rate / cpu_share),
        "target_msg_s": TARGET_MSG_S,
        "ratio": round(mqtt_rate / TARGET_MSG_S, 3),
        "ceiling_ratio": round(mqtt_rate / cpu_share / ceiling, 3),
        "pass": mqtt_rate >= TARGET_MSG_S,
    }
