"""Shelly Gen2 / Plus JSON-RPC notifications on ``<shelly-id>/events/rpc``.

``NotifyStatus`` carries the components that changed, ``NotifyFullStatus`` (sent by the
battery Plus H&T on every wake-up) all of them; ``params.ts`` is UTC epoch seconds::

    shellyplusht-b8d61a8b17cc/events/rpc
    {"src":"shellyplusht-b8d61a8b17cc","dst":"shellyplusht-b8d61a8b17cc/events",
     "method":"NotifyFullStatus",
     "params":{"ts":1680962879.62,
       "devicepower:0":{"id":0,"battery":{"V":0.43,"percent":0},"external":{"present":true}},
       "humidity:0":{"id":0,"rh":42.2},
       "temperature:0":{"id":0,"tC":19.8,"tF":67.6}}}

    shellyplus1-a8032ab1c2d3/events/rpc       (Plus 1 + Add-on DS18B20, on change only)
    {"method":"NotifyStatus","params":{"ts":1715311200.52,
     "temperature:100":{"id":100,"tC":3.6,"tF":38.5}}}

Availability: ``<shelly-id>/online`` = ``true`` / ``false`` (retained LWT).

Device id: the first topic level (the Shelly id; a ``src`` that differs is not checked).
Sensor ids:

- ``temperature:<n>`` -> ``<id>:temperature:<n>`` (``tC``; ``tF`` converted only when
  ``tC`` is absent). ``tC: null`` (no valid value) is a NULL fault. Ids 100-199 are
  Add-on probes, 0-99 internal sensors.
- ``humidity:<n>`` -> ``rh`` on the same sensor ``<id>:temperature:<n>``: on the Plus H&T
  both come from one SHT chip, so they are one sensor with two quantities.
- ``devicepower:0`` -> ``battery.percent`` on ``<id>``, except when ``external.present``
  is true: on USB power the H&T reports a meaningless battery (``V 0.43, percent 0``).
- ``wifi`` -> ``rssi`` (dBm) on ``<id>``.

Ignored: other methods (``NotifyEvent`` button pushes...), frames with none of the
components above (``switch:0``, ``sys``), and ``input:<n>`` states: an input usually
drives the relay, and nothing on the wire says it is a door contact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.types import Fault, FaultCode, Message, Quantity, Reading, sensor_id
from devices.base import DecodeError, DeviceSample, Profile, Publish, check_value, parse_json_object
from devices.common import (
    availability,
    check_device,
    check_fahrenheit,
    dumps,
    optional,
    rounded,
    sample_values,
    telemetry,
    timestamp,
    wire,
)

_METHODS = frozenset({"NotifyStatus", "NotifyFullStatus"})
_PROBE = re.compile(r"^(temperature|humidity):([0-9]{1,3})$")
# Sensor components coldchain does not read (Add-on digital and analog inputs, lux, flood,
# smoke...): listed as unused, so an Add-on input wired to a door contact is seen. Actuators
# (switch, cover, light) and system components (sys, cloud, mqtt, ble) are not listed.
_UNREAD = re.compile(
    r"^(input|voltmeter|analoginput|illuminance|flood|smoke|presence|pm1):[0-9]{1,3}$"
)
# Ignored-message reasons (metric label values).
OTHER_METHOD = "other_method"
NO_SENSOR = "no_sensor"


class ShellyFamily:
    """The ``shelly`` device family (Gen2 / Plus RPC notifications)."""

    name = "shelly"
    subscriptions = ("+/events/rpc", "+/online")
    profile = Profile(
        interval_s=600.0,  # the H&T's wakeup_period; the Plus 1 Add-on reports on change
        availability="lwt",
        has_timestamp=True,
        fault_codes=frozenset({FaultCode.NULL}),
        report_on_change=True,
        resolution={
            Quantity.TEMPERATURE: 0.1,
            Quantity.HUMIDITY: 0.1,
            Quantity.BATTERY: 1.0,
            Quantity.SIGNAL: 1.0,
        },
    )

    # A Plus 1 with two Add-on DS18B20 probes.
    layout: Mapping[str | None, tuple[Quantity, ...]] = {
        "temperature:100": (Quantity.TEMPERATURE,),
        "temperature:101": (Quantity.TEMPERATURE,),
        None: (Quantity.SIGNAL,),
    }

    def matches(self, levels: list[str]) -> bool:
        return (len(levels) == 3 and levels[1:] == ["events", "rpc"]) or (
            len(levels) == 2 and levels[1] == "online"
        )

    def decode(self, topic: str, payload: bytes) -> Message:
        levels = topic.split("/")
        if not self.matches(levels):
            raise DecodeError(
                "bad_topic", f"not a Shelly events/rpc or online topic: {topic[:120]}"
            )
        device = check_device(levels[0])
        if levels[1] == "online":
            return availability(self.name, device, payload, "true", "false")
        frame = parse_json_object(payload)
        method = frame.get("method")
        if not isinstance(method, str):
            raise DecodeError("bad_type", "an events/rpc frame needs a method string")
        if method not in _METHODS:
            return Message(
                family=self.name,
                device_id=device,
                ignored=OTHER_METHOD,
                detail=f"method {method[:40]} carries no sensor status",
            )
        params = optional(frame, "params", dict)
        if params is None:
            raise DecodeError("bad_type", f"{method} without params")
        ts_ms = timestamp(params["ts"]) if params.get("ts") is not None else None
        readings: list[Reading] = []
        faults: list[Fault] = []
        unused: list[str] = []
        for key, component in params.items():
            if match := _PROBE.match(key):
                sensor = sensor_id(device, f"temperature:{match.group(2)}")
                _probe(sensor, match.group(1), _component(key, component), readings, faults)
            elif key == "devicepower:0":
                _battery(device, _component(key, component), readings, faults)
            elif key == "wifi" and "rssi" in _component(key, component):
                check_value(device, Quantity.SIGNAL, component["rssi"], readings, faults)
            elif _UNREAD.match(key):
                unused.append(key)
        return telemetry(
            self.name, device, readings, faults, nothing=NO_SENSOR, unused=unused, ts_ms=ts_ms
        )

    def encode(self, sample: DeviceSample) -> list[Publish]:
        params: dict[str, Any] = {"ts": round(sample.ts_ms / 1000, 2)}
        for channel, quantity, value in sample_values(sample, self.profile):
            if channel is None and quantity is Quantity.BATTERY:
                params["devicepower:0"] = {
                    "id": 0,
                    "battery": {"percent": wire(value, round)},
                    "external": {"present": False},
                }
            elif channel is None and quantity is Quantity.SIGNAL:
                params["wifi"] = {"status": "got ip", "rssi": wire(value, round)}
            elif channel and (match := _PROBE.match(channel)) and match[1] == "temperature":
                number = int(match[2])
                if quantity is Quantity.TEMPERATURE:
                    celsius = wire(value, rounded(1))
                    fahrenheit = None if celsius is None else round(celsius * 9 / 5 + 32, 1)
                    params[channel] = {"id": number, "tC": celsius, "tF": fahrenheit}
                elif quantity is Quantity.HUMIDITY:
                    params[f"humidity:{number}"] = {"id": number, "rh": wire(value, rounded(1))}
                else:
                    raise ValueError(f"Shelly {channel} cannot carry {quantity.value}")
            else:
                raise ValueError(f"Shelly cannot carry {quantity.value} on {channel!r}")
        frame = {
            "src": sample.device_id,
            "dst": f"{sample.device_id}/events",
            "method": "NotifyStatus",
            "params": params,
        }
        return [Publish(f"{sample.device_id}/events/rpc", dumps(frame))]

    def encode_status(self, device_id: str, online: bool) -> Publish:
        return Publish(f"{device_id}/online", b"true" if online else b"false", retain=True)


def _component(key: str, component: Any) -> dict[str, Any]:
    """A component's status object, or DecodeError."""
    if not isinstance(component, dict):
        raise DecodeError("bad_type", f"{key[:40]} must be an object")
    return component


def _probe(
    sensor: str, kind: str, status: dict[str, Any], readings: list[Reading], faults: list[Fault]
) -> None:
    """A temperature:<n> or humidity:<n> status (only changed fields are present)."""
    if kind == "humidity":
        if "rh" in status:
            check_value(sensor, Quantity.HUMIDITY, status["rh"], readings, faults)
    elif "tC" in status:
        check_value(sensor, Quantity.TEMPERATURE, status["tC"], readings, faults)
    elif "tF" in status:
        check_fahrenheit(sensor, status["tF"], readings, faults)


def _battery(
    device: str, status: dict[str, Any], readings: list[Reading], faults: list[Fault]
) -> None:
    """devicepower:0's battery percent, unless the device runs on external power."""
    external = optional(status, "external", dict) or {}
    if external.get("present") is True:
        return
    battery = optional(status, "battery", dict) or {}
    if "percent" in battery:
        check_value(device, Quantity.BATTERY, battery["percent"], readings, faults)


FAMILY = ShellyFamily()
