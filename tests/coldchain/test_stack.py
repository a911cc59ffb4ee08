"""The composed process (`coldchain run` without the API) against real servers, and the
split deployment where `coldchain ingest` feeds `coldchain alerting` over MQTT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alerting.notifiers.console import ConsoleNotifier
from coldchain.compose import build_stack
from coldchain.services import Mosquitto
from core.chain import parse_chain
from core.clock import SystemClock
from core.registry import Registry
from core.settings import Settings, as_env
from devices.base import Publish
from simulator.publisher import Publisher
from tests.ingest.helpers import wait_for

pytestmark = pytest.mark.integration

CHAIN = {
    "stores": [{"id": "s1", "name": "Centro", "timezone": "America/Mexico_City", "language": "es"}],
    "assets": [{"id": "s1-wic", "store": "s1", "type": "walkin_cooler", "name": "Camara"}],
    "sensors": [{"id": "cc-1", "asset": "s1-wic", "interval": "60s"}],
    "contacts": [
        {"id": "mgr", "name": "Gerente", "phone": "+525555550101", "roles": ["store_manager"]}
    ],
}


def _readings(values: list[float]) -> list[Publish]:
    start = time.time() - len(values) * 60
    return [
        Publish(
            "coldchain/v1/cc-1/telemetry",
            json.dumps({"ts": round(start + i * 60, 3), "temperature_c": v}).encode(),
        )
        for i, v in enumerate(values)
    ]


def test_run_stack_pages_on_a_hard_ceiling(
    influx_settings: Settings, broker: Mosquitto, tmp_path: Path
) -> None:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    Registry(settings.db).import_chain(parse_chain(CHAIN))
    lines: list[str] = []
    notifier = ConsoleNotifier(out=lines.append)
    stack = build_stack(settings, SystemClock(), notifier=notifier, with_api=False)
    stack.start()
    try:
        assert stack.ingester.wait_connected(10)
        time.sleep(0.3)
        pub = Publisher(settings.mqtt, "stack-pub")
        pub.connect()
        pub.publish_many(_readings([3.0, 3.1, 11.5, 11.6]))  # the jump, confirmed
        pub.disconnect()
        wait_for(lambda: len(notifier.sent) == 1, 20, "one SMS")
    finally:
        stack.stop()
    [message] = notifier.sent
    assert message.to == "+525555550101"
    assert "CRITICO Camara 11.6C (limite 10C)" in message.body
    assert lines
    assert lines[0].startswith("SMS to +525555550101")
    alerts = Registry(settings.db).query("SELECT kind, state FROM alerts")
    assert [(r["kind"], r["state"]) for r in alerts] == [("temperature", "firing")]


def test_split_ingest_and_alerting_processes(
    influx_settings: Settings, broker: Mosquitto, tmp_path: Path
) -> None:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    Registry(settings.db).import_chain(parse_chain(CHAIN))
    env = dict(
        os.environ,
        **as_env(settings),
        COLDCHAIN_PUBLISH_OBSERVATIONS="true",
        COLDCHAIN_LOG_LEVEL="INFO",
    )
    log = tmp_path / "split.log"
    with log.open("wb") as out:
        procs = [
            subprocess.Popen([sys.executable, "-m", "coldchain", cmd], env=env, stdout=out,
                             stderr=subprocess.STDOUT)
            for cmd in ("alerting", "ingest")
        ]  # fmt: skip
    try:
        wait_for(lambda: log.read_text().count("MQTT connected") >= 2, 20, "both connected")
        time.sleep(0.5)
        pub = Publisher(settings.mqtt, "split-pub")
        pub.connect()
        pub.publish_many(_readings([3.0, 3.2, 12.0, 12.1]))  # the jump, confirmed
        pub.disconnect()
        wait_for(lambda: "SMS to +525555550101" in log.read_text(), 30, "the page")
    finally:
        for proc in procs:
            proc.terminate()
        codes = [proc.wait(30) for proc in procs]
    assert codes == [0, 0], log.read_text()[-3000:]
    assert "CRITICO Camara 12.1C" in log.read_text()
