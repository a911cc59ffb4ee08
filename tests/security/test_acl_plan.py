"""The ACL generator: what it grants is read by ingest as the granted device, and nothing
else; what it refuses to write.

The property behind every grant: take any topic a user's filters allow (``+`` and ``#``
filled with levels drawn from every family's vocabulary and the fleet's ids) and any
payload a device could send there (every family's encoding of another device, payloads
naming another device inside): when ingest routes and decodes it, the device is the
user's own (for a network server: one it may speak for), or ingest refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldchain.broker import (
    INGEST_STATUS_TOPIC,
    OBSERVATIONS_TOPIC,
    AclPlan,
    BrokerFile,
    Device,
    NetworkServer,
    RegisteredSensor,
    build_plan,
    device_topics,
    load_broker_file,
    render_acl,
    server_topics,
    write_topics,
)
from coldchain.cli import main
from core.errors import ConfigError
from devices import DecodeError, Router, families
from devices.base import DeviceSample
from tests.security import fleet as f

VICTIM_EUI = "24e124136b000043"
VICTIM = "cc-s043-wic1"
# Topic levels a wildcard may be filled with: every family's keywords, the fleet's ids.
LEVELS = [
    "sensor", "binary_sensor", "state", "status", "online", "events", "rpc", "tele", "stat",
    "SENSOR", "STATE", "LWT", "coldchain", "v1", "telemetry", "application", "device",
    "event", "up", "v3", "devices", "case_temp", "door", VICTIM, "s043-node1", "s043",
    "tasmota-s043-wic1", "shellyplus1-a8032ab1c043", VICTIM_EUI, f"eui-{VICTIM_EUI}",
    "x",
]  # fmt: skip


def _payloads(topic: str) -> list[bytes]:
    """What an attacker could send on ``topic``: every family's own messages for a victim,
    and LoRaWAN and Shelly payloads that agree with the topic where it is checked and name
    the victim where it is not."""
    out = [b"3.5", b"ON", b"offline", b"Offline", b"false", b"online"]
    for fam in families():
        values = {c: dict.fromkeys(qs, 3.5) for c, qs in fam.layout.items()}
        victim = VICTIM_EUI if fam.name in ("chirpstack", "tts") else VICTIM
        out += [m.payload for m in fam.encode(DeviceSample(victim, f.TS_MS, values, seq=1))]
    levels = topic.split("/")
    uplink = {"f_cnt": 1, "decoded_payload": {"temperature": 25.0}}
    named = levels[3] if len(levels) > 3 else "x"
    forged = [
        json.dumps({"end_device_ids": {"dev_eui": VICTIM_EUI.upper()}, "uplink_message": uplink}),
        json.dumps({"end_device_ids": {"device_id": named, "dev_eui": VICTIM_EUI.upper()},
                    "uplink_message": uplink}),
        json.dumps({"deviceInfo": {"devEui": VICTIM_EUI}, "object": {"temperature": 25.0}}),
        json.dumps({"src": VICTIM, "method": "NotifyStatus",
                    "params": {"ts": 1715310900, "temperature:100": {"id": 100, "tC": 25.0}}}),
    ]  # fmt: skip
    return out + [text.encode() for text in forged]


def _plan() -> AclPlan:
    sensors = [
        RegisteredSensor(s["id"], s["family"], s["asset"].partition("-")[0])
        for s in f.chain()["sensors"]
    ]
    return build_plan(sensors, BrokerFile.model_validate(f.broker_file()))


PLAN = _plan()
GRANTS = sorted(write_topics(PLAN).items())


def _allowed_devices(user: str) -> set[str]:
    """The device ids a user's messages may be decoded as."""
    server = next((s for s in PLAN.network_servers if s.user == user), None)
    if server is not None:
        assert server.devices is not None
        return set(server.devices)
    return {user}


# What ``#`` may stand for: nothing, every family's topic endings, and one level of any.
TAILS = [
    [], ["up"], ["join"], ["status"], ["online"], ["events", "rpc"], ["event", "up"],
    ["sensor", "x", "state"], ["binary_sensor", "door", "state"], [VICTIM, "status"],
    ["s043-node1", "sensor", "case_temp", "state"], ["SENSOR"], ["LWT"],
    *([level] for level in LEVELS),
]  # fmt: skip


