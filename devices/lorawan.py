"""LoRaWAN codec output, shared by the ChirpStack and The Things Stack families.

Both network servers run the device vendor's JavaScript codec and forward its output as a
JSON object (ChirpStack ``object``, TTS ``uplink_message.decoded_payload``), so the field
names are the vendor's, whatever the server. The fields understood, and their sensors
(``<dev>`` is the device id):

- Milesight EM300-TH / EM300-MCS: ``temperature`` (°C, int16 / 10), ``humidity`` (%RH,
  uint8 / 2: 0.5 % steps), ``battery`` (%) on ``<dev>``; ``magnet_status`` (the
  EM300-MCS door contact; older codecs say ``door``) = ``"open"`` / ``"close"`` or 1 / 0
  -> door on ``<dev>``, open = 1.0.
- Dragino LHT65N: ``TempC_SHT`` and ``Hum_SHT`` (internal SHT20) on ``<dev>``;
  ``TempC_DS`` (the external DS18B20 probe, E3 option) on ``<dev>:ds``, where ``327.67``
  (0x7FFF / 100) is an absent probe; ``No_connect`` (``"Sensor no connection"``) is an
  absent probe too when ``TempC_DS`` is missing; ``BatV`` (volts) -> battery on ``<dev>``.

The Dragino decoder uses ``toFixed()``, so its numbers arrive as strings (``"3.02"``);
:func:`devices.base.check_value` reads them. ``BatV`` is converted linearly from the
LHT65N's Li-MnO2 cell: 2.45 V (the documented cut-off) = 0 %, 3.0 V (a fresh cell) =
100 %, clamped; the real discharge curve is flat then steep, so the percentage is a
rough guide and alerting should use a low threshold. Volts outside 0-5 V are a fault.

Gateway RSSI: the best (highest) ``rssi`` of the gateways that heard the uplink is the
device's signal, on the device-level sensor. A codec output with none of the fields above
(another vendor's device) is ignored, even if it has an RSSI.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from core.types import Fault, FaultCode, Message, Quantity, Reading, sensor_id
from devices.base import DecodeError, DeviceSample, Profile, check_value, iso_utc
from devices.common import (
    as_number,
    door_state,
    rounded,
    sample_values,
    telemetry,
    wire,
)

# Ten minutes is the EM300-TH default; the LHT65N's is 20 (staleness uses the device's).
PROFILE = Profile(
    interval_s=600.0,
    availability="staleness",
    has_timestamp=True,
    fault_codes=frozenset({FaultCode.ABSENT_PROBE}),
    resolution={
        Quantity.TEMPERATURE: 0.1,
        Quantity.HUMIDITY: 0.5,
        Quantity.BATTERY: 1.0,
        Quantity.SIGNAL: 1.0,
    },
)

# The Dragino LHT65N's external DS18B20 probe (E3 option).
DS_CHANNEL = "ds"
# A Dragino LHT65N with its external probe.
LAYOUT: Mapping[str | None, tuple[Quantity, ...]] = {
    None: (Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.BATTERY, Quantity.SIGNAL),
    DS_CHANNEL: (Quantity.TEMPERATURE,),
}

# Codec field -> (channel, quantity), for the fields read as they are.
FIELDS: dict[str, tuple[str | None, Quantity]] = {
    "temperature": (None, Quantity.TEMPERATURE),
    "humidity": (None, Quantity.HUMIDITY),
    "battery": (None, Quantity.BATTERY),
    "door": (None, Quantity.DOOR),
    "magnet_status": (None, Quantity.DOOR),
    "TempC_SHT": (None, Quantity.TEMPERATURE),
    "Hum_SHT": (None, Quantity.HUMIDITY),
    "TempC_DS": (DS_CHANNEL, Quantity.TEMPERATURE),
}
_DOOR_WORDS = {"open": True, "close": False, "closed": False}
_EMPTY_VOLTS, _FULL_VOLTS = 2.45, 3.0
_EUI = re.compile(r"^[0-9A-Fa-f]{16}$")
# Frame counters are 32-bit on the wire.
_FCNT_MAX = 2**32 - 1


def is_eui(value: str) -> bool:
    """Whether ``value`` is a 64-bit EUI in hex (``24E124136B123456``)."""
    return bool(_EUI.match(value))


def frame_counter(raw: Any) -> int | None:
    """The uplink frame counter as the message's ``seq``; None when absent.

    Raises:
        DecodeError: ``bad_type`` unless it is an integer in 0..2**32-1.
    """
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= _FCNT_MAX:
        raise DecodeError("bad_type", f"frame counter {str(raw)[:40]!r} is not a uint32")
    return raw


def uplink(
    family: str,
    device: str,
    fields: Any,
    gateways: Any,
    *,
    ts_ms: int | None,
    seq: int | None,
) -> Message:
    """The message of one uplink from its codec output and gateway metadata.

    Args:
        family: ``chirpstack`` or ``tts``.
        device: the validated device id (lower-case DevEUI).
        fields: the codec output (``object`` / ``decoded_payload``); None if absent.
        gateways: the gateway list (``rxInfo`` / ``rx_metadata``); None if absent.
        ts_ms: the network server's receive time.
        seq: the frame counter.

    Raises:
        DecodeError: ``no_codec`` without codec output (no codec in the device profile),
            ``bad_type`` for malformed fields.
    """
    if fields is None:
        raise DecodeError("no_codec", "no decoded payload: the device profile has no codec")
    if not isinstance(fields, dict):
        raise DecodeError("bad_type", f"decoded payload must be an object, not {type(fields)}")
    readings: list[Reading] = []
    faults: list[Fault] = []
    for name, (channel, quantity) in FIELDS.items():
        if name in fields:
            raw = fields[name]
            if quantity is Quantity.DOOR:
                raw = door_state(raw, _DOOR_WORDS)
            check_value(sensor_id(device, channel), quantity, raw, readings, faults)
    if "TempC_DS" not in fields and (flag := fields.get("No_connect")) is not None:
        # The decoder sets the key only when the probe is unplugged; its text is fixed.
        sensor = sensor_id(device, DS_CHANNEL)
        faults.append(Fault(sensor, Quantity.TEMPERATURE, FaultCode.ABSENT_PROBE, str(flag)[:40]))
    if "BatV" in fields:
        _battery_volts(device, fields["BatV"], readings, faults)
    if readings or faults:  # RSSI alone is no reason to store an unknown device type
        rssi = _best_rssi(gateways)
        if rssi is not None:
            check_value(device, Quantity.SIGNAL, rssi, readings, faults)
    return telemetry(
        family, device, readings, faults, nothing="no known codec field", ts_ms=ts_ms, seq=seq
    )


def _battery_volts(sensor: str, raw: Any, readings: list[Reading], faults: list[Fault]) -> None:
    """Dragino ``BatV`` as a battery percentage (see the module docstring)."""
    volts = as_number(raw)
    if volts is None:
        check_value(sensor, Quantity.BATTERY, raw, readings, faults)
        return
    if not 0.0 <= volts <= 5.0:
        faults.append(Fault(sensor, Quantity.BATTERY, FaultCode.OUT_OF_RANGE, str(raw)[:40]))
        return
    percent = (volts - _EMPTY_VOLTS) / (_FULL_VOLTS - _EMPTY_VOLTS) * 100.0
    check_value(sensor, Quantity.BATTERY, round(min(100.0, max(0.0, percent)), 1), readings, faults)


def _best_rssi(gateways: Any) -> float | None:
    """The highest ``rssi`` among the gateways, or None."""
    if gateways is None:
        return None
    if not isinstance(gateways, list):
        raise DecodeError("bad_type", "gateway metadata must be a list")
    best: float | None = None
    for gateway in gateways:
        if not isinstance(gateway, dict):
            raise DecodeError("bad_type", "gateway metadata entries must be objects")
        raw = gateway.get("rssi")
        if raw is None:  # servers omit zero and unknown fields
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise DecodeError("bad_type", f"rssi must be a number, not {type(raw).__name__}")
        rssi = as_number(raw)
        if rssi is not None:
            best = rssi if best is None else max(best, rssi)
    return best


def encode_fields(sample: DeviceSample) -> tuple[dict[str, Any], int | None]:
    """The codec output and best RSSI a device's uplink would carry, for encoders.

    A sample with a ``ds`` channel is written as a Dragino LHT65N (string values, ``BatV``
    volts); any other as a Milesight EM300 (numbers, battery percent, ``door`` words).

    Raises:
        ValueError: for a channel or quantity these devices do not have.
    """
    device_table = _DRAGINO if DS_CHANNEL in sample.values else _MILESIGHT
    fields: dict[str, Any] = {}
    rssi: int | None = None
    for channel, quantity, value in sample_values(sample, PROFILE):
        if channel is None and quantity is Quantity.SIGNAL:
            rssi = wire(value, round)
            continue
        table = device_table if channel is None else _PROBES.get(channel, {})
        if quantity not in table:
            raise ValueError(f"LoRaWAN channel {channel!r} cannot carry {quantity.value}")
        name, number = table[quantity]
        fields[name] = wire(value, number)
    return fields, rssi


def _volts(percent: float) -> float:
    """Battery percent back to LHT65N volts (inverse of :func:`_battery_volts`)."""
    return round(_EMPTY_VOLTS + percent / 100.0 * (_FULL_VOLTS - _EMPTY_VOLTS), 3)


_Format = tuple[str, Callable[[float], Any]]
_DOOR_FORMAT: _Format = ("door", lambda v: "open" if v >= 0.5 else "close")
# Milesight EM300: numbers at the codec's precision (int16 / 10, uint8 / 2, uint8).
_MILESIGHT: dict[Quantity, _Format] = {
    Quantity.TEMPERATURE: ("temperature", rounded(1)),
    Quantity.HUMIDITY: ("humidity", lambda v: round(v * 2) / 2),
    Quantity.BATTERY: ("battery", round),
    Quantity.DOOR: _DOOR_FORMAT,
}
# Dragino LHT65N: toFixed() strings, battery in volts.
_DRAGINO: dict[Quantity, _Format] = {
    Quantity.TEMPERATURE: ("TempC_SHT", lambda v: f"{v:.2f}"),
    Quantity.HUMIDITY: ("Hum_SHT", lambda v: f"{v:.1f}"),
    Quantity.BATTERY: ("BatV", _volts),
    Quantity.DOOR: _DOOR_FORMAT,
}
_PROBES: dict[str, dict[Quantity, _Format]] = {
    DS_CHANNEL: {Quantity.TEMPERATURE: ("TempC_DS", lambda v: f"{v:.2f}")},
}


def iso_nanos(ts_ms: int, zone: str = "Z") -> str:
    """Epoch ms as the nanosecond ISO time network servers write (``...06.789000000Z``)."""
    return f"{iso_utc(ts_ms)[:-1]}000000{zone}"
