"""The data the dashboard tests query: two stores, three hours, six device families.

Readings go the real way: each family's own encoder produces its native MQTT payloads, the
simulator's :class:`~simulator.publisher.Publisher` publishes them to a real Mosquitto,
and the real :class:`~ingest.service.Ingester` decodes, enriches and writes them to a real
InfluxDB. Alert events are written as ``alerting/engine.py::_event`` writes them.

The timeline, in minutes before ``now`` (device time; families without a device clock
are stamped on receipt):

- every device reports from -180; the Shelly in s001's freezer and the TTS probe in
  s002's ice-cream case stop at -70 and -60 (silent), the Shelly says offline;
- s001's dairy case warms from -60 (the temperature alert A1), its door opens every
  30 min, its probe reports ``nan`` once, one payload has a clock 2 h ahead
  (stored at receipt, ``ts_corrected=true``);
- s001's walk-in cooler (ChirpStack) runs on a 15 % battery; its external probe is absent
  once; s002's Tasmota probe reports -127 °C once; the ESPHome node's last will fires;
- an unregistered native device ``new-probe-7`` publishes temperatures.

Alerts (store, asset, kind: events as (minute, severity, state, level)) are in
:data:`ALERTS`; the expected figures the dashboards must show are below them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import devices
from core.chain import parse_chain
from core.clock import SystemClock
from core.influx import InfluxV1
from core.lineprotocol import serialize
from core.registry import Registry
from core.settings import Settings
from core.types import FaultCode, Point, Quantity, sensor_id
from devices.base import DeviceSample, Publish
from ingest.service import Ingester
from simulator.publisher import Publisher

MINUTE_MS = 60_000
HISTORY_MIN = 180

T, H, D, B, S = (
    Quantity.TEMPERATURE,
    Quantity.HUMIDITY,
    Quantity.DOOR,
    Quantity.BATTERY,
    Quantity.SIGNAL,
)


@dataclass(frozen=True)
class Device:
    """One simulated device: family, id, the asset it is fitted to, what it reports."""

    family: str
    device_id: str
    asset: str | None  # None: not in the registry
    channels: dict[str | None, tuple[Quantity, ...]]
    every_min: int
    until_min: int = 0  # last report, minutes before now (silent afterwards)


DEVICES = [
    Device("native", "cc-s001-dc1", "s001-dc1", {None: (T, H, D, B, S), "probe2": (T,)}, 5),
    Device("chirpstack", "a84041000181c001", "s001-wic1", {None: (T, H, B, S), "ds": (T,)}, 10),
    Device(
        "shelly",
        "shellyplus1-s001wif1",
        "s001-wif1",
        {"temperature:100": (T,), "temperature:101": (T,), None: (S, B)},
        10,
        until_min=70,
    ),
    Device(
        "tasmota",
        "tasmota-s002-dc1",
        "s002-dc1",
        {"DS18B20-1": (T,), "DS18B20-2": (T,), "SHT3X": (T, H), "Switch1": (D,), None: (S,)},
        5,
    ),
    Device(
        "tts", "a84041000181c002", "s002-ic1", {None: (T, H, B, S), "ds": (T,)}, 10, until_min=60
    ),
    Device(
        "esphome",
        "esp-s002-mc1",
        "s002-mc1",
        {"case_temp": (T,), "air_humidity": (H,), "door": (D,), "wifi_signal": (S,)},
        60,
    ),
    Device("native", "new-probe-7", None, {None: (T,)}, 10),
]

ASSETS = {
    "s001-dc1": ("s001", "dairy_case", 3.5),
    "s001-wic1": ("s001", "walkin_cooler", 3.2),
    "s001-wif1": ("s001", "walkin_freezer", -20.0),
    "s002-dc1": ("s002", "dairy_case", 3.8),
    "s002-ic1": ("s002", "ice_cream_case", -24.0),
    "s002-mc1": ("s002", "meat_case", 2.0),
}

# (device, channel, minute before now) -> the fault the device reports instead.
FAULTS = {
    ("cc-s001-dc1", "", 90): FaultCode.NAN,
    ("a84041000181c001", "ds", 60): FaultCode.ABSENT_PROBE,
    ("tasmota-s002-dc1", "DS18B20-2", 45): FaultCode.DISCONNECTED,
}


def chain() -> dict[str, Any]:
    """The chain file: s001 in Guatemala, s002 on UTC (Tasmota clocks are zoneless)."""
    return {
        "stores": [
            {"id": "s001", "name": "San Pedro", "country": "GT", "timezone": "America/Guatemala"},
            {"id": "s002", "name": "Del Valle", "country": "MX", "timezone": "UTC"},
        ],
        "assets": [
            {"id": asset, "store": store, "type": kind, "name": asset}
            for asset, (store, kind, _) in ASSETS.items()
        ],
        "sensors": [
            {"id": sensor_id(d.device_id, channel), "asset": d.asset, "family": d.family}
            for d in DEVICES
            if d.asset is not None
            for channel in d.channels
        ],
    }


def _value(device: Device, quantity: Quantity, minute: int) -> float:
    """A plausible reading ``minute`` minutes before now."""
    base = ASSETS[device.asset][2] if device.asset else 4.1
    wave = 0.4 * math.sin(2 * math.pi * minute / 40)
    if quantity is T:
        if device.device_id == "cc-s001-dc1" and minute < 60:
            return round(base + (60 - minute) / 60 * 5.5, 2)  # compressor failing
        return round(base + wave, 2)
    if quantity is H:
        return round(84 + 3 * wave, 1)
    if quantity is D:
        return 1.0 if minute % 30 == 0 else 0.0
    if quantity is B:
        return 15.0 if device.family == "chirpstack" else round(90 - (HISTORY_MIN - minute) / 30)
    return -95.0 if device.family in ("chirpstack", "tts") else -62.0


def samples(device: Device, now_ms: int) -> Iterator[DeviceSample]:
    """The device's reports, oldest first."""
    for seq, minute in enumerate(range(HISTORY_MIN, device.until_min - 1, -device.every_min)):
        values: dict[str | None, dict[Quantity, float | FaultCode]] = {}
        for channel, quantities in device.channels.items():
            values[channel] = {q: _value(device, q, minute) for q in quantities}
            fault = FAULTS.get((device.device_id, channel or "", minute))
            if fault is not None:
                values[channel][T] = fault
        yield DeviceSample(device.device_id, now_ms - minute * MINUTE_MS, values, seq=seq + 1)


