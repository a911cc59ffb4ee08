"""ESPHome's MQTT component: one plain-value topic per entity, a retained status LWT.

State topics, retained by default (``<prefix>`` is the ``topic_prefix``, by default the
node name; it may have several levels, e.g. ``coldchain/s042/cr-s042-wic01``)::

    <prefix>/sensor/probe_temperature/state       3.19
    <prefix>/sensor/probe_temperature/state       nan        (CRC error; "None" if the
                                                              node publishes NaN as None)
    <prefix>/binary_sensor/door/state             ON         (device_class door: open)
    <prefix>/status                               online | offline   (retained LWT)

The device id is the last level of the prefix (``cr-s042-wic01``) and the sensor id
``<device>:<object_id>`` (``cr-s042-wic01:probe_temperature``): an ESPHome node is one
device whose entities are its channels. Payloads have no timestamp.

The quantity is inferred from the words of the object id (the entity name in snake case),
in English, Spanish and Portuguese since the nodes are named in the field (accented
letters arrive as ``_``: ``Batería`` is ``bater_a``):

- ``temp``, ``temperature``, ``temperatura``, ``tmp``, ``t`` (``air_t``) -> temperature,
  and ``probe`` / ``sonda`` when no other quantity word is present;
- ``hum``, ``humidity``, ``humedad``, ``umidade``, ``humidade``, ``rh`` -> humidity (%);
- ``batt``, ``battery``, ``bat``, ``bateria`` (``bater_a``), ``pila`` -> battery (%);
- ``rssi``, ``signal``, ``wifi``, ``senal`` (``se_al``), ``sinal`` -> signal (dBm, the
  ``wifi_signal`` platform's unit);
- a ``binary_sensor`` named ``door``, ``puerta``, ``porta``, ``portao``, ``reed``,
  ``contact``, ``contacto`` or ``contato`` -> door, ``ON`` = open (ESPHome's door device
  class).

Assumptions: an object id naming two quantities (``battery_temperature``) or a unit we
cannot use (``battery_voltage``, ``wifi_signal_percent``) is not guessed at; such entities,
and any other (``uptime``, a ``binary_sensor`` that is not a door), give an ignored
message. An empty payload is a retained message being cleared and is ignored as well.
Whether a state was retained is the ingester's business, not the decoder's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from core.types import Fault, FaultCode, Message, Quantity, Reading, sensor_id
from devices.base import DecodeError, DeviceSample, Profile, Publish, check_value, parse_text
from devices.common import (
    ON_OFF,
    RETAINED_CLEARED,
    availability,
    check_channel,
    check_device,
    door_state,
    on_off,
    sample_values,
    telemetry,
    unused_keys,
    wire,
)

# Ignored-message reason: an entity whose name says nothing we store (uptime, a switch).
NOT_A_QUANTITY = "not_a_quantity"

_SENSOR, _BINARY = "sensor", "binary_sensor"
# ESPHome makes an object id from the entity's name: lower case, spaces to "_", and every
# other character outside [a-z0-9_-] to "_", so "Batería" arrives as "bater_a" and
# "Señal WiFi" as "se_al_wifi". The word lists hold those mangled forms too.
_WORDS: dict[str, Quantity] = {
    **dict.fromkeys(
        ("temp", "temperature", "temperatura", "tmp", "t", "temperatur"), Quantity.TEMPERATURE
    ),
    **dict.fromkeys(("hum", "humidity", "humedad", "umidade", "humidade", "rh"), Quantity.HUMIDITY),
    **dict.fromkeys(("batt", "battery", "bat", "bateria", "bater", "pila"), Quantity.BATTERY),
    **dict.fromkeys(("rssi", "signal", "wifi", "senal", "sinal"), Quantity.SIGNAL),
}
_PROBE_WORDS = frozenset({"probe", "sonda"})
_DOOR_WORDS = frozenset(
    {"door", "puerta", "porta", "reed", "contact", "contacto", "contato", "portao"}
)
# Units that make the value something else than the quantity's unit (voltage in English,
# Spanish and Portuguese: "tensión" arrives as "tensi_n", "tensão" as "tens_o").
_OTHER_UNITS = frozenset(
    {
        "voltage", "volt", "volts", "voltaje", "voltios", "tension", "tensi", "tensao", "tens",
        "percent", "pct", "porcentaje", "porcentagem",
    }
)  # fmt: skip
# accuracy_decimals per quantity in the encoder (dallas_temp's own default is 1; 2 keeps
# the DS18B20's 0.0625 °C steps visible). Doors are ON/OFF.
_DECIMALS: dict[Quantity, int] = {
    Quantity.TEMPERATURE: 2,
    Quantity.HUMIDITY: 1,
    Quantity.BATTERY: 0,
    Quantity.SIGNAL: 0,
}


def quantity_of(object_id: str, binary: bool) -> Quantity | None:
    """The quantity an entity reports, from the words of its object id.

    Args:
        object_id: the entity's object id (``probe_temperature``, ``air_t``, ``door``).
        binary: whether it is a ``binary_sensor``.

    Returns:
        The quantity, or None when the entity is nothing we store or is ambiguous.
    """
    # Words without their trailing digits: "temp2" and "probe_1" name the same thing.
    words = {word.rstrip("0123456789") for word in re.split(r"[^a-z0-9]+", object_id.lower())}
    if binary:
        return Quantity.DOOR if words & _DOOR_WORDS else None
    if words & _OTHER_UNITS:
        return None
    found = {_WORDS[word] for word in words if word in _WORDS}
    if not found and words & _PROBE_WORDS:
        return Quantity.TEMPERATURE
    return found.pop() if len(found) == 1 else None


class ESPHomeFamily:
    """The ``esphome`` device family (MQTT component, no native API)."""

    name = "esphome"
    # topic_prefix defaults to the node name; multi-level prefixes such as
    # "coldchain/s042/cr-s042-wic01" (research §A.1) need the deeper filters. A three-level
    # "+/+/+/status" is left out: it would overlap native's "coldchain/v1/+/status" and
    # some brokers deliver overlapping matches twice. Give such nodes a short status topic.
    subscriptions = (
        "+/sensor/+/state",
        "+/binary_sensor/+/state",
        "+/+/sensor/+/state",
        "+/+/binary_sensor/+/state",
        "+/+/+/sensor/+/state",
        "+/+/+/binary_sensor/+/state",
        "+/status",
        "+/+/status",
    )
    profile = Profile(
        interval_s=60.0,  # dallas_temp's default update_interval
        availability="lwt",
        has_timestamp=False,
        # dallas_temp publishes NaN on a CRC error and passes the 85.0 power-on value.
        fault_codes=frozenset({FaultCode.NAN, FaultCode.POWER_ON_RESET}),
        resolution={quantity: 10.0**-decimals for quantity, decimals in _DECIMALS.items()},
    )

    layout: Mapping[str | None, tuple[Quantity, ...]] = {
        "case_temp": (Quantity.TEMPERATURE,),
        "air_humidity": (Quantity.HUMIDITY,),
        "door": (Quantity.DOOR,),
        "wifi_signal": (Quantity.SIGNAL,),
    }

    def matches(self, levels: list[str]) -> bool:
        if _foreign(levels):
            return False
        if len(levels) >= 4 and levels[-1] == "state" and levels[-3] in (_SENSOR, _BINARY):
            return True
        return len(levels) >= 2 and levels[-1] == "status"

    def decode(self, topic: str, payload: bytes) -> Message:
        levels = topic.split("/")
        if not self.matches(levels):
            raise DecodeError("bad_topic", f"not an ESPHome state or status topic: {topic[:120]}")
        if levels[-1] == "status":
            device = check_device(levels[-2])
            return availability(self.name, device, payload, "online", "offline")
        device = check_device(levels[-4])
        object_id = check_channel(levels[-2])
        binary = levels[-3] == _BINARY
        text = parse_text(payload)
        entity = f"{levels[-3]}/{object_id}"
        if not text:
            return Message(
                family=self.name,
                device_id=device,
                ignored=RETAINED_CLEARED,
                detail=f"{entity}: empty retained state",
            )
        quantity = quantity_of(object_id, binary)
        if quantity is None:
            return Message(
                family=self.name,
                device_id=device,
                ignored=NOT_A_QUANTITY,
                detail=f"{entity} = {text[:40]!r}: its name says no quantity we store",
                unused=unused_keys([entity]),
            )
        readings: list[Reading] = []
        faults: list[Fault] = []
        raw = door_state(text, ON_OFF) if binary else text
        check_value(sensor_id(device, object_id), quantity, raw, readings, faults)
        return telemetry(self.name, device, readings, faults, nothing="no value")

    def encode(self, sample: DeviceSample) -> list[Publish]:
        publishes = []
        for channel, quantity, value in sample_values(sample, self.profile):
            if channel is None:
                raise ValueError("ESPHome entities are channels; there is no device-level value")
            binary = quantity is Quantity.DOOR
            if quantity_of(channel, binary) is not quantity:
                raise ValueError(f"object id {channel!r} does not name {quantity.value}")
            raw = wire(value, on_off if binary else float)
            text = raw if isinstance(raw, str) else f"{raw:.{_DECIMALS.get(quantity, 1)}f}"
            kind = _BINARY if binary else _SENSOR
            topic = f"{sample.device_id}/{kind}/{channel}/state"
            publishes.append(Publish(topic, text.encode(), retain=True))
        return publishes

    def encode_status(self, device_id: str, online: bool) -> Publish:
        return Publish(f"{device_id}/status", b"online" if online else b"offline", retain=True)


def _foreign(levels: list[str]) -> bool:
    """Whether a topic is in another family's namespace (``.../status`` is generic)."""
    head = levels[0]
    return (
        (head == "coldchain" and len(levels) > 1 and levels[1] == "v1")  # native
        or (head in ("tele", "stat", "cmnd") and len(levels) == 3)  # Tasmota
        or (head == "application" and len(levels) > 2 and levels[2] == "device")  # ChirpStack
        or (head == "v3" and len(levels) > 2 and levels[2] == "devices")  # The Things Stack
    )


FAMILY = ESPHomeFamily()
