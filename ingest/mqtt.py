"""The MQTT source: coldchain's own receive-side MQTT 5 client.

MQTT 5 with a fixed client id, ``clean_start=False`` and a long Session Expiry Interval, so
the broker keeps our subscriptions and queues QoS 1 messages while we are down. Messages
are acknowledged only when asked (:meth:`MqttSource.ack_many`, after their data is
durable), and the broker never has more than ``receive_maximum`` unacknowledged messages
out to us (bounded in-flight). After a lost connection the client reconnects with capped
exponential backoff and resubscribes; the broker then resends every unacknowledged message
(with DUP set), which is harmless because writes are idempotent.

Why not paho-mqtt (used here until issue 15): measured on the project machine, paho spends
most of an ingester's CPU in its own network thread (72 % of py-spy samples), a large part
of it in acknowledgements sent one at a time, each waking the thread through a socketpair
(14 %). A bare paho subscriber that only counts drains ~20k msg/s, while Mosquitto delivers
~120k msg/s to ``mosquitto_sub``: paho alone caps ingest below the targets. This client
does only what a QoS 1 consumer needs (CONNECT, SUBSCRIBE, PUBLISH in, PUBACK out in
batches, QoS 1 PUBLISH out for split mode, PINGREQ, DISCONNECT), parses every packet that a
``recv`` returned in one pass, and sends one write per batch of acknowledgements
(docs/performance.md, Ingest, has the side-by-side figures). paho stays the measured
baseline in ``bench/bare.py`` and the independent client in the tests.

Threads: one network thread owns the socket (all reads and writes, so TLS is safe). It
calls the handler for every PUBLISH, in order, and ``on_chunk`` after the messages of
each read (so that a consumer can hand them on in one go). Other threads hand it
acknowledgements and publishes through :meth:`ack_many` / :meth:`publish`, which queue
bytes and wake it once.

Payload cap (issue 13): CONNECT carries a Maximum Packet Size, so a compliant broker
discards anything larger instead of sending it; anything between the payload cap and that
size reaches :attr:`on_oversized` (the ingester dead-letters it and acknowledges it), and a
packet bigger still (a broker that ignores the property) is streamed past with only a
prefix kept, so one huge message never sits in memory.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NewType

from core.mqttwire import credentials, read_exactly, string, varint
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
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
# Bytes asked of one recv(). Too small and a drain at broker speed costs a system call
# (and a parse pass) per few messages; too large only wastes memory when idle (each
# read allocates at most this much).
READ_SIZE = 256 * 1024
# On top of the payload cap, room for a packet's topic (at most 65,535 bytes), packet id
# and properties in the Maximum Packet Size we announce. Messages up to the cap plus this
# reach us and are dead-lettered (visible to operators) rather than dropped by the broker
# (visible only in its log). Too low and long topics near the cap vanish at the broker;
# too high only raises what one message may hold in memory.
PACKET_ALLOWANCE = 65_536 + 1024
# Of a packet too big to hold, the bytes kept for its dead letter: the whole topic and
# packet id always fit (2 + 65,535 + 2), plus the start of the payload.
OVERSIZE_PREFIX = 70_000
# How long connect() waits for TCP, TLS and the CONNACK. Too short fails on a loaded
# broker; too long delays the retry after a broker that accepted TCP but hangs.
CONNECT_TIMEOUT_S = 10.0
# Own QoS 1 publishes (split mode's observation batches) kept for re-sending until the
# broker acknowledges them. Too low and a broker outage blocks the writer sooner; too
# high and an outage holds that many batches in memory.
PUBLISH_WINDOW = 1000

# Retained on the status topic (MqttSource ``status_topic``): connected; stopped on
# purpose; gone without a goodbye (the broker publishes the last will).
STATUS_ONLINE, STATUS_STOPPED, STATUS_OFFLINE = b"online", b"stopped", b"offline"

# An acknowledgement token: ``(connection generation << 16) | packet id``; 0 = nothing to
# acknowledge (QoS 0). An int, not an object: one is made per message on the hot path.
AckToken = NewType("AckToken", int)
NO_ACK = AckToken(0)

# Called with the topic, the payload, the retain flag and the ack token.
MessageHandler = Callable[[str, bytes, bool, AckToken], None]
# Called for a message whose payload exceeds the cap: topic, payload prefix, payload size,
# retain flag, token. It must see to the token being acknowledged.
OversizeHandler = Callable[[str, bytes, int, bool, AckToken], None]

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 0x10, 0x20, 0x30, 0x40
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK = 0x82, 0x90, 0xA2, 0xB0
_PINGREQ, _PINGRESP, _DISCONNECT = b"\xc0\x00", 0xD0, 0xE0
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_PUBACK_PACKET = struct.Struct("!BBH")  # type, remaining length 2, packet id: success

# MQTT 5 property id -> value encoding (section 2.2.2.2): to skip or read properties.
_BYTE, _TWO, _FOUR, _VARINT, _STR, _PAIR = 1, 2, 4, -1, -2, -3
_PROPERTY_KIND = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _STR, 0x08: _STR, 0x09: _STR, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _STR, 0x13: _TWO, 0x15: _STR, 0x16: _STR, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _STR, 0x1C: _STR, 0x1F: _STR, 0x21: _TWO,
    0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip
_REASONS = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid",
    0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
    0x89: "server busy", 0x8A: "banned", 0x8E: "session taken over by another client",
    0x8F: "topic filter invalid", 0x93: "receive maximum exceeded", 0x95: "packet too large",
    0x97: "quota exceeded", 0x9D: "server moved", 0x9E: "shared subscriptions not supported",
    0xA2: "wildcard subscriptions not supported",
}  # fmt: skip
_CLOSED = "closed by the broker"


class MqttProtocolError(Exception):
    """The broker sent something this client does not accept; the connection is dropped."""


class MqttRefused(Exception):
    """The broker refused the connection (CONNACK reason code >= 0x80)."""


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    """(value, index after it); raises IndexError when incomplete."""
    value, shift = 0, 0
    for _ in range(4):
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
    raise MqttProtocolError("variable byte integer longer than 4 bytes")


def _properties(data: bytes, i: int, end: int) -> dict[int, int | bytes]:
    """Read the properties between ``i`` and ``end`` (the last of a repeated id wins)."""
    found: dict[int, int | bytes] = {}
    while i < end:
        pid = data[i]
        i += 1
        kind = _PROPERTY_KIND.get(pid)
        if kind is None:
            raise MqttProtocolError(f"unknown property {pid:#x}")
        if kind > 0:
            found[pid] = int.from_bytes(data[i : i + kind], "big")
            i += kind
        elif kind == _VARINT:
            found[pid], i = _read_varint(data, i)
        else:
            size = _U16.unpack_from(data, i)[0]
            found[pid] = data[i + 2 : i + 2 + size]
            i += 2 + size
            if kind == _PAIR:
                i += 2 + _U16.unpack_from(data, i)[0]
    return found


def connect_packet(
    client_id: str,
    *,
    keepalive: int,
    session_expiry: int,
    receive_maximum: int,
    max_packet_size: int | None,
    username: str | None = None,
    password: str | None = None,
    will_topic: str | None = None,
) -> bytes:
    """An MQTT 5 CONNECT resuming the session (clean start 0).

    With ``will_topic``, the broker publishes a retained ``offline`` there (QoS 1) when
    the connection ends without a DISCONNECT: a crash, a kill, a lost network.
    """
    flags = 0
    payload = string(client_id.encode())
    if will_topic is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, will QoS 1, will retain
        payload += b"\x00" + string(will_topic.encode()) + string(STATUS_OFFLINE)
    login_flags, login = credentials(username, password)
    flags |= login_flags
    payload += login
    props = b"\x11" + _U32.pack(session_expiry) + b"\x21" + _U16.pack(receive_maximum)
    if max_packet_size is not None:
        props += b"\x27" + _U32.pack(max_packet_size)
    variable = string(b"MQTT") + bytes([5, flags]) + _U16.pack(keepalive)
    variable += varint(len(props)) + props
    return bytes([_CONNECT]) + varint(len(variable) + len(payload)) + variable + payload


def subscribe_packet(mid: int, filters: Sequence[str], *, send_retained: bool) -> bytes:
    """SUBSCRIBE at QoS 1; retained messages on every subscribe, or only new ones."""
    # Subscription options: QoS 1, Retain Handling 0 (send) or 1 (send if new).
    options = bytes([0x01 if send_retained else 0x11])
    body = _U16.pack(mid) + b"\x00" + b"".join(string(f.encode()) + options for f in filters)
    return bytes([_SUBSCRIBE]) + varint(len(body)) + body


def unsubscribe_packet(mid: int, filters: Sequence[str]) -> bytes:
    """UNSUBSCRIBE ``filters``."""
    body = _U16.pack(mid) + b"\x00" + b"".join(string(f.encode()) for f in filters)
    return bytes([_UNSUBSCRIBE]) + varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, mid: int, *, dup: bool = False) -> bytes:
    """A QoS 1 PUBLISH without properties."""
    body = string(topic.encode()) + _U16.pack(mid) + b"\x00" + payload
    return bytes([_PUBLISH | 0x02 | (0x08 if dup else 0)]) + varint(len(body)) + body


def status_packet(topic: str, status: bytes) -> bytes:
    """A retained QoS 0 PUBLISH of our status (re-sent on every connection)."""
    body = string(topic.encode()) + b"\x00" + status
    return bytes([_PUBLISH | 0x01]) + varint(len(body)) + body


def disconnect_packet(session_expiry: int | None = None) -> bytes:
    """DISCONNECT, normal; optionally changing the session expiry (0: forget the session)."""
    if session_expiry is None:
        return bytes([_DISCONNECT, 0])
    props = b"\x11" + _U32.pack(session_expiry)
    body = b"\x00" + varint(len(props)) + props
    return bytes([_DISCONNECT]) + varint(len(body)) + body


class MqttSource:
    """Subscribes, delivers messages to a handler, and acknowledges on request.

    Lifecycle: construct (no I/O), :meth:`start` (the network thread connects and keeps
    reconnecting), :meth:`pause` (stop handing messages over; they stay unacknowledged),
    :meth:`stop` (send what is queued, DISCONNECT; the session stays on the broker).

    ``session_expiry``: how long the broker keeps the session while we are away
    (:data:`SESSION_EXPIRY_S`; 0 for a consumer that wants nothing of what it missed).
    ``on_subscribed``: called (network thread) each time the broker acknowledged the
    subscriptions, so from then on nothing published is missed.
    """

    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        subscriptions: list[str],
        handler: MessageHandler,
        *,
        receive_maximum: int,
        on_connection_change: Callable[[bool], None] | None = None,
        max_payload: int | None = None,
        on_oversized: OversizeHandler | None = None,
        announce_max_packet: bool = True,
        share_group: str | None = None,
        status_topic: str | None = None,
        on_chunk: Callable[[bool], None] | None = None,
        on_subscribed: Callable[[], None] | None = None,
        session_expiry: int = SESSION_EXPIRY_S,
    ) -> None:
        if not 1 <= receive_maximum <= 65_535:
            raise ValueError(f"receive_maximum: {receive_maximum} is not between 1 and 65535")
        self._target = target
        self.client_id = client_id
        self.filters = [f"$share/{share_group}/{f}" if share_group else f for f in subscriptions]
        self._shared = share_group is not None
        self._handler = handler
        self._on_chunk = on_chunk
        self._on_subscribed = on_subscribed
        self._on_change = on_connection_change
        self._on_oversized = on_oversized
        self.max_payload = max_payload
        # Largest packet held whole; larger ones are streamed past (prefix kept).
        self._hold_limit = (max_payload + PACKET_ALLOWANCE) if max_payload else 1 << 28
        self._connect = connect_packet(
            client_id,
            keepalive=KEEPALIVE_S,
            session_expiry=session_expiry,
            receive_maximum=receive_maximum,
            max_packet_size=self._hold_limit if max_payload and announce_max_packet else None,
            username=target.username,
            password=target.password,
            will_topic=status_topic,
        )
        self.status_topic = status_topic
        self._lock = threading.Lock()  # guards the fields below shared with other threads
        self._generation = 0
        # Bounded in-flight on our side too: the network thread stops reading while this
        # many QoS 1 messages are unacknowledged. Mosquitto 2.0 with max_queued_messages 0
        # (what we configure, so it never drops) stops enforcing Receive Maximum once acks
        # flow (measured: tests/ingest/test_mqtt_source.py); TCP back-pressure then holds
        # the rest on the broker. Received and acked counts of this connection:
        self.receive_maximum = receive_maximum
        self._handed = 0  # written by the network thread only
        self._acked = 0  # written under the lock only
        self._out: list[bytes] = []  # bytes for the network thread to send, in order
        self._unacked: dict[int, tuple[str, bytes]] = {}  # own publishes by packet id
        self._window = threading.Condition(self._lock)
        self._pub_mid = 0
        self._sub_mid = 0
        # Wakes the network thread (created by start(): construction does no I/O).
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._leave = False
        self._retiring = False
        self.unsubscribed = threading.Event()
        self._accepting = True
        self._topics: dict[bytes, str] = {}  # topic bytes -> str, a parse cache
        self._skip = 0  # bytes of an oversized packet still to be read past
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_present = False
        self.connects = 0
        # Connections the broker ended with "session taken over", or without a reason,
        # which is how Mosquitto 2.0 ends the older of two connections with one id.
        self.takeovers = 0
        self.stale_acks_skipped = 0
        self.oversized = 0
        self.received = 0
        self.redelivered = 0
        self.last_error = ""

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; the network thread handles reconnects."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="mqtt-source", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop handing messages to the handler (they stay unacked; the broker redelivers)."""
        self._accepting = False

    def unsubscribe(self) -> None:
        """From now on (call it before :meth:`start`), every connection unsubscribes
        instead of subscribing: messages already queued in the session keep coming, new
        ones no longer do. How a share group member is retired (:meth:`stop` with
        ``forget_session`` once it has drained)."""
        self._retiring = True

    def stop(self, *, forget_session: bool = False) -> None:
        """Send queued acknowledgements and publishes, then disconnect.

        The session stays on the broker (its queue fills while we are away) unless
        ``forget_session``: then the broker deletes it, with whatever it still holds.
        """
        self._accepting = False
        self._leave = forget_session
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(CONNECT_TIMEOUT_S + 5)
        self.connected.clear()
        for end in (self._wake_r, self._wake_w):
            if end is not None:
                end.close()

    # -- called from other threads --------------------------------------------------

    def ack(self, token: AckToken) -> None:
        """Acknowledge one message (see :meth:`ack_many`)."""
        self.ack_many((token,))

    def ack_many(self, tokens: Iterable[AckToken]) -> None:
        """Acknowledge messages, in one write, unless they came on an earlier connection.

        After a reconnect the broker resends every unacknowledged message of the session;
        acknowledging a packet id from an earlier connection could acknowledge a
        different message, so such acks are skipped (the resent copy is acked instead,
        and writing it twice is idempotent).
        """
        pack = _PUBACK_PACKET.pack
        with self._lock:
            current = self._generation
            live = self.connected.is_set()
            packets = []
            stale = 0
            for token in tokens:
                if not token:
                    continue
                if token >> 16 != current or not live:
                    stale += 1
                    continue
                packets.append(pack(_PUBACK, 2, token & 0xFFFF))
            self.stale_acks_skipped += stale
            self._acked += len(packets)
            if not packets:
                return
            self._out.append(b"".join(packets))
        self._wake()

    def publish(self, topic: str, payload: bytes, timeout: float = 60.0) -> None:
        """Publish at QoS 1; re-sent after a reconnect until the broker acknowledges it.

        Blocks while ``PUBLISH_WINDOW`` publishes await their PUBACK.

        Raises:
            TimeoutError: no room in the window within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._unacked) >= PUBLISH_WINDOW:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._unacked)} publishes not acknowledged")
                self._window.wait(left)
            mid = self._pub_mid
            while True:
                mid = mid % 65_535 + 1
                if mid not in self._unacked:
                    break
            self._pub_mid = mid
            self._unacked[mid] = (topic, payload)
            if self.connected.is_set():
                self._out.append(publish_packet(topic, payload, mid))
        self._wake()

    def _wake(self) -> None:
        if self._wake_w is None:
            return  # not started: the first connection sends what is queued
        with contextlib.suppress(OSError):  # full (a wake is pending) or closed
            self._wake_w.send(b"\x00")

    # -- the network thread -------------------------------------------------------

    def _run(self) -> None:
        delay = RECONNECT_MIN_S
        kicks = 0  # connections in a row that the broker closed without a reason
        while not self._stopping.is_set():
            try:
                sock = self._open()
            except (OSError, MqttRefused, MqttProtocolError) as exc:
                self.last_error = str(exc)
                log.warning("MQTT connection to %s failed: %s", self._where, exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            try:
                reason = self._serve(sock)
            except (OSError, MqttProtocolError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                with self._lock:
                    self.connected.clear()
                    self.subscribed.clear()
                    self._out.clear()  # acks of this connection are void; publishes re-sent
                with contextlib.suppress(OSError):
                    sock.close()
                if self._on_change:
                    self._on_change(False)
            if self._stopping.is_set():
                return
            self.last_error = reason
            if "taken over" in reason or reason == _CLOSED:
                # Mosquitto 2.0 ends the older connection of a client id without a reason
                # when another client connects with the same id: two ingesters with one
                # id kick each other off forever (96 times in 95 s, measured). Back off
                # more after each such close in a row, and say why it probably happens.
                self.takeovers += 1
                kicks += 1
                delay = min(RECONNECT_MIN_S * 2**kicks, RECONNECT_MAX_S)
                if kicks >= 2:
                    log.error(
                        "the broker keeps closing MQTT session %r (%d times in a row): "
                        "probably another client with the same id; two ingesters must "
                        "never share one (COLDCHAIN_INGEST_MEMBER)",
                        self.client_id,
                        kicks,
                    )
                else:
                    log.warning("MQTT connection closed by the broker; reconnecting")
            else:
                kicks = 0
                log.warning("MQTT disconnected (%s); reconnecting", reason)
                delay = RECONNECT_MIN_S
            self._stopping.wait(delay)

    @property
    def _where(self) -> str:
        return f"{self._target.host}:{self._target.port}"

    def _open(self) -> socket.socket:
        """A socket on which the broker accepted our CONNECT, subscribed."""
        host, port = self._target.host, self._target.port
        raw = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        sock: socket.socket = raw
        try:
            # PUBACK batches and PINGREQs must leave at once, not wait for delayed ACKs.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._target.tls:
                context = ssl.create_default_context()
                sock = context.wrap_socket(raw, server_hostname=host)
            sock.sendall(self._connect)
            self.session_present = self._read_connack(sock)
        except BaseException:
            sock.close()
            raise
        with self._lock:
            self._generation += 1
            self._handed = self._acked = 0
            self._skip = 0
            self._sub_mid = self._sub_mid % 65_535 + 1
            first = [
                unsubscribe_packet(self._sub_mid, self.filters)
                if self._retiring
                else subscribe_packet(
                    self._sub_mid, self.filters, send_retained=not self.session_present
                )
            ]
            # Our own unacknowledged publishes, again, in order, marked DUP.
            first += [
                publish_packet(topic, payload, mid, dup=True)
                for mid, (topic, payload) in self._unacked.items()
            ]
            if self.status_topic is not None:
                first.append(status_packet(self.status_topic, STATUS_ONLINE))
            self._out[:0] = first
            self.connected.set()
        self.connects += 1
        log.info(
            "MQTT connected to %s as %s (session present: %s)",
            self._where,
            self.client_id,
            self.session_present,
        )
        if self._on_change:
            self._on_change(True)
        return sock

    def _read_connack(self, sock: socket.socket) -> bool:
        header = read_exactly(sock, 2)
        if header[0] != _CONNACK:
            raise MqttProtocolError(f"CONNECT answered with packet type {header[0]:#x}")
        size, rest = header[1], b""
        if size & 0x80:  # a long CONNACK (properties): read the rest of the length
            more = header[1:]
            while more[-1] & 0x80:
                more += read_exactly(sock, 1)
            size, _ = _read_varint(more, 0)
        body = rest + read_exactly(sock, size)
        session_present, reason = bool(body[0] & 1), body[1]
        props: dict[int, int | bytes] = {}
        if len(body) > 2:
            length, i = _read_varint(body, 2)
            props = _properties(body, i, i + length)
        if reason >= 0x80:
            text = _REASONS.get(reason, f"reason {reason:#x}")
            detail = props.get(0x1F)
            if isinstance(detail, bytes):
                text += f" ({detail.decode(errors='replace')})"
            raise MqttRefused(f"{self._where} refused the connection: {text}")
        if self._shared and props.get(0x2A) == 0:
            raise MqttRefused(f"{self._where} does not support shared subscriptions")
        return session_present

    def _serve(self, sock: socket.socket) -> str:
        """Read, hand over and write until the connection ends; returns why it ended."""
        sock.settimeout(KEEPALIVE_S)
        wake = self._wake_r
        assert wake is not None  # started
        buf = b""
        last_out = time.monotonic()
        ping_at = 0.0
        self._flush(sock)
        while True:
            if self._stopping.is_set():
                self._flush(sock)
                if self.status_topic is not None:
                    sock.sendall(status_packet(self.status_topic, STATUS_STOPPED))
                sock.sendall(disconnect_packet(0 if self._leave else None))
                _await_close(sock)
                return "stopped"
            now = time.monotonic()
            due = (ping_at + KEEPALIVE_S) if ping_at else (last_out + KEEPALIVE_S / 2)
            # At the in-flight bound, only acks (via the wake) can make progress.
            full = self._handed - self._acked >= self.receive_maximum
            ready, _, _ = select.select(
                [wake] if full else [sock, wake], [], [], max(0.0, due - now)
            )
            if wake in ready:
                with contextlib.suppress(OSError):
                    wake.recv(4096)
            if self._out and self._flush(sock):
                last_out = time.monotonic()
            if buf and not full and sock not in ready:
                buf = self._parse(buf)  # held back at the bound; acks made room
                self._chunk_done(sock)
            if sock in ready:
                chunk = sock.recv(READ_SIZE)
                if not chunk:
                    return _CLOSED
                if isinstance(sock, ssl.SSLSocket):
                    while sock.pending():
                        chunk += sock.recv(READ_SIZE)
                buf = self._parse(buf + chunk if buf else chunk)
                self._chunk_done(sock)
                if self._gone is not None:
                    return self._gone
                ping_at = 0.0  # anything from the broker proves the link
            now = time.monotonic()
            if full:
                ping_at = 0.0  # not reading: a PINGRESP would wait unread in the socket
            if ping_at and now - ping_at > KEEPALIVE_S:
                return f"no answer from the broker within {KEEPALIVE_S} s"
            if not ping_at and now - last_out >= KEEPALIVE_S / 2:
                sock.sendall(_PINGREQ)
                last_out = ping_at = now

    _gone: str | None = None

    def _chunk_done(self, sock: socket.socket) -> None:
        """Tell ``on_chunk`` that the messages of one read were handed over, and whether
        there is nothing more to read for now: the socket is empty, or the in-flight
        bound stops reading until acknowledgements (so until a write) make room."""
        if self._on_chunk is None:
            return
        caught_up = (
            self._handed - self._acked >= self.receive_maximum
            or not select.select([sock], [], [], 0)[0]
        )
        self._on_chunk(caught_up)

    def _flush(self, sock: socket.socket) -> bool:
        with self._lock:
            out, self._out = self._out, []
        if not out:
            return False
        sock.sendall(b"".join(out))
        return True

    def _parse(self, data: bytes) -> bytes:
        """Handle every complete packet in ``data``; return the incomplete rest.

        The hot path: one pass over all that one recv() returned.
        """
        self._gone = None
        i, n = (self._skip_past(data) if self._skip else 0), len(data)
        handler, topics, cap = self._handler, self._topics, self.max_payload
        accepting = self._accepting
        base = self._generation << 16
        handed = 0
        room = self.receive_maximum - (self._handed - self._acked)
        while i + 1 < n:
            first = data[i]
            size = data[i + 1]
            j = i + 2
            if size & 0x80:
                try:
                    size, j = _read_varint(data, i + 1)
                except IndexError:
                    break
            end = j + size
            if first & 0x06 and handed >= room and first & 0xF0 == _PUBLISH:
                break  # at the in-flight bound: the rest waits for acknowledgements
            if end > n:
                self._handed += handed
                return self._partial(data, i, j, size)
            if first & 0xF0 != _PUBLISH:
                self._control(first & 0xF0, data, j, end)
                i = end
                continue
            self.received += 1
            if first & 0x08:
                self.redelivered += 1  # DUP: resent after a reconnect
            k = j + 2 + ((data[j] << 8) | data[j + 1])
            topic_bytes = data[j + 2 : k]
            token = NO_ACK
            if first & 0x06:
                if first & 0x06 != 0x02:
                    raise MqttProtocolError("QoS 2 PUBLISH on a QoS 1 subscription")
                token = AckToken(base | (data[k] << 8) | data[k + 1])
                handed += 1
                k += 2
            plen = data[k]  # properties: skipped (none we need on a PUBLISH)
            k = k + 1 + plen if plen < 0x80 else _after_block(data, k)
            topic = topics.get(topic_bytes) or self._topic(topic_bytes)
            if not accepting:
                pass  # paused: left unacknowledged, the broker redelivers
            elif cap is not None and end - k > cap:
                self._deliver_oversized(topic, data[k : min(end, k + OVERSIZE_PREFIX)],
                                        end - k, bool(first & 1), token)  # fmt: skip
            else:
                handler(topic, data[k:end], bool(first & 1), token)
            i = end
        self._handed += handed
        return data[i:] if i < n else b""

    def _skip_past(self, data: bytes) -> int:
        """Read past the tail of an oversized packet; the index where the next begins."""
        taken = min(self._skip, len(data))
        self._skip -= taken
        return taken

    def _partial(self, data: bytes, i: int, j: int, size: int) -> bytes:
        """An incomplete packet at ``i`` (body from ``j``): what to keep for the next read.

        A PUBLISH too big to hold is handed over as soon as its prefix is in, and the
        rest of it is read past without being kept.
        """
        if size > self._hold_limit and data[i] & 0xF0 == _PUBLISH:
            if len(data) - j < min(size, OVERSIZE_PREFIX):
                return data[i:]  # wait for the prefix
            self._oversized(data[i], data[j : j + min(size, OVERSIZE_PREFIX)], size)
            self._skip = j + size - len(data)
            return b""
        return data[i:]

    def _topic(self, raw: bytes) -> str:
        topic = _topic_text(raw)
        if len(self._topics) < 100_000:  # bounded: topics are per device
            self._topics[raw] = topic
        return topic

    def _control(self, kind: int, data: bytes, j: int, end: int) -> None:
        """Packets other than PUBLISH."""
        if kind == _PUBACK:
            mid = _U16.unpack_from(data, j)[0]
            with self._lock:
                if self._unacked.pop(mid, None) is not None:
                    self._window.notify_all()
        elif kind == _SUBACK:
            props, k = _read_varint(data, j + 2)
            codes = data[k + props : end]
            for filt, code in zip(self.filters, codes, strict=False):
                if code >= 0x80:
                    log.error(
                        "MQTT subscription to %s refused: %s",
                        filt,
                        _REASONS.get(code, f"reason {code:#x}"),
                    )
            if not self.subscribed.is_set():
                log.info("MQTT subscribed to %d topic filters", len(self.filters))
            self.subscribed.set()
            if self._on_subscribed is not None:
                self._on_subscribed()
        elif kind == _DISCONNECT:
            code = data[j] if end > j else 0
            self._gone = "the broker disconnected us: " + _REASONS.get(code, f"reason {code:#x}")
        elif kind == _UNSUBACK:
            self.unsubscribed.set()
        elif kind == _PINGRESP:
            pass
        else:
            raise MqttProtocolError(f"unexpected packet type {kind:#x}")

    def _oversized(self, first: int, prefix: bytes, size: int) -> None:
        """A PUBLISH too big to hold: hand over its prefix; the rest is read past."""
        self.received += 1
        tlen = _U16.unpack_from(prefix, 0)[0]
        k = 2 + tlen
        topic = _topic_text(prefix[2:k])
        token = NO_ACK
        if first & 0x06:
            token = AckToken((self._generation << 16) | _U16.unpack_from(prefix, k)[0])
            self._handed += 1
            k += 2
        try:
            plen, k = _read_varint(prefix, k)
            payload = prefix[k + plen :]
        except IndexError:
            payload = b""  # properties longer than the prefix
        if self._accepting:
            self._deliver_oversized(topic, payload, size - k, bool(first & 1), token)

    def _deliver_oversized(
        self, topic: str, prefix: bytes, size: int, retained: bool, token: AckToken
    ) -> None:
        self.oversized += 1
        if self._on_oversized is not None:
            self._on_oversized(topic, prefix, size, retained, token)
        else:
            log.warning("dropped a %d-byte payload on %s (over the cap)", size, topic[:200])
            self.ack(token)


def _after_block(data: bytes, k: int) -> int:
    """The index after a length-prefixed (variable byte integer) block starting at ``k``."""
    size, k = _read_varint(data, k)
    return k + size


def _topic_text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "?invalid-utf8:" + raw.hex()


def _await_close(sock: socket.socket) -> None:
    """Read until the broker closes its side after our DISCONNECT.

    Closing a socket with unread data in it sends a reset, and a reset makes the broker's
    kernel discard what it has not read yet: the last acknowledgements would be lost.
    """
    sock.settimeout(2.0)
    with contextlib.suppress(OSError):
        while sock.recv(READ_SIZE):
            pass
