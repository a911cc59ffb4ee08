"""The simulator's MQTT publisher against a real Mosquitto, checked by a paho subscriber.

The subscriber is the ingester's own MQTT source (paho, a persistent MQTT 5 session), so
every packet the publisher writes is read back by an independent client implementation.
"""

from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from coldchain.services import Mosquitto
from core.settings import parse_mqtt_url
from devices.base import Publish
from ingest.mqtt import AckToken, MqttSource
from simulator.publisher import Publisher, PublishError
from tests.ingest.helpers import wait_for

pytestmark = pytest.mark.integration

PROBE = "pub/probe"


class Subscriber:
    """Records every message on ``pub/#`` in arrival order (and acknowledges it)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.received: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.source = MqttSource(
            parse_mqtt_url(broker.url), "test-sub", ["pub/#"], self._handle, receive_maximum=1000
        )

    def _handle(self, topic: str, payload: bytes, retain: bool, token: AckToken) -> None:
        with self._lock:
            self.received.append((topic, payload, retain))
        self.source.ack(token)

    def payloads(self, topic_prefix: str = "pub/m") -> list[bytes]:
        """Payloads received on topics starting with ``topic_prefix``, in order."""
        with self._lock:
            return [p for t, p, _ in self.received if t.startswith(topic_prefix)]

    def wait_until_subscribed(self, publisher: Publisher) -> None:
        """Probe until a message comes back: the subscription is in place."""

        def probed() -> bool:
            publisher.publish(Publish(PROBE, b"probe"))
            publisher.flush()
            time.sleep(0.05)
            return bool(self.payloads(PROBE))

        wait_for(probed, 20, "the subscription")


@pytest.fixture
def subscriber(broker: Mosquitto) -> Iterator[Subscriber]:
    """A subscriber on ``pub/#``, connected."""
    sub = Subscriber(broker)
    sub.source.start()
    assert sub.source.connected.wait(10)
    yield sub
    sub.source.stop()
    # paho closes its loop_start() socketpair only in Client.__del__, and the client sits
    # in a reference cycle with its callbacks: collect it now, where the socketpair's
    # ResourceWarning is expected, not at an arbitrary later point.
    del sub
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _messages(n: int, start: int = 0) -> list[Publish]:
    return [Publish(f"pub/m{i % 97}", f"{i:06d}".encode()) for i in range(start, start + n)]


def test_flush_means_the_broker_holds_every_message(
    broker: Mosquitto, subscriber: Subscriber
) -> None:
    publisher = Publisher(parse_mqtt_url(broker.url), "test-pub", window=500)
    publisher.connect()
    subscriber.wait_until_subscribed(publisher)
    messages = _messages(20_000)
    for message in messages[:15_000]:  # a flat-out burst: batched behind the window
        publisher.publish(message)
    publisher.publish_many(messages[15_000:])
    publisher.flush()  # every PUBACK is in: the broker holds all 20,000
    publisher.disconnect()
    wanted = [m.payload for m in messages]
    wait_for(lambda: len(subscriber.payloads()) >= len(wanted), 60, "20,000 messages")
    time.sleep(0.2)  # nothing more (no duplicates) trickles in
    assert subscriber.payloads() == wanted  # each once, in publish order


def test_a_short_burst_goes_out_without_flush(broker: Mosquitto, subscriber: Subscriber) -> None:
    """A paced caller never flushes: its last, batched messages still leave promptly."""
    publisher = Publisher(parse_mqtt_url(broker.url), "test-pub")
    publisher.connect()
    try:
        subscriber.wait_until_subscribed(publisher)
        messages = _messages(10)
        for message in messages:
            publisher.publish(message)
        # Within LINGER_S (2 ms) plus scheduling; the reader's 1 s poll alone would be late.
        wait_for(lambda: len(subscriber.payloads()) == 10, 0.8, "10 messages, no flush")
        assert subscriber.payloads() == [m.payload for m in messages]
    finally:
        publisher.disconnect()


