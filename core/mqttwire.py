"""MQTT wire primitives shared by coldchain's two MQTT clients: ingest's MQTT 5 receive
client (ingest/mqtt.py) and the simulator's MQTT 3.1.1 publisher (simulator/publisher.py).

Only what both encode or read the same way lives here; each client keeps its packets.
"""

from __future__ import annotations

import socket
import struct

_U16 = struct.Struct("!H")


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property length)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def string(value: bytes) -> bytes:
    """A length-prefixed string (or binary data) field."""
    return _U16.pack(len(value)) + value


def credentials(username: str | None, password: str | None) -> tuple[int, bytes]:
    """The CONNECT flags and payload tail of a user name and password (MQTT 3.1.1 and 5
    alike: a password is sent only with a user name)."""
    if username is None:
        return 0, b""
    if password is None:
        return 0x80, string(username.encode())
    return 0x80 | 0x40, string(username.encode()) + string(password.encode())


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from a blocking socket (the handshake, before the read loop)."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("closed by the broker during the handshake")
        data += chunk
    return data
