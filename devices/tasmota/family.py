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

Sensor ids: ``<topic>:<key>`` for every object with ``Temperature``, ``Humidity`` or
``Battery``, whatever the driver (``DS18B20``, ``DS18B20-1``, ``DS18S20``, ``DS1822``,
``MAX31850``, ``DS18Sens_1`` aliases, ``SHT3X``, ``SHT3X-0x45``, ``SHT4X``, ``AM2301``,
``DHT11``, ``BME280``, ``HTU21``, BLE sensors relayed by an ESP32 such as
``LYWSD03-52680f`` or ``ATC52680f``); ``<topic>:ANALOG-Temperature1`` for an NTC on an
analog input (``"ANALOG":{"Temperature1":27.4}``; ``Temperature`` on one-ADC chips);
``<topic>:Switch<n>`` for switches; ``<topic>`` itself for the Wi-Fi signal and for the
top-level ``Temperature`` / ``Humidity`` of the Sonoff SC. A key that is not a valid
channel (spaces, ``/``) is written with ``_`` instead (``Fridge_Sensor``). Inside a sensor
object ``Battery`` (BLE sensors, percent) and ``RSSI`` (BLE, dBm) are that sensor's
battery and signal. The device id is ``<topic>``.

Decisions and assumptions:

- ``Time`` is the device's wall clock: ``2024-05-10T03:15:00`` (and ``.123`` with
  ``Time 4``), or ``2018.02.01 22:52:09`` as firmware before 5.12 wrote it, goes to
  ``Message.local_time`` and ingest reads it in the store's timezone. With ``SetOption52 1``
  it carries an offset, and ``Time 3`` makes it an epoch number: both become ``ts_ms``, as
  does ``Epoch`` (``Time 2``), which wins over the local time. A ``Time`` in no known
  format is not a reason to lose the readings: they are kept at receive time and
  ``Time`` is listed as unused.
- ``TempUnit":"F"`` (``SetOption8 1``): temperatures are converted to °C; the DS18B20
  sentinels are recognised in °F first (185.0 = 85 °C power-on, -196.6 = -127 °C).
- A failed probe's key is simply missing (the driver drops it after a few CRC errors):
  nothing is reported for it, and a SENSOR with no sensor value left is ignored
  (``no_sensor``) and listed with its device.
- ``Switch<n>`` = ``ON`` means the door is open: a reed switch wired normally closed
  (or ``SwitchMode`` inverted) so that the open state is the active one. Wiring that
  reports the opposite needs a ``SwitchMode`` change on the device.
- What is decoded but not stored is listed as unused: the chip's own ``ESP32`` /
  ``ESP8266`` temperature (not a store measurement), other fields of sensor objects
  (``Pressure``, ``Illuminance``...), other analog inputs (``ANALOG.A0``), objects with no
  temperature, humidity or battery (``ENERGY``, ``PMS5003``). ``DewPoint``, ``Id``,
  ``mac`` and the unit keys only restate what is stored and are not listed.
- ``STATE`` from firmware without ``Signal`` gives the signal from the ``RSSI`` quality by
  Tasmota's own formula (quality = 2 x (dBm + 100)).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.types import Fault, FaultCode, Message, Quantity, Reading, sensor_id
from devices.base import (
    DecodeError,
    DeviceSample,
    Profile,
    Publish,
    check_value,
    epoch_ms,
    parse_json_object,
)
from devices.common import (
    ON_OFF,
    availability,
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
    wire,
)

