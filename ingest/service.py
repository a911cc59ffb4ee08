"""The ingest service: MQTT source -> pipeline -> batch writer -> InfluxDB or spool.

Lifecycle (STYLE.md §9): construct and validate without I/O; :meth:`Ingester.start`
claims the client id and the spool (a second process with either is refused), then
consumes; :meth:`Ingester.stop` stops taking messages, writes or spools what is pending,
sends the acknowledgements, then disconnects, leaving the persistent session on the
broker. In a share group (``COLDCHAIN_SHARE_GROUP``) each process is one member with its
own client id, session and spool (docs/operations.md, "Several ingesters").
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.clock import Clock
from core.db import DatabaseError, SessionLock
from core.errors import ConfigError
from core.influx import TimeSeriesStore
from core.metrics import Registry as MetricsRegistry
from core.registry import Registry, payload_text
from core.settings import Settings
from devices import Router
from ingest.budget import Budget
from ingest.index import SensorIndex
from ingest.mqtt import AckToken, MqttSource
from ingest.pipeline import DEAD_LETTERS_BURST, DEAD_LETTERS_PER_S, Observation, Pipeline
from ingest.spool import Spool
from ingest.stats import IngestStats
from ingest.writer import BatchWriter

log = logging.getLogger(__name__)


# Retiring a member: it is drained when nothing has arrived for this long. Too short
# and messages still on their way are deleted with the session; too long only delays.
RETIRE_QUIET_S = 3.0

# Each ingester's retained status: "online" while connected, "stopped" after a clean
# stop, "offline" (its last will, published by the broker) after a crash or a lost
# connection. In a share group a member that is not online holds back its share of the
# readings (docs/operations.md, "Several ingesters"): watch these topics.
STATUS_TOPIC = "coldchain/v1/_ingest/{client_id}/status"
# How often the client-id claim in a PostgreSQL registry is checked (and taken again
# after a database restart, which ends it). Too long leaves the id open to a second
# ingester that long after a restart; too short costs a query a second for nothing.
CLAIM_CHECK_S = 10.0


class ClaimError(ConfigError):
    """Another process already runs an ingester with this client id (on this host, or with
    a PostgreSQL registry on any host) or, on this host, with this spool."""


class _DatabaseClaim:
    """The client id claimed in a PostgreSQL registry (core/db.py SessionLock): refused to a
    second process with the same id on any host, not only on this one."""

    def __init__(self, url: str, client_id: str) -> None:
        self.what = f"id {client_id}"
        self._lock = SessionLock(url, f"coldchain-mqtt-client-id:{client_id}")
        self.lost = False  # another ingester took the id (said once, in the log)

    def acquire(self) -> None:
        if not self._lock.try_acquire():
            raise ClaimError(
                f"{self.what} is in use by another running ingester (on this host or another: "
                "its lock is held in the registry database); give each member its own "
                "COLDCHAIN_INGEST_MEMBER"
            )

    def release(self) -> None:
        self._lock.release()

    def keep(self) -> None:
        """Take the lock again if the database restarted under it (it ends with the
        session); say so loudly if another ingester took the id meanwhile."""
        try:
            held = self._lock.keep()
        except DatabaseError as exc:
            log.warning("could not check the claim on %s: %s", self.what, exc)
            return
        if held:
            self.lost = False
        elif not self.lost:
            self.lost = True
            log.error(
                "%s was taken by another ingester while the registry database restarted; "
                "two ingesters with one id take the broker session from each other: give "
                "each member its own COLDCHAIN_INGEST_MEMBER",
                self.what,
            )


class _Claim:
    """An exclusive lock on a file (flock), held while the ingester runs."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ClaimError(
                f"{self.what} is in use by another running ingester ({self.path} is locked); "
                "give each member its own COLDCHAIN_INGEST_MEMBER"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def keep(self) -> None:
        """A flock lasts as long as its descriptor: nothing to do."""


