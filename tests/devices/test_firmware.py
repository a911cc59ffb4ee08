"""The device configurations in ``devices/<family>/firmware/`` checked against the decoders.

- ESPHome (``native``): the YAML parses, its LWT and publish topics are the native
  family's, the JSON keys its lambda writes are the decoder's keys and come from the
  right kind of entity, and a payload built the way the lambda builds it (NaN -> null)
  decodes to the expected readings and faults;
- Tasmota: the console commands are pure commands and give the topics the decoder reads;
- Shelly: the RPC request files are valid JSON-RPC with the MQTT settings the decoder
  relies on;
- every sample message in the READMEs (```mqtt blocks: ``<topic> <payload>`` per line)
  routes to its family and decodes to what the README says;
- the LoRaWAN codecs run under Node.js on real uplink bytes, and their output, wrapped
  into a ChirpStack ``up`` event and a TTS uplink, decodes to the expected readings.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

import devices
from core.types import FaultCode, Message, Quantity
from devices.base import DecodeError
from devices.chirpstack import FAMILY as CHIRPSTACK
from devices.common import check_channel, check_device
from devices.native import FAMILY as NATIVE
from devices.native.family import KEYS
from devices.shelly import FAMILY as SHELLY
from devices.tasmota import FAMILY as TASMOTA
from devices.tts import FAMILY as TTS
from tests.devices.uplinks import chirpstack_up, codec_object, tts_up

DEVICES = Path(devices.__file__).parent
ESPHOME_YAML = DEVICES / "native" / "firmware" / "esphome-coldchain.yaml"
ESPHOME_SECRETS = DEVICES / "native" / "firmware" / "secrets.example.yaml"
TASMOTA_DIR = DEVICES / "tasmota" / "firmware"
SHELLY_DIR = DEVICES / "shelly" / "firmware"
CODECS = DEVICES / "chirpstack" / "firmware"
RUN_CODEC = Path(__file__).with_name("run_codec.js")
NODE = shutil.which("node")

# (sensor, quantity, value) and (sensor, quantity, fault code), compared as sets.
Readings = set[tuple[str, Quantity, float]]
Faults = set[tuple[str, Quantity, FaultCode]]


def _readings(message: Message) -> Readings:
    return {(r.sensor, r.quantity, r.value) for r in message.readings}


def _faults(message: Message) -> Faults:
    return {(f.sensor, f.quantity, f.code) for f in message.faults}


# --------------------------------------------------------------------------------------
# ESPHome YAML


class Secret(str):
    """The value of a ``!secret name`` tag: the name, kept as a plain string."""

    __slots__ = ()


class _ESPHomeLoader(yaml.SafeLoader):
    """A safe loader that also reads ESPHome's tags, as plain strings."""


def _secret(loader: yaml.SafeLoader, node: yaml.Node) -> Secret:
    assert isinstance(node, yaml.ScalarNode)
    return Secret(loader.construct_scalar(node))


def _lambda(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_ESPHomeLoader.add_constructor("!secret", _secret)
_ESPHomeLoader.add_constructor("!lambda", _lambda)

_SUBSTITUTION = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _substitute(value: Any, subs: dict[str, str]) -> Any:
    """``${name}`` / ``$name`` replaced throughout, as ESPHome's substitutions do."""
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return _SUBSTITUTION.sub(lambda m: str(subs[m.group(1) or m.group(2)]), value)
    if isinstance(value, dict):
        return {key: _substitute(item, subs) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, subs) for item in value]
    return value


@functools.cache
def _esphome() -> tuple[dict[str, Any], dict[str, str]]:
    """The ESPHome config after substitution, and the substitutions."""
    raw = yaml.load(ESPHOME_YAML.read_text(), Loader=_ESPHomeLoader)
    assert isinstance(raw, dict)
    subs = {key: str(value) for key, value in raw.pop("substitutions").items()}
    return _substitute(raw, subs), subs