def _expand(topic_filter: str) -> list[str]:
    """Every topic ``topic_filter`` matches with ``+`` in LEVELS and ``#`` in TAILS."""
    topics = [""]
    for level in topic_filter.split("/"):
        choices = [[x] for x in LEVELS] if level == "+" else TAILS if level == "#" else [[level]]
        topics = [f"{t}/{'/'.join(c)}" if c else t for t in topics for c in choices]
    return [t.removeprefix("/") for t in topics]


def _check(user: str, topic: str) -> None:
    """The property: ``topic`` from ``user`` is refused by ingest or names its device."""
    owner = Router().route(topic)
    if owner is None:
        return  # ingest does not read it (dead-lettered as unknown_topic)
    for payload in _payloads(topic):
        try:
            message = owner.decode(topic, payload)
        except DecodeError:
            continue
        assert message.device_id in _allowed_devices(user), (user, topic, payload)


@pytest.mark.parametrize(("user", "filters"), GRANTS, ids=[user for user, _ in GRANTS])
def test_every_topic_a_user_may_write_decodes_as_its_own_device(
    user: str, filters: tuple[str, ...]
) -> None:
    """Exhaustive over one wildcard level: each ``+`` and ``#`` filled every way above."""
    for topic_filter in filters:
        for topic in _expand(topic_filter):
            _check(user, topic)


@settings(max_examples=300, deadline=None)
@given(grant=st.sampled_from(GRANTS), data=st.data())
def test_deeper_topics_a_user_may_write_decode_as_its_own_device(
    grant: tuple[str, tuple[str, ...]], data: st.DataObject
) -> None:
    """Random deeper fillings of ``#`` (up to six levels)."""
    user, filters = grant
    levels = []
    for level in data.draw(st.sampled_from(filters)).split("/"):
        if level == "+":
            levels.append(data.draw(st.sampled_from(LEVELS)))
        elif level == "#":
            levels += data.draw(st.lists(st.sampled_from(LEVELS), max_size=6))
        else:
            levels.append(level)
    _check(user, "/".join(levels))


def test_the_fleet_acl_grants_exactly_the_families_topics() -> None:
    """The generated file, as Mosquitto reads it: one user block per user, devices write
    their own family's topics and read nothing, the ingester reads everything."""
    text = render_acl(PLAN)
    blocks: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("user "):
            current = line.split()[1]
            blocks[current] = []
        elif line.startswith(("topic", "pattern")):
            assert current is not None, f"{line!r} would apply to anonymous clients"
            assert not line.startswith("pattern"), "patterns apply to every user"
            blocks[current].append(line)
    assert blocks["coldchain-svc"] == [
        "topic read #",
        f"topic write {OBSERVATIONS_TOPIC}",
        f"topic write {INGEST_STATUS_TOPIC}",
    ]
    assert blocks["cc-s042-wic1"] == [
        "topic write coldchain/v1/cc-s042-wic1/telemetry",
        "topic write coldchain/v1/cc-s042-wic1/status",
    ]
    assert blocks["s043-node1"] == [
        "topic write s043/s043-node1/sensor/+/state",
        "topic write s043/s043-node1/binary_sensor/+/state",
        "topic write s043/s043-node1/status",
    ]
    assert blocks["tasmota-s042-wic1"] == [
        "topic write tele/tasmota-s042-wic1/SENSOR",
        "topic write tele/tasmota-s042-wic1/STATE",
        "topic write tele/tasmota-s042-wic1/LWT",
    ]
    assert blocks["shellyplus1-a8032ab1c042"] == [
        "topic write shellyplus1-a8032ab1c042/events/rpc",
        "topic write shellyplus1-a8032ab1c042/online",
    ]
    assert blocks["chirpstack-s043"] == [
        f"topic write application/{f.APPS[('chirpstack', 's043')]}/device/{VICTIM_EUI}/event/+"
    ]
    assert blocks["tts-s042"] == [
        "topic write v3/coldchain-s042@ttn/devices/eui-a840418371880042/#"
    ]
    reads = [line for user, lines in blocks.items() if user != "coldchain-svc" for line in lines
             if not line.startswith("topic write ")]  # fmt: skip
    assert reads == []
    assert set(blocks) == set(PLAN.users())