_KINDS = ("SENSOR", "STATE", "LWT")
# JSON key inside a sensor object -> quantity.
_KEYS: dict[str, Quantity] = {
    "Temperature": Quantity.TEMPERATURE,
    "Humidity": Quantity.HUMIDITY,
    "Battery": Quantity.BATTERY,
}
_KEY_OF = {quantity: key for key, quantity in _KEYS.items()}
_SWITCH = re.compile(r"^Switch[0-9]{1,2}$")
_ANALOG_TEMPERATURE = re.compile(r"^Temperature[0-9]{0,2}$")
_CHIP_SENSORS = frozenset({"ESP32", "ESP8266"})
# Keys that frame a SENSOR message rather than report a value.
_ENVELOPE = frozenset({"Time", "Epoch", "TempUnit", "HumUnit", "PressureUnit", "SpeedUnit"})
# Keys inside a sensor object that restate or label what is stored.
_DESCRIPTIVE = frozenset({"DewPoint", "Id", "mac", "MAC", "alias", "Alias", "Name", "Type"})
# Tasmota before 5.12 wrote Time as "2018.02.01 22:52:09".
_OLD_TIME = "%Y.%m.%d %H:%M:%S"
_CHANNEL_BAD = re.compile(r"[^A-Za-z0-9_.\-:]")
# Ignored-message reasons (metric label values).
NO_SENSOR = "no_sensor"
NO_SIGNAL = "no_signal"


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
        unused: list[str] = []
        ts_ms, local = _time(data, unused)
        readings: list[Reading] = []
        faults: list[Fault] = []
        if levels[2] == "STATE":
            _signal(device, optional(data, "Wifi", dict) or {}, readings, faults)
            nothing = NO_SIGNAL
        else:
            self._sensors(device, data, readings, faults, unused)
            nothing = NO_SENSOR
        return telemetry(
            self.name, device, readings, faults, nothing=nothing, unused=unused, ts_ms=ts_ms,
            local=local,
        )  # fmt: skip

    @staticmethod
    def _sensors(
        device: str,
        data: dict[str, Any],
        readings: list[Reading],
        faults: list[Fault],
        unused: list[str],
    ) -> None:
        """Collect the sensor objects and switches of a SENSOR payload."""
        unit = data.get("TempUnit", "C")
        if unit not in ("C", "F"):
            raise DecodeError("bad_unit", f"TempUnit must be C or F, got {str(unit)[:20]!r}")
        for key, value in data.items():
            if key in _ENVELOPE:
                continue
            if _SWITCH.match(key):
                raw = door_state(value, ON_OFF)
                check_value(sensor_id(device, key), Quantity.DOOR, raw, readings, faults)
            elif key in ("Temperature", "Humidity"):  # Sonoff SC: the device's own sensor
                _value(device, key, value, unit, readings, faults)
            elif key == "ANALOG" and isinstance(value, dict):
                for name, raw in value.items():
                    if _ANALOG_TEMPERATURE.match(name):
                        sensor = sensor_id(device, f"ANALOG-{name}")
                        _value(sensor, "Temperature", raw, unit, readings, faults)
                    else:
                        unused.append(f"ANALOG.{name}")
            elif isinstance(value, dict) and key not in _CHIP_SENSORS and _KEYS.keys() & value:
                sensor = sensor_id(device, _channel(key))
                for name, raw in value.items():
                    if name in _KEYS:
                        _value(sensor, name, raw, unit, readings, faults)
                    elif name == "RSSI":  # a BLE sensor's signal, dBm
                        check_value(sensor, Quantity.SIGNAL, raw, readings, faults)
                    elif name not in _DESCRIPTIVE:
                        unused.append(f"{key}.{name}")
            elif isinstance(value, dict) and key in _CHIP_SENSORS:
                unused += [f"{key}.{name}" for name in value]
            else:
                unused.append(key)

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


def _value(
    sensor: str, name: str, raw: Any, unit: str, readings: list[Reading], faults: list[Fault]
) -> None:
    """One ``Temperature`` (in ``TempUnit``), ``Humidity`` or ``Battery`` value."""
    if name == "Temperature" and unit == "F":
        check_fahrenheit(sensor, raw, readings, faults)
    else:
        check_value(sensor, _KEYS[name], raw, readings, faults)


def _channel(key: str) -> str:
    """A SENSOR key as a channel: characters a sensor id cannot hold become ``_``."""
    return _CHANNEL_BAD.sub("_", key)[:64] or "_"


def _signal(
    device: str, wifi: dict[str, Any], readings: list[Reading], faults: list[Fault]
) -> None:
    """The Wi-Fi signal of a STATE message: ``Signal`` (dBm), else from the quality."""
    if "Signal" in wifi:
        check_value(device, Quantity.SIGNAL, wifi["Signal"], readings, faults)
        return
    quality = wifi.get("RSSI")
    if isinstance(quality, int | float) and not isinstance(quality, bool) and 0 <= quality <= 100:
        check_value(device, Quantity.SIGNAL, round(quality / 2 - 100), readings, faults)


def _time(data: dict[str, Any], unused: list[str]) -> tuple[int | None, datetime | None]:
    """(ts_ms, None) for an absolute time, (None, local time) for a wall clock, else none.

    ``Epoch`` (UTC seconds, ``Time 2``) wins; then ``Time``: an epoch number (``Time 3``),
    ISO 8601 with an offset (``SetOption52``), ISO without (local), or the pre-5.12
    ``2018.02.01 22:52:09``. A time in no known form is listed as unused and the readings
    are kept at receive time: a clock format is no reason to lose them.
    """
    epoch = data.get("Epoch")
    if epoch is not None:
        ts_ms = epoch_ms(epoch)
        if ts_ms is not None:
            return ts_ms, None
        unused.append("Epoch")
    raw = data.get("Time")
    if raw is None:
        return None, None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        ts_ms = epoch_ms(raw)
        if ts_ms is None:
            unused.append("Time")
        return ts_ms, None
    if isinstance(raw, str):
        try:
            parsed = local_time(raw)
        except DecodeError:
            try:
                parsed = datetime.strptime(raw.strip(), _OLD_TIME)  # noqa: DTZ007 - wall clock
            except ValueError:
                unused.append("Time")
                return None, None
        if parsed.tzinfo is None:
            return None, parsed
        return round(parsed.timestamp() * 1000), None
    unused.append("Time")
    return None, None


def _quality(dbm: int) -> int:
    """Tasmota's Wifi.RSSI quality (0-100) for a signal in dBm."""
    return max(0, min(100, 2 * (dbm + 100)))


FAMILY = TasmotaFamily()