def _walk(value: Any) -> Iterator[Any]:
    """Every dict, list and scalar in a parsed YAML tree."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _publish_json() -> dict[str, Any]:
    """The one ``mqtt.publish_json`` action of the config."""
    config, _ = _esphome()
    actions = [
        node["mqtt.publish_json"]
        for node in _walk(config)
        if isinstance(node, dict) and "mqtt.publish_json" in node
    ]
    assert len(actions) == 1, "one telemetry publish, shared by the interval and the door"
    action = actions[0]
    assert isinstance(action, dict)
    return action


def _entity_kinds() -> dict[str, Quantity]:
    """Entity id -> the quantity it measures, from the platforms of the config."""
    config, _ = _esphome()
    kinds: dict[str, Quantity] = {}
    for sensor in config["sensor"]:
        platform = sensor["platform"]
        if platform == "dallas_temp":
            kinds[sensor["id"]] = Quantity.TEMPERATURE
        elif platform == "sht3xd":
            kinds[sensor["temperature"]["id"]] = Quantity.TEMPERATURE
            kinds[sensor["humidity"]["id"]] = Quantity.HUMIDITY
        elif platform == "wifi_signal":
            kinds[sensor["id"]] = Quantity.SIGNAL
    for binary in config["binary_sensor"]:
        if binary.get("device_class") == "door":
            kinds[binary["id"]] = Quantity.DOOR
    return kinds


_FLOAT_VAR = re.compile(r"const float (\w+) = id\((\w+)\)\.state;")
_GUARDED = re.compile(
    r"if \(std::isnan\((\w+)\)\) (root(?:\[\"\w+\"\])+) = nullptr; "
    r"else (root(?:\[\"\w+\"\])+) = (\w+);"
)
_DOOR = re.compile(r"if \(id\((\w+)\)\.has_state\(\)\) (root\[\"\w+\"\]) = id\((\w+)\)\.state;")
_PATH = re.compile(r"root((?:\[\"[^\"]+\"\])+)")


def _path(text: str) -> tuple[str, ...]:
    """``root["a"]["b"]`` -> ``("a", "b")``."""
    return tuple(re.findall(r"\[\"([^\"]+)\"\]", text))


def _lambda_bindings() -> tuple[dict[tuple[str, ...], str], str]:
    """JSON path -> the entity id whose state fills it (NaN-guarded floats), and the door."""
    payload = _publish_json()["payload"]
    variables = dict(_FLOAT_VAR.findall(payload))
    bindings: dict[tuple[str, ...], str] = {}
    for var, null_path, value_path, value in _GUARDED.findall(payload):
        assert null_path == value_path, f"{null_path}: both branches must write one key"
        assert value == var, f"{value_path} must be written from {var}, the NaN-checked value"
        bindings[_path(value_path)] = variables[var]
    doors = _DOOR.findall(payload)
    assert len(doors) == 1, "door_open is written once, only when the door has a state"
    checked, door_path, read = doors[0]
    assert checked == read
    assert _path(door_path) == ("door_open",)
    return bindings, read


def test_esphome_yaml_is_an_mqtt_only_esp32_idf_node() -> None:
    config, subs = _esphome()
    device = subs["device_id"]
    assert check_device(device) == device
    assert config["esphome"]["name"] == device
    assert config["esp32"]["framework"]["type"] == "esp-idf"
    # The native API with nobody connecting reboots the node every 15 minutes.
    assert "api" not in config
    mqtt = config["mqtt"]
    assert mqtt["discovery"] is False
    assert mqtt["broker"] == subs["mqtt_broker"]
    assert isinstance(mqtt["username"], Secret)
    assert isinstance(mqtt["password"], Secret)


def test_esphome_lwt_is_the_native_status_topic() -> None:
    config, subs = _esphome()
    status = f"coldchain/v1/{subs['device_id']}/status"
    mqtt = config["mqtt"]
    expected = {"birth_message": "online", "will_message": "offline", "shutdown_message": "offline"}
    for key, payload in expected.items():
        message = mqtt[key]
        assert message["topic"] == status, key
        assert message["payload"] == payload, key
        assert message["retain"] is True, key
        decoded = NATIVE.decode(message["topic"], message["payload"].encode())
        assert decoded.device_id == subs["device_id"]
        assert decoded.online is (payload == "online")


def test_esphome_secrets_are_all_in_the_example_file() -> None:
    config, _ = _esphome()
    used = {node for node in _walk(config) if isinstance(node, Secret)}
    example = yaml.safe_load(ESPHOME_SECRETS.read_text())
    assert used == set(example), "secrets.example.yaml must list exactly the secrets used"
    ignored = (ESPHOME_YAML.parent / ".gitignore").read_text().split()
    assert "secrets.yaml" in ignored


def test_esphome_hardware_matches_the_node_described() -> None:
    config, subs = _esphome()
    probes = [s for s in config["sensor"] if s["platform"] == "dallas_temp"]
    assert len(probes) == 2
    assert len({p["address"] for p in probes}) == 2, "two probes on one bus need addresses"
    assert config["one_wire"][0]["platform"] == "gpio"
    (sht,) = (s for s in config["sensor"] if s["platform"] == "sht3xd")
    assert {"temperature", "humidity"} <= set(sht)
    assert any(s["platform"] == "wifi_signal" for s in config["sensor"])
    (door,) = config["binary_sensor"]
    assert door["platform"] == "gpio"
    assert door["device_class"] == "door"
    assert door["pin"]["mode"] == {"input": True, "pullup": True}  # INPUT_PULLUP
    assert door["pin"]["inverted"] == subs["door_inverted"]
    assert any("delayed_on_off" in f for f in door["filters"])
    (clock,) = config["time"]
    assert clock["platform"] == "sntp"


def test_esphome_entities_are_internal() -> None:
    """No per-entity state topics: under coldchain/v1/ no decoder would read them."""
    config, _ = _esphome()
    entities = [*config["sensor"], *config["binary_sensor"]]
    for sht in (s for s in config["sensor"] if s["platform"] == "sht3xd"):
        entities += [sht["temperature"], sht["humidity"]]
        entities.remove(sht)
    for entity in entities:
        assert entity.get("internal") is True, entity["id"]


def test_esphome_publishes_every_60s_and_on_door_changes() -> None:
    config, _ = _esphome()
    (script,) = config["script"]
    assert any(isinstance(n, dict) and "mqtt.publish_json" in n for n in _walk(script))
    (interval,) = config["interval"]
    assert interval["interval"] == "60s"
    assert {"script.execute": script["id"]} in interval["then"]
    (door,) = config["binary_sensor"]
    assert {"script.execute": script["id"]} in door["on_state"]
    assert "id(seq) += 1;" in [step.get("lambda") for step in script["then"]]


def test_esphome_telemetry_topic_is_the_native_family_s() -> None:
    _, subs = _esphome()
    action = _publish_json()
    topic = action["topic"]
    assert topic == f"coldchain/v1/{subs['device_id']}/telemetry"
    assert NATIVE.matches(topic.split("/"))
    assert action.get("retain", False) is False  # a retained reading would replay as new


def test_esphome_lambda_writes_only_keys_the_decoder_knows() -> None:
    paths = {_path(m.group(0)) for m in _PATH.finditer(_publish_json()["payload"])}
    top = {path[0] for path in paths}
    assert top <= set(KEYS) | {"ts", "seq", "channels"}
    for path in paths:
        if path[0] == "channels":
            assert len(path) == 3, path
            assert check_channel(path[1]) == path[1]
            assert path[2] in KEYS, path
        else:
            assert len(path) == 1, path
    assert paths == {
        ("ts",),
        ("seq",),
        ("temperature_c",),
        ("humidity_pct",),
        ("door_open",),
        ("rssi_dbm",),
        ("channels", "product", "temperature_c"),
        ("channels", "air", "temperature_c"),
    }


def test_esphome_lambda_fills_each_key_from_the_right_entity() -> None:
    config, _ = _esphome()
    kinds = _entity_kinds()
    bindings, door = _lambda_bindings()
    assert kinds[door] is Quantity.DOOR
    for path, entity in bindings.items():
        assert kinds[entity] is KEYS[path[-1]], f"{path} is filled from {entity}"
    probes = [s["id"] for s in config["sensor"] if s["platform"] == "dallas_temp"]
    assert bindings[("temperature_c",)] == probes[0], "the top-level temperature is probe 1"
    assert bindings[("channels", "product", "temperature_c")] == probes[1]
    payload = _publish_json()["payload"]
    (clock,) = config["time"]
    assert f"id({clock['id']}).now()" in payload
    assert 'root["ts"] = (uint32_t) now.timestamp' in payload
    assert 'root["seq"] = id(seq);' in payload
    assert any(g["id"] == "seq" for g in config["globals"])


def _emulate_lambda(ts: int | None, seq: int, states: dict[str, float | bool]) -> bytes:
    """The JSON the lambda writes for these entity states, NaN written as null."""
    bindings, door = _lambda_bindings()
    root: dict[str, Any] = {}
    if ts is not None:
        root["ts"] = ts
    root["seq"] = seq
    for path, entity in bindings.items():
        value = states[entity]
        target = root
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = None if math.isnan(value) else value
    root["door_open"] = states[door]
    return json.dumps(root, allow_nan=False).encode()


def test_esphome_payload_decodes_and_a_failed_probe_is_a_null_fault() -> None:
    _, subs = _esphome()
    device = subs["device_id"]
    states: dict[str, float | bool] = {
        "case_probe": 3.1875,
        "product_probe": math.nan,  # CRC error: dallas_temp publishes NaN
        "air_temperature": 4.6,
        "air_humidity": 88.2,
        "wifi_rssi": -61.0,
        "door": True,
    }
    payload = _emulate_lambda(1715310900, 812, states)
    assert b'"product":{"temperature_c":null}' in payload.replace(b" ", b"")
    message = NATIVE.decode(_publish_json()["topic"], payload)
    assert message.device_id == device
    assert message.ts_ms == 1715310900000
    assert message.seq == 812
    assert _readings(message) == {
        (device, Quantity.TEMPERATURE, 3.1875),
        (device, Quantity.HUMIDITY, 88.2),
        (device, Quantity.DOOR, 1.0),
        (device, Quantity.SIGNAL, -61.0),
        (f"{device}:air", Quantity.TEMPERATURE, 4.6),
    }
    assert _faults(message) == {(f"{device}:product", Quantity.TEMPERATURE, FaultCode.NULL)}


def test_esphome_payload_before_sntp_sync_and_with_a_power_on_probe() -> None:
    _, subs = _esphome()
    device = subs["device_id"]
    states: dict[str, float | bool] = {
        "case_probe": 85.0,  # DS18B20 power-on register value, valid CRC
        "product_probe": 3.5,
        "air_temperature": math.nan,  # SHT3x not read yet
        "air_humidity": math.nan,
        "wifi_rssi": -70.0,
        "door": False,
    }
    message = NATIVE.decode(_publish_json()["topic"], _emulate_lambda(None, 1, states))
    assert message.ts_ms is None  # ingest stamps the receive time
    assert _readings(message) == {
        (device, Quantity.DOOR, 0.0),
        (device, Quantity.SIGNAL, -70.0),
        (f"{device}:product", Quantity.TEMPERATURE, 3.5),
    }
    assert _faults(message) == {
        (device, Quantity.TEMPERATURE, FaultCode.POWER_ON_RESET),
        (device, Quantity.HUMIDITY, FaultCode.NULL),
        (f"{device}:air", Quantity.TEMPERATURE, FaultCode.NULL),
    }


# --------------------------------------------------------------------------------------
# README sample messages


def _mqtt_samples(readme: Path) -> list[tuple[str, bytes]]:
    """(topic, payload) of every line of the README's ```mqtt blocks."""
    blocks = re.findall(r"^```mqtt\n(.*?)^```", readme.read_text(), flags=re.M | re.S)
    samples = []
    for block in blocks:
        for line in block.splitlines():
            if line.strip():
                topic, _, payload = line.partition(" ")
                samples.append((topic, payload.encode()))
    return samples