def test_a_hung_broker_fills_the_window_then_publish_raises(broker: Mosquitto) -> None:
    publisher = Publisher(parse_mqtt_url(broker.url), "test-pub", window=10, ack_timeout=1.0)
    publisher.connect()
    broker.pause()  # SIGSTOP: the connection stays open, nothing is acknowledged
    try:
        for message in _messages(10):  # the window's worth goes out
            publisher.publish(message)
        started = time.monotonic()
        with pytest.raises(PublishError, match="no room in the window within 1 s"):
            publisher.publish(_messages(1, start=10)[0])
        assert 0.9 < time.monotonic() - started < 5
        with pytest.raises(PublishError, match=r"10 publishes not acknowledged in 0\.5 s"):
            publisher.flush(timeout=0.5)
    finally:
        broker.resume()
    publisher.flush(timeout=10)  # the broker wakes up and acknowledges all ten
    publisher.disconnect()


def test_a_broker_restart_loses_nothing(broker: Mosquitto, subscriber: Subscriber) -> None:
    """The publisher reconnects and re-sends what was not acknowledged (at least once)."""
    publisher = Publisher(parse_mqtt_url(broker.url), "test-pub", window=200)
    publisher.connect()
    subscriber.wait_until_subscribed(publisher)
    messages = _messages(4_000)
    for message in messages[:2_000]:
        publisher.publish(message)
    broker.restart()  # persistence keeps the subscriber's session and its queue
    for message in messages[2_000:]:
        publisher.publish(message)
    publisher.flush(timeout=60)
    publisher.disconnect()
    assert publisher.reconnects >= 1
    wanted = {m.payload for m in messages}
    wait_for(lambda: wanted <= set(subscriber.payloads()), 90, "every message after restart")


def test_drop_publishes_the_last_will_and_disconnect_does_not(
    broker: Mosquitto, subscriber: Subscriber
) -> None:
    target = parse_mqtt_url(broker.url)
    probe = Publisher(target, "test-probe")
    probe.connect()
    subscriber.wait_until_subscribed(probe)
    probe.disconnect()
    polite = Publisher(target, "polite", will=Publish("pub/will/polite", b"offline", retain=True))
    polite.connect()
    polite.publish(Publish("pub/m/polite", b"hello"))
    polite.disconnect()
    node = Publisher(target, "node", will=Publish("pub/will/node", b"offline", retain=True))
    node.connect()
    node.publish(Publish("pub/m/node", b"hello"))
    node.flush()
    node.drop()  # a power cut: no DISCONNECT
    wait_for(lambda: bool(subscriber.payloads("pub/will/node")), 10, "the node's will")
    assert subscriber.payloads("pub/will/node") == [b"offline"]
    assert subscriber.payloads("pub/m/") == [b"hello", b"hello"]
    assert subscriber.payloads("pub/will/polite") == []


def test_an_idle_connection_is_kept_alive(broker: Mosquitto, subscriber: Subscriber) -> None:
    """Without PINGREQs the broker would drop us after 1.5 keepalives and publish the will."""
    will = Publish("pub/will/idle", b"offline")
    publisher = Publisher(parse_mqtt_url(broker.url), "idle", will=will, keepalive=1)
    publisher.connect()
    try:
        subscriber.wait_until_subscribed(publisher)
        time.sleep(3.5)  # idle: only the reader thread's PINGREQs
        publisher.publish(Publish("pub/m/idle", b"still here"))
        publisher.flush()
        assert publisher.reconnects == 0
        assert subscriber.payloads("pub/will/") == []
    finally:
        publisher.disconnect()


def test_no_broker_is_a_publish_error(broker: Mosquitto) -> None:
    target = parse_mqtt_url(broker.url)
    broker.stop()
    publisher = Publisher(target, "test-pub")
    with pytest.raises(PublishError, match=f"no MQTT connection to 127.0.0.1:{target.port}"):
        publisher.connect(timeout=2)
    with pytest.raises(PublishError, match="before connect"):
        publisher.publish(Publish("pub/m", b"x"))
