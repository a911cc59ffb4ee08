"""Every process kind serves ``/metrics`` (issue 14): real ``coldchain`` subprocesses on the
real broker and InfluxDB, scraped over HTTP and read with prometheus-client's parser.

Split mode: ``coldchain ingest`` (publishing observations) and ``coldchain alerting``, each
on its own ``COLDCHAIN_METRICS_BIND``; a device message travels through both, and each
says so in its own series. Alerting runs under a stand-in for systemd (a real unix
datagram socket as ``$NOTIFY_SOCKET``): it says READY, pings the watchdog while it ticks,
and says STOPPING on SIGTERM. ``coldchain run`` and ``coldchain api`` serve theirs on the
API port.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from coldchain.services import Mosquitto, free_port
from core.chain import parse_chain
from core.metrics import Family, parse
from core.registry import Registry
from core.settings import Settings
from devices.base import Publish
from simulator.publisher import Publisher
from tests.fakes.twilio_server import FakeTwilioServer
from tests.processes import SID, TOKEN, Coldchain, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAIN_YAML = """
stores:
  - {id: s042, name: San Pedro, country: GT, timezone: America/Guatemala, language: es}
assets:
  - {id: s042-wic1, store: s042, type: walkin_cooler, name: Camara 1}
sensors:
  - {id: cc-wic1, asset: s042-wic1, family: native, interval: 60s}
contacts:
  - {id: noc, name: NOC, phone: "+50255550199", roles: [oncall]}
"""
LISTENING = re.compile(rb"metrics on http://127\.0\.0\.1:(\d+)/metrics")


@pytest.fixture
def twilio() -> Iterator[FakeTwilioServer]:
    with FakeTwilioServer(SID, TOKEN) as server:
        yield server


@pytest.fixture
def settings(influx_settings: Settings, broker: Mosquitto) -> Settings:
    chained = influx_settings.model_copy(update={"mqtt_url": broker.url})
    registry = Registry(chained.db)
    registry.import_chain(parse_chain(yaml.safe_load(CHAIN_YAML)))
    registry.close()
    return chained


def _running(process: Coldchain) -> None:
    assert process.proc is not None, "not started"
    assert process.proc.poll() is None, process.tail()


def _port(process: Coldchain) -> int:
    """The port a process with COLDCHAIN_METRICS_BIND=...:0 logged it listens on."""
    found: list[int] = []

    def logged() -> bool:
        _running(process)
        match = LISTENING.search(process.log.read_bytes()) if process.log.exists() else None
        if match:
            found.append(int(match.group(1)))
        return bool(match)

    wait_for(f"{process.command[0]} to listen for scrapes", logged, 30)
    return found[0]


def _scrape(url: str) -> dict[str, Family]:
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200
    return parse(response.text)  # what Prometheus would accept, or ValueError


def _value(families: dict[str, Family], name: str, sample: str | None = None,
           **labels: str) -> float:  # fmt: skip
    family = families.get(name)
    assert family is not None, f"{name} missing from /metrics"
    value = family.value(sample, **labels)
    assert value is not None, f"{name} {labels} missing: {family.samples}"
    return value


def _kind(families: dict[str, Family]) -> str:
    [(_, labels, value)] = families["coldchain_process_info"].samples
    assert value == 1.0
    assert _value(families, "process_start_time_seconds") > time.time() - 600
    return labels["kind"]


class Systemd:
    """What systemd listens with: a unix datagram socket, and what arrived on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.received

    def close(self) -> None:
        self.sock.close()