# -- alerts -------------------------------------------------------------------------------

# alert id -> (store, asset, kind, [(minutes before now, severity, state, level), ...])
ALERTS: dict[str, tuple[str, str | None, str, list[tuple[float, str, str, int]]]] = {
    "A1": ("s001", "s001-dc1", "temperature", [
        (50, "warning", "firing", 0), (49.9, "warning", "firing", 1),
        (35, "critical", "firing", 1), (20, "critical", "escalated", 2),
        (12, "critical", "acknowledged", 2)]),
    "A2": ("s001", "s001-wic1", "door_open", [
        (150, "warning", "firing", 0), (149.95, "warning", "firing", 1),
        (138, "warning", "acknowledged", 1), (130, "warning", "resolved", 1)]),
    "A3": ("s001", "s001-wic1", "low_battery", [
        (100, "warning", "firing", 0), (99.95, "warning", "firing", 1),
        (90, "warning", "acknowledged", 1)]),
    "A4": ("s001", "s001-dc1", "sensor_fault", [
        (170, "warning", "firing", 0), (169.95, "warning", "firing", 1),
        (140, "warning", "escalated", 2), (110, "warning", "escalated", 3)]),
    "A6": ("s001", "s001-wif1", "defrost_overrun", [
        (175, "warning", "firing", 0), (174.95, "warning", "firing", 1),
        (165, "warning", "resolved", 1)]),
    "A5": ("s001", "s001-dc1", "door_open", [(1, "warning", "firing", 0)]),
    "B1": ("s002", "s002-ic1", "sensor_silent", [
        (55, "warning", "firing", 0), (54.95, "warning", "firing", 1),
        (40, "warning", "acknowledged", 1)]),
    "B2": ("s002", None, "device_offline", [
        (10, "critical", "firing", 0), (9.95, "critical", "firing", 1)]),
    "B3": ("s002", "s002-dc1", "temperature", [
        (130, "critical", "firing", 0), (129.95, "critical", "firing", 1),
        (100, "critical", "escalated", 2), (70, "critical", "escalated", 3)]),
}  # fmt: skip