READMES = sorted(DEVICES.glob("README.md")) + sorted(DEVICES.glob("*/firmware/README.md"))


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(DEVICES)))
def test_readme_samples_route_and_decode(readme: Path) -> None:
    router = devices.Router()
    for topic, payload in _mqtt_samples(readme):
        family = router.route(topic)
        assert family is not None, f"no family claims {topic}"
        try:
            message = family.decode(topic, payload)
        except DecodeError as exc:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"{readme.name}: {topic}: {exc}")
        assert message.ignored is None, f"{topic}: {message.ignored}"


def test_readmes_with_samples_are_found() -> None:
    with_samples = {p.relative_to(DEVICES).as_posix() for p in READMES if _mqtt_samples(p)}
    assert with_samples == {
        "README.md",
        "chirpstack/firmware/README.md",
        "shelly/firmware/README.md",
        "tasmota/firmware/README.md",
    }


def test_native_readme_samples() -> None:
    samples = _mqtt_samples(DEVICES / "README.md")
    messages = [NATIVE.decode(topic, payload) for topic, payload in samples]
    assert messages[0].online is True
    dev = "cc-s042-wic1"
    assert _readings(messages[1]) == {
        (dev, Quantity.TEMPERATURE, 3.1875),
        (dev, Quantity.HUMIDITY, 88.2),
        (dev, Quantity.DOOR, 0.0),
        (dev, Quantity.SIGNAL, -61.0),
        (f"{dev}:product", Quantity.TEMPERATURE, 3.5),
        (f"{dev}:air", Quantity.TEMPERATURE, 4.6),
    }
    assert _faults(messages[2]) == {(f"{dev}:product", Quantity.TEMPERATURE, FaultCode.NULL)}


