"""Publishing devices' native messages over MQTT: the one paho import site for publishing.

Used by the simulator, the benchmarks and the tests. QoS 1 publishes are pipelined with a
bounded window of unacknowledged messages and :meth:`Publisher.flush` waits for every
PUBACK, so a caller knows the broker holds everything it sent (``mosquitto_pub -l`` exits
with messages still queued: research/perf-limits.md §2.6).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import paho.mqtt.client as paho  # noqa: TID251 - the one import site for publishing
from paho.mqtt.enums import CallbackAPIVersion  # noqa: TID251

from core.settings import MqttTarget
from devices.base import Publish

# Unacknowledged QoS 1 publishes in flight. Too small and a loaded broker's round trip
# throttles the simulator; too large and a broker outage buffers a lot in memory.
WINDOW = 1000


class PublishError(RuntimeError):
    """The broker could not be reached or did not acknowledge in time."""


class Publisher:
    """A connected MQTT client that publishes :class:`~devices.base.Publish` messages."""

    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        *,
        will: Publish | None = None,
        window: int = WINDOW,
    ) -> None:
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311
        )
        self._client.max_inflight_messages_set(window)
        self._client.max_queued_messages_set(0)
        if target.username:
            self._client.username_pw_set(target.username, target.password)
        if target.tls:
            self._client.tls_set()
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._target = target
        self._window = window
        self._cond = threading.Condition()
        self._unacked: set[int] = set()
        self._early: set[int] = set()
        self._connected = threading.Event()
        self.published = 0
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and start the network thread."""
        self._client.connect_async(self._target.host, self._target.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            raise PublishError(f"no MQTT connection to {self._target.host}:{self._target.port}")

    def publish(self, message: Publish) -> None:
        """Publish one message, blocking while the window is full."""
        with self._cond:
            while len(self._unacked) >= self._window:
                self._cond.wait(1.0)
        # Not under our lock: paho's thread holds its own lock while it calls _on_publish.
        info = self._client.publish(
            message.topic, message.payload, qos=message.qos, retain=message.retain
        )
        with self._cond:
            if message.qos > 0:
                if info.mid in self._early:  # the PUBACK beat us here
                    self._early.discard(info.mid)
                else:
                    self._unacked.add(info.mid)
            self.published += 1

    def publish_many(self, messages: Iterable[Publish]) -> None:
        """Publish messages in order."""
        for message in messages:
            self.publish(message)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until the broker acknowledged every QoS 1 publish."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._unacked:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PublishError(f"{len(self._unacked)} publishes not acknowledged")
                self._cond.wait(min(left, 0.5))

    def disconnect(self) -> None:
        """Flush, then disconnect cleanly (no last will)."""
        try:
            self.flush()
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def drop(self) -> None:
        """Close the socket without DISCONNECT, so the broker publishes the last will."""
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()

    def _on_connect(self, *_args: object) -> None:
        self._connected.set()

    def _on_publish(self, _client: object, _userdata: object, mid: int, *_rest: object) -> None:
        with self._cond:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early.add(mid)
            self._cond.notify_all()
