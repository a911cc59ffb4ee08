"""MQTT clients for the broker ACL tests: devices and the ingester's user, as real clients.

Publishers are the project's own MQTT 3.1.1 client (``simulator.publisher.Publisher``:
credentials, last will, QoS 1 with PUBACKs awaited), as the devices' firmware is 3.1.1.
Subscribers are Mosquitto's own ``mosquitto_sub``, so what a subscriber receives is what
the broker delivered, with no client of ours in between.

Proving a negative: an attacker publishes its forged messages and then, on the same
connection, a message on a topic of its own (the *sentinel*). Mosquitto delivers one
connection's QoS 1 messages to a subscriber in order, so once the sentinel has arrived,
any forged message the broker let through has arrived too.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator

from coldchain.services import Mosquitto, find_binary
from core.settings import MqttTarget
from devices.base import Publish
from simulator.publisher import Publisher

_ids = itertools.count(1)
# How long to wait for a message the broker must deliver. Too low and a loaded machine
# fails the test; too high only delays a failing test.
DELIVERY_TIMEOUT_S = 20.0


def target(broker: Mosquitto, user: str | None, password: str | None) -> MqttTarget:
    """The broker's address with these credentials."""
    return MqttTarget("127.0.0.1", broker.port, tls=False, username=user, password=password)


class Subscriber:
    """``mosquitto_sub -t <filters>`` as ``user``, collecting every (topic, payload)."""

    def __init__(
        self,
        broker: Mosquitto,
        user: str | None,
        password: str | None,
        filters: Iterable[str] = ("#",),
    ) -> None:
        command = [
            # Line-buffered: mosquitto_sub's printf output to a pipe is otherwise held back.
            find_binary("stdbuf"), "-oL",
            find_binary("mosquitto_sub"),
            "-h", "127.0.0.1", "-p", str(broker.port),
            "-i", f"acl-test-sub-{next(_ids)}",
            "-q", "1", "-d",
            # Hex payloads: one line per message whatever the payload holds.
            "-F", "MSG\t%t\t%x",
        ]  # fmt: skip
        if user is not None:
            command += ["-u", user]
        if password is not None:
            command += ["-P", password]
        for topic_filter in filters:
            command += ["-t", topic_filter]
        self.received: list[tuple[str, bytes]] = []
        self.output: list[str] = []
        self._cond = threading.Condition()
        self._subscribed = False
        self._proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._cond:
                self.output.append(line.rstrip("\n"))
                if line.startswith("MSG\t"):
                    _, topic, payload = line.rstrip("\n").split("\t", 2)
                    self.received.append((topic, bytes.fromhex(payload)))
                elif line.startswith("Subscribed (mid:"):
                    self._subscribed = True
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_subscribed(self, timeout: float = DELIVERY_TIMEOUT_S) -> None:
        """Block until the broker acknowledged the subscription."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._subscribed or self._proc.poll() is not None, timeout
            ):
                raise AssertionError(f"no SUBACK in {timeout}s: {self.output[-5:]}")
        if not self._subscribed:
            raise AssertionError(f"mosquitto_sub exited: {self.output[-5:]}")

    def wait_for(
        self, topic: str, payload: bytes | None = None, timeout: float = DELIVERY_TIMEOUT_S
    ) -> bytes:
        """The payload of the first message on ``topic`` (with ``payload`` if given),
        waiting for it."""
        with self._cond:
            found = self._cond.wait_for(lambda: self._find(topic, payload) is not None, timeout)
            if not found:
                raise AssertionError(f"{topic} never arrived; got {self.received[-20:]}")
            got = self._find(topic, payload)
            assert got is not None
            return got

    def wait_output(self, pattern: str, timeout: float = DELIVERY_TIMEOUT_S) -> str:
        """The first line mosquitto_sub printed (messages, debug, errors) matching
        ``pattern``, waiting for it."""

        def found() -> str | None:
            return next((line for line in self.output if re.search(pattern, line)), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no line matching {pattern!r}: {self.output[-10:]}")
            line = found()
            assert line is not None
            return line

    def _find(self, topic: str, payload: bytes | None) -> bytes | None:
        return next((p for t, p in self.received if t == topic and payload in (None, p)), None)

    def topics(self) -> list[str]:
        """Topics received so far, in order."""
        with self._cond:
            return [t for t, _ in self.received]

    def exit_code(self, timeout: float = DELIVERY_TIMEOUT_S) -> int:
        """Wait for mosquitto_sub to exit (a refused connection) and return its code."""
        code = self._proc.wait(timeout)
        self._reader.join(timeout)  # everything it printed is in `output`
        return code

    def close(self) -> None:
        """Stop the subscriber."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._reader.join(10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


@contextlib.contextmanager
def subscriber(
    broker: Mosquitto, user: str | None, password: str | None, filters: Iterable[str] = ("#",)
) -> Iterator[Subscriber]:
    """A subscribed :class:`Subscriber`, closed afterwards."""
    sub = Subscriber(broker, user, password, filters)
    try:
        sub.wait_subscribed()
        yield sub
    finally:
        sub.close()


@contextlib.contextmanager
def device(
    broker: Mosquitto,
    user: str | None,
    password: str | None,
    *,
    will: Publish | None = None,
    client_id: str | None = None,
) -> Iterator[Publisher]:
    """A connected publisher (a device's connection), disconnected afterwards."""
    client = Publisher(
        target(broker, user, password),
        client_id or f"acl-test-dev-{next(_ids)}",
        will=will,
        ack_timeout=DELIVERY_TIMEOUT_S,
    )
    client.connect()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()


def publish_then_sentinel(
    client: Publisher, messages: Iterable[Publish], sentinel: Publish, watcher: Subscriber
) -> None:
    """Publish ``messages`` then ``sentinel`` on one connection; return once the sentinel
    reached ``watcher`` (so every message the broker accepted has reached it too)."""
    for message in messages:
        client.publish(message)
    client.publish(sentinel)
    client.flush()
    watcher.wait_for(sentinel.topic, sentinel.payload)
