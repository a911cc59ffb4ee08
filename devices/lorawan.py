"""LoRaWAN codec output, shared by the ChirpStack and The Things Stack families.

Both network servers run the device vendor's JavaScript codec and forward its output as a
JSON object (ChirpStack ``object``, TTS ``uplink_message.decoded_payload``), so the field
names are the vendor's, whatever the server. Codecs come from two places, and the same
device says different things in each: The Things Network Device Repository (what TTS
assigns, many ChirpStack users copy it) and the vendor's own repository. Both kinds are in
the golden corpus (``devices/corpus/lorawan/``, one case per vendor example, with its
source), and every field below is read from either.

Sensor ids (``<dev>`` is the device id, the DevEUI in lower case): a device's own built-in
sensor is ``<dev>``; a probe on a cable, or one of several sensors, is ``<dev>:<channel>``.

Codec fields read, what they are and where they go:

- ``temperature``, ``humidity`` (Milesight EM300/EM500, Elsys, Browan): ``<dev>``;
- ``battery``: percent (Milesight), or volts when ``status`` is present (Browan Tabs);
- door, 1 = open, on ``<dev>``: ``magnet`` (0/1, Device Repository EM300-MCS),
  ``magnet_status`` and ``door`` (``open``/``close``), ``DOOR_OPEN_STATUS`` (Dragino
  LDS02), ``status`` bit 0 on fPort 100 (Browan TBDW100);
- ``TempC_SHT``, ``Hum_SHT``: the built-in SHT of Dragino LHT65/LHT65N/LHT52, the I2C SHT
  probe of an LSN50v2: ``<dev>:sht``;
- ``TempC_DS`` (DS18B20 probe): ``<dev>:ds``; ``TempC_TMP117`` (LHT65N-NE117):
  ``<dev>:tmp117``; ``Ext_TempC_SHT``, ``Ext_Hum_SHT`` (LHT65N SHT31 probe):
  ``<dev>:ext_sht``; ``TempC1``..``TempC3`` (LSN50v2-D20/D22/D23): ``<dev>:temp1``..;
- ``Door_status`` (``OPEN``/``CLOSE``, LSN50v2 interrupt pin, reads OPEN with nothing
  wired): ``<dev>:door``;
- ``externalTemperature`` (Elsys ELT probe): ``<dev>:ext``; ``externalTemperature2``, one
  value or a list: ``<dev>:ext2`` or ``<dev>:ext2-1``...;
- ``temperatureBoard`` (Browan Tabs board, not the room): ``<dev>:board``;
- battery volts (or mV): ``BatV``, ``BAT``, ``Bat_mV``, ``BAT_V``, ``vdd``: ``<dev>`` %.

Why the Dragino built-in SHT is a channel (``sht``) rather than ``<dev>``: an LHT65N with a
probe carries two temperature sensors, and a technician registering ``<dev>`` meant the
probe as often as the air; registering the bare id of such a device is refused with the
channels listed (docs/design/sensor-ids.md), while a probe-less one can still be
registered as ``<dev>`` (ingest attributes its only probe to it).

Faults: ``327.67`` (0x7FFF / 100) is an absent probe, ``No_connect`` too when no probe
value came with it; the DS18B20 sentinels and NaN as everywhere (:mod:`devices.base`).

Battery volts are mapped linearly onto 0-100 % between the chemistry's cut-off and a
fresh cell (:data:`VOLT_RANGES`); real discharge curves are flat then steep, so the
percentage is a rough guide and alerting should use a low threshold. Volts outside
1-5 V are a fault, not a battery level.

Stored records a device re-sends with their own time after an outage (Milesight
``history``, the project LHT65N codec's ``Datalog``) are readings of that time
(``Reading.ts_ms``): written to InfluxDB where they belong, not handed to alerting as news.
Dragino's own ``DATALOG`` text is not parsed (its times are the codec server's local time).

What is not stored is kept: every top-level field of the codec output that gave no
reading or fault, except the labels that only restate what was read (:data:`LABELS`), is
listed in ``Message.unused`` (counters, IAQ, leak, datalog records, codec metadata), and
an uplink with nothing we read is ignored with reason ``no_known_field`` and those keys.
Gateway RSSI: the best (highest) ``rssi`` of the gateways that heard the uplink is the
device's signal, on ``<dev>``, kept only with other values (RSSI alone stores nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from core.types import Fault, FaultCode, Message, Quantity, Reading, sensor_id
from devices.base import DecodeError, DeviceSample, Profile, check_value, epoch_ms, iso_utc
from devices.common import (
    NO_KNOWN_FIELD,
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

# Channels (see the module docstring).
SHT_CHANNEL = "sht"
DS_CHANNEL = "ds"
# A Milesight EM300-TH: the simulator lays LoRaWAN devices out from it.
LAYOUT: Mapping[str | None, tuple[Quantity, ...]] = {
    None: (Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.BATTERY, Quantity.SIGNAL),
}

# Codec field -> (channel, quantity), for the fields read as they are.
FIELDS: dict[str, tuple[str | None, Quantity]] = {
    "temperature": (None, Quantity.TEMPERATURE),
    "humidity": (None, Quantity.HUMIDITY),
    "magnet": (None, Quantity.DOOR),
    "magnet_status": (None, Quantity.DOOR),
    "door": (None, Quantity.DOOR),
    "DOOR_OPEN_STATUS": (None, Quantity.DOOR),
    "TempC_SHT": (SHT_CHANNEL, Quantity.TEMPERATURE),
    "Hum_SHT": (SHT_CHANNEL, Quantity.HUMIDITY),
    "TempC_DS": (DS_CHANNEL, Quantity.TEMPERATURE),
    "TempC_TMP117": ("tmp117", Quantity.TEMPERATURE),
    "Ext_TempC_SHT": ("ext_sht", Quantity.TEMPERATURE),
    "Ext_Hum_SHT": ("ext_sht", Quantity.HUMIDITY),
    "TempC1": ("temp1", Quantity.TEMPERATURE),
    "TempC2": ("temp2", Quantity.TEMPERATURE),
    "TempC3": ("temp3", Quantity.TEMPERATURE),
    "Door_status": ("door", Quantity.DOOR),
    "externalTemperature": ("ext", Quantity.TEMPERATURE),
    "temperatureBoard": ("board", Quantity.TEMPERATURE),
}
# Probe values that mean "a probe should be here": No_connect without any of them is an
# absent DS18B20 (the LHT65's only probe type that sets the flag).
_PROBE_FIELDS = ("TempC_DS", "TempC_TMP117", "Ext_TempC_SHT")
# Fields that only label what the others say (probe type, mode, battery band, model):
# neither read nor listed as unused.
LABELS = frozenset({"Bat_status", "Ext_sensor", "Work_mode", "Node_type", "No_connect", "Ext"})
_DOOR_WORDS = {"open": True, "close": False, "closed": False}
# Browan TBDW100 (door/window) reports on this fPort; its ``status`` bit 0 is the door.
_BROWAN_DOOR_PORT = 100

# Battery chemistry per codec field: (volts at 0 %, volts at 100 %, unit divisor).
# Too narrow a range and a healthy cell reads empty (low-battery alerts); too wide and a
# dying one reads half full. Sources: Dragino's LHT65N battery bands (BAT status "ultra
# low" below 2.50 V, good above 2.65 V; the project's earlier 2.45-3.0 V mapping of its
# Li-MnO2 cell kept), LSN50v2's 3.6 V Li-SOCl2 pack, LDS02's two AAA cells, Elsys's 3.6 V
# lithium cell, Browan Tabs (the codec's own 2.5-4.0 V scale, fresh cell 3.6 V).
VOLT_RANGES: dict[str, tuple[float, float, float]] = {
    "lht": (2.45, 3.0, 1.0),  # BatV / BAT of LHT65, LHT65N
    "lht52": (2.45, 3.0, 1000.0),  # Bat_mV of the LHT52 status uplink
    "lsn50": (2.5, 3.6, 1.0),  # BatV of LSN50v2 (has ADC_CH0V)
    "lds02": (2.1, 3.0, 1.0),  # BAT_V
    "elsys": (2.8, 3.6, 1000.0),  # vdd, mV
    "browan": (2.5, 3.6, 1.0),  # battery with status: volts
}
# Stored records re-sent with their own time: (field, time key, time kind).
_RECORDS = (("history", "timestamp", "epoch"), ("Datalog", "time", "iso"))
# Records read from one uplink; a datalog re-send carries at most a few dozen (an LHT65N
# poll reply fits about 20 in a 222-byte frame). Past it the rest are left out: a payload
# is not a way to write thousands of points.
MAX_RECORDS = 64
# Below this a cell cannot run the radio; such a value is a decoding error, not 0 %.
_MIN_VOLTS, _MAX_VOLTS = 1.0, 5.0
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


def f_port(raw: Any) -> int | None:
    """The uplink's fPort, or None when absent or not a port number (it only refines)."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 255:
        return None
    return raw


