"""coldchain native JSON: what our own ESPHome firmware and third-party gateways publish.

Telemetry, on ``coldchain/v1/<device_id>/telemetry``::

    {"ts": "2026-11-23T04:05:06Z" | 1795400706, "seq": 812,
     "temperature_c": 3.4, "humidity_pct": 88.0, "door_open": false,
     "battery_pct": 97, "rssi_dbm": -61,
     "channels": {"probe2": {"temperature_c": -19.8}}}

Every reading key is optional but at least one must be present (top level or in a
channel). Top-level readings belong to the sensor ``<device_id>``; ``channels`` (an
extension of DESIGN.md §3 for multi-probe nodes) to ``<device_id>:<channel>``. A reading of
``null``, ``"nan"``, 85.0 or -127 is a sensor fault. Availability: retained
``coldchain/v1/<device_id>/status`` = ``online`` | ``offline`` (the device's LWT).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from core.types import Fault, FaultCode, Message, Quantity, Reading, sensor_id
from devices.base import (
    DecodeError,
    DeviceSample,
    Profile,
    Publish,
    check_value,
    epoch_ms,
    fault_wire_value,
    iso_utc,
    parse_json_object,
    parse_text,
)
from devices.common import check_channel, check_device, unused_keys

# JSON key -> quantity; the unit is in the key so a payload is self-describing.
KEYS: dict[str, Quantity] = {
    "temperature_c": Quantity.TEMPERATURE,
    "humidity_pct": Quantity.HUMIDITY,
    "door_open": Quantity.DOOR,
    "battery_pct": Quantity.BATTERY,
    "rssi_dbm": Quantity.SIGNAL,
}
_KEY_OF = {quantity: key for key, quantity in KEYS.items()}
# Top-level keys that frame the readings rather than being one.
_ENVELOPE = frozenset({"ts", "seq", "channels"})
_KNOWN = frozenset(KEYS) | _ENVELOPE
_MAX_CHANNELS = 32
# Topics whose device id decode checked, remembered (one per device and kind).
_ROUTES_KEPT = 100_000
# Payload shapes (top-level keys in order) remembered; a flood of invented keys clears it.
# Only shapes whose keys are short in all are kept: a payload of a few huge invented keys
# must not hold up to a payload's size in memory per entry.
_SHAPES_KEPT = 1000
_SHAPE_KEY_CHARS = 256
_ABSENT = object()
# A payload shape: (reading key, quantity) pairs in KEYS order, unused keys, has channels.
_Shape = tuple[tuple[tuple[str, Quantity], ...], tuple[str, ...], bool]


class NativeFamily:
    """The ``native`` device family."""

    name = "native"
    subscriptions = ("coldchain/v1/+/telemetry", "coldchain/v1/+/status")
    profile = Profile(
        interval_s=60.0,
        availability="lwt",
        has_timestamp=True,
        fault_codes=frozenset(
            {FaultCode.NULL, FaultCode.NAN, FaultCode.POWER_ON_RESET, FaultCode.DISCONNECTED}
        ),
    )

    def __init__(self) -> None:
        self._routes: dict[str, tuple[str, bool]] = {}
        self._shapes: dict[tuple[str, ...], _Shape] = {}

    layout: Mapping[str | None, tuple[Quantity, ...]] = {
        None: (Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.DOOR, Quantity.SIGNAL),
        "probe2": (Quantity.TEMPERATURE,),
    }

    def matches(self, levels: list[str]) -> bool:
        return (
            len(levels) == 4
            and levels[0] == "coldchain"
            and levels[1] == "v1"
            and levels[3] in ("telemetry", "status")
        )

    def decode(self, topic: str, payload: bytes) -> Message:
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        device, telemetry = route
        if not telemetry:
            return self._decode_status(device, payload)
        data = parse_json_object(payload)
        keys = tuple(data)
        shape = self._shapes.get(keys)
        if shape is None:
            shape = self._shape(keys)
        present, extra, has_channels = shape
        readings: list[Reading] = []
        faults: list[Fault] = []
        for key, quantity in present:
            check_value(device, quantity, data[key], readings, faults)
        unused = list(extra)
        if has_channels and (channels := data["channels"]) is not None:
            if not isinstance(channels, dict) or len(channels) > _MAX_CHANNELS:
                raise DecodeError("bad_type", "channels must be an object of up to 32 channels")
            for channel, values in channels.items():
                if not isinstance(values, dict):
                    raise DecodeError("bad_type", f"channel {channel[:64]!r} is not an object")
                self._collect(sensor_id(device, check_channel(channel)), values, readings, faults)
                unused += [f"channels.{channel}.{key}" for key in values if key not in KEYS]
        if not readings and not faults:
            raise DecodeError("no_readings", "no known reading key (temperature_c, ...)")
        ts_ms = None
        if "ts" in data:
            ts_ms = epoch_ms(data["ts"])
            if ts_ms is None:
                raise DecodeError("bad_timestamp", f"ts {str(data['ts'])[:60]!r} is not a time")
        seq = data.get("seq")
        if seq is not None and type(seq) is not int:  # bool is not an int here
            raise DecodeError("bad_type", "seq must be an integer")
        return Message(
            self.name, device, tuple(readings), tuple(faults), None, ts_ms, None, seq,
            unused=unused_keys(unused) if unused else (),
        )  # fmt: skip

    def _shape(self, keys: tuple[str, ...]) -> _Shape:
        """What a payload with these top-level keys (in this order) holds: its readings'
        keys in :data:`KEYS` order, its unused keys, whether it has channels. Remembered:
        a fleet's firmware sends a handful of shapes (bounded in number and size)."""
        shape = (
            tuple((key, quantity) for key, quantity in KEYS.items() if key in keys),
            tuple(key for key in keys if key not in _KNOWN),
            "channels" in keys,
        )
        if sum(map(len, keys)) <= _SHAPE_KEY_CHARS:
            if len(self._shapes) >= _SHAPES_KEPT:
                self._shapes.clear()
            self._shapes[keys] = shape
        return shape

    def _route(self, topic: str) -> tuple[str, bool]:
        """(device id, telemetry rather than status) of a topic, validated; remembered
        (bounded: a fleet's topics repeat, a flood of invented ones clears the memory)."""
        levels = topic.split("/")
        if not self.matches(levels):
            raise DecodeError("bad_topic", f"not a coldchain/v1 topic: {topic[:120]}")
        route = (check_device(levels[2]), levels[3] == "telemetry")
        if len(self._routes) >= _ROUTES_KEPT:
            self._routes.clear()
        self._routes[topic] = route
        return route

    @staticmethod
    def _collect(
        sensor: str, data: dict[str, Any], readings: list[Reading], faults: list[Fault]
    ) -> None:
        """The readings of one object, in :data:`KEYS` order whatever the payload's."""
        for key, quantity in KEYS.items():
            raw = data.get(key, _ABSENT)
            if raw is not _ABSENT:
                check_value(sensor, quantity, raw, readings, faults)

    def _decode_status(self, device: str, payload: bytes) -> Message:
        text = parse_text(payload).lower()
        if text not in ("online", "offline"):
            raise DecodeError("bad_status", f"status must be online or offline, got {text[:40]!r}")
        return Message(family=self.name, device_id=device, online=text == "online")

    def encode(self, sample: DeviceSample) -> list[Publish]:
        body: dict[str, Any] = {"ts": iso_utc(sample.ts_ms)}
        if sample.seq is not None:
            body["seq"] = sample.seq
        channels: dict[str, dict[str, Any]] = {}
        for channel, values in sample.values.items():
            target = body if channel is None else channels.setdefault(channel, {})
            for quantity, value in values.items():
                target[_KEY_OF[quantity]] = _wire(quantity, value)
        if channels:
            body["channels"] = channels
        topic = f"coldchain/v1/{sample.device_id}/telemetry"
        return [Publish(topic, json.dumps(body, separators=(",", ":")).encode())]

    def encode_status(self, device_id: str, online: bool) -> Publish:
        return Publish(
            f"coldchain/v1/{device_id}/status", b"online" if online else b"offline", retain=True
        )


def _wire(quantity: Quantity, value: float | FaultCode) -> Any:
    if isinstance(value, FaultCode):
        return fault_wire_value(value)
    if quantity is Quantity.DOOR:
        return value >= 0.5
    return round(value, 2)


FAMILY = NativeFamily()