# --------------------------------------------------------------------------------------
# Tasmota


def _tasmota_commands() -> list[tuple[str, str]]:
    lines = (TASMOTA_DIR / "setup-commands.txt").read_text().splitlines()
    commands = []
    for line in lines:
        assert line.strip(), "no blank lines: every line is pasted into the console"
        assert re.match(r"^[A-Za-z][A-Za-z0-9]*( \S.*)?$", line), f"not a command: {line!r}"
        name, _, value = line.partition(" ")
        commands.append((name, value))
    return commands


def test_tasmota_commands_file_is_pure_commands() -> None:
    commands = dict(_tasmota_commands())
    assert len(commands) == len(_tasmota_commands()), "each command once"
    assert commands["TelePeriod"] == "60"
    assert commands["FullTopic"] == "%prefix%/%topic%/"
    assert commands["SwitchMode1"] == "15"  # no relay action, SENSOR at once on change
    assert commands["SetOption52"] == "1"  # Time with its UTC offset
    assert commands["SetOption126"] == "0"  # instant reads keep the 85.0 sentinel visible
    assert commands["TempRes"] == "1"
    assert {"MqttHost", "MqttUser", "MqttPassword"} <= set(commands)
    assert "Backlog" not in commands


def test_tasmota_topics_are_the_decoder_s() -> None:
    commands = dict(_tasmota_commands())
    topic = commands["Topic"].replace("<store>", "s042").replace("<asset>", "wic1")
    assert check_device(topic) == topic == "tasmota-s042-wic1"
    full = commands["FullTopic"].replace("%topic%", topic)
    for kind in ("SENSOR", "STATE", "LWT"):
        wire = full.replace("%prefix%", "tele") + kind
        assert TASMOTA.matches(wire.split("/")), wire
        assert wire == f"tele/{topic}/{kind}"