def test_split_processes_serve_their_metrics_and_speak_to_systemd(
    settings: Settings, twilio: FakeTwilioServer, tmp_path: Path
) -> None:
    systemd = Systemd(tmp_path / "notify.sock")
    alerting = Coldchain(
        ["alerting"], settings, twilio, tmp_path / "alerting.log",
        COLDCHAIN_METRICS_BIND="127.0.0.1:0", NOTIFY_SOCKET=str(systemd.path),
        WATCHDOG_USEC="1000000",
    )  # fmt: skip
    ingest = Coldchain(
        ["ingest"], settings, twilio, tmp_path / "ingest.log",
        COLDCHAIN_METRICS_BIND="127.0.0.1:0", COLDCHAIN_PUBLISH_OBSERVATIONS="true",
    )  # fmt: skip
    publisher = Publisher(settings.mqtt, "metrics-device")
    try:
        alerting.start()
        alerting_url = f"http://127.0.0.1:{_port(alerting)}/metrics"
        wait_for("READY=1", lambda: "READY=1" in systemd.drain(), 60)
        ingest.start()
        ingest_url = f"http://127.0.0.1:{_port(ingest)}/metrics"
        connected = "coldchain_ingest_mqtt_connected"
        wait_for("ingest connected", lambda: _value(_scrape(ingest_url), connected) == 1)
        publisher.connect()

        def evaluated() -> bool:
            body = {"ts": time.time(), "temperature_c": 3.1}
            topic = "coldchain/v1/cc-wic1/telemetry"
            publisher.publish(Publish(topic, json.dumps(body).encode()))
            publisher.flush()
            time.sleep(0.3)
            done = _scrape(alerting_url)
            return _value(done, "coldchain_alerting_observations_evaluated") >= 1

        wait_for("a reading evaluated by alerting", evaluated, 30)

        seen = _scrape(ingest_url)
        assert _kind(seen) == "ingest"
        assert _value(seen, "coldchain_ingest_messages", family="native") >= 1
        assert _value(seen, "coldchain_ingest_points_written") >= 1
        assert _value(seen, "coldchain_ingest_inflight_limit") == settings.max_inflight
        assert _value(seen, "coldchain_ingest_spool_limit_bytes") == settings.spool_max_mb << 20
        assert _value(seen, "coldchain_ingest_unacked_messages") >= 0
        assert _value(seen, "coldchain_ingest_pending_points") >= 0
        assert _value(seen, "coldchain_ingest_spool_bytes") == 0

        first = _scrape(alerting_url)
        assert _kind(first) == "alerting"
        assert _value(first, "coldchain_alerting_is_leader") == 1
        lag = "coldchain_alerting_evaluation_lag_seconds"
        assert _value(first, lag, f"{lag}_count") >= 1  # the batch said when it was durable
        assert 0 <= _value(first, lag, f"{lag}_sum") < 30 * _value(first, lag, f"{lag}_count")
        assert _value(first, "coldchain_alerting_seconds_since_last_tick") < 5
        heartbeat = "coldchain_alerting_lease_heartbeat_timestamp_seconds"
        assert _value(first, heartbeat) == pytest.approx(time.time(), abs=5)
        time.sleep(2.2)  # two ticks of the 1 s scheduler
        assert _value(_scrape(alerting_url), heartbeat) >= _value(first, heartbeat) + 1

        pings = systemd.drain().count("WATCHDOG=1")
        assert pings >= 2, systemd.received  # every 0.5 s while ticking
        assert alerting.stop() == 0, alerting.tail()
        assert systemd.drain()[-1] == "STOPPING=1"
        assert ingest.stop() == 0, ingest.tail()
    except BaseException as exc:
        exc.add_note(f"alerting log:\n{alerting.tail()}\ningest log:\n{ingest.tail()}")
        raise
    finally:
        publisher.disconnect()
        alerting.stop()
        ingest.stop()
        systemd.close()


@pytest.mark.parametrize("command", ["run", "api"])
def test_run_and_api_serve_theirs_on_the_api_port(
    command: str, settings: Settings, twilio: FakeTwilioServer, tmp_path: Path
) -> None:
    port = free_port()
    # Split mode: the standalone API follows the observations ingest publishes.
    split = {"COLDCHAIN_PUBLISH_OBSERVATIONS": "true"} if command == "api" else {}
    process = Coldchain([command], settings, twilio, tmp_path / f"{command}.log",
                        COLDCHAIN_API_BIND=f"127.0.0.1:{port}", **split)  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"

    def serving() -> bool:
        _running(process)
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        process.start()
        wait_for(f"coldchain {command} serving", serving, 60)
        families = _scrape(url)
        assert _kind(families) == command
        assert "coldchain_api_requests" in families
        if command == "run":  # one registry: ingest, alerting and the pump between them
            assert _value(families, "coldchain_alerting_queue_capacity_batches") == 256
            assert _value(families, "coldchain_alerting_queued_batches") == 0
            wait_for(
                "the first tick", lambda: _value(_scrape(url), "coldchain_alerting_is_leader") == 1
            )
            assert "coldchain_ingest_unacked_messages" in families
        else:  # its latest-value feed (coldchain/latest_feed.py) is subscribed
            wait_for("the latest-value feed", lambda: "MQTT subscribed" in process.tail(), 30)
        assert process.stop() == 0, process.tail()
    finally:
        process.stop()
