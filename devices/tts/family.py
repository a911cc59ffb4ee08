"""The Things Stack v3 MQTT server: uplinks with the formatter's ``decoded_payload``.

Topic ``v3/<application id>@<tenant id>/devices/<device id>/up`` (``@ttn`` on The Things
Network; open-source deployments have no tenant: ``v3/<application id>/devices/...``)::

    {"end_device_ids":{"device_id":"eui-24e124136b123456",
       "application_ids":{"application_id":"cold-chain"},
       "dev_eui":"24E124136B123456","join_eui":"24E124C0002A0001","dev_addr":"260B1F2A"},
     "received_at":"2024-05-10T03:15:01.014773143Z",
     "uplink_message":{"f_cnt":1234,"f_port":85,"frm_payload":"AXVcA2ceAARotA==",
       "decoded_payload":{"battery":92,"temperature":3.0,"humidity":90.0},
       "rx_metadata":[{"gateway_ids":{"gateway_id":"s042-gw"},"rssi":-97,"snr":4.5}],
       "received_at":"2024-05-10T03:15:00.789585559Z"}}

Device id: ``end_device_ids.dev_eui`` lower-cased, as ChirpStack's, so a device keeps its
id when a chain moves network server; without a DevEUI, the TTS device id of the topic.
``end_device_ids.device_id``, when present, must match the topic, and so must the DevEUI
when the topic's device id is TTS's default ``eui-<deveui>`` (``device_mismatch``): the
topic is what the broker's ACL confines (docs/operations.md, section 12), so a payload
may not name another device. A device id of another form says nothing of the DevEUI.
Sensor ids and codec fields are those of :mod:`devices.lorawan`. ``ts_ms`` is
``uplink_message.received_at`` (the network server's receive time), else the top-level
``received_at``; ``f_cnt`` is ``seq`` (TTS omits zero fields, so a first uplink has no
``seq``). Without ``decoded_payload`` (no payload formatter) the uplink is refused with
``no_codec``. There is no per-device LWT (``staleness``).
"""

from __future__ import annotations

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
    is_eui,
    iso_nanos,
    uplink,
    uplink_port,
)

# The application the simulator's devices belong to.
SIM_APPLICATION = "cold-chain"


class TTSFamily:
    """The ``tts`` device family (The Things Stack v3 / The Things Network)."""

    name = "tts"
    subscriptions = ("v3/+/devices/+/up",)
    profile = PROFILE
    layout: Mapping[str | None, tuple[Quantity, ...]] = LAYOUT

    def matches(self, levels: list[str]) -> bool:
        return (
            len(levels) == 5 and levels[0] == "v3" and levels[2] == "devices" and levels[4] == "up"
        )

    def decode(self, topic: str, payload: bytes) -> Message:
        levels = topic.split("/")
        if not self.matches(levels):
            raise DecodeError("bad_topic", f"not a TTS v3 uplink topic: {topic[:120]}")
        tts_id = check_device(levels[3])
        data = parse_json_object(payload)
        ids = optional(data, "end_device_ids", dict) or {}
        named = optional(ids, "device_id", str)
        if named is not None and named != tts_id:
            raise DecodeError("device_mismatch", f"end_device_ids.device_id {named[:40]!r}")
        eui = optional(ids, "dev_eui", str)
        if eui is not None and not is_eui(eui):
            raise DecodeError("bad_device_id", f"dev_eui {eui[:40]!r} is not 16 hex digits")
        topic_eui = _topic_eui(tts_id)
        if eui is not None and topic_eui is not None and eui.lower() != topic_eui:
            raise DecodeError("device_mismatch", f"dev_eui {eui[:40]!r} != the topic's {tts_id}")
        device = eui.lower() if eui is not None else tts_id
        up = optional(data, "uplink_message", dict)
        if up is None:
            raise DecodeError("bad_type", "an up message needs uplink_message")
        received = up.get("received_at")
        if received is None:
            received = data.get("received_at")
        return uplink(
            self.name,
            device,
            up.get("decoded_payload"),
            up.get("rx_metadata"),
            ts_ms=timestamp(received) if received is not None else None,
            seq=frame_counter(up.get("f_cnt")),
            port=f_port(up.get("f_port")),
        )

    def encode(self, sample: DeviceSample) -> list[Publish]:
        fields, rssi = encode_fields(sample)
        ids: dict[str, Any] = {"application_ids": {"application_id": SIM_APPLICATION}}
        if is_eui(sample.device_id):  # TTS's default id for a device is eui-<deveui>
            ids["device_id"] = f"eui-{sample.device_id.lower()}"
            ids["dev_eui"] = sample.device_id.upper()
        else:
            ids["device_id"] = sample.device_id
        received = iso_nanos(sample.ts_ms)
        up: dict[str, Any] = {"f_port": uplink_port(fields)}
        if sample.seq:  # zero fields are omitted
            up["f_cnt"] = sample.seq
        up["decoded_payload"] = fields
        if rssi is not None:
            gateway = {"gateway_ids": {"gateway_id": "coldchain-gw"}, "rssi": rssi}
            up["rx_metadata"] = [{**gateway, "channel_rssi": rssi, "snr": 7.5}]
        up["received_at"] = received
        body = {"end_device_ids": ids, "received_at": received, "uplink_message": up}
        topic = f"v3/{SIM_APPLICATION}@ttn/devices/{ids['device_id']}/up"
        return [Publish(topic, dumps(body))]

    def encode_status(self, device_id: str, online: bool) -> Publish:
        raise NotImplementedError("LoRaWAN devices have no availability message")


def _topic_eui(tts_id: str) -> str | None:
    """The DevEUI a TTS device id of the default form ``eui-<deveui>`` names, else None."""
    head, _, tail = tts_id.partition("-")
    return tail.lower() if head.lower() == "eui" and is_eui(tail) else None


FAMILY = TTSFamily()
