"""The MQTT source: the one place paho-mqtt is imported for consuming.

MQTT 5 with a fixed client id, ``clean_start=False`` and a long Session Expiry Interval, so
the broker keeps our subscriptions and queues QoS 1 messages while we are down. Messages
are acknowledged manually (:meth:`MqttSource.ack`) only after their data is durable, and
the broker never has more than ``receive_maximum`` unacknowledged messages out to us
(bounded in-flight). paho reconnects with capped exponential backoff; every (re)connect
resubscribes, asking the broker to resend retained messages only for new subscriptions.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho  # noqa: TID251 - the one import site for consuming
from paho.mqtt.enums import CallbackAPIVersion  # noqa: TID251
from paho.mqtt.packettypes import PacketTypes  # noqa: TID251
from paho.mqtt.properties import Properties  # noqa: TID251
from paho.mqtt.reasoncodes import ReasonCode  # noqa: TID251
from paho.mqtt.subscribeoptions import SubscribeOptions  # noqa: TID251

from core.settings import MqttTarget

log = logging.getLogger(__name__)

# How long the broker keeps our session (subscriptions + queued messages) while we are
# disconnected. Too short and a long outage of the ingester loses readings; too long and a
# retired client id holds a queue forever (operators can delete it). One week.
SESSION_EXPIRY_S = 7 * 24 * 3600
# Keepalive: the broker notices a dead ingester (and we notice a dead broker) within
# ~1.5x this. Too low wastes packets on slow links; too high delays reconnection.
KEEPALIVE_S = 20
# Reconnect backoff bounds: fast first retry, capped so a long broker outage is polled
# every 30 s rather than hammered (telegraf#18466 added the same cap).
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


@dataclass(frozen=True, slots=True)
class AckToken:
    """What :meth:`MqttSource.ack` needs: the connection generation and the message id."""

    generation: int
    mid: int
    qos: int


# Called with the topic, the payload, the retain flag and the ack token.
MessageHandler = Callable[[str, bytes, bool, AckToken], None]


class MqttSource:
    """Subscribes, delivers messages to a handler, and acknowledges on request."""

    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        subscriptions: list[str],
        handler: MessageHandler,
        *,
        receive_maximum: int,
        on_connection_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._target = target
        self._subscriptions = subscriptions
        self._handler = handler
        self._on_change = on_connection_change
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.connects = 0
        self.stale_acks_skipped = 0
        self._accepting = True
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        self._props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        self._props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._props.ReceiveMaximum = receive_maximum
        if target.username:
            self._client.username_pw_set(target.username, target.password)
        if target.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background; paho's thread handles reconnects."""
        self._client.connect_async(
            self._target.host,
            self._target.port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=self._props,
        )
        self._client.loop_start()

    def pause(self) -> None:
        """Stop handing messages to the handler (they stay unacked; the broker redelivers)."""
        self._accepting = False

    def stop(self) -> None:
        """Disconnect cleanly (the session and its queue stay on the broker)."""
        self._accepting = False
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 on this connection (paho queues it while reconnecting)."""
        self._client.publish(topic, payload, qos=1)

    def ack(self, token: AckToken) -> None:
        """Acknowledge one message, unless it came on an earlier connection.

        After a reconnect the broker resends every unacknowledged message of the session;
        acknowledging a message id from an earlier connection could acknowledge a
        different message, so such acks are skipped (the resent copy is acked instead,
        and writing it twice is idempotent).
        """
        if token.qos == 0:
            return
        with self._lock:
            if token.generation != self._generation or not self.connected.is_set():
                self.stale_acks_skipped += 1
                return
        self._client.ack(token.mid, token.qos)

    # -- paho callbacks (paho's network thread) ---------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection refused: %s", reason_code)
            return
        with self._lock:
            self._generation += 1
        self.connects += 1
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE)
        if flags.session_present:
            # Subscriptions exist: do not have the broker resend every retained message.
            options = SubscribeOptions(
                qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
        client.subscribe([(topic, options) for topic in self._subscriptions])
        self.connected.set()
        log.info(
            "MQTT connected to %s:%s (session present: %s)",
            self._target.host,
            self._target.port,
            flags.session_present,
        )
        if self._on_change:
            self._on_change(True)

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self.connected.clear()
        if self._accepting:
            log.warning("MQTT disconnected (%s); reconnecting", reason_code)
        if self._on_change:
            self._on_change(False)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if not self._accepting:
            return
        token = AckToken(self._generation, message.mid, message.qos)
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "?invalid-utf8:" + message._topic.hex()
        self._handler(topic, bytes(message.payload), bool(message.retain), token)
