"""The Node-RED peer of ``coldchain bench ingest``: installed by the bench, never by tests.

Two flows on the same payloads as coldchain, into the same InfluxDB 1.x:

- **default**: ``mqtt in -> json -> function -> influxdb out``, one write per message;
- **batched** (tuned): ``mqtt in -> json -> function -> join 5000 / 200 ms -> influxdb
  batch``, the flow the issue measured at 25.8k msg/s.

Both subscribe at QoS 1 with a persistent session (``cleansession: false``, fixed client
id), which is as durable as Node-RED's MQTT node gets: MQTT.js acknowledges a message when
it arrives, before the write, so whatever is in the flow when the process dies or while
InfluxDB is down is lost (the drills measure how much).

Installing is this module's job (``npm install`` of pinned versions into a cache folder,
``COLDCHAIN_BENCH_CACHE`` or ``~/.cache/coldchain``): ``make test`` never needs npm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from coldchain.services import free_port

# Pinned like our Python dependencies: the figures name what was measured.
NODE_RED_VERSION = "4.1.15"
INFLUXDB_NODES_VERSION = "0.7.0"

_FUNCTION_DEFAULT = """const p = msg.payload;
msg.payload = [{value: p.temperature_c, time: new Date(p.ts * 1000)},
               {sensor: msg.topic.split('/')[2]}];
return msg;"""
_FUNCTION_BATCHED = """const p = msg.payload;
msg.payload = {measurement: 'temperature', fields: {value: p.temperature_c},
               tags: {sensor: msg.topic.split('/')[2]}, timestamp: new Date(p.ts * 1000)};
return msg;"""


class NodeRedUnavailable(RuntimeError):
    """npm or node is missing, or the install failed."""


def cache_dir() -> Path:
    """Where the bench keeps its npm install."""
    base = os.environ.get("COLDCHAIN_BENCH_CACHE") or str(Path.home() / ".cache" / "coldchain")
    return Path(base) / f"node-red-{NODE_RED_VERSION}"


def ensure_installed() -> Path:
    """Install Node-RED and node-red-contrib-influxdb (once); return the install folder.

    Raises:
        NodeRedUnavailable: no node/npm, or npm failed.
    """
    folder = cache_dir()
    red = folder / "node_modules" / "node-red" / "red.js"
    influx = folder / "node_modules" / "node-red-contrib-influxdb" / "influxdb.js"
    if red.is_file() and influx.is_file():
        return folder
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise NodeRedUnavailable("node and npm are needed for the Node-RED peer")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text('{"name": "coldchain-bench-node-red", "private": true}')
    result = subprocess.run(
        [
            npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
            f"node-red@{NODE_RED_VERSION}",
            f"node-red-contrib-influxdb@{INFLUXDB_NODES_VERSION}",
        ],
        cwd=folder, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise NodeRedUnavailable(f"npm install failed: {result.stderr[-500:]}")
    return folder


def flows(
    *, batched: bool, mqtt_port: int, influx_port: int, database: str, client_id: str
) -> list[dict[str, object]]:
    """The flow file: one MQTT source, a JSON parse, a function, InfluxDB out.

    Ids are prefixed: Node-RED takes any property value equal to a node id (a json node
    with id "json" and type "json") for a config-node reference, and refuses the flow.
    """
    broker = {
        "id": "n-broker", "type": "mqtt-broker", "name": "", "broker": "127.0.0.1",
        "port": str(mqtt_port), "clientid": client_id, "autoConnect": True, "usetls": False,
        "protocolVersion": "4", "keepalive": "60", "cleansession": False,
        "birthTopic": "", "closeTopic": "", "willTopic": "",
    }  # fmt: skip
    influx = {
        "id": "n-influx", "type": "influxdb", "hostname": "127.0.0.1", "port": str(influx_port),
        "protocol": "http", "database": database, "name": "", "usetls": False, "tls": "",
        "influxdbVersion": "1.x",
    }  # fmt: skip
    nodes: list[dict[str, object]] = [
        {"id": "n-tab", "type": "tab", "label": "bench"},
        broker,
        influx,
        {
            "id": "n-in", "type": "mqtt in", "z": "n-tab", "topic": "coldchain/v1/+/telemetry",
            "qos": "1", "datatype": "utf8", "broker": "n-broker", "nl": False, "rap": True,
            "rh": 0, "inputs": 0, "wires": [["n-json"]],
        },
        {"id": "n-json", "type": "json", "z": "n-tab", "property": "payload", "action": "obj",
         "pretty": False, "wires": [["n-fn"]]},
    ]  # fmt: skip
    if batched:
        nodes += [
            {"id": "n-fn", "type": "function", "z": "n-tab", "func": _FUNCTION_BATCHED,
             "outputs": 1, "wires": [["n-join"]]},
            {
                "id": "n-join", "type": "join", "z": "n-tab", "mode": "custom", "build": "array",
                "property": "payload", "propertyType": "msg", "key": "topic", "joiner": "\\n",
                "joinerType": "str", "accumulate": False, "timeout": "0.2", "count": "5000",
                "reduceRight": False, "wires": [["n-out"]],
            },
            {"id": "n-out", "type": "influxdb batch", "z": "n-tab", "influxdb": "n-influx",
             "precision": "", "retentionPolicy": "", "wires": []},
        ]  # fmt: skip
    else:
        nodes += [
            {"id": "n-fn", "type": "function", "z": "n-tab", "func": _FUNCTION_DEFAULT,
             "outputs": 1, "wires": [["n-out"]]},
            {"id": "n-out", "type": "influxdb out", "z": "n-tab", "influxdb": "n-influx",
             "measurement": "temperature", "precision": "", "retentionPolicy": "",
             "wires": []},
        ]  # fmt: skip
    return nodes


def command(install: Path, user_dir: Path, flow: list[dict[str, object]]) -> list[str]:
    """Write the flow into ``user_dir`` and return the command that runs it."""
    user_dir.mkdir(parents=True, exist_ok=True)
    (user_dir / "flows.json").write_text(json.dumps(flow))
    # Node-RED loads nodes from <userDir>/node_modules: point it at the install.
    modules = user_dir / "node_modules"
    if not modules.exists():
        modules.symlink_to(install / "node_modules")
    node = shutil.which("node") or "node"
    red = str(install / "node_modules" / "node-red" / "red.js")
    return [node, red, "--userDir", str(user_dir), "--port", str(free_port()), "flows.json"]
