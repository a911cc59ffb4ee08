"""Decoding and encoding helpers shared by the third-party families.

:mod:`devices.base` holds the value checks every decoder uses; this module holds what the
ESPHome, Tasmota, Shelly, ChirpStack and TTS families add on top of them: id validation,
typed access to JSON fields, availability (LWT) payloads, Fahrenheit probes, and the
iteration over a :class:`~devices.base.DeviceSample` that every encoder shares. It is a
plain module, not a family subpackage, so :func:`devices.families` does not load it as one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from core.types import Fault, FaultCode, Message, Quantity, Reading
from devices.base import (
    DecodeError,
    DeviceSample,
    Profile,
    SampleValue,
    check_value,
    epoch_ms,
    fault_wire_value,
    parse_text,
)

_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")
# Channels end up after "<device>:" in sensor ids (core.chain._SENSOR_ID).
_CHANNEL = re.compile(r"^[A-Za-z0-9_.\-:]{1,64}$")
# One message never carries more values than this; a payload that does is junk or an
# attempt to flood the store, and is refused whole.
MAX_VALUES = 256
# Unused keys kept per message (and so per device in the discovered listing). Too low and
# a firmware's new field can hide behind others; too high and one junk payload with
# thousands of keys bloats the registry row of its device.
MAX_UNUSED_KEYS = 32
# Longest unused key kept: real firmware keys are short (``TempC_TMP117``); longer ones
# are cut, so a hostile key cannot carry a payload into the registry.
MAX_KEY_CHARS = 48
# Ignored-message reason codes shared by several families (each is a metric label value:
# a short, fixed set, never built from payload text).
RETAINED_CLEARED = "retained_cleared"
NO_KNOWN_FIELD = "no_known_field"

# DS18B20 sentinels as firmware in °F mode prints them: 85 °C and -127 °C converted.
_FAHRENHEIT_SENTINELS: dict[float, FaultCode] = {
    185.0: FaultCode.POWER_ON_RESET,
    -196.6: FaultCode.DISCONNECTED,
}

_T = TypeVar("_T")


def check_device(device: str) -> str:
    """Return ``device`` if it is a valid device id, else raise ``bad_device_id``.

    Args:
        device: the id as read from the topic or payload.

    Returns:
        The same id, for use in an expression.

    Raises:
        DecodeError: ``bad_device_id`` when the id could not be stored safely.
    """
    if not _DEVICE.match(device):
        raise DecodeError("bad_device_id", f"invalid device id {device[:100]!r}")
    return device


def check_channel(channel: str) -> str:
    """Return ``channel`` if it can follow ``<device>:`` in a sensor id, else raise.

    Args:
        channel: a probe or component name (``DS18B20-1``, ``temperature:100``).

    Returns:
        The same channel.

    Raises:
        DecodeError: ``bad_channel`` for empty, long or unsafe names.
    """
    if not _CHANNEL.match(channel):
        raise DecodeError("bad_channel", f"invalid channel {channel[:64]!r}")
    return channel


def optional(data: Mapping[str, Any], key: str, kind: type[_T]) -> _T | None:
    """The value of ``key`` if it has type ``kind``; None when absent or JSON null.

    Args:
        data: a decoded JSON object.
        key: the field to read.
        kind: the expected Python type (``dict``, ``list``, ``str``, ``int``).

    Returns:
        The value, or None when the field is missing or null.

    Raises:
        DecodeError: ``bad_type`` when the field holds another type (booleans are not
            accepted where an int is expected).
    """
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DecodeError("bad_type", f"{key} must be {kind.__name__}, not {type(value).__name__}")
    return value


def as_number(raw: Any) -> float | None:
    """A finite float from a JSON number or numeric string, else None.

    Used before a unit conversion; whatever is not a plain number goes unchanged to
    :func:`devices.base.check_value`, which names the fault.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def check_fahrenheit(sensor: str, raw: Any, readings: list[Reading], faults: list[Fault]) -> None:
    """Classify a temperature given in °F, as a reading in °C or a fault.

    DS18B20 sentinels are recognised in the original unit (185.0 °F is the power-on
    85 °C, -196.6 °F the disconnected -127 °C) before conversion, so rounding cannot hide
    them. The °C value keeps two decimals: °F with one decimal is a 0.06 °C step.
    """
    value = as_number(raw)
    if value is None:  # null, "nan", text: classified as they are
        check_value(sensor, Quantity.TEMPERATURE, raw, readings, faults)
        return
    if code := _FAHRENHEIT_SENTINELS.get(value):
        faults.append(Fault(sensor, Quantity.TEMPERATURE, code, str(raw)[:40]))
        return
    check_value(
        sensor, Quantity.TEMPERATURE, round((value - 32.0) * 5.0 / 9.0, 2), readings, faults
    )


# Switch words of ESPHome binary sensors and Tasmota switches; ON is the active state.
ON_OFF: Mapping[str, bool] = {"on": True, "off": False}


def on_off(door: float) -> str:
    """A door value as an ``ON`` (open) / ``OFF`` switch state, for encoders."""
    return "ON" if door >= 0.5 else "OFF"


def door_state(raw: Any, words: Mapping[str, bool]) -> Any:
    """Map a firmware's door words (``ON``, ``open``...) to a bool; other values unchanged.

    Matching ignores case. Values that are not one of ``words`` are returned as they are,
    so :func:`devices.base.check_value` classifies them (``1``/``0`` as numbers, anything
    else unparsable).
    """
    if isinstance(raw, str):
        return words.get(raw.strip().lower(), raw)
    return raw


