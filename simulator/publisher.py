"""Publishing devices' native messages over MQTT 3.1.1: a minimal publish-only client.

Used by the simulator, the benchmarks and the tests. QoS 1 publishes are pipelined with a
bounded window of unacknowledged messages and :meth:`Publisher.flush` waits for every
PUBACK, so a caller knows the broker holds everything it sent (``mosquitto_pub -l`` exits
with messages still queued: research/perf-limits.md §2.6).

Why not paho-mqtt (the ingester's client): publishing 100,000 simulated sensors needs
10,000 msg/s from one process, next to 40-70 µs of generation per message. paho spends
more than that per QoS 1 message on the project machine (a ``Properties`` and a
``ReasonCode`` object and three ``recv`` calls per PUBACK, a socketpair wake-up of its
network thread per publish, and with a window a scan of every in-flight message per
PUBACK): at best ~7,400 msg/s with nothing else to do, ~1,100 msg/s as this class used it
(docs/performance.md, Simulator). Publishing only needs CONNECT (with last will,
credentials, TLS), PUBLISH, PUBACK, PINGREQ and DISCONNECT, which cost here ~13 µs of CPU
per message.

Threads: the caller writes PUBLISH packets itself, no hand-off per message. A message
on an idle connection goes out at once; one that follows another closely joins a batch of
up to ``BATCH`` packets written in one system call, and the caller reads the PUBACKs that
have arrived once per batch (one ``recv`` returns hundreds). A reader thread writes a
batch left waiting for ``LINGER_S``, reads PUBACKs while the caller is idle, keeps the
connection alive, and reconnects after a lost connection, re-sending every
unacknowledged message with DUP set (QoS 1 is at least once). One lock guards the socket,
so TLS never sees concurrent reads and writes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable

from core.mqttwire import credentials, read_exactly, string, varint
from core.settings import MqttTarget
from devices.base import Publish

# Unacknowledged QoS 1 publishes in flight. Too small and a loaded broker's round trip
# throttles the simulator; too large and a broker outage buffers a lot in memory (every
# unacknowledged packet is kept for re-sending). At most 65,535 (MQTT packet ids).
WINDOW = 1000

# Seconds between control packets the broker may expect. Too low wastes PINGREQs on an
# idle simulator; too high and a dead connection is noticed late (the broker publishes
# the last will only after 1.5 keepalives without a packet).
KEEPALIVE_S = 30

# How long publish() waits for room in the window and flush() for the last PUBACK before
# raising PublishError. Too low and a broker restart fails the simulator; too high and a
# dead broker hangs it.
ACK_TIMEOUT_S = 60.0

# Reconnection back-off after a lost connection, doubling from MIN to MAX. Too low hammers
# a broker that is starting; too high leaves a long gap in the published data.
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 10.0

# Packets joined into one write while earlier ones await their PUBACK. Too low and each
# message pays for its own system call (loopback TCP costs more than building the
# packet); too high and the broker sees bigger bursts (still bounded by the window).
BATCH = 64

# How long a packet may wait for its batch to fill before the reader thread writes it.
# Too low and the reader thread wakes (taking the interpreter lock from the simulation)
# more often; too high delays a message that follows another within a round trip. A
# message published on an idle connection is written at once.
LINGER_S = 0.002

# The reader thread's longest sleep: how late it notices a due PINGREQ or a lost broker.
_POLL_S = 1.0
_READ_SIZE = 65536

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 0x10, 0x20, 0x30, 0x40
_PINGREQ, _PINGRESP, _DISCONNECT = b"\xc0\x00", 0xD0, b"\xe0\x00"
_DUP = 0x08
_REFUSED = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class PublishError(RuntimeError):
    """The broker could not be reached or did not acknowledge in time."""


_U16 = struct.Struct("!H").pack
# PUBLISH fixed-header byte by [QoS][retain].
_PUBLISH_HEADER = [[bytes((_PUBLISH | qos << 1 | retain,)) for retain in (0, 1)] for qos in (0, 1)]


def connect_packet(
    client_id: str,
    *,
    keepalive: int,
    will: Publish | None = None,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session."""
    flags = 0x02
    payload = string(client_id.encode())
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += string(will.topic.encode()) + string(will.payload)
    login_flags, login = credentials(username, password)
    flags |= login_flags
    payload += login
    variable = string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    return bytes([_CONNECT]) + varint(len(variable) + len(payload)) + variable + payload


