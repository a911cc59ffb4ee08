"""The device-family plugin contract and the value checks every decoder shares.

A family is one subpackage of ``devices/`` exposing ``FAMILY``, an object with:

- ``name``: short id (``tasmota``), stored with discovered devices and on sensors;
- ``subscriptions``: MQTT topic filters that carry its messages;
- ``profile``: reporting interval, availability and fault semantics (:class:`Profile`);
- ``matches(levels)``: whether a topic (split on ``/``) is one of its own;
- ``decode(topic, payload) -> Message``: never raises anything but :class:`DecodeError`;
- ``encode(sample) -> list[Publish]`` and ``encode_status(device_id, online)``: the
  device's native MQTT output, used by the simulator and by the round-trip tests;
- golden cases in ``devices/<family>/testdata/*.yaml``, run by the shared conformance suite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson  # noqa: TID251 - the one import site

from core.types import Fault, FaultCode, Message, Quantity, Reading


class DecodeError(Exception):
    """A payload that cannot be decoded; ``reason`` is a short, countable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Publish:
    """One MQTT message a device would publish."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1


# A channel's value for one quantity: a number, or the fault the device would report.
SampleValue = float | FaultCode


@dataclass(frozen=True, slots=True)
class DeviceSample:
    """What one device reports at one instant, input of :meth:`Family.encode`.

    ``values`` maps a channel (``None`` for the device itself) to quantity -> value. The
    channel naming is the family's (``DS18B20-1``, ``temperature:101``, ``case_temp``).
    """

    device_id: str
    ts_ms: int
    values: Mapping[str | None, Mapping[Quantity, SampleValue]]
    seq: int | None = None
    # IANA zone of a device whose payload carries local wall-clock time (Tasmota's Time
    # with its Timezone set to the store's); None means UTC.
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """How a family behaves on the wire, for alerting and the simulator."""

    interval_s: float  # typical reporting interval
    availability: str  # "lwt" (retained online/offline) or "staleness" (LoRaWAN)
    has_timestamp: bool  # whether payloads carry the device's time
    # Faults the family can express on the wire (others become a missing key or nothing).
    fault_codes: frozenset[FaultCode] = field(default_factory=frozenset)
    report_on_change: bool = False  # Shelly Plus add-on: silent while stable
    # Smallest step the wire format keeps per quantity (encode/decode round trips are
    # compared within it); quantities not listed keep 0.01.
    resolution: Mapping[Quantity, float] = field(default_factory=dict)


class Family(Protocol):
    """A device family plugin (see the module docstring)."""

    name: str
    subscriptions: tuple[str, ...]
    profile: Profile
    # A typical device: channel (None = the device itself) -> the quantities it reports.
    # The simulator lays out devices from it and the round-trip suite samples it.
    layout: Mapping[str | None, tuple[Quantity, ...]]

    def matches(self, levels: list[str]) -> bool:
        """Whether a topic split on ``/`` belongs to this family."""
        ...

    def decode(self, topic: str, payload: bytes) -> Message:
        """Decode one message; raise only DecodeError."""
        ...

    def encode(self, sample: DeviceSample) -> list[Publish]:
        """The native message(s) carrying ``sample``."""
        ...

    def encode_status(self, device_id: str, online: bool) -> Publish:
        """The native availability message (retained), for LWT families."""
        ...


# Plausible ranges: values outside are faults (OUT_OF_RANGE), not measurements. The
# temperature range is the DS18B20's -55..125 °C with margin; nothing in a store is hotter.
VALID_RANGE: dict[Quantity, tuple[float, float]] = {
    Quantity.TEMPERATURE: (-60.0, 125.0),
    Quantity.HUMIDITY: (0.0, 100.0),
    Quantity.DOOR: (0.0, 1.0),
    Quantity.BATTERY: (0.0, 100.0),
    Quantity.SIGNAL: (-150.0, 0.0),
}

# Sentinel values that firmware publishes instead of a temperature.
_TEMPERATURE_SENTINELS: dict[float, FaultCode] = {
    85.0: FaultCode.POWER_ON_RESET,  # DS18B20 power-on register value, valid CRC
    -127.0: FaultCode.DISCONNECTED,  # DallasTemperature DEVICE_DISCONNECTED_C
    -196.6: FaultCode.DISCONNECTED,  # DEVICE_DISCONNECTED_F
    -254.0: FaultCode.DISCONNECTED,  # newer DallasTemperature: open fault
    -253.0: FaultCode.DISCONNECTED,  # short to ground
    327.67: FaultCode.ABSENT_PROBE,  # Dragino 0x7FFF / 100
}
_NAN_TEXTS = frozenset({"nan", "-nan", "none", "unknown", "unavailable"})


def check_value(
    sensor: str, quantity: Quantity, raw: Any, readings: list[Reading], faults: list[Fault]
) -> None:
    """Classify one raw value: append a Reading, or a Fault saying why it is not one.

    Accepts numbers and numeric strings (Dragino's decoder returns ``"3.02"``); ``None``,
    ``nan``, sentinel values, non-numbers and out-of-range values become faults.
    """
    if type(raw) is float:  # the common case first: a plain number in range
        low, high = VALID_RANGE[quantity]
        if low <= raw <= high and (
            quantity is not Quantity.TEMPERATURE or raw not in _TEMPERATURE_SENTINELS
        ):
            readings.append(Reading(sensor, quantity, raw))
            return
    if raw is None:
        faults.append(Fault(sensor, quantity, FaultCode.NULL, "null"))
        return
    if isinstance(raw, bool):
        if quantity is Quantity.DOOR:
            readings.append(Reading(sensor, quantity, 1.0 if raw else 0.0))
        else:
            faults.append(Fault(sensor, quantity, FaultCode.UNPARSABLE, str(raw).lower()))
        return
    if isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:  # a JSON integer with hundreds of digits
            faults.append(Fault(sensor, quantity, FaultCode.OUT_OF_RANGE, repr(raw)[:40]))
            return
        low, high = VALID_RANGE[quantity]
        if low <= value <= high and (
            quantity is not Quantity.TEMPERATURE or value not in _TEMPERATURE_SENTINELS
        ):  # the common case first: a plain number in range (only faults need its text)
            readings.append(Reading(sensor, quantity, value))
            return
        text = repr(raw)[:40]
    elif isinstance(raw, str):
        text = raw.strip()
        if text.lower() in _NAN_TEXTS:
            faults.append(Fault(sensor, quantity, FaultCode.NAN, text[:40]))
            return
        if text.lower() in ("no_connect", "sensor no connection"):
            faults.append(Fault(sensor, quantity, FaultCode.ABSENT_PROBE, text[:40]))
            return
        try:
            value = float(text)
        except ValueError:
            faults.append(Fault(sensor, quantity, FaultCode.UNPARSABLE, text[:40]))
            return
    else:
        faults.append(Fault(sensor, quantity, FaultCode.UNPARSABLE, type(raw).__name__))
        return
    if math.isnan(value):
        faults.append(Fault(sensor, quantity, FaultCode.NAN, text[:40]))
        return
    if quantity is Quantity.TEMPERATURE and (code := _TEMPERATURE_SENTINELS.get(value)):
        faults.append(Fault(sensor, quantity, code, text[:40]))
        return
    low, high = VALID_RANGE[quantity]
    if not low <= value <= high:
        faults.append(Fault(sensor, quantity, FaultCode.OUT_OF_RANGE, text[:40]))
        return
    readings.append(Reading(sensor, quantity, value))


def parse_json_object(payload: bytes) -> dict[str, Any]:
    """A JSON object from a payload, or DecodeError (``bad_json`` / ``not_object``).

    orjson parses the well-formed UTF-8 that devices send, 8x faster than ``json``; what it
    refuses is handed to ``json``, which accepts more (``NaN`` literals, a BOM, UTF-16)
    and says why it does not. (One difference stays: an integer beyond 64 bits is a float
    with orjson, exact with ``json``; no field of ours holds one.)
    """
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = _json_loads(payload)
    if not isinstance(data, dict):
        raise DecodeError("not_object", f"expected a JSON object, got {type(data).__name__}")
    return data


def _json_loads(payload: bytes) -> Any:
    """The standard library's parse, its errors as DecodeError."""
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError("bad_json", f"not JSON: {str(exc)[:120]}") from None
    except RecursionError:
        raise DecodeError("bad_json", "JSON nested too deeply") from None


def parse_text(payload: bytes, *, limit: int = 256) -> str:
    """A short UTF-8 text payload (plain-value topics), or DecodeError."""
    if len(payload) > limit:
        raise DecodeError("too_long", f"{len(payload)} bytes for a plain-value topic")
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DecodeError("bad_encoding", "payload is not UTF-8") from None


def epoch_ms(value: Any) -> int | None:
    """Epoch seconds (int/float) or an ISO 8601 string with zone -> epoch ms, else None.

    Returns None for values that are not a time at all; absurd-but-valid times are
    returned as they are, for ingest to judge against the receive time.
    """
    if type(value) is int and -100_000_000_000 < value < 100_000_000_000:
        return value * 1000  # epoch seconds, the common case (exact, as below)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # a JSON integer beyond float range
            return None
        if not math.isfinite(seconds):
            return None
        if seconds > 1e11:  # milliseconds given where seconds were expected
            seconds /= 1000.0
        if not -1e11 < seconds < 1e11:
            return None
        return round(seconds * 1000)
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return _parse_long_fraction(text)
        if parsed.tzinfo is None:
            return None
        return round(parsed.timestamp() * 1000)
    return None


def _parse_long_fraction(text: str) -> int | None:
    """ISO times with nanosecond fractions (ChirpStack, TTS) that Python 3.11 refuses."""
    head, dot, rest = text.partition(".")
    if not dot:
        return None
    digits = ""
    for ch in rest:
        if not ch.isdigit():
            break
        digits += ch
    zone = rest[len(digits) :]
    if not digits:
        return None
    try:
        parsed = datetime.fromisoformat(f"{head}.{digits[:6]}{zone}".replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return round(parsed.timestamp() * 1000)


def iso_utc(ts_ms: int) -> str:
    """Epoch ms as ``2026-11-23T04:05:06.789Z``."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


_FAULT_WIRE: dict[FaultCode, float | str | None] = {
    FaultCode.POWER_ON_RESET: 85.0,
    FaultCode.DISCONNECTED: -127.0,
    FaultCode.NAN: "nan",
    FaultCode.NULL: None,
    FaultCode.ABSENT_PROBE: 327.67,
    FaultCode.UNPARSABLE: "err",
    FaultCode.OUT_OF_RANGE: 999.0,
}


def fault_wire_value(code: FaultCode) -> float | str | None:
    """The typical raw value a device puts on the wire for a fault (for encoders)."""
    return _FAULT_WIRE[code]
