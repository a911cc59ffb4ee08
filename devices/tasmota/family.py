"""Tasmota telemetry: ``tele/<topic>/SENSOR``, ``tele/<topic>/STATE`` and the LWT.

``SENSOR`` every ``TelePeriod`` (300 s by default); one object per sensor, named by the
driver, ``-<n>`` numbered when a bus has several (DS18B20 sorted by ROM id)::

    tele/tasmota-s042-wic1/SENSOR
    {"Time":"2024-05-10T03:15:00",
     "DS18B20-1":{"Id":"01144A0CB2AA","Temperature":3.4},
     "DS18B20-2":{"Id":"3C01D0756C11","Temperature":-19.8},
     "SHT3X":{"Temperature":4.6,"Humidity":88.2,"DewPoint":2.8},
     "Switch1":"ON","TempUnit":"C"}

``STATE`` at the same period carries ``"Wifi":{...,"RSSI":78,"Signal":-61}`` (``Signal``
in dBm; ``RSSI`` is a 0-100 quality). ``tele/<topic>/LWT`` is ``Online`` / ``Offline``,
retained.

Sensor ids: ``<topic>:<key>`` for every object with ``Temperature`` and/or ``Humidity``
(``tasmota-s042-wic1:DS18B20-1``, ``...:SHT3X``, ``...:AM2301``), ``<topic>:Switch<n>``
for switches and ``<topic>`` itself for the Wi-Fi signal. The device id is ``<topic>``.

Decisions and assumptions:

- ``Time`` is the device's wall clock without zone: it goes to ``Message.local_time`` and
  ingest reads it in the store's timezone. With ``SetOption52 1`` it carries an offset
  and becomes ``ts_ms``.
- ``TempUnit":"F"`` (``SetOption8 1``): temperatures are converted to °C; the DS18B20
  sentinels are recognised in °F first (185.0 = 85 °C power-on, -196.6 = -127 °C).
- A failed probe's key is simply missing (the driver drops it after a few CRC errors):
  nothing is reported for it, and a SENSOR with no known sensor left is ignored.
- ``Switch<n>`` = ``ON`` means the door is open: a reed switch wired normally closed
  (or ``SwitchMode`` inverted) so that the open state is the active one. Wiring that
  reports the opposite needs a ``SwitchMode`` change on the device.
- The chip's own ``ESP32`` / ``ESP8266`` temperature is not a store measurement and is
  skipped; objects without ``Temperature`` / ``Humidity`` (``ENERGY``, ``ANALOG``) too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.types import Fault, FaultCode, Message, Quantity, Reading, sensor_id
from devices.base import DecodeError, DeviceSample, Profile, Publish, check_value, parse_json_object
from devices.common import (
    ON_OFF,
    availability,
    check_channel,
    check_device,
    check_fahrenheit,
    door_state,
    dumps,
    local_time,
    on_off,
    optional,
    rounded,
    sample_values,
    telemetry,
    timestamp,
    wire,
)

_KINDS = ("SENSOR", "STATE", "LWT")
# JSON key inside a sensor object -> quantity.
_KEYS: dict[str, Quantity] = {"Temperature": Quantity.TEMPERATURE, "Humidity": Quantity.HUMIDITY}
_KEY_OF = {quantity: key for key, quantity in _KEYS.items()}
_SWITCH = re.compile(r"^Switch[0-9]{1,2}$")
_CHIP_SENSORS = frozenset({"ESP32", "ESP8266"})


class TasmotaFamily:
    """The ``tasmota`` device family."""

    name = "tasmota"
    subscriptions = ("tele/+/SENSOR", "tele/+/LWT", "tele/+/STATE")
    profile = Profile(
        interval_s=300.0,  # TelePeriod default
        availability="lwt",
        has_timestamp=False,  # Time is local and zoneless
        # A power-on 85.0 passes the CRC; -127 only as -196.6 in °F mode. Other failures
        # drop the key.
        fault_codes=frozenset({FaultCode.POWER_ON_RESET, FaultCode.DISCONNECTED}),
        resolution={
            Quantity.TEMPERATURE: 0.1,  # TempRes default: one decimal
            Quantity.HUMIDITY: 0.1,
            Quantity.SIGNAL: 1.0,
        },
    )

    layout: Mapping[str | None, tuple[Quantity, ...]] = {
        "DS18B20-1": (Quantity.TEMPERATURE,),
        "DS18B20-2": (Quantity.TEMPERATURE,),
        "SHT3X": (Quantity.TEMPERATURE, Quantity.HUMIDITY),
        "Switch1": (Quantity.DOOR,),
        None: (Quantity.SIGNAL,),
    }

    def matches(self, levels: list[str]) -> bool:
        return len(levels) == 3 and levels[0] == "tele" and levels[2] in _KINDS

    def decode(self, topic: str, payload: bytes) -> Message:
        levels = topic.split("/")
        if not self.matches(levels):
            raise DecodeError(
                "bad_topic", f"not a tele/<topic>/SENSOR|STATE|LWT topic: {topic[:120]}"
            )
        device = check_device(levels[1])
        if levels[2] == "LWT":
            return availability(self.name, device, payload, "online", "offline")
        data = parse_json_object(payload)
        ts_ms, local = _time(data.get("Time"))
        readings: list[Reading] = []
        faults: list[Fault] = []
        if levels[2] == "STATE":
            wifi = optional(data, "Wifi", dict) or {}
            if "Signal" in wifi:
                check_value(device, Quantity.SIGNAL, wifi["Signal"], readings, faults)
            nothing = "STATE without Wifi.Signal"
        else:
            self._sensors(device, data, readings, faults)
            nothing = "no temperature, humidity or switch in SENSOR"
        return telemetry(
            self.name, device, readings, faults, nothing=nothing, ts_ms=ts_ms, local=local
        )

    @staticmethod
    def _sensors(
        device: str, data: dict[str, Any], readings: list[Reading], faults: list[Fault]
    ) -> None:
        """Collect the sensor objects and switches of a SENSOR payload."""
        unit = data.get("TempUnit", "C")
        if unit not in ("C", "F"):
            raise DecodeError("bad_unit", f"TempUnit must be C or F, got {str(unit)[:20]!r}")
        for key, value in data.items():
            if isinstance(value, dict) and key not in _CHIP_SENSORS:
                if not any(name in value for name in _KEYS):
                    continue
                sensor = sensor_id(device, check_channel(key))
                if "Temperature" in value:
                    if unit == "F":
                        check_fahrenheit(sensor, value["Temperature"], readings, faults)
                    else:
                        check_value(
                            sensor, Quantity.TEMPERATURE, value["Temperature"], readings, faults
                        )
                if "Humidity" in value:
                    check_value(sensor, Quantity.HUMIDITY, value["Humidity"], readings, faults)
            elif _SWITCH.match(key):
                raw = door_state(value, ON_OFF)
                check_value(sensor_id(device, key), Quantity.DOOR, raw, readings, faults)

    def encode(self, sample: DeviceSample) -> list[Publish]:
        # Tasmota's Time is local wall-clock time in the device's configured zone (the
        # store's, in a real install and in the simulator); UTC when none is given.
        zone = ZoneInfo(sample.zone) if sample.zone else UTC
        clock = datetime.fromtimestamp(sample.ts_ms / 1000, zone).replace(tzinfo=None)
        time = clock.isoformat(timespec="seconds")
        sensor: dict[str, Any] = {"Time": time}
        state: dict[str, Any] = {}
        for channel, quantity, value in sample_values(sample, self.profile):
            if channel is None and quantity is Quantity.SIGNAL:
                signal = wire(value, round)
                state = {
                    "Time": time,
                    "Wifi": {"AP": 1, "RSSI": _quality(signal), "Signal": signal},
                }
            elif channel is not None and quantity is Quantity.DOOR and _SWITCH.match(channel):
                sensor[channel] = wire(value, on_off)
            elif channel is not None and quantity in _KEY_OF:
                sensor.setdefault(channel, {})[_KEY_OF[quantity]] = wire(value, rounded(1))
            else:
                raise ValueError(f"Tasmota cannot carry {quantity.value} on {channel!r}")
        sensor["TempUnit"] = "C"
        base = f"tele/{sample.device_id}"
        publishes = [Publish(f"{base}/SENSOR", dumps(sensor))]
        if state:
            publishes.append(Publish(f"{base}/STATE", dumps(state)))
        return publishes

    def encode_status(self, device_id: str, online: bool) -> Publish:
        return Publish(f"tele/{device_id}/LWT", b"Online" if online else b"Offline", retain=True)


def _time(raw: Any) -> tuple[int | None, datetime | None]:
    """``Time`` as (ts_ms, None) when it has a zone, else (None, local time)."""
    if raw is None:
        return None, None
    parsed = local_time(raw)
    if parsed.tzinfo is None:
        return None, parsed
    return timestamp(raw), None


def _quality(dbm: int) -> int:
    """Tasmota's Wifi.RSSI quality (0-100) for a signal in dBm."""
    return max(0, min(100, 2 * (dbm + 100)))


FAMILY = TasmotaFamily()