def publish_packet(message: Publish, mid: int) -> bytes:
    """A PUBLISH; ``mid`` is ignored at QoS 0. (The simulator's hot path: keep it lean.)"""
    topic = message.topic.encode()
    payload = message.payload
    header = _PUBLISH_HEADER[message.qos][message.retain]
    if message.qos:
        size = 4 + len(topic) + len(payload)
        length = bytes((size,)) if size < 128 else varint(size)
        return b"".join((header, length, _U16(len(topic)), topic, _U16(mid), payload))
    size = 2 + len(topic) + len(payload)
    length = bytes((size,)) if size < 128 else varint(size)
    return b"".join((header, length, _U16(len(topic)), topic, payload))


class Publisher:
    """A connected MQTT client that publishes :class:`~devices.base.Publish` messages.

    Lifecycle: construct (no I/O), :meth:`connect`, :meth:`publish` from one thread,
    :meth:`flush` whenever the caller needs the broker to hold everything, then
    :meth:`disconnect` (flushes) or :meth:`drop` (a lost device: the broker publishes the
    last will).
    """

    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        *,
        will: Publish | None = None,
        window: int = WINDOW,
        keepalive: int = KEEPALIVE_S,
        ack_timeout: float = ACK_TIMEOUT_S,
    ) -> None:
        if not 1 <= window <= 65_535:
            raise ValueError(f"window: {window} is not between 1 and 65535")
        if will is not None and will.qos not in (0, 1):
            raise ValueError(f"will: QoS {will.qos} is not supported (0 or 1)")
        self._target = target
        self._connect = connect_packet(
            client_id,
            keepalive=keepalive,
            will=will,
            username=target.username,
            password=target.password,
        )
        self._window = window
        self._keepalive = keepalive
        self._ack_timeout = ack_timeout
        # Guards the socket, the window and the batch; notified when the reader has
        # reconnected or PUBACKs arrived.
        self._lock = threading.Lock()  # entered directly on the hot path (cheaper)
        self._cond = threading.Condition(self._lock)
        self._sock: socket.socket | None = None
        self._unacked: dict[int, bytes] = {}  # packet id -> PUBLISH, in publish order
        self._pending = b""  # the start of a packet split across reads
        self._mid = 0
        self._last_out = 0.0
        self._ping_at = 0.0  # when the outstanding PINGREQ went out; 0 = none
        self._reader: threading.Thread | None = None
        self._out: list[bytes] = []  # staged packets waiting for their batch
        self._out_since = 0.0  # when the first of them was staged
        self._wake = threading.Event()  # a batch is waiting, reconnect now, or stop
        self._closing = False
        self._lost_reason = ""
        self.published = 0
        self.reconnects = 0

    # -- lifecycle --------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and start the reader thread.

        Raises:
            PublishError: the broker could not be reached or refused the connection.
        """
        if self._reader is not None:
            raise PublishError("already connected")
        self._sock = self._open(timeout)
        self._last_out = time.monotonic()
        self._reader = threading.Thread(
            target=self._read_loop, name="mqtt-publisher-reader", daemon=True
        )
        self._reader.start()

    def disconnect(self) -> None:
        """Flush, then disconnect cleanly (no last will)."""
        try:
            self.flush()
        finally:
            self._close(clean=True)

    def drop(self) -> None:
        """Close the socket without DISCONNECT, so the broker publishes the last will."""
        self._close(clean=False)

    # -- publishing -------------------------------------------------------------------

    def publish(self, message: Publish) -> None:
        """Publish one message, blocking while the window is full.

        A message on an idle connection is written at once; one that follows another
        within ``LINGER_S`` joins a batch, written when full or ``LINGER_S`` later.

        Raises:
            PublishError: not connected, or no room in the window within ``ack_timeout``.
        """
        self._publish(message, at_once_if_idle=True)

    def publish_many(self, messages: Iterable[Publish]) -> None:
        """Publish messages in order and write them before returning (see :meth:`publish`)."""
        for message in messages:
            self._publish(message, at_once_if_idle=False)
        with self._lock:
            self._write_out()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the broker acknowledged every QoS 1 publish.

        Raises:
            PublishError: some are still unacknowledged after ``timeout`` seconds
                (default ``ack_timeout``).
        """
        timeout = self._ack_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._lock:
            self._write_out()
            while self._unacked:
                self._await_acks(
                    deadline, f"{len(self._unacked)} publishes not acknowledged in {timeout:g} s"
                )

    def _publish(self, message: Publish, *, at_once_if_idle: bool) -> None:
        if message.qos not in (0, 1):
            raise ValueError(f"{message.topic}: QoS {message.qos} is not supported (0 or 1)")
        if self._reader is None or self._closing:
            raise PublishError("publish before connect() or after disconnect()")
        with self._lock:
            if not self._out and self._unacked:
                # Once per batch (or per message of a paced caller): take in the PUBACKs
                # that have arrived, keeping the window open without the reader thread.
                self._drain()
            packet = self._stage(message)
            if self._out:
                self._out.append(packet)
                if len(self._out) >= BATCH:
                    self._write_out()
                return
            now = time.monotonic()
            if at_once_if_idle and now - self._last_out >= LINGER_S:
                self._write(packet)  # an idle connection: no batch to wait for
                return
            self._out.append(packet)
            self._out_since = now
            self._wake.set()  # the reader writes it after LINGER_S if no batch fills

    def _stage(self, message: Publish) -> bytes:
        """Wait for room in the window, take a packet id, keep the packet for re-sending."""
        if message.qos == 0:
            self.published += 1
            return publish_packet(message, 0)
        if len(self._unacked) >= self._window:
            deadline = time.monotonic() + self._ack_timeout
            while len(self._unacked) >= self._window:
                self._await_acks(deadline, f"no room in the window within {self._ack_timeout:g} s")
        mid = self._mid
        while True:  # skip ids still in flight after a wrap (slow PUBACKs)
            mid = mid % 65_535 + 1
            if mid not in self._unacked:
                break
        self._mid = mid
        packet = publish_packet(message, mid)
        self._unacked[mid] = packet
        self.published += 1
        return packet

    # -- the socket (every method below runs with self._lock held) ---------------------

    def _write_out(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._write(data)

    def _await_acks(self, deadline: float, late: str) -> None:
        """Read PUBACKs for up to half a second (or wait for the reader to reconnect).

        Raises:
            PublishError: ``late`` once ``deadline`` has passed, or at once if closed.
        """
        self._write_out()
        if self._closing:  # disconnect() or drop(): nothing will be acknowledged any more
            raise PublishError(f"{late}: the connection was closed")
        left = deadline - time.monotonic()
        if left <= 0:
            lost = f" (connection lost: {self._lost_reason})" if self._sock is None else ""
            raise PublishError(late + lost)
        sock = self._sock
        if sock is None:  # the reader is reconnecting; it notifies
            self._cond.wait(min(left, 0.5))
            return
        with contextlib.suppress(OSError, ValueError):  # closed: _receive says so
            select.select([sock], [], [], min(left, 0.5))
        if self._receive(sock):
            self._keep_alive(sock)

    def _drain(self) -> None:
        """Handle the PUBACKs that have arrived, without waiting."""
        if self._sock is not None:
            self._receive(self._sock)

    def _write(self, data: bytes) -> None:
        """Send everything, reading PUBACKs meanwhile if the socket is full.

        Without a socket (connection lost) nothing is sent: the reader re-sends every
        unacknowledged packet once it has reconnected.
        """
        sock = self._sock
        if sock is None:
            return
        view = memoryview(data)
        try:
            while view:
                try:
                    sent = sock.send(view)
                except _WOULD_BLOCK:
                    # The broker is not reading: it may be waiting for us to read.
                    if not self._receive(sock):
                        return
                    select.select([sock], [sock], [], _POLL_S)
                    continue
                view = view[sent:]
        except (OSError, ValueError) as exc:
            self._lost(sock, f"send: {exc}")
            return
        self._last_out = time.monotonic()

    def _receive(self, sock: socket.socket) -> bool:
        """Read and handle whatever has arrived; False once the connection is gone."""
        data = b""
        try:
            while True:
                chunk = sock.recv(_READ_SIZE)
                if not chunk:
                    self._lost(sock, "closed by the broker")
                    return False
                data += chunk
                if not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                    break
        except _WOULD_BLOCK:
            pass
        except (OSError, ValueError) as exc:
            self._lost(sock, f"receive: {exc}")
            return False
        if data:
            self._handle(self._pending + data if self._pending else data)
        return True

    def _handle(self, data: bytes) -> None:
        acked = 0
        i, n = 0, len(data)
        while i < n:
            kind = data[i]
            if kind == _PUBACK and i + 4 <= n and data[i + 1] == 2:  # the usual case
                if self._unacked.pop((data[i + 2] << 8) | data[i + 3], None) is not None:
                    acked += 1
                i += 4
                continue
            size, shift, j = 0, 0, i + 1
            while j < n and j - i <= 4:
                byte = data[j]
                size |= (byte & 0x7F) << shift
                shift += 7
                j += 1
                if not byte & 0x80:
                    break
            else:
                break  # incomplete length
            if j + size > n:
                break  # incomplete packet
            if kind == _PINGRESP:
                self._ping_at = 0.0
            # Nothing else is expected (no subscriptions); ignore it.
            i = j + size
        self._pending = data[i:]
        if acked:
            self._cond.notify_all()

    def _keep_alive(self, sock: socket.socket) -> None:
        now = time.monotonic()
        if self._ping_at and now - self._ping_at > self._keepalive:
            self._lost(sock, f"no PINGRESP within {self._keepalive} s")
        elif not self._ping_at and now - self._last_out >= self._keepalive / 2:
            self._ping_at = now
            self._write(_PINGREQ)

    def _lost(self, sock: socket.socket, reason: str) -> None:
        if self._sock is sock:
            self._sock = None
            self._pending = b""
            self._out.clear()  # still unacknowledged: re-sent after reconnecting
            self._lost_reason = reason
            self._wake.set()
            self._cond.notify_all()
        sock.close()

    # -- the reader thread ------------------------------------------------------------

    def _read_loop(self) -> None:
        """Between the caller's calls: PUBACKs, keepalive, and reconnection."""
        delay = RECONNECT_MIN_S
        while not self._closing:
            woken = self._wake.wait(_POLL_S if self._sock is not None else delay)
            self._wake.clear()
            if woken and self._sock is not None:
                time.sleep(LINGER_S)  # let the batch fill
            if self._closing:
                return
            with self._lock:
                sock = self._sock
                if sock is not None:
                    if self._out and time.monotonic() - self._out_since < LINGER_S:
                        self._wake.set()  # a younger batch: look again in LINGER_S
                    else:
                        self._write_out()
                    if self._receive(sock):
                        self._keep_alive(sock)
                    continue
            delay = RECONNECT_MIN_S if self._reconnect() else min(delay * 2, RECONNECT_MAX_S)

    def _reconnect(self) -> bool:
        try:
            sock = self._open(timeout=10.0)
        except PublishError as exc:
            self._lost_reason = str(exc)
            return False
        with self._lock:
            if self._closing:
                sock.close()
                return False
            self._sock = sock
            self._ping_at = 0.0
            self._out.clear()  # every QoS 1 packet in it is re-sent below
            self.reconnects += 1
            # Re-send in publish order; DUP tells the broker these may be repeats.
            resend = [bytes([p[0] | _DUP]) + p[1:] for p in self._unacked.values()]
            for start in range(0, len(resend), BATCH):
                self._write(b"".join(resend[start : start + BATCH]))
            self._last_out = time.monotonic()
            self._cond.notify_all()
        return True

    def _open(self, timeout: float) -> socket.socket:
        """A socket on which the broker accepted our CONNECT (non-blocking from here)."""
        host, port = self._target.host, self._target.port
        where = f"{host}:{port}"
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise PublishError(f"no MQTT connection to {where}: {exc}") from None
        sock: socket.socket = raw
        try:
            # Writes are whole packets or batches already: send them without delay.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._target.tls:
                sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host)
            sock.sendall(self._connect)
            _check_connack(read_exactly(sock, 4), where)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise PublishError(f"no MQTT connection to {where}: {exc}") from None
        except PublishError:
            sock.close()
            raise
        return sock

    def _close(self, *, clean: bool) -> None:
        self._closing = True
        self._wake.set()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join()
        with self._lock:
            sock, self._sock = self._sock, None
            self._cond.notify_all()
        if sock is None:
            return
        if clean:
            with contextlib.suppress(OSError):
                sock.settimeout(2.0)
                sock.sendall(_DISCONNECT)
                # The broker closes its side once it has read DISCONNECT; wait for that,
                # or closing with unread data would reset the connection under it.
                while sock.recv(_READ_SIZE):
                    pass
        sock.close()


def _check_connack(connack: bytes, where: str) -> None:
    if connack[0] != _CONNACK:
        raise PublishError(f"{where} answered CONNECT with packet type {connack[0]:#x}")
    if connack[3]:
        reason = _REFUSED.get(connack[3], f"code {connack[3]}")
        raise PublishError(f"{where} refused the connection: {reason}")