def uplink(
    family: str,
    device: str,
    fields: Any,
    gateways: Any,
    *,
    ts_ms: int | None,
    seq: int | None,
    port: int | None = None,
) -> Message:
    """The message of one uplink from its codec output and gateway metadata.

    Args:
        family: ``chirpstack`` or ``tts``.
        device: the validated device id (lower-case DevEUI).
        fields: the codec output (``object`` / ``decoded_payload``); None if absent.
        gateways: the gateway list (``rxInfo`` / ``rx_metadata``); None if absent.
        ts_ms: the network server's receive time.
        seq: the frame counter.
        port: the uplink's fPort, when known (tells a Browan door uplink).

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
    used: set[str] = set()
    browan = "status" in fields and "battery" in fields
    for name, (channel, quantity) in FIELDS.items():
        if name in fields:
            used.add(name)
            raw = fields[name]
            if quantity is Quantity.DOOR:
                raw = door_state(raw, _DOOR_WORDS)
            check_value(sensor_id(device, channel), quantity, raw, readings, faults)
    if "externalTemperature2" in fields:
        used.add("externalTemperature2")
        _elsys_probes(device, fields["externalTemperature2"], readings, faults)
    if not any(name in fields for name in _PROBE_FIELDS) and fields.get("No_connect") is not None:
        # The decoder sets the key only when the probe is unplugged; its text is fixed.
        sensor = sensor_id(device, DS_CHANNEL)
        flag = str(fields["No_connect"])[:40]
        faults.append(Fault(sensor, Quantity.TEMPERATURE, FaultCode.ABSENT_PROBE, flag))
    if browan and port == _BROWAN_DOOR_PORT:
        used.add("status")
        _browan_door(device, fields["status"], readings, faults)
    for name, time_key, kind in _RECORDS:
        records = fields.get(name)
        if isinstance(records, list) and _records(device, records, time_key, kind, readings):
            used.add(name)
    _battery(device, fields, browan=browan, used=used, readings=readings, faults=faults)
    if readings or faults:  # RSSI alone is no reason to store an unknown device type
        rssi = _best_rssi(gateways)
        if rssi is not None:
            check_value(device, Quantity.SIGNAL, rssi, readings, faults)
    unused = [key for key in fields if key not in used and key not in LABELS]
    return telemetry(
        family, device, readings, faults, nothing=NO_KNOWN_FIELD, unused=unused, ts_ms=ts_ms,
        seq=seq,
    )  # fmt: skip


def _records(
    device: str, records: list[Any], time_key: str, kind: str, readings: list[Reading]
) -> bool:
    """Stored records re-sent with their own time, as readings of that time.

    Milesight ``history`` ({timestamp (epoch s), temperature, humidity, magnet_status...})
    and the project LHT65N codec's ``Datalog`` ({time (ISO), TempC_SHT, Hum_SHT, TempC_DS}).
    A record value that is not a measurement (a fault value, text) is left out: faults are
    of the present, not of a record. Returns whether any record was read.
    """
    found = False
    for record in records[:MAX_RECORDS]:
        if not isinstance(record, dict):
            continue
        raw_time = record.get(time_key)
        ts_ms = epoch_ms(raw_time) if kind == "epoch" else _iso_ms(raw_time)
        if ts_ms is None:
            continue
        for name, raw in record.items():
            if name not in FIELDS:
                continue
            channel, quantity = FIELDS[name]
            kept: list[Reading] = []
            value = door_state(raw, _DOOR_WORDS) if quantity is Quantity.DOOR else raw
            check_value(sensor_id(device, channel), quantity, value, kept, [])
            for reading in kept:
                readings.append(Reading(reading.sensor, quantity, reading.value, ts_ms))
                found = True
    return found


def _iso_ms(raw: Any) -> int | None:
    return epoch_ms(raw) if isinstance(raw, str) else None


def _elsys_probes(device: str, raw: Any, readings: list[Reading], faults: list[Fault]) -> None:
    """Elsys ``externalTemperature2``: one probe (a number) or several (a list)."""
    if not isinstance(raw, list):
        check_value(sensor_id(device, "ext2"), Quantity.TEMPERATURE, raw, readings, faults)
        return
    for index, value in enumerate(raw[:16], start=1):  # the ELT bus takes a few probes
        check_value(
            sensor_id(device, f"ext2-{index}"), Quantity.TEMPERATURE, value, readings, faults
        )


def _browan_door(device: str, raw: Any, readings: list[Reading], faults: list[Fault]) -> None:
    """Browan TBDW100 ``status``: bit 0 is the door, 1 open."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        check_value(device, Quantity.DOOR, float(raw & 1), readings, faults)
    else:
        check_value(device, Quantity.DOOR, raw, readings, faults)


