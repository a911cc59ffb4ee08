"""``coldchain demo``: the whole ingest path on this machine, narrated, ending by itself.

Starts private Mosquitto and InfluxDB servers, seeds a one-store chain with one device per
device family, runs the ingester, publishes each family's native payloads (from the
families' own encoders) plus a few bad ones, then shows what InfluxDB holds, which sensor
faults were recognised, what was dead-lettered and which devices were discovered.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import devices
from coldchain.services import InfluxDB, Mosquitto
from core.chain import parse_chain
from core.clock import SystemClock
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings
from core.types import FaultCode, Quantity, sensor_id
from devices.base import DeviceSample, Family, Publish
from ingest.service import Ingester
from simulator.publisher import Publisher

# Plausible values per quantity for the demo devices (a healthy dairy case).
_VALUES = {
    Quantity.TEMPERATURE: 3.5,
    Quantity.HUMIDITY: 86.0,
    Quantity.DOOR: 0.0,
    Quantity.BATTERY: 92.0,
    Quantity.SIGNAL: -67.0,
}


def _device(family: Family) -> str:
    return f"demo-{family.name}"


def _chain(families: tuple[Family, ...]) -> dict[str, Any]:
    sensors = []
    for family in families:
        for channel in family.layout:
            sensors.append(
                {
                    "id": sensor_id(_device(family), channel),
                    "asset": "d001-dc1",
                    "family": family.name,
                }
            )
    return {
        "stores": [
            {"id": "d001", "name": "Demo store", "country": "MX", "timezone": "America/Mexico_City"}
        ],
        "assets": [{"id": "d001-dc1", "store": "d001", "type": "dairy_case", "name": "Dairy 1"}],
        "sensors": sensors,
    }


def _payloads(families: tuple[Family, ...], now_ms: int) -> list[tuple[str, Publish]]:
    out: list[tuple[str, Publish]] = []
    for family in families:
        values = {
            channel: {q: _VALUES[q] for q in quantities}
            for channel, quantities in family.layout.items()
        }
        sample = DeviceSample(_device(family), now_ms, values, seq=1)
        out.extend((family.name, p) for p in family.encode(sample))
        faults = [c for c in (FaultCode.POWER_ON_RESET, FaultCode.NULL, FaultCode.NAN)
                  if c in family.profile.fault_codes]  # fmt: skip
        channel = next(c for c, q in family.layout.items() if Quantity.TEMPERATURE in q)
        if faults:
            faulty = DeviceSample(
                _device(family), now_ms + 1000, {channel: {Quantity.TEMPERATURE: faults[0]}}
            )
            out.extend((f"{family.name} (fault)", p) for p in family.encode(faulty))
    out.append(("bad JSON", Publish("coldchain/v1/demo-native/telemetry", b'{"temperature_c": 3.')))
    unknown = {"ts": now_ms / 1000, "temperature_c": 4.1}
    out.append(
        ("unregistered device", Publish("coldchain/v1/new-probe-7/telemetry", _json(unknown)))
    )
    return out


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def run_demo(*, workdir: Path | None = None, out: Callable[[str], None] = print) -> int:
    """Run the demo; return the exit code."""
    logging.getLogger("ingest").setLevel(logging.WARNING)
    families = devices.families()
    with tempfile.TemporaryDirectory(prefix="coldchain-demo-") as tmp:
        root = workdir or Path(tmp)
        out(f"coldchain demo: private servers under {root}")
        with Mosquitto(root / "mosquitto") as broker, InfluxDB(root / "influxd") as influxd:
            out(f"  Mosquitto on {broker.url}, InfluxDB on {influxd.url}")
            settings = Settings(
                mqtt_url=broker.url,
                influx_url=influxd.url,
                influx_db="demo",
                db=root / "registry.sqlite3",
                spool_dir=root / "spool",
            )
            registry = Registry(settings.db)
            registry.import_chain(parse_chain(_chain(families)))
            out(
                f"  registry: 1 store, 1 asset, {len(registry.sensors())} sensors "
                f"({len(families)} device families)"
            )
            store = InfluxV1(settings)
            store.ensure_database()
            ingester = Ingester(settings, registry, store, SystemClock())
            ingester.start()
            ingester.wait_connected(10)
            time.sleep(0.3)  # let the subscriptions settle before devices publish
            publisher = Publisher(settings.mqtt, "demo-devices")
            publisher.connect()
            payloads = _payloads(families, int(time.time() * 1000))
            for label, message in payloads:
                publisher.publish(message)
                out(f"  -> {label:<22} {message.topic}")
            publisher.disconnect()
            deadline = time.monotonic() + 20
            while ingester.stats.acked.total() < len(payloads) and time.monotonic() < deadline:
                time.sleep(0.1)
            ingester.stop()
            _report(store, registry, ingester, out)
            store.close()
            registry.close()
    return 0


def _report(
    store: InfluxV1, registry: Registry, ingester: Ingester, out: Callable[[str], None]
) -> None:
    out("\nIn InfluxDB (queryable now):")
    for quantity in Quantity:
        for series in store.query(
            f'SELECT last("value"), count("value") FROM "{quantity.value}" GROUP BY "sensor"'
        ):
            _, last, count = series.values[0]
            out(f"  {quantity.value:<12} {series.tags['sensor']:<40} last={last:<8g} n={count}")
    out("\nSensor faults (reported as faults, not temperatures):")
    for series in store.query(
        'SELECT count("value") FROM "sensor_fault" GROUP BY "sensor", "code"'
    ):
        out(f"  {series.tags['sensor']:<40} {series.tags['code']}")
    out("\nDead letters (kept with topic, payload and reason):")
    for letter in registry.dead_letters():
        out(f"  {letter.reason:<14} {letter.topic}  {letter.payload[:40]!r}")
    out("\nDiscovered, not registered (for a technician):")
    for device in registry.discovered():
        out(f"  {device.device_id:<20} {device.family:<10} {', '.join(device.sensors)}")
    stats = ingester.stats
    out(
        f"\nSummary: {int(stats.messages.total())} messages, "
        f"{int(stats.points_written.total())} points written, "
        f"{int(stats.faults.total())} faults, {int(stats.dead_letters.total())} dead letters, "
        f"{int(stats.acked.total())} acknowledged."
    )