# What the dashboards must show for these alerts.
OPEN_BY_STORE = {"s001": {"critical": 1, "warning": 3, "max_level": 3},
                 "s002": {"critical": 2, "warning": 1, "max_level": 3}}  # fmt: skip
OPEN_BY_LEVEL = {"level 0": 1, "level 1": 3, "level 2": 1, "level 3+": 2}
OPENED_MINUTES_AGO = {"A1": 50, "A3": 100, "A4": 170, "A5": 1, "B1": 55, "B2": 10, "B3": 130}
# Seconds from opening to first acknowledgement: s001 A1 38 min, A2 12, A3 10; s002 B1 15.
TIME_TO_ACK = {"s001": {"mean": 1200.0, "max": 2280.0, "acknowledged": 3},
               "s002": {"mean": 900.0, "max": 900.0, "acknowledged": 1}}  # fmt: skip
SILENT_SENSORS = {
    "shellyplus1-s001wif1:temperature:100",
    "shellyplus1-s001wif1:temperature:101",
    "a84041000181c002",
    "a84041000181c002:ds",
}
OFFLINE_DEVICES = {"shellyplus1-s001wif1", "esp-s002-mc1"}
UNREGISTERED = {"new-probe-7"}


def alert_event_lines(now_ms: int) -> list[str]:
    """alert_event points exactly as ``AlertingEngine._event`` serializes them."""
    lines = []
    for alert_id, (store, asset, kind, events) in ALERTS.items():
        for minutes, severity, state, level in events:
            tags = {"store": store, "kind": kind, "severity": severity}
            if asset:
                tags["asset"] = asset
            point = Point(
                "alert_event",
                tuple(sorted(tags.items())),
                (("alert_id", alert_id), ("state", state), ("level", level)),
                round(now_ms - minutes * MINUTE_MS),
            )
            line = serialize(point)
            assert line is not None
            lines.append(line)
    return lines


# -- filling InfluxDB ---------------------------------------------------------------------


def fill(settings: Settings, registry: Registry, influx: InfluxV1) -> int:
    """Publish the scenario through the real ingester and write the alerts; return now_ms."""
    registry.import_chain(parse_chain(chain()))
    ingester = Ingester(settings, registry, influx, SystemClock())
    ingester.start()
    assert ingester.wait_connected(10), "ingester did not connect"
    try:
        now_ms = int(time.time() * 1000)
        published = _publish(settings, now_ms)
        _wait(lambda: ingester.stats.acked.total() >= published, "every message acknowledged")
        _wait(lambda: _offline(influx) >= OFFLINE_DEVICES, "the last wills stored")
    finally:
        ingester.stop()
    influx.write("\n".join(alert_event_lines(now_ms)).encode())
    return now_ms


def _publish(settings: Settings, now_ms: int) -> int:
    """Publish every device's reports, statuses, faults and wills; return the count."""
    publisher = Publisher(settings.mqtt, "grafana-test-devices")
    publisher.connect()
    count = 0

    def send(message: Publish) -> None:
        nonlocal count
        publisher.publish(message)
        count += 1

    # The ESPHome node's own connection carries its last will, as on a real node.
    esphome = devices.family("esphome")
    node = Publisher(
        settings.mqtt, "esp-s002-mc1", will=esphome.encode_status("esp-s002-mc1", False)
    )
    node.connect()
    for device in DEVICES:
        family = devices.family(device.family)
        if family.profile.availability == "lwt":
            send(family.encode_status(device.device_id, True))
        for sample in samples(device, now_ms):
            messages = family.encode(sample)
            if device.family == "esphome":
                for message in messages:
                    node.publish(message)
                    count += 1
            else:
                for message in messages:
                    send(message)
    # A clock two hours ahead: ingest stores it at receipt and flags it.
    native = devices.family("native")
    ahead = DeviceSample("cc-s001-dc1", now_ms + 120 * MINUTE_MS, {None: {T: 4.0}}, seq=999)
    for message in native.encode(ahead):
        send(message)
    send(devices.family("shelly").encode_status("shellyplus1-s001wif1", False))
    publisher.disconnect()
    node.flush()
    node.drop()  # no DISCONNECT: the broker publishes the will
    return count


def _offline(influx: InfluxV1) -> set[str]:
    series = influx.query(
        'SELECT last("value") FROM "device_status" WHERE time > now() - 1h GROUP BY "device"'
    )
    return {s.tags["device"] for s in series if s.values and s.values[0][1] == 0}


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
