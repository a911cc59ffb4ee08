"""A durable, bounded, in-order spool of line-protocol batches on local disk.

One file per batch, named by a monotonically increasing sequence number. A batch is
written to a temporary file, fsynced, renamed into place and the folder fsynced: after
:meth:`Spool.append` returns, the batch survives a crash or power cut, and a file is
either complete or absent (never torn). Draining reads the lowest number first, so
batches reach InfluxDB in the order they arrived. Size is bounded: when full,
:meth:`append` refuses and the writer stops acknowledging MQTT, so the broker's persistent
session queues instead (back-pressure, not loss).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_SUFFIX = ".lp"
_DIGITS = 20


class SpoolFull(Exception):
    """The spool has no room for the batch."""


class Spool:
    """Batches waiting for InfluxDB, oldest first."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        for stale in self.folder.glob("*.tmp"):  # a crash mid-append left these; never acked
            stale.unlink()
        self._files = sorted(self.folder.glob(f"*{_SUFFIX}"))
        self._bytes = sum(p.stat().st_size for p in self._files)
        self._next = int(self._files[-1].stem) + 1 if self._files else 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk."""
        return self._bytes

    def append(self, body: bytes) -> None:
        """Store one batch durably. Raises SpoolFull when it would exceed the bound."""
        with self._lock:
            if self._bytes + len(body) > self.max_bytes and self._files:
                raise SpoolFull(f"spool holds {self._bytes} bytes (limit {self.max_bytes})")
            final = self.folder / f"{self._next:0{_DIGITS}d}{_SUFFIX}"
            self._next += 1
            tmp = final.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.rename(final)
            _fsync_dir(self.folder)
            self._files.append(final)
            self._bytes += len(body)

    def head(self) -> tuple[Path, bytes] | None:
        """The oldest batch, without removing it."""
        with self._lock:
            if not self._files:
                return None
            path = self._files[0]
        return path, path.read_bytes()

    def replace_head(self, path: Path, body: bytes) -> None:
        """Rewrite the oldest batch (after part of it was written or dead-lettered)."""
        with self._lock:
            if not self._files or self._files[0] != path:
                raise ValueError("not the head of the spool")
            old = path.stat().st_size
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(body)
            with tmp.open("rb+") as handle:
                os.fsync(handle.fileno())
            tmp.replace(path)
            _fsync_dir(self.folder)
            self._bytes += len(body) - old

    def pop(self, path: Path) -> None:
        """Remove the oldest batch once it is safely in InfluxDB."""
        with self._lock:
            if not self._files or self._files[0] != path:
                raise ValueError("not the head of the spool")
            self._files.pop(0)
            self._bytes -= path.stat().st_size
            path.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
