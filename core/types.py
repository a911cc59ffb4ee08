"""Domain types shared by every package: quantities, readings, faults, decoded messages.

A *device* is what publishes over MQTT (an ESPHome node, a Tasmota topic, a Shelly id, a
LoRaWAN DevEUI, a coldchain device id). A *sensor* is ``<device_id>`` or
``<device_id>:<channel>`` when one device carries several probes; every quantity a sensor
reports (temperature, humidity, door, battery, signal) is stored under the sensor id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def value_type(cls: type[_T]) -> type[_T]:
    """A frozen slotted dataclass to the type checker; at run time the same without the
    run-time freeze. A frozen dataclass's ``__init__`` stores each field through
    ``object.__setattr__``, 3x the cost of the object itself, and ingest builds a message,
    its readings and (for alerting) observations for every MQTT message: 1.3 us of a
    ~10 us budget for a Message alone (docs/performance.md). Equality and hashing are the
    frozen ones; ``mypy --strict`` refuses any assignment to a field, as for ``frozen``.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


class Quantity(StrEnum):
    """What a reading measures; the value is also the InfluxDB measurement name."""

    TEMPERATURE = "temperature"  # degrees Celsius
    HUMIDITY = "humidity"  # percent relative humidity
    DOOR = "door"  # 1.0 open, 0.0 closed
    BATTERY = "battery"  # percent
    SIGNAL = "signal"  # dBm


class FaultCode(StrEnum):
    """Why a value is a sensor fault rather than a measurement (DESIGN.md §4)."""

    POWER_ON_RESET = "power_on_reset"  # DS18B20 scratch-pad default: exactly 85.0 °C
    DISCONNECTED = "disconnected"  # DallasTemperature DEVICE_DISCONNECTED_C: -127 °C (and kin)
    NAN = "nan"  # ESPHome publishes "nan" / "None" on a CRC error
    NULL = "null"  # Shelly "tC": null, JSON null from ESPHome publish_json
    ABSENT_PROBE = "absent_probe"  # Dragino 327.67 (0x7FFF / 100) or "No_connect"
    UNPARSABLE = "unparsable"  # a string that is not a number
    OUT_OF_RANGE = "out_of_range"  # outside what the quantity can physically be


@value_type
class Reading:
    """One measured value of one quantity from one sensor, as a device reported it.

    ``ts_ms`` is set only for a stored record the device re-sends with its own time (a
    LoRaWAN datalog after an outage): the value is of that moment, not the message's.
    """

    sensor: str
    quantity: Quantity
    value: float
    ts_ms: int | None = None


@value_type
class Fault:
    """A value that a sensor reported but that is a fault, not a measurement."""

    sensor: str
    quantity: Quantity
    code: FaultCode
    raw: str


@value_type
class Message:
    """Everything one MQTT message said, decoded by its device family.

    ``ts_ms`` is the device's UTC timestamp when the payload carries one; ``local_time`` is a
    device wall-clock time without zone (Tasmota's ``Time``), resolved by ingest with the
    store's timezone. When neither is set, ingest stamps the receive time.
    """

    family: str
    device_id: str
    readings: tuple[Reading, ...] = ()
    faults: tuple[Fault, ...] = ()
    online: bool | None = None
    ts_ms: int | None = None
    local_time: datetime | None = None
    seq: int | None = None
    # Set when the message is valid but carries nothing we store: a short reason code
    # (``no_known_field``, ``not_a_quantity``...), counted per family and reason and listed
    # with the device; ``detail`` says what exactly (the entity, the keys).
    ignored: str | None = None
    detail: str = ""
    # Keys (or entities) of the payload that were decoded but not stored: firmware fields
    # coldchain does not read. Listed with the device, so nothing a device reports vanishes
    # unseen (a new probe type, a battery field under another name).
    unused: tuple[str, ...] = ()

    @property
    def sensors(self) -> tuple[str, ...]:
        """Distinct sensor ids this message mentions, in order of first appearance."""
        seen: dict[str, None] = {}
        for reading in self.readings:
            seen.setdefault(reading.sensor, None)
        for fault in self.faults:
            seen.setdefault(fault.sensor, None)
        return tuple(seen)


def sensor_id(device_id: str, channel: str | None = None) -> str:
    """The sensor id of a device's channel: ``device`` or ``device:channel``."""
    return device_id if not channel else f"{device_id}:{channel}"


def split_sensor_id(sensor: str) -> tuple[str, str | None]:
    """Inverse of :func:`sensor_id`: ``"dev:a:b"`` -> ``("dev", "a:b")``."""
    device, sep, channel = sensor.partition(":")
    return device, (channel if sep else None)


FieldValue = float | int | str | bool


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point: measurement, tags (sorted by key), fields, time in milliseconds."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    ts_ms: int
