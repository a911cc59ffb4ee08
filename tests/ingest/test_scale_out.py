"""Horizontal ingest (issue 14): several `coldchain ingest` processes in one share group.

Drill with real processes: three members share `$share/<group>/...`, one is killed with
SIGKILL mid-stream. Mosquitto keeps dispatching the dead member's share to its persistent
session, so that share waits (the stored count stalls below the total) until the member
returns; then every reading is stored exactly once per (sensor, timestamp).
Also: a configuration that would make two members share one client id is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coldchain.services import Mosquitto
from core.clock import SystemClock
from core.errors import ConfigError
from core.influx import InfluxV1
from core.settings import Settings, as_env, load_settings, parse_mqtt_url
from ingest.mqtt import AckToken, MqttSource
from ingest.service import ClaimError, Ingester
from simulator.publisher import Publisher
from tests.ingest.helpers import count, make_registry, wait_for
from tests.ingest.test_reliability import _readings, _registry

MEMBERS = ("1", "2", "3")


def _spawn(settings: Settings, member: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coldchain", "ingest"],
            env=_env(settings, member),
            stdout=out,
            stderr=out,
        )


def _env(settings: Settings, member: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        as_env(settings),
        COLDCHAIN_SHARE_GROUP="drill",
        COLDCHAIN_INGEST_MEMBER=member,
        COLDCHAIN_BATCH_SIZE="500",
        COLDCHAIN_LOG_LEVEL="INFO",
    )
    return env


class StatusWatch:
    """The last retained status of each ingester (coldchain/v1/_ingest/<id>/status)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.last: dict[str, str] = {}
        self.source = MqttSource(
            parse_mqtt_url(broker.url), "status-watch", ["coldchain/v1/_ingest/+/status"],
            self._handle, receive_maximum=100,
        )  # fmt: skip
        self.source.start()
        assert self.source.connected.wait(10)

    def _handle(self, topic: str, payload: bytes, _retained: bool, token: AckToken) -> None:
        self.last[topic.split("/")[3]] = payload.decode()
        self.source.ack(token)