def test_tasmota_backlog_line_matches_the_commands_file() -> None:
    readme = (TASMOTA_DIR / "README.md").read_text()
    (backlog,) = re.findall(r"^Backlog (.+)$", readme, flags=re.M)
    names = [part.split(" ", 1)[0] for part in backlog.split("; ")]
    assert names == [name for name, _ in _tasmota_commands()]


def test_tasmota_readme_samples_decode_to_the_documented_readings() -> None:
    dev = "tasmota-s042-wic1"
    lwt, sensor, state, door_open = (
        TASMOTA.decode(topic, payload)
        for topic, payload in _mqtt_samples(TASMOTA_DIR / "README.md")
    )
    assert lwt.online is True
    assert sensor.ts_ms == 1715310900000  # 2024-05-09T23:15:00-04:00, thanks to SetOption52
    assert _readings(sensor) == {
        (f"{dev}:Switch1", Quantity.DOOR, 0.0),
        (f"{dev}:DS18B20-1", Quantity.TEMPERATURE, 3.4),
        (f"{dev}:DS18B20-2", Quantity.TEMPERATURE, 2.9),
    }
    assert _readings(state) == {(dev, Quantity.SIGNAL, -61.0)}
    assert _readings(door_open) >= {(f"{dev}:Switch1", Quantity.DOOR, 1.0)}
    assert door_open.ts_ms == 1715310972000


# --------------------------------------------------------------------------------------
# Shelly

_SHELLY_PLACEHOLDERS = {
    "MQTT_SERVER": "10.20.0.5:1883",
    "MQTT_USER": "shellyplus1-a8032ab1c2d3",
    "MQTT_PASSWORD": "change-me",
    "PROBE_100_ADDR": "40:255:100:6:199:204:149:177",
    "PROBE_101_ADDR": "40:255:100:6:200:10:20:33",
}
_MQTT_CONFIG_FIELDS = {
    "enable",
    "server",
    "client_id",
    "user",
    "pass",
    "ssl_ca",
    "topic_prefix",
    "rpc_ntf",
    "status_ntf",
    "use_client_cert",
    "enable_rpc",
    "enable_control",
}


def _shelly_requests() -> dict[str, dict[str, Any]]:
    """File name -> the JSON-RPC request, placeholders filled as envsubst would."""
    requests = {}
    for path in sorted(SHELLY_DIR.glob("*.json")):
        text = path.read_text()
        for name in re.findall(r"\$\{(\w+)\}", text):
            assert name in _SHELLY_PLACEHOLDERS, f"{path.name}: undocumented ${{{name}}}"
        text = re.sub(r"\$\{(\w+)\}", lambda m: _SHELLY_PLACEHOLDERS[m.group(1)], text)
        request = json.loads(text)
        assert isinstance(request, dict)
        requests[path.name] = request
    return requests


def test_shelly_request_files_are_json_rpc() -> None:
    known = {
        "Sys.SetConfig",
        "SensorAddon.OneWireScan",
        "SensorAddon.AddPeripheral",
        "Temperature.SetConfig",
        "MQTT.SetConfig",
        "Shelly.Reboot",
    }
    for name, request in _shelly_requests().items():
        assert set(request) <= {"id", "method", "params"}, name
        assert isinstance(request["id"], int), name
        assert request["method"] in known, name


