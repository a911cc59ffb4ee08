"""coldchain's receive-side MQTT 5 client (ingest/mqtt.py) against a real Mosquitto.

What the ingester's durability rests on, each checked with the broker itself: the
persistent session survives a disconnect and a broker restart; what was not acknowledged
comes back (marked DUP) and what was acknowledged does not; the broker never has more
than Receive Maximum messages out to us; acknowledgements leave only when asked, and an
ack from an earlier connection is never sent on a new one; shared subscriptions split a
stream between members exactly once; a second client with our id is noticed; payloads
over the cap are handed over as oversized, with only a prefix kept.
"""

from __future__ import annotations

import threading
import time

import pytest

from bench.bare import CountingSubscriber
from coldchain.services import Mosquitto
from core.settings import parse_mqtt_url
from devices.base import Publish
from ingest.mqtt import OVERSIZE_PREFIX, PACKET_ALLOWANCE, AckToken, MqttSource
from simulator.publisher import Publisher
from tests.ingest.helpers import wait_for

pytestmark = pytest.mark.integration

TOPIC = "t/+"


class Recorder:
    """A handler that records messages and tokens, acknowledging only when told."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.tokens: list[AckToken] = []
        self.oversized: list[tuple[str, bytes, int]] = []
        self.chunks: list[tuple[int, bool]] = []  # (messages handed so far, caught up)
        self.lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes, retained: bool, token: AckToken) -> None:
        with self.lock:
            self.messages.append((topic, payload, retained))
            self.tokens.append(token)

    def on_oversized(
        self, topic: str, prefix: bytes, size: int, retained: bool, token: AckToken
    ) -> None:
        with self.lock:
            self.oversized.append((topic, prefix, size))
            self.tokens.append(token)

    def on_chunk(self, caught_up: bool) -> None:
        with self.lock:
            self.chunks.append((len(self.messages), caught_up))

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [p for _, p, _ in self.messages]

    def take_tokens(self) -> list[AckToken]:
        with self.lock:
            tokens, self.tokens = self.tokens, []
        return tokens


def _source(broker: Mosquitto, rec: Recorder, client_id: str = "src", **kw: object) -> MqttSource:
    source = MqttSource(
        parse_mqtt_url(broker.url),
        client_id,
        [TOPIC],
        rec,
        receive_maximum=kw.pop("receive_maximum", 1000),  # type: ignore[arg-type]
        on_oversized=rec.on_oversized,
        **kw,  # type: ignore[arg-type]
    )
    source.start()
    assert source.connected.wait(10)
    wait_for(source.subscribed.is_set, 10, "SUBACK")
    return source


def _publish(broker: Mosquitto, messages: list[Publish], client_id: str = "pub") -> None:
    pub = Publisher(parse_mqtt_url(broker.url), client_id, window=2000)
    pub.connect()
    pub.publish_many(messages)
    pub.disconnect()  # flushes: the broker holds every message


def _numbered(n: int, start: int = 0, size: int = 0) -> list[Publish]:
    return [
        Publish(f"t/{i % 7}", f"{i:06d}".encode().ljust(size, b"."))
        for i in range(start, start + n)
    ]


@pytest.fixture
def rec() -> Recorder:
    """A fresh recorder."""
    return Recorder()


def test_in_order_exactly_once_and_unacked_messages_come_back_marked_dup(
    broker: Mosquitto, rec: Recorder
) -> None:
    source = _source(broker, rec, receive_maximum=5000)
    _publish(broker, _numbered(2000))
    wait_for(lambda: len(rec.payloads()) == 2000, 20, "2,000 messages")
    assert rec.payloads() == [f"{i:06d}".encode() for i in range(2000)]
    tokens = rec.take_tokens()
    source.ack_many(tokens[:1500])  # the last 500 are never acknowledged
    source.stop()

    again = Recorder()
    resumed = _source(broker, again)
    try:
        assert resumed.session_present
        wait_for(lambda: len(again.payloads()) == 500, 20, "the 500 unacknowledged")
        time.sleep(0.5)  # nothing else may follow
        assert again.payloads() == [f"{i:06d}".encode() for i in range(1500, 2000)]
        assert resumed.redelivered == 500
        resumed.ack_many(again.take_tokens())
    finally:
        resumed.stop()

    # Everything is acknowledged now: a third connection receives nothing.
    last = Recorder()
    third = _source(broker, last)
    time.sleep(1.0)
    third.stop()
    assert last.payloads() == []


def test_receive_maximum_bounds_what_is_in_flight(broker: Mosquitto, rec: Recorder) -> None:
    """At most Receive Maximum unacknowledged messages are handed over, whatever the
    broker does: Mosquitto 2.0 with ``max_queued_messages 0`` (our config) stops enforcing
    it once acknowledgements flow, so the client also stops reading at the bound."""
    source = _source(broker, rec, receive_maximum=50)
    try:
        _publish(broker, _numbered(200))
        wait_for(lambda: len(rec.payloads()) == 50, 20, "the first 50")
        time.sleep(1.0)
        assert len(rec.payloads()) == 50  # the rest wait until we acknowledge
        source.ack_many(rec.take_tokens()[:20])
        wait_for(lambda: len(rec.payloads()) >= 70, 20, "20 more after 20 acks")
        time.sleep(1.0)
        # Up to one read's worth past the bound may already be in our buffer.
        assert len(rec.payloads()) < 200
        unacked = 30 + len(rec.payloads()) - 50
        assert unacked <= 50 + 20
        while len(rec.payloads()) < 200:
            source.ack_many(rec.take_tokens())
            time.sleep(0.05)
        source.ack_many(rec.take_tokens())
        assert rec.payloads() == [f"{i:06d}".encode() for i in range(200)]
    finally:
        source.stop()


def test_every_read_ends_with_on_chunk_saying_whether_more_can_be_read(
    broker: Mosquitto, rec: Recorder
) -> None:
    """What the ingester's hand-off per read rests on: ``on_chunk`` follows the messages
    of each read, and says "caught up" once the broker has sent everything, and also at
    the in-flight bound (only a write, and its acks, can bring more)."""
    source = _source(broker, rec, receive_maximum=50, on_chunk=rec.on_chunk)
    try:
        _publish(broker, _numbered(200))
        wait_for(lambda: len(rec.payloads()) == 50, 20, "the first 50")
        wait_for(lambda: (50, True) in rec.chunks, 10, "caught up at the bound")
        while len(rec.payloads()) < 200:
            source.ack_many(rec.take_tokens())
            time.sleep(0.05)
        wait_for(lambda: rec.chunks[-1] == (200, True), 10, "caught up at the end")
        counts = [n for n, _ in rec.chunks]
        assert counts == sorted(counts)  # each call after the messages of its read
        assert rec.payloads() == [f"{i:06d}".encode() for i in range(200)]
    finally:
        source.stop()


def test_broker_restart_resumes_the_session_and_skips_stale_acks(
    broker: Mosquitto, rec: Recorder
) -> None:
    source = _source(broker, rec)
    try:
        _publish(broker, _numbered(300))
        wait_for(lambda: len(rec.payloads()) == 300, 20, "300 messages")
        old = rec.take_tokens()  # not acknowledged before the restart
        connects = source.connects
        broker.restart()  # persistence: the session and its unacked messages survive
        wait_for(lambda: source.connects > connects, 30, "reconnect")
        wait_for(lambda: len(rec.payloads()) == 600, 20, "all 300 again")
        assert source.session_present
        assert source.redelivered == 300
        assert rec.payloads()[300:] == rec.payloads()[:300]
        source.ack_many(old)  # ids of the earlier connection: never sent
        assert source.stale_acks_skipped == 300
        source.ack_many(rec.take_tokens())
        # New publishes after the restart arrive on the resumed subscription.
        _publish(broker, _numbered(10, start=300))
        wait_for(lambda: len(rec.payloads()) == 610, 20, "10 new")
        source.ack_many(rec.take_tokens())
    finally:
        source.stop()
    check = Recorder()
    again = _source(broker, check)
    time.sleep(1.0)
    again.stop()
    assert check.payloads() == []  # every message was acknowledged exactly in time


def test_shared_subscription_splits_the_stream_exactly_once(broker: Mosquitto) -> None:
    a, b = Recorder(), Recorder()
    first = _source(broker, a, "member-1", share_group="g", receive_maximum=5000)
    second = _source(broker, b, "member-2", share_group="g", receive_maximum=5000)
    try:
        _publish(broker, _numbered(3000))
        wait_for(lambda: len(a.payloads()) + len(b.payloads()) == 3000, 20, "3,000 in all")
        first.ack_many(a.take_tokens())
        second.ack_many(b.take_tokens())
        assert a.payloads(), "member 1 got nothing"
        assert b.payloads(), "member 2 got nothing"
        union = sorted(a.payloads() + b.payloads())
        assert union == [f"{i:06d}".encode() for i in range(3000)]
    finally:
        first.stop()
        second.stop()


def test_a_second_client_with_our_id_is_noticed_and_backed_off(broker: Mosquitto) -> None:
    """Mosquitto 2.0 closes the older connection of an id without a reason; two clients
    with one id must not kick each other off once a second (96 times in 95 s, measured
    with paho): each close in a row doubles the wait before reconnecting."""
    first = _source(broker, Recorder(), "same-id")
    second = _source(broker, Recorder(), "same-id")
    try:
        time.sleep(8.0)
        assert first.takeovers + second.takeovers >= 2
        # Backoff 2, 4, 8 s after consecutive closes: a handful, not one per second.
        assert first.connects + second.connects <= 6
    finally:
        first.stop()
        second.stop()


def test_oversized_payload_is_handed_over_with_a_prefix(broker: Mosquitto, rec: Recorder) -> None:
    # The broker is asked for at most cap + allowance: a payload just over the cap still
    # comes (dead-lettered by the ingester), one far over it is discarded by the broker.
    source = _source(broker, rec, max_payload=2000)
    try:
        big = Publish("t/big", b"x" * 5000)
        huge = Publish("t/huge", b"y" * (2000 + PACKET_ALLOWANCE + 10))
        _publish(broker, [*_numbered(2), big, huge, *_numbered(2, start=2)])
        wait_for(lambda: len(rec.payloads()) == 4 and bool(rec.oversized), 20, "4 + 1 oversized")
        time.sleep(0.5)
        assert rec.oversized == [("t/big", b"x" * 5000, 5000)]
        assert len(rec.take_tokens()) == 5  # the oversized one is acked like the others
    finally:
        source.stop()


def test_a_packet_too_big_to_hold_is_streamed_past(broker: Mosquitto, rec: Recorder) -> None:
    # A broker that ignores Maximum Packet Size (simulated: we do not announce it).
    source = _source(broker, rec, max_payload=1024, announce_max_packet=False)
    try:
        size = 3 * (1024 + PACKET_ALLOWANCE)
        _publish(broker, [Publish("t/a", b"first"), Publish("t/huge", b"z" * size)])
        _publish(broker, [Publish("t/b", b"after")])
        wait_for(lambda: len(rec.payloads()) == 2, 20, "the two small ones")
        [(topic, prefix, got)] = rec.oversized
        assert (topic, got) == ("t/huge", size)
        assert prefix == b"z" * len(prefix)
        assert 0 < len(prefix) <= OVERSIZE_PREFIX
        assert rec.payloads() == [b"first", b"after"]
        source.ack_many(rec.take_tokens())
    finally:
        source.stop()


def test_own_publishes_reach_an_independent_subscriber(broker: Mosquitto, rec: Recorder) -> None:
    """QoS 1 publishes (split mode's observations), read back by paho."""
    target = parse_mqtt_url(broker.url)
    paho = CountingSubscriber(target, "paho-check", "obs/#", 100)
    paho.start(expected=0)
    assert paho.subscribed.wait(10)
    source = _source(broker, rec)
    try:
        for i in range(50):
            source.publish("obs/x", f"{i}".encode())
        wait_for(lambda: paho.count == 50, 20, "50 publishes at paho")
    finally:
        source.stop()
        paho.stop()