def _stable(influx: InfluxV1, quiet_s: float = 2.0, timeout: float = 60.0) -> int:
    """The point count once it has not changed for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = count(influx, "temperature")
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
        time.sleep(0.2)
    raise AssertionError("the count never settled")


@pytest.mark.integration
@pytest.mark.slow
def test_three_members_one_killed_mid_stream_lose_and_duplicate_nothing(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1, tmp_path: Path
) -> None:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    _registry(settings.db, 100).close()
    logs = {m: tmp_path / f"ingest-{m}.log" for m in MEMBERS}
    watch = StatusWatch(broker)
    procs = {m: _spawn(settings, m, logs[m]) for m in MEMBERS}
    try:
        wait_for(
            lambda: all("MQTT connected" in logs[m].read_text() for m in MEMBERS),
            30,
            "three members connected",
        )
        pub = Publisher(settings.mqtt, "drill-pub", window=2000)
        pub.connect()
        warm_up = _readings(devices=1, per_device=1, start=-1)[0]

        def warmed_up() -> bool:  # until the group exists on the broker, publishes vanish
            pub.publish(warm_up)
            time.sleep(0.3)
            return count(influx, "temperature") == 1

        wait_for(warmed_up, 30, "warm-up reading")
        time.sleep(1.0)  # every member's SUBSCRIBE is in

        killed: list[int] = []

        def killer() -> None:
            wait_for(lambda: count(influx, "temperature") > 1500, 60, "1,500 points")
            procs["2"].kill()  # SIGKILL: no drain, no acks
            procs["2"].wait()
            killed.append(count(influx, "temperature"))

        thread = threading.Thread(target=killer)
        thread.start()
        # Paced (10 chunks over ~2 s) so that the kill lands mid-stream and the broker
        # still has member 2's share of what follows to dispatch.
        readings = _readings(devices=100, per_device=100)
        for start in range(0, len(readings), 1000):
            pub.publish_many(readings[start : start + 1000])
            pub.flush()
            time.sleep(0.2)
        # the broker holds all 10,000
        thread.join()
        pub.disconnect()
        assert killed, "member 2 was not killed"
        assert killed[0] < 9_000, "the kill came after most was written"

        # The dead member's share waits in its session: not lost, not taken over. Its
        # status says so (the broker published its last will).
        stalled = _stable(influx)
        assert stalled < 10_001
        wait_for(lambda: watch.last.get("coldchain-ingest-2") == "offline", 10, "offline")
        assert watch.last["coldchain-ingest-1"] == "online"

        procs["2"] = _spawn(settings, "2", logs["2"])
        wait_for(lambda: count(influx, "temperature") == 10_001, 120, "all 10,001 points")
        wait_for(lambda: watch.last.get("coldchain-ingest-2") == "online", 10, "online")
    finally:
        watch.source.stop()
        for proc in procs.values():
            proc.terminate()
        for member, proc in procs.items():
            code = proc.wait(30)
            assert code in (0, -9), logs[member].read_text()[-2000:]
    per_sensor = influx.query('SELECT count("value") FROM temperature GROUP BY sensor')
    counts = {s.tags["sensor"]: s.values[0][1] for s in per_sensor}
    assert counts.pop("dev-000") == 101  # 100 readings + the warm-up
    assert set(counts.values()) == {100}
    assert len(counts) == 99
    # Every member took part: its own client id, its own spool folder.
    for member in MEMBERS:
        assert f"as coldchain-ingest-{member} " in logs[member].read_text()
        assert (settings.spool_dir / member).is_dir()


@pytest.mark.integration
@pytest.mark.slow
def test_a_retired_member_is_drained_and_its_share_goes_to_the_others(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1, tmp_path: Path
) -> None:
    """A stopped member's share waits for it; `coldchain ingest --retire` drains that
    share and deletes the session, after which the others receive everything."""
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    _registry(settings.db, 10).close()
    logs = {m: tmp_path / f"ingest-{m}.log" for m in ("1", "2")}
    watch = StatusWatch(broker)
    procs = {m: _spawn(settings, m, logs[m]) for m in ("1", "2")}
    pub = Publisher(settings.mqtt, "retire-pub", window=2000)
    pub.connect()
    try:
        wait_for(
            lambda: all("MQTT subscribed" in logs[m].read_text() for m in ("1", "2")),
            30,
            "both subscribed",
        )
        procs["2"].terminate()  # a clean stop: its share still goes to its session
        assert procs["2"].wait(30) == 0
        wait_for(lambda: watch.last.get("coldchain-ingest-2") == "stopped", 10, "stopped")
        pub.publish_many(_readings(devices=10, per_device=100))
        pub.flush()
        assert 0 < _stable(influx) < 1000  # member 2's share waits for it

        retire = subprocess.run(
            [sys.executable, "-m", "coldchain", "ingest", "--retire"],
            env=_env(settings, "2"), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert retire.returncode == 0, retire.stderr[-2000:]
        assert count(influx, "temperature") == 1000  # drained into InfluxDB
        pub.publish_many(_readings(devices=10, per_device=100, start=100))
        pub.flush()
        wait_for(lambda: count(influx, "temperature") == 2000, 30, "2,000 without member 2")
    finally:
        pub.disconnect()
        watch.source.stop()
        procs["1"].terminate()
        assert procs["1"].wait(30) == 0


def test_a_group_without_member_names_is_refused() -> None:
    with pytest.raises(ConfigError, match="COLDCHAIN_INGEST_MEMBER"):
        load_settings({"COLDCHAIN_SHARE_GROUP": "g"})
    settings = load_settings({"COLDCHAIN_SHARE_GROUP": "g", "COLDCHAIN_INGEST_MEMBER": "2"})
    assert settings.ingest_client_id == "coldchain-ingest-2"
    assert settings.ingest_spool_dir == Path("var/spool/2")
    with pytest.raises(ConfigError, match="COLDCHAIN_INGEST_MEMBER"):
        load_settings({"COLDCHAIN_INGEST_MEMBER": "a/b"})


@pytest.mark.integration
def test_a_second_ingester_with_the_same_client_id_is_refused_at_start(
    influx_settings: Settings, broker: Mosquitto, influx: InfluxV1, tmp_path: Path
) -> None:
    settings = influx_settings.model_copy(update={"mqtt_url": broker.url})
    registry = make_registry(settings.db)
    first = Ingester(settings, registry, influx, SystemClock())
    first.start()
    try:
        # Same id, another spool folder: still refused (the id lock is by the registry).
        other = settings.model_copy(update={"spool_dir": tmp_path / "other-spool"})
        second = Ingester(other, registry, influx, SystemClock())
        with pytest.raises(ClaimError, match="coldchain-ingest"):
            second.start()
        # Another member name: its own id and spool, accepted.
        member = settings.model_copy(update={"share_group": "g", "ingest_member": "b"})
        third = Ingester(member, registry, influx, SystemClock())
        third.start()
        third.stop()
    finally:
        first.stop()
    # Released on stop: the same id may start again.
    again = Ingester(settings, registry, influx, SystemClock())
    again.start()
    again.stop()
