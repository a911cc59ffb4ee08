"""LoRaWAN uplinks as the network servers publish them, and the golden corpus loader.

Shared by the firmware tests (the project's own codecs under Node.js) and the conformance
suite (the vendors' codecs, through the corpus in ``devices/corpus/lorawan/``).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import devices

CORPUS = Path(devices.__file__).parent / "corpus" / "lorawan"
# The gateway RSSI both wrappers put in the uplink: the device's signal (dBm) whenever the
# uplink stores anything.
GATEWAY_RSSI = -97.0


def codec_object(result: dict[str, Any]) -> Any:
    """What the network server forwards: the data, or nothing when the codec erred."""
    return None if result.get("errors") or "data" not in result else result["data"]


def chirpstack_up(dev_eui: str, f_port: int, payload_hex: str, obj: Any) -> tuple[str, bytes]:
    """A ChirpStack v4 ``up`` event for this uplink (JSON marshaler)."""
    body: dict[str, Any] = {
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "time": "2024-05-10T03:15:00.775023242+00:00",
        "deviceInfo": {
            "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
            "deviceProfileName": "coldchain",
            "devEui": dev_eui,
        },
        "fCnt": 1234,
        "fPort": f_port,
        "data": base64.b64encode(bytes.fromhex(payload_hex)).decode(),
        "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": int(GATEWAY_RSSI), "snr": 4.5}],
    }
    if obj is not None:  # no codec output, no object
        body["object"] = obj
    topic = f"application/17c82e96-be03-4f38-aef3-f83d48582d97/device/{dev_eui}/event/up"
    return topic, json.dumps(body).encode()


def tts_up(dev_eui: str, f_port: int, payload_hex: str, obj: Any) -> tuple[str, bytes]:
    """A The Things Stack uplink message for this uplink."""
    gateway = {"gateway_ids": {"gateway_id": "s042-gw"}, "rssi": int(GATEWAY_RSSI), "snr": 4.5}
    up: dict[str, Any] = {
        "f_cnt": 1234,
        "f_port": f_port,
        "frm_payload": base64.b64encode(bytes.fromhex(payload_hex)).decode(),
        "rx_metadata": [gateway],
        "received_at": "2024-05-10T03:15:00.775023242Z",
    }
    if obj is not None:
        up["decoded_payload"] = obj
    body = {
        "end_device_ids": {
            "device_id": f"eui-{dev_eui}",
            "application_ids": {"application_id": "cold-chain"},
            "dev_eui": dev_eui.upper(),
        },
        "received_at": "2024-05-10T03:15:01.014773143Z",
        "uplink_message": up,
    }
    return f"v3/cold-chain@ttn/devices/eui-{dev_eui}/up", json.dumps(body).encode()


Wrap = Callable[[str, int, str, Any], tuple[str, bytes]]
# Network family name -> how it wraps a codec output.
WRAPS: dict[str, Wrap] = {"chirpstack": chirpstack_up, "tts": tts_up}


def corpus_paths() -> list[Path]:
    """Every corpus case file, by vendor then name."""
    return sorted(CORPUS.glob("*/*.yaml"))


@functools.cache
def corpus_case(path: Path) -> dict[str, Any]:
    """One corpus case, parsed once per session."""
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(case, dict)
    return case


def corpus_uplink(path: Path, family: str) -> tuple[str, bytes]:
    """The topic and payload of a corpus case as ``family``'s server publishes it."""
    case = corpus_case(path)
    obj = codec_object(case["codec_output"])
    return WRAPS[family](case["dev_eui"], case["f_port"], case["bytes"], obj)
