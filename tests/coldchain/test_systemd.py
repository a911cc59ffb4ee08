"""sd_notify without a dependency, against a real unix datagram socket standing in for
systemd (coldchain/systemd.py); a real ``coldchain alerting`` under it is in
tests/coldchain/test_process_metrics.py."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldchain.systemd import SystemdNotifier, Watchdog
from tests.processes import wait_for


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_ready_and_stopping_reach_the_socket(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert notifier.stopping()
    assert [sock.recv(100), sock.recv(100)] == [b"READY=1", b"STOPPING=1"]


def test_an_abstract_socket_is_named_with_an_at_sign() -> None:
    name = f"coldchain-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"


def test_outside_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not SystemdNotifier({}).ready()
    gone = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.enabled
    assert not gone.notify("READY=1")  # logged once, never raised
    watchdog = Watchdog(SystemdNotifier({}), lambda: True)
    watchdog.start()  # no WATCHDOG_USEC: no thread
    assert watchdog._thread is None
    watchdog.stop()


def test_the_watchdog_period_is_for_the_process_systemd_watches() -> None:
    mine = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    assert SystemdNotifier(mine).watchdog_s == 30.0
    assert Watchdog(SystemdNotifier(mine), lambda: True).interval_s == 15.0
    assert SystemdNotifier({**mine, "WATCHDOG_PID": str(os.getpid())}).watchdog_s == 30.0
    assert SystemdNotifier({**mine, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_s is None


def test_pings_only_while_healthy(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    healthy = threading.Event()
    healthy.set()
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}  # 0.1 s: pings every 0.05 s
    watchdog = Watchdog(SystemdNotifier(env), healthy.is_set)
    watchdog.start()
    try:
        assert sock.recv(100) == b"WATCHDOG=1"
        wait_for("a few pings", lambda: watchdog.pings >= 3, 5)
        healthy.clear()
        wait_for("a withheld ping", lambda: watchdog.withheld >= 2, 5)
        sock.settimeout(0.05)
        while True:  # what was sent before the check failed
            try:
                sock.recv(100)
            except TimeoutError:
                break
        pings = watchdog.pings
        time.sleep(0.3)
        assert watchdog.pings == pings  # systemd would now kill and restart the unit
        with pytest.raises(TimeoutError):
            sock.recv(100)
        healthy.set()
        sock.settimeout(2)
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        watchdog.stop()