def test_shelly_mqtt_settings_give_the_topics_the_decoder_reads() -> None:
    config = _shelly_requests()["mqtt-setconfig.json"]["params"]["config"]
    assert set(config) <= _MQTT_CONFIG_FIELDS
    assert config["enable"] is True
    assert config["rpc_ntf"] is True  # NotifyStatus / NotifyFullStatus on <prefix>/events/rpc
    assert config["status_ntf"] is False
    assert config["enable_control"] is False
    assert re.match(r"^[^:/]+:\d+$", config["server"])
    # null = the Shelly id, one topic level: the decoder's device id.
    assert config["topic_prefix"] is None
    for shelly_id in ("shellyplus1-a8032ab1c2d3", "shellyplusht-c4dd57a1b2c3"):
        assert SHELLY.matches(f"{shelly_id}/events/rpc".split("/"))
        assert SHELLY.matches(f"{shelly_id}/online".split("/"))


def test_shelly_addon_probes_and_their_thresholds() -> None:
    requests = _shelly_requests()
    enable = requests["plus1-01-enable-addon.json"]["params"]["config"]
    assert enable == {"device": {"addon_type": "sensor"}}
    linked = {
        r["params"]["attrs"]["cid"]
        for r in requests.values()
        if r["method"] == "SensorAddon.AddPeripheral"
    }
    assert linked == {100, 101}  # Add-on components are 100..199
    for request in requests.values():
        if request["method"] == "SensorAddon.AddPeripheral":
            assert request["params"]["type"] == "ds18b20"
    thresholds = {
        r["params"]["id"]: r["params"]["config"]["report_thr_C"]
        for r in requests.values()
        if r["method"] == "Temperature.SetConfig"
    }
    assert thresholds == {0: 0.5, 100: 0.5, 101: 0.5}


def test_shelly_readme_uses_every_request_file() -> None:
    readme = (SHELLY_DIR / "README.md").read_text()
    used = set(re.findall(r"(?:@|< )([\w.-]+\.json)", readme))
    assert used == set(_shelly_requests())


def test_shelly_readme_samples_decode_to_the_documented_readings() -> None:
    plus1, ht = "shellyplus1-a8032ab1c2d3", "shellyplusht-c4dd57a1b2c3"
    online, change, failed, full, offline = (
        SHELLY.decode(topic, payload) for topic, payload in _mqtt_samples(SHELLY_DIR / "README.md")
    )
    assert online.online is True
    assert offline.online is False
    assert change.ts_ms == 1715311200520
    assert _readings(change) == {(f"{plus1}:temperature:100", Quantity.TEMPERATURE, 3.6)}
    assert _faults(failed) == {(f"{plus1}:temperature:101", Quantity.TEMPERATURE, FaultCode.NULL)}
    assert _readings(full) == {
        (ht, Quantity.BATTERY, 78.0),
        (f"{ht}:temperature:0", Quantity.HUMIDITY, 87.4),
        (f"{ht}:temperature:0", Quantity.TEMPERATURE, 3.9),
        (ht, Quantity.SIGNAL, -71.0),
    }


# --------------------------------------------------------------------------------------
# LoRaWAN codecs under Node.js

needs_node = pytest.mark.skipif(
    NODE is None,
    reason="Node.js is not installed (`node` not on PATH): the LoRaWAN codec tests run the "
    "JavaScript codecs under it; install it with `apt-get install nodejs`",
)