def _battery(
    device: str,
    fields: Mapping[str, Any],
    *,
    browan: bool,
    used: set[str],
    readings: list[Reading],
    faults: list[Fault],
) -> None:
    """The battery level from whichever battery field the codec wrote."""
    if "battery" in fields:
        used.add("battery")
        if browan:
            _volts(device, fields["battery"], VOLT_RANGES["browan"], readings, faults)
        else:
            check_value(device, Quantity.BATTERY, fields["battery"], readings, faults)
        return
    bat_v = "lsn50" if "ADC_CH0V" in fields else "lht"  # LSN50v2 reports its ADC, LHTs not
    for name, kind in (("BatV", bat_v), ("BAT", "lht"), ("Bat_mV", "lht52"), ("BAT_V", "lds02"),
                       ("vdd", "elsys")):  # fmt: skip
        if name in fields:
            used.add(name)
            _volts(device, fields[name], VOLT_RANGES[kind], readings, faults)
            return


def _volts(
    sensor: str,
    raw: Any,
    scale: tuple[float, float, float],
    readings: list[Reading],
    faults: list[Fault],
) -> None:
    """A battery voltage as a percentage between the chemistry's empty and full volts."""
    empty, full, divisor = scale
    value = as_number(raw)
    if value is None:
        check_value(sensor, Quantity.BATTERY, raw, readings, faults)
        return
    volts = value / divisor
    if not _MIN_VOLTS <= volts <= _MAX_VOLTS:
        faults.append(Fault(sensor, Quantity.BATTERY, FaultCode.OUT_OF_RANGE, str(raw)[:40]))
        return
    percent = (volts - empty) / (full - empty) * 100.0
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

    A sample with Dragino channels (``sht``, ``ds``) is written as a Dragino LHT65N
    (``toFixed()`` strings, ``BatV`` volts; device-level temperature and humidity as the
    built-in sensor's); any other as a Milesight EM300 (numbers, battery percent, ``door``
    words).

    Raises:
        ValueError: for a channel or quantity these devices do not have.
    """
    dragino = any(channel in _PROBES for channel in sample.values if channel is not None)
    device_table = _DRAGINO if dragino else _MILESIGHT
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


def _to_volts(percent: float) -> float:
    """Battery percent back to LHT65N volts (inverse of the ``lht`` range)."""
    empty, full, _ = VOLT_RANGES["lht"]
    return round(empty + percent / 100.0 * (full - empty), 3)


_Format = tuple[str, Callable[[float], Any]]
_DOOR_FORMAT: _Format = ("door", lambda v: "open" if v >= 0.5 else "close")
# Milesight EM300: numbers at the codec's precision (int16 / 10, uint8 / 2, uint8).
_MILESIGHT: dict[Quantity, _Format] = {
    Quantity.TEMPERATURE: ("temperature", rounded(1)),
    Quantity.HUMIDITY: ("humidity", lambda v: round(v * 2) / 2),
    Quantity.BATTERY: ("battery", round),
    Quantity.DOOR: _DOOR_FORMAT,
}
# Dragino LHT65N: toFixed() strings, battery in volts. A sample's device-level temperature
# and humidity are the built-in sensor's (they decode to the ``sht`` channel, which ingest
# attributes to a registered ``<dev>``: docs/design/sensor-ids.md).
_DRAGINO: dict[Quantity, _Format] = {
    Quantity.TEMPERATURE: ("TempC_SHT", lambda v: f"{v:.2f}"),
    Quantity.HUMIDITY: ("Hum_SHT", lambda v: f"{v:.1f}"),
    Quantity.BATTERY: ("BatV", _to_volts),
}
_PROBES: dict[str, dict[Quantity, _Format]] = {
    SHT_CHANNEL: {
        Quantity.TEMPERATURE: ("TempC_SHT", lambda v: f"{v:.2f}"),
        Quantity.HUMIDITY: ("Hum_SHT", lambda v: f"{v:.1f}"),
    },
    DS_CHANNEL: {Quantity.TEMPERATURE: ("TempC_DS", lambda v: f"{v:.2f}")},
}


def uplink_port(fields: Mapping[str, Any]) -> int:
    """The fPort an encoded uplink goes on: Dragino's 2, Milesight's 85."""
    return 2 if any(name in fields for name in ("TempC_SHT", "TempC_DS", "BatV")) else 85


def iso_nanos(ts_ms: int, zone: str = "Z") -> str:
    """Epoch ms as the nanosecond ISO time network servers write (``...06.789000000Z``)."""
    return f"{iso_utc(ts_ms)[:-1]}000000{zone}"
