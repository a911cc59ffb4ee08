"""ChirpStack v4 MQTT integration: uplink events with the codec's output in ``object``.

Topic ``application/<application uuid>/device/<devEUI>/event/up``; JSON in the protobuf
JSON mapping (camelCase)::

    {"deduplicationId":"3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
     "time":"2024-05-10T03:15:00.775023242+00:00",
     "deviceInfo":{"applicationId":"17c82e96-be03-4f38-aef3-f83d48582d97",
       "deviceProfileName":"EM300-TH","deviceName":"S042-WIC01-TH",
       "devEui":"24e124136b123456"},
     "fCnt":1234,"fPort":85,"data":"AXVcA2ceAARotA==",
     "object":{"battery":92,"temperature":3.0,"humidity":90.0},
     "rxInfo":[{"gatewayId":"0016c001f153a14c","rssi":-97,"snr":4.5}]}

Device id: the devEUI of the topic, lower-cased (``24e124136b123456``);
``deviceInfo.devEui``, when present, must be the same or the message is refused
(``device_mismatch``). Sensor ids and the codec fields understood are those of
:mod:`devices.lorawan` (``<devEUI>``, and ``<devEUI>:<channel>`` for Dragino, Elsys and
Browan probes: ``sht``, ``ds``, ``tmp117``...).
``time`` (the server's receive time, nanoseconds) is ``ts_ms``; ``fCnt`` is ``seq``.

``object`` is present only when the device profile has a codec: without it the uplink is
refused with ``no_codec`` (the raw ``data`` bytes are vendor-specific). Other events
(``status``, ``join``, ``txack``...) are not subscribed. There is no per-device LWT: a
device is offline when its uplinks stop (``staleness``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from core.types import Message, Quantity
from devices.base import DecodeError, DeviceSample, Publish, parse_json_object
from devices.common import check_device, dumps, optional, timestamp
from devices.lorawan import (
    LAYOUT,
    PROFILE,
    encode_fields,
    f_port,
    frame_counter,
    iso_nanos,
    uplink,
    uplink_port,
)

# The application the simulator's devices belong to.
SIM_APPLICATION = "17c82e96-be03-4f38-aef3-f83d48582d97"


class ChirpStackFamily:
    """The ``chirpstack`` device family (v4 MQTT integration, JSON marshaler)."""

    name = "chirpstack"
    subscriptions = ("application/+/device/+/event/up",)
    profile = PROFILE
    layout: Mapping[str | None, tuple[Quantity, ...]] = LAYOUT

    def matches(self, levels: list[str]) -> bool:
        return (
            len(levels) == 6
            and levels[0] == "application"
            and levels[2] == "device"
            and levels[4:] == ["event", "up"]
        )

    def decode(self, topic: str, payload: bytes) -> Message:
        levels = topic.split("/")
        if not self.matches(levels):
            raise DecodeError("bad_topic", f"not a ChirpStack uplink topic: {topic[:120]}")
        # ChirpStack writes DevEUIs in lower-case hex; any valid id is accepted so that
        # test and simulator devices can use readable names.
        device = check_device(levels[3]).lower()
        data = parse_json_object(payload)
        info = optional(data, "deviceInfo", dict) or {}
        eui = optional(info, "devEui", str)
        if eui is not None and eui.lower() != device:
            raise DecodeError("device_mismatch", f"deviceInfo.devEui {eui[:40]!r} != topic")
        ts_ms = timestamp(data["time"]) if data.get("time") is not None else None
        return uplink(
            self.name,
            device,
            data.get("object"),
            data.get("rxInfo"),
            ts_ms=ts_ms,
            seq=frame_counter(data.get("fCnt")),
            port=f_port(data.get("fPort")),
        )

    def encode(self, sample: DeviceSample) -> list[Publish]:
        fields, rssi = encode_fields(sample)
        event = f"{sample.device_id}/{sample.ts_ms}/{sample.seq}"
        body: dict[str, Any] = {
            "deduplicationId": str(uuid.uuid5(uuid.NAMESPACE_URL, event)),
            "time": iso_nanos(sample.ts_ms, "+00:00"),
            "deviceInfo": {
                "applicationId": SIM_APPLICATION,
                "applicationName": "cold-chain",
                "deviceName": sample.device_id,
                "devEui": sample.device_id,
            },
            "fPort": uplink_port(fields),
            "object": fields,
        }
        if sample.seq is not None:
            body["fCnt"] = sample.seq
        if rssi is not None:
            body["rxInfo"] = [{"gatewayId": "0016c001f153a14c", "rssi": rssi, "snr": 4.5}]
        topic = f"application/{SIM_APPLICATION}/device/{sample.device_id}/event/up"
        return [Publish(topic, dumps(body))]

    def encode_status(self, device_id: str, online: bool) -> Publish:
        raise NotImplementedError("LoRaWAN devices have no availability message")


FAMILY = ChirpStackFamily()