def timestamp(raw: Any) -> int:
    """Epoch milliseconds from a wire time (epoch seconds or ISO 8601 with zone).

    Raises:
        DecodeError: ``bad_timestamp`` when ``raw`` is not a time.
    """
    ts_ms = epoch_ms(raw)
    if ts_ms is None:
        raise DecodeError("bad_timestamp", f"{str(raw)[:60]!r} is not a time")
    return ts_ms


def local_time(raw: Any) -> datetime:
    """A device wall-clock time (ISO 8601); it may carry a zone (Tasmota SetOption52).

    Raises:
        DecodeError: ``bad_timestamp`` when ``raw`` is not an ISO 8601 string.
    """
    if not isinstance(raw, str):
        raise DecodeError("bad_timestamp", f"time must be a string, not {type(raw).__name__}")
    try:
        return datetime.fromisoformat(raw.strip())
    except ValueError:
        raise DecodeError("bad_timestamp", f"{raw[:60]!r} is not an ISO 8601 time") from None


def availability(family: str, device: str, payload: bytes, online: str, offline: str) -> Message:
    """Decode a retained LWT payload (``online``/``offline``, ``true``/``false``...).

    Args:
        family: the family name for the message.
        device: the validated device id.
        payload: the raw MQTT payload.
        online: the word meaning online (compared without case).
        offline: the word meaning offline.

    Returns:
        A message with ``online`` set; an empty payload (a retained message being
        cleared, e.g. when a device is decommissioned) is ignored.

    Raises:
        DecodeError: ``bad_status`` for any other word, or a parse_text error.
    """
    text = parse_text(payload)
    if not text:
        return Message(
            family=family,
            device_id=device,
            ignored=RETAINED_CLEARED,
            detail="empty retained status (a device decommissioned)",
        )
    word = text.lower()
    if word not in (online, offline):
        raise DecodeError("bad_status", f"status must be {online} or {offline}, got {text[:40]!r}")
    return Message(family=family, device_id=device, online=word == online)


def telemetry(
    family: str,
    device: str,
    readings: list[Reading],
    faults: list[Fault],
    *,
    nothing: str,
    detail: str = "",
    unused: list[str] | tuple[str, ...] = (),
    ts_ms: int | None = None,
    local: datetime | None = None,
    seq: int | None = None,
) -> Message:
    """The message for decoded values, or an ignored one when there are none.

    Args:
        family: the family name.
        device: the validated device id.
        readings: the readings found.
        faults: the faults found.
        nothing: the reason code when the message holds no value (``no_known_field``).
        detail: what the ignored message held, for a person (defaults to its unused keys).
        unused: payload keys decoded but not stored (see :func:`unused_keys`).
        ts_ms: the device's UTC time, if the payload has one.
        local: the device's wall-clock time, if it has that instead.
        seq: the device's sequence number (LoRaWAN frame counter).

    Raises:
        DecodeError: ``too_many_values`` past :data:`MAX_VALUES`.
    """
    if len(readings) + len(faults) > MAX_VALUES:
        raise DecodeError("too_many_values", f"{len(readings) + len(faults)} values in one message")
    kept = unused_keys(unused)
    if not readings and not faults:
        text = detail or (f"keys: {', '.join(kept)}" if kept else "no value")
        return Message(
            family=family, device_id=device, ignored=nothing, detail=text[:200], unused=kept
        )
    return Message(
        family=family,
        device_id=device,
        readings=tuple(readings),
        faults=tuple(faults),
        ts_ms=ts_ms,
        local_time=local,
        seq=seq,
        unused=kept,
    )


def unused_keys(keys: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Unused payload keys as a message keeps them: sorted, unique, each and all bounded.

    A payload is attacker-controlled text: at most :data:`MAX_UNUSED_KEYS` keys of at most
    :data:`MAX_KEY_CHARS` characters are kept, so listing them with the device cannot
    grow the registry without bound.
    """
    if not keys:
        return ()
    cut = sorted({str(key)[:MAX_KEY_CHARS] for key in keys})
    return tuple(cut[:MAX_UNUSED_KEYS])


def sample_values(
    sample: DeviceSample, profile: Profile
) -> Iterator[tuple[str | None, Quantity, SampleValue]]:
    """Each (channel, quantity, value) of a sample that the family can put on the wire.

    Faults the family cannot express are skipped: the real device would publish nothing
    for that value (Tasmota drops the key of a failed probe, for instance).
    """
    for channel, values in sample.values.items():
        for quantity, value in values.items():
            if not isinstance(value, FaultCode) or value in profile.fault_codes:
                yield channel, quantity, value


def wire(value: SampleValue, number: Callable[[float], Any]) -> Any:
    """The raw value an encoder writes: ``number(value)``, or the fault's firmware value.

    Fault values are never passed through ``number``: rounding 327.67 to one decimal would
    turn Dragino's absent-probe sentinel into a temperature.
    """
    return fault_wire_value(value) if isinstance(value, FaultCode) else number(value)


def rounded(places: int) -> Callable[[float], float]:
    """A number formatter for :func:`wire` keeping ``places`` decimals."""
    return lambda value: round(value, places)


def dumps(body: Any) -> bytes:
    """Compact JSON, as firmware sends it."""
    return json.dumps(body, separators=(",", ":")).encode()