def test_every_device_family_has_its_topics() -> None:
    """A new family under devices/ must say what its devices may write (or be LoRaWAN)."""
    for fam in families():
        if fam.name in ("chirpstack", "tts"):
            server = NetworkServer("ns", fam.name, "app", ("24e124136b000001",))  # type: ignore[arg-type]
            assert server_topics(server)
        else:
            assert device_topics(Device("dev-1", fam.name))


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"id": "tele", "family": "shelly"}, "belong to another family"),
        ({"id": "application", "family": "esphome"}, "belong to another family"),
        ({"id": "n1", "family": "esphome", "prefix": "coldchain/v1/n1"}, "another family"),
        ({"id": "n1", "family": "esphome", "prefix": "s042/other"}, "last level"),
        ({"id": "n1", "family": "esphome", "prefix": "a/b/c/n1"}, "1 to 3 levels"),
        ({"id": "n1", "family": "esphome", "prefix": "s042/+/n1"}, "1 to 3 levels"),
        ({"id": "n1", "family": "shelly", "prefix": "s042/n1"}, "only ESPHome"),
        ({"id": "coldchain-svc", "family": "native"}, "is both"),
        ({"id": "cc-s042-wic1", "family": "tasmota"}, "the registry native"),
    ],
)
def test_ids_and_prefixes_that_reach_other_topics_are_refused(
    entry: dict[str, str], error: str
) -> None:
    sensors = [RegisteredSensor("cc-s042-wic1", "native", "s042")]
    with pytest.raises(ConfigError, match=error):
        build_plan(sensors, BrokerFile.model_validate({"devices": [entry]}))


def test_names_with_wildcards_or_levels_are_refused_by_the_file() -> None:
    for bad in ("a/b", "a+b", "#", "a b", "$SYS"):
        with pytest.raises(ValueError, match="pattern"):
            BrokerFile.model_validate({"devices": [{"id": bad, "family": "native"}]})


def test_a_sensor_of_unknown_family_is_named_unless_it_was_seen() -> None:
    sensors = [RegisteredSensor("dev-9:DS18B20-1", None, "s042")]
    with pytest.raises(ConfigError, match="dev-9:DS18B20-1"):
        build_plan(sensors)
    plan = build_plan(sensors, seen_families={"dev-9": "tasmota"})
    assert plan.devices == [Device("dev-9", "tasmota", store="s042")]


def test_lorawan_devices_without_a_network_server_are_warned_about() -> None:
    sensors = [RegisteredSensor(VICTIM_EUI, "chirpstack", "s043"),
               RegisteredSensor("24e124136b000042", "chirpstack", "s042")]  # fmt: skip
    server = {"user": "cs-s042", "family": "chirpstack", "application": "a", "stores": ["s042"]}
    broker = BrokerFile.model_validate({"network_servers": [server]})
    plan = build_plan(sensors, broker)
    warning = "1 registered chirpstack devices have no network server user that may publish"
    assert plan.warnings == [f"{warning} for them: {VICTIM_EUI}"]
    assert "# WARNING: 1 registered chirpstack" in render_acl(plan)
    wide = BrokerFile.model_validate(
        {"network_servers": [{"user": "cs", "family": "chirpstack", "application": "a"}]}
    )
    plan = build_plan(sensors, wide)
    assert plan.warnings == []
    assert server_topics(plan.network_servers[0]) == ("application/a/device/+/event/+",)


def test_broker_users_lists_every_user_for_the_password_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broker_file = f.dump(f.broker_file(), tmp_path / "broker.yaml")
    devices_only = f.dump(
        {"devices": [{"id": "cc-s042-wic1", "family": "native"}]}, tmp_path / "devices.yaml"
    )
    monkeypatch.setenv("COLDCHAIN_DB", str(tmp_path / "missing.sqlite3"))
    assert main(["broker", "users", "--devices", str(devices_only), "--no-registry"]) == 0
    assert capsys.readouterr().out.split() == ["coldchain-svc", "cc-s042-wic1"]
    # Without --no-registry a missing registry is an error, not a new empty one.
    assert main(["broker", "acl", "--devices", str(broker_file)]) == 2
    assert "registry" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite3").exists()
    assert load_broker_file(broker_file).network_servers[0].user == "chirpstack-s042"