class Ingester:
    """One ingest process (or the ingest part of ``coldchain run``)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: TimeSeriesStore,
        clock: Clock,
        *,
        metrics: MetricsRegistry | None = None,
        on_durable: Callable[[list[Observation]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.stats = IngestStats(metrics)
        self.clock = clock
        self.client_id = settings.ingest_client_id
        self.registry = registry
        # Two processes with one client id take the broker session from each other; two
        # with one spool folder overwrite each other's batches. Both are refused at
        # start(). The client id is claimed next to a SQLite registry (the one folder every
        # member of the host shares) or, with PostgreSQL, in the database itself (so on
        # every host); the spool by a lock file in it.
        id_claim: _Claim | _DatabaseClaim = (
            _Claim(Path(f"{settings.db}.mqtt-{self.client_id}.lock"), f"id {self.client_id}")
            if settings.db_is_file
            else _DatabaseClaim(str(settings.db), self.client_id)
        )
        self._claims = [
            id_claim,
            _Claim(settings.ingest_spool_dir / ".lock", f"spool {settings.ingest_spool_dir}"),
        ]
        self._claims_kept = time.monotonic()
        self.spool = Spool(settings.ingest_spool_dir, settings.spool_max_mb * 1024 * 1024)
        self._oversized: list[tuple[float, str, str | None, str, str, str]] = []
        self._oversized_lock = threading.Lock()
        # Stored like the pipeline's dead letters: at most so many a second (issue 13).
        self._oversized_budget = Budget(DEAD_LETTERS_PER_S, DEAD_LETTERS_BURST)
        self.router = Router()
        self.index = SensorIndex(registry)
        self.writer = BatchWriter(
            store,
            self.spool,
            self._ack_many,
            self.stats,
            clock,
            batch_size=settings.batch_size,
            interval_s=settings.batch_interval_ms / 1000.0,
            before_ack=self._before_ack,
            on_rejected=self._on_rejected,
            on_durable=on_durable,
            housekeeping=self._housekeeping,
        )
        self.stats.watch_writer(
            self.writer.depth,
            inflight_limit=settings.max_inflight,
            spool_limit=self.spool.max_bytes,
        )
        self.pipeline = Pipeline(
            self.router,
            self.index,
            self.writer,
            stats=self.stats,
            clock=clock,
            registry=registry,
            emit_observations=on_durable is not None,
        )
        self.source = MqttSource(
            settings.mqtt,
            self.client_id,
            self.router.subscriptions,
            self.pipeline.handle,
            receive_maximum=settings.max_inflight,
            on_connection_change=lambda up: self.stats.mqtt_connected.set(1.0 if up else 0.0),
            max_payload=settings.max_payload_bytes,
            on_oversized=self._on_oversized,
            share_group=settings.share_group,
            status_topic=STATUS_TOPIC.format(client_id=self.client_id),
            on_chunk=self.pipeline.end_chunk,
        )

    def _ack_many(self, tokens: list[Any]) -> None:
        self.source.ack_many(tokens)

    def _on_oversized(
        self, topic: str, prefix: bytes, size: int, retained: bool, token: AckToken
    ) -> None:
        """A payload over the cap: dead-letter its start, acknowledge once that is stored."""
        del retained
        self.stats.dead_letters.inc("payload_too_large")
        if not self._oversized_budget.take():  # a flood of big messages: counted, not kept
            self.stats.side_dropped.inc("dead_letter")
            self.pipeline.pass_on(token)
            return
        cap = self.settings.max_payload_bytes
        detail = f"{size} bytes, over COLDCHAIN_MAX_PAYLOAD_BYTES={cap}"
        text = payload_text(prefix)
        row = (self.clock.time(), "payload_too_large", None, topic[:512], text, detail)
        with self._oversized_lock:
            self._oversized.append(row)
        self.pipeline.pass_on(token)

    def _before_ack(self) -> None:
        self.pipeline.flush_dead_letters()
        with self._oversized_lock:
            rows, self._oversized = self._oversized, []
        if rows:
            self.registry.add_dead_letters(rows)

    def _on_rejected(self, rejections: Any) -> None:
        self.pipeline.record_rejections(rejections)

    def _housekeeping(self) -> None:
        self.pipeline.housekeeping()
        now = time.monotonic()
        if now - self._claims_kept >= CLAIM_CHECK_S:
            self._claims_kept = now
            for claim in self._claims:
                claim.keep()

    def start(self) -> None:
        """Claim the client id and the spool, start writing, then start consuming.

        Raises:
            ClaimError: another ingester runs with this client id, or on this host with
                this spool.
            DatabaseError: a PostgreSQL registry cannot be reached to claim the id.
        """
        for n, claim in enumerate(self._claims):
            try:
                claim.acquire()
            except ClaimError:
                for held in self._claims[:n]:
                    held.release()
                raise
        self.writer.start()
        self.source.start()
        log.info("ingest started: %d topic filters", len(self.router.subscriptions))

    def wait_connected(self, timeout: float) -> bool:
        """Block until the broker accepted us and acknowledged our subscriptions (tests
        and the demo): from then on nothing published is missed. (Connected alone is not
        enough: a message published before the SUBSCRIBE lands reaches no one.)"""
        source = self.source
        deadline = time.monotonic() + timeout
        if not source.connected.wait(timeout):
            return False
        return source.subscribed.wait(max(0.0, deadline - time.monotonic()))

    def retire(self, quiet_s: float = RETIRE_QUIET_S, timeout: float = 600.0) -> bool:
        """Take this member out of its share group for good (``coldchain ingest --retire``).

        Mosquitto keeps dispatching a stopped member's share to its persistent session,
        so a member that will not come back must be drained and its session deleted:
        connect, unsubscribe (queued messages keep coming, new ones go to the other
        members), store what arrives until nothing has for ``quiet_s`` and the spool is
        empty, then disconnect deleting the session. Returns False (session kept) if that
        does not happen within ``timeout``.
        """
        self.source.unsubscribe()
        self.start()
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = time.monotonic()
            received = self.source.received
            if received != last or not self.source.unsubscribed.is_set():
                last, since = received, now
            elif now - since >= quiet_s and not len(self.spool) and self.writer.idle:
                self.stop(forget_session=True)
                log.info("retired %s: %d messages drained, session deleted", self.client_id, last)
                return True
            time.sleep(0.1)
        log.error("%s not retired: still receiving or spooling after %.0f s", self.client_id,
                  timeout)  # fmt: skip
        self.stop()
        return False

    def stop(self, *, forget_session: bool = False) -> None:
        """Drain in-flight work and disconnect (SIGTERM/SIGINT path)."""
        self.source.pause()
        self.writer.stop()
        self.pipeline.housekeeping(force=True)
        self.source.stop(forget_session=forget_session)  # sends queued acks first
        for claim in self._claims:
            claim.release()
        log.info(
            "ingest stopped: %d messages, %d points written, %d batches on the spool",
            int(self.stats.messages.total()),
            int(self.stats.points_written.total()),
            len(self.spool),
        )
