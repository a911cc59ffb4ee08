"""Two stores' devices of every family, their registry, broker file and credentials.

Store s042 and store s043 each have a native node, an ESPHome node, a Tasmota, a Shelly,
and a ChirpStack and a TTS network server (each with one registered LoRaWAN device).
s043's ESPHome node uses a two-level topic prefix (``s043/s043-node1``), s042's the
default one-level prefix (its node name).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coldchain.broker import AclPlan, Device, NetworkServer, device_topics
from coldchain.services import find_binary
from devices import family
from devices.base import DeviceSample, Publish

STORES = ("s042", "s043")
APPS = {
    ("chirpstack", "s042"): "5a1f0c1e-7d2b-4c1e-9a00-000000000042",
    ("chirpstack", "s043"): "5a1f0c1e-7d2b-4c1e-9a00-000000000043",
    ("tts", "s042"): "coldchain-s042@ttn",
    ("tts", "s043"): "coldchain-s043@ttn",
}
TS_MS = 1_715_310_900_000


def native(store: str) -> str:
    return f"cc-{store}-wic1"


def esphome(store: str) -> str:
    return f"{store}-node1"


def tasmota(store: str) -> str:
    return f"tasmota-{store}-wic1"


def shelly(store: str) -> str:
    return f"shellyplus1-a8032ab1c{store[1:]}"


def chirpstack_eui(store: str) -> str:
    return f"24e124136b000{store[1:]}"


def tts_eui(store: str) -> str:
    return f"a840418371880{store[1:]}"


def chain() -> dict[str, Any]:
    """The chain file of both stores (what `coldchain registry import` reads)."""
    stores = [
        {"id": s, "name": f"Store {s}", "country": "GT", "timezone": "America/Guatemala"}
        for s in STORES
    ]
    assets = [
        {"id": f"{s}-wic1", "store": s, "type": "walkin_cooler", "name": "Walk-in 1"}
        for s in STORES
    ]
    sensors = []
    for s in STORES:
        asset = f"{s}-wic1"
        sensors += [
            {"id": native(s), "asset": asset, "family": "native"},
            {"id": f"{esphome(s)}:case_temp", "asset": asset, "family": "esphome"},
            {"id": f"{tasmota(s)}:DS18B20-1", "asset": asset, "family": "tasmota"},
            {"id": f"{shelly(s)}:temperature:100", "asset": asset, "family": "shelly"},
            {"id": chirpstack_eui(s), "asset": asset, "family": "chirpstack"},
            {"id": f"{tts_eui(s)}:ds", "asset": asset, "family": "tts"},
        ]
    return {"stores": stores, "assets": assets, "sensors": sensors}


def broker_file() -> dict[str, Any]:
    """The broker file: one network server user per store and LoRaWAN family, and the
    ESPHome prefix the registry cannot know."""
    servers = [
        {"user": f"{fam}-{s}", "family": fam, "application": APPS[(fam, s)], "stores": [s]}
        for s in STORES
        for fam in ("chirpstack", "tts")
    ]
    return {
        "network_servers": servers,
        "devices": [{"id": esphome("s043"), "family": "esphome", "prefix": "s043/s043-node1"}],
    }


def password(user: str) -> str:
    """Every user's password (tests only)."""
    return f"pw-{user}-3f9c"


def write_password_file(path: Path, users: list[str]) -> Path:
    """A Mosquitto password file for ``users``, hashed by ``mosquitto_passwd -U``."""
    path.write_text("".join(f"{user}:{password(user)}\n" for user in users))
    subprocess.run([find_binary("mosquitto_passwd"), "-U", str(path)], check=True)
    return path


@dataclass
class Fleet:
    """The plan the ACL was generated from, by user."""

    plan: AclPlan
    acl_text: str

    def device(self, user: str) -> Device:
        return next(d for d in self.plan.devices if d.id == user)

    def server(self, user: str) -> NetworkServer:
        return next(s for s in self.plan.network_servers if s.user == user)

    def users_of(self, store: str) -> list[str]:
        """The device and network server users of one store."""
        devices = [native(store), esphome(store), tasmota(store), shelly(store)]
        return [*devices, f"chirpstack-{store}", f"tts-{store}"]

    def messages(self, user: str, *, seq: int = 1) -> list[Publish]:
        """What ``user`` publishes in normal operation: its family's own encoding of a
        reading (and its online status, for devices with one)."""
        if user.startswith(("chirpstack-", "tts-")):
            server = self.server(user)
            store = user.partition("-")[2]
            eui = chirpstack_eui(store) if server.family == "chirpstack" else tts_eui(store)
            return [_in_application(m, server) for m in _encode(server.family, eui, seq)]
        device = self.device(user)
        out = _encode(device.family, device.id, seq)
        out.append(family(device.family).encode_status(device.id, True))
        if device.prefix:  # ESPHome topics start with the node's prefix, not its id
            out = [_with_prefix(m, device) for m in out]
        return out

    def sentinel(self, user: str, number: int) -> Publish:
        """A message on one of ``user``'s own topics with a payload of its own."""
        topic = self.messages(user)[0].topic
        return Publish(topic, f"sentinel-{user}-{number}".encode())

    def status_topic(self, user: str) -> str:
        """The device's availability (LWT) topic."""
        return family(self.device(user).family).encode_status(self.device(user).id, True).topic

    def write_filters(self, user: str) -> tuple[str, ...]:
        return device_topics(self.device(user))


def _encode(name: str, device_id: str, seq: int) -> list[Publish]:
    fam = family(name)
    values = {
        channel: {quantity: _PLAUSIBLE[quantity.value] for quantity in quantities}
        for channel, quantities in fam.layout.items()
    }
    sample = DeviceSample(device_id, TS_MS + seq * 60_000, values, seq=seq)
    return list(fam.encode(sample))


_PLAUSIBLE = {"temperature": 3.5, "humidity": 80.0, "door": 0.0, "battery": 90.0, "signal": -60.0}


def _with_prefix(message: Publish, device: Device) -> Publish:
    assert device.prefix is not None
    rest = message.topic.removeprefix(device.id)
    return Publish(device.prefix + rest, message.payload, message.retain, message.qos)


def _in_application(message: Publish, server: NetworkServer) -> Publish:
    levels = message.topic.split("/")
    levels[1] = server.application
    return Publish("/".join(levels), message.payload, message.retain, message.qos)


def dump(data: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
