"""The reference subscriber: paho-mqtt receiving QoS 1 and counting, nothing else.

This is the ceiling the ingester is compared with (DESIGN.md §7: end-to-end ingest must
reach 70 % of it in the same run). Same protocol (MQTT 5), same persistent session and
Receive Maximum as the ingester, so the only difference is the ingester's own work.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho  # noqa: TID251 - the measured baseline is raw paho
from paho.mqtt.enums import CallbackAPIVersion  # noqa: TID251
from paho.mqtt.packettypes import PacketTypes  # noqa: TID251
from paho.mqtt.properties import Properties  # noqa: TID251

from core.settings import MqttTarget, parse_mqtt_url


class CountingSubscriber:
    """Subscribes with a persistent session and counts QoS 1 messages."""

    def __init__(
        self, target: MqttTarget, client_id: str, topic: str, receive_maximum: int
    ) -> None:
        self.target = target
        self.topic = topic
        self.count = 0
        self.expected = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
        )
        self._props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        self._props.SessionExpiryInterval = 3600
        self._props.ReceiveMaximum = receive_maximum
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, expected: int) -> None:
        """Connect (resuming the session) and count until ``expected`` messages."""
        self.expected = expected
        self._client.connect(
            self.target.host, self.target.port, clean_start=False, properties=self._props
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect, keeping the session."""
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: paho.Client, *_args: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed.set()

    def _on_message(self, _client: paho.Client, _userdata: Any, _message: Any) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first_at = now
        self.count += 1
        self.last_at = now
        if self.count >= self.expected > 0:
            self.done.set()


def main() -> None:
    """``python -m bench.bare MQTT_URL CLIENT_ID TOPIC N``: a process of its own (so its
    CPU and memory are measured apart). Prints ``READY`` once subscribed, then one JSON
    line (count, first and last arrival as ``time.time()``) after N messages."""
    url, client_id, topic, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sub = CountingSubscriber(parse_mqtt_url(url), client_id, topic, 10_000)
    sub.start(expected)
    sub.subscribed.wait(30)
    print("READY", flush=True)
    if expected > 0:  # 0: only create the session and its subscription
        sub.done.wait()
    offset = time.time() - time.perf_counter()
    sub.stop()
    print(json.dumps({"count": sub.count, "t_first": sub.first_at + offset,
                      "t_last": sub.last_at + offset}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