@functools.cache
def _run_codec(codec: str, f_port: int, payload_hex: str) -> dict[str, Any]:
    """decodeUplink's result for one uplink, as Node.js computes it."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(RUN_CODEC), str(CODECS / codec), str(f_port), payload_hex],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


class _Decoder(Protocol):
    def decode(self, topic: str, payload: bytes) -> Message: ...


_Wrap = Callable[[str, int, str, Any], tuple[str, bytes]]
_NETWORKS: dict[str, tuple[_Wrap, _Decoder]] = {
    "chirpstack": (chirpstack_up, CHIRPSTACK),
    "tts": (tts_up, TTS),
}
EM300 = "24e124136b123456"
LHT65N = "a840418371886f2b"
T, H, B, S = Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.BATTERY, Quantity.SIGNAL

# (codec, fPort, bytes, codec output, readings, faults): every uplink is decoded by the
# codec under Node.js, then by both network families.
_UPLINKS = [
    pytest.param(
        "em300-th.js",
        85,
        "01755C03671E000468B4",  # research §A.4: battery 92 %, 3.0 °C, 90.0 %RH
        {"battery": 92, "temperature": 3.0, "humidity": 90.0},
        {(EM300, T, 3.0), (EM300, H, 90.0), (EM300, B, 92.0), (EM300, S, -97.0)},
        set(),
        id="em300-cold-room",
    ),
    pytest.param(
        "em300-th.js",
        85,
        "01756403673DFF046883",  # 100 %, int16 LE 0xFF3D = -195 -> -19.5 °C, 0x83/2 = 65.5
        {"battery": 100, "temperature": -19.5, "humidity": 65.5},
        {(EM300, T, -19.5), (EM300, H, 65.5), (EM300, B, 100.0), (EM300, S, -97.0)},
        set(),
        id="em300-freezer",
    ),
    pytest.param(
        "em300-th.js",
        85,
        # power-on frame: device info (FF 0B, 01, 16 serial, 09, 0A, 0F) then readings
        "FF0BFFFF0101FF166136C19146180004FF090130FF0A0114FF0F000175640367E800046878",
        {"battery": 100, "temperature": 23.2, "humidity": 60.0},
        {(EM300, T, 23.2), (EM300, H, 60.0), (EM300, B, 100.0), (EM300, S, -97.0)},
        set(),
        id="em300-power-on-info",
    ),
    pytest.param(
        "lht65n.js",
        2,
        # BAT CBEA: status 3, 0x0BEA = 3050 mV; SHT 0x012E = 3.02 °C; 0x037F = 89.5 %;
        # Ext 01 = DS18B20; probe 0x0113 = 2.75 °C; 7FFF unused
        "CBEA012E037F0101137FFF",
        {
            "BatV": 3.05,
            "Bat_status": 3,
            "TempC_SHT": 3.02,
            "Hum_SHT": 89.5,
            "Ext_sensor": "Temperature Sensor",
            "TempC_DS": 2.75,
        },
        {
            (f"{LHT65N}:sht", T, 3.02),
            (f"{LHT65N}:sht", H, 89.5),
            (f"{LHT65N}:ds", T, 2.75),
            (LHT65N, B, 100.0),  # 3.05 V is above the 3.0 V "full" point
            (LHT65N, S, -97.0),
        },
        set(),
        id="lht65n-with-probe",
    ),
    pytest.param(
        "lht65n.js",
        2,
        # 0xCB86 = 2950 mV; SHT 0xF8DF = -1825 -> -18.25; 0x026F = 62.3 %; probe 0xF862 =
        # -1950 -> -19.5 °C
        "CB86F8DF026F01F8627FFF",
        {
            "BatV": 2.95,
            "Bat_status": 3,
            "TempC_SHT": -18.25,
            "Hum_SHT": 62.3,
            "Ext_sensor": "Temperature Sensor",
            "TempC_DS": -19.5,
        },
        {
            (f"{LHT65N}:sht", T, -18.25),
            (f"{LHT65N}:sht", H, 62.3),
            (f"{LHT65N}:ds", T, -19.5),
            (LHT65N, B, 90.9),  # (2.95 - 2.45) / 0.55
            (LHT65N, S, -97.0),
        },
        set(),
        id="lht65n-freezer",
    ),
    pytest.param(
        "lht65n.js",
        2,
        # 0x8AF0: status 2, 2800 mV; 3.11 °C; 90.1 %; Ext 01 but the probe reads 7FFF
        "8AF001370385017FFF7FFF",
        {
            "BatV": 2.8,
            "Bat_status": 2,
            "TempC_SHT": 3.11,
            "Hum_SHT": 90.1,
            "Ext_sensor": "Temperature Sensor",
            "TempC_DS": 327.67,
        },
        {
            (f"{LHT65N}:sht", T, 3.11),
            (f"{LHT65N}:sht", H, 90.1),
            (LHT65N, B, 63.6),
            (LHT65N, S, -97.0),
        },
        {(f"{LHT65N}:ds", T, FaultCode.ABSENT_PROBE)},
        id="lht65n-probe-absent",
    ),
]


@needs_node
@pytest.mark.parametrize("network", sorted(_NETWORKS))
@pytest.mark.parametrize(
    ("codec", "f_port", "payload_hex", "output", "readings", "faults"), _UPLINKS
)
def test_codec_output_decodes_through_the_network_family(
    network: str,
    codec: str,
    f_port: int,
    payload_hex: str,
    output: dict[str, Any],
    readings: Readings,
    faults: Faults,
) -> None:
    result = _run_codec(codec, f_port, payload_hex)
    assert result["errors"] == []
    assert result["data"] == output
    dev_eui = EM300 if codec == "em300-th.js" else LHT65N
    wrap, family = _NETWORKS[network]
    topic, payload = wrap(dev_eui, f_port, payload_hex, codec_object(result))
    message = family.decode(topic, payload)
    assert message.device_id == dev_eui
    assert message.seq == 1234
    assert message.ts_ms == 1715310900775
    assert _readings(message) == readings
    assert _faults(message) == faults


@needs_node
def test_lht65n_absent_probe_warns() -> None:
    result = _run_codec("lht65n.js", 2, "8AF001370385017FFF7FFF")
    assert any("327.67" in warning for warning in result["warnings"])


@needs_node
def test_em300_history_record_is_a_reading_of_its_own_time() -> None:
    # Milesight's documented example: 20 CE, time 0x6346749E, 0x0110 = 27.2 °C, 0x5D = 46.5 %.
    result = _run_codec("em300-th.js", 85, "20CE9E74466310015D00")
    assert result["data"] == {
        "history": [{"timestamp": 1665561758, "temperature": 27.2, "humidity": 46.5}]
    }
    topic, payload = chirpstack_up(EM300, 85, "20CE9E74466310015D00", codec_object(result))
    message = CHIRPSTACK.decode(topic, payload)
    assert {(r.quantity, r.value, r.ts_ms) for r in message.readings if r.ts_ms} == {
        (T, 27.2, 1665561758000),
        (H, 46.5, 1665561758000),
    }


@needs_node
def test_lht65n_stored_records_keep_their_time_and_status_gives_battery() -> None:
    # Poll reply (Ext bit 6): one record, probe 2.75 °C, 3.02 °C, 89.5 %, time 0x663D9134.
    poll = _run_codec("lht65n.js", 2, "0113012E037F41663D9134")
    assert poll["data"] == {
        "Datalog": [
            {
                "time": "2024-05-10T03:15:00.000Z",
                "TempC_SHT": 3.02,
                "Hum_SHT": 89.5,
                "TempC_DS": 2.75,
            }
        ]
    }
    # Device status on fPort 5: LHT65N, firmware 1.1.5, AU915, 3.05 V.
    status = _run_codec("lht65n.js", 5, "0B011504FF0BEA")
    assert status["data"] == {
        "SENSOR_MODEL": "LHT65N",
        "FIRMWARE_VERSION": "1.1.5",
        "FREQUENCY_BAND": "AU915",
        "SUB_BAND": None,
        "BAT": 3.05,
    }
    for wrap, family in _NETWORKS.values():
        # Stored records are readings of their own time, not current ones.
        topic, payload = wrap(LHT65N, 2, "0113012E037F41663D9134", codec_object(poll))
        message = family.decode(topic, payload)
        at = 1715310900000
        assert {(r.sensor, r.quantity, r.value, r.ts_ms) for r in message.readings} == {
            (f"{LHT65N}:sht", T, 3.02, at),
            (f"{LHT65N}:sht", H, 89.5, at),
            (f"{LHT65N}:ds", T, 2.75, at),
            (LHT65N, S, -97.0, None),
        }
        assert message.unused == ()
        # The status uplink's battery is kept; the rest is listed as unused.
        topic, payload = wrap(LHT65N, 5, "0B011504FF0BEA", codec_object(status))
        message = family.decode(topic, payload)
        assert _readings(message) == {(LHT65N, B, 100.0), (LHT65N, S, -97.0)}
        assert message.unused == ("FIRMWARE_VERSION", "FREQUENCY_BAND", "SENSOR_MODEL", "SUB_BAND")


@needs_node
@pytest.mark.parametrize(
    ("codec", "f_port", "payload_hex"),
    [
        ("em300-th.js", 85, "01755C0367"),  # temperature cut short
        ("em300-th.js", 85, "99"),  # half a channel header
        ("lht65n.js", 2, "CBEA012E"),  # shorter than the 7 fixed bytes
    ],
)
def test_truncated_uplinks_are_codec_errors(codec: str, f_port: int, payload_hex: str) -> None:
    result = _run_codec(codec, f_port, payload_hex)
    assert result["errors"]
    topic, payload = chirpstack_up(EM300, f_port, payload_hex, codec_object(result))
    with pytest.raises(DecodeError) as info:
        CHIRPSTACK.decode(topic, payload)
    assert info.value.reason == "no_codec"


@needs_node
def test_em300_unknown_channel_keeps_what_came_before_with_a_warning() -> None:
    result = _run_codec("em300-th.js", 85, "01755C0577AA03671E00")
    assert result["errors"] == []
    assert result["data"] == {"battery": 92}
    assert result["warnings"]


@pytest.mark.parametrize("codec", sorted(p.name for p in CODECS.glob("*.js")))
def test_codecs_are_plain_es5_scripts(codec: str) -> None:
    """TTS and ChirpStack evaluate the file as a script: no modules, no ES6 syntax."""
    code = "\n".join(line.split("//", 1)[0] for line in (CODECS / codec).read_text().splitlines())
    assert re.search(r"^function decodeUplink\(input\) \{$", code, flags=re.M)
    for pattern in (
        r"\brequire\(",
        r"\bimport\b",
        r"\bexport\b",
        r"=>",
        r"\blet\b",
        r"\bconst\b",
        "`",
    ):
        assert not re.search(pattern, code), f"{codec}: {pattern}"
