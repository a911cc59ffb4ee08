"""Active/standby alerting: a lease in the shared registry, every write fenced by its epoch.

Several ``coldchain alerting`` processes may run against one registry (PostgreSQL across
hosts, or SQLite on one host); one holds the lease and evaluates, escalates and sends, the
others stand by. The holder renews the lease at every tick; when it stops renewing (killed,
hung, cut off), the lease expires after :data:`LEASE_TTL_S` and a standby takes it over
with the next epoch, reconciles its rules (warm: it replayed stored history when it
started and followed the live stream since, alerting/engine.py ``_stand_by``) with the
alert book and resumes the escalations the book holds.

Two fences keep an ex-holder that wakes up (SIGSTOP, a long GC pause, a frozen VM) from
acting on a lease it lost:

- every write of the alert book checks, inside its transaction, that the lease still has
  this holder and epoch (:meth:`Lease.fence`, raising :class:`LeaseLost`); writes are
  serialized (core/db.py), so the check and the write are atomic;
- before each message is handed to the provider, :meth:`Lease.valid` checks that the lease
  was renewed less than ``LEASE_TTL_S - LEASE_MARGIN_S`` ago by this process's monotonic
  clock: a holder that slept through its lease knows it before it sends.

Hosts must keep their clocks in step (NTP) well within the TTL: expiry compares the
holder's renewal time with the taker's clock. Instance names (``COLDCHAIN_INSTANCE``) must
be unique: a process finding the lease under its own name takes it at once (it is its
own previous run, after a restart) with the next epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from core.clock import Clock
from core.db import Transaction
from core.registry import Registry

log = logging.getLogger(__name__)

# A lease not renewed for this long is taken over. Shorter and a busy holder (a long
# escalation round, a slow database) loses it to a standby for nothing; longer and pages
# wait that much longer after the holder dies (the takeover time is about this plus the
# warm-up).
LEASE_TTL_S = 10.0
# An ex-holder stops sending this long before its lease can have expired anywhere, to
# cover clock drift between hosts and the time between the check and the provider call.
LEASE_MARGIN_S = 2.0
LEASE_NAME = "alerting"


class LeaseLost(RuntimeError):
    """This process no longer holds the lease: it must not write or send."""


class Lease:
    """One process's view of the alerting lease."""

    def __init__(
        self, registry: Registry, holder: str, clock: Clock, *, ttl_s: float = LEASE_TTL_S,
        name: str = LEASE_NAME, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.registry = registry
        self.holder = holder
        self.clock = clock
        self.ttl_s = ttl_s
        self.name = name
        self.epoch = 0
        self.held = False
        self._monotonic = monotonic  # this process's own clock, for valid()
        self._renewed_mono: float | None = None

    def try_acquire(self) -> bool:
        """Renew the lease if held, take it over if it expired (or never existed).
        Returns whether this process holds it now."""
        now = self.clock.time()
        with self.registry.transaction() as tx:
            row = tx.execute(
                "SELECT holder, epoch, expires_at FROM leases WHERE name=?", (self.name,)
            ).fetchone()
            if row is None:
                tx.execute(
                    "INSERT INTO leases(name, holder, epoch, expires_at, renewed_at) "
                    "VALUES (?,?,?,?,?)",
                    (self.name, self.holder, 1, now + self.ttl_s, now),
                )
                epoch = 1
            elif row["holder"] == self.holder and row["epoch"] == self.epoch and self.held:
                tx.execute(
                    "UPDATE leases SET expires_at=?, renewed_at=? WHERE name=?",
                    (now + self.ttl_s, now, self.name),
                )
                epoch = self.epoch
            elif row["holder"] == self.holder or float(row["expires_at"]) <= now:
                # Expired, or ours from before a restart (instance names are unique, so a
                # holder of our name is a previous run of this one): the next epoch fences
                # out whatever still acts on the old one.
                epoch = int(row["epoch"]) + 1
                tx.execute(
                    "UPDATE leases SET holder=?, epoch=?, expires_at=?, renewed_at=? WHERE name=?",
                    (self.holder, epoch, now + self.ttl_s, now, self.name),
                )
                log.warning("took over the %s lease (epoch %d) from %s", self.name, epoch,
                            row["holder"])  # fmt: skip
            else:
                if self.held:
                    log.error("lost the %s lease to %s (epoch %d)", self.name, row["holder"],
                              row["epoch"])  # fmt: skip
                self.held = False
                return False
        self.held, self.epoch = True, epoch
        self._renewed_mono = self._monotonic()
        return True

    def valid(self) -> bool:
        """Held, and renewed recently enough by this process's own clock to act on."""
        renewed = self._renewed_mono
        return (
            self.held
            and renewed is not None
            and self._monotonic() - renewed < self.ttl_s - LEASE_MARGIN_S
        )

    def fence(self, tx: Transaction) -> None:
        """Raise :class:`LeaseLost` unless the lease still has this holder and epoch (call
        inside the write transaction that must not happen otherwise)."""
        row = tx.execute("SELECT holder, epoch FROM leases WHERE name=?", (self.name,)).fetchone()
        if row is None or row["holder"] != self.holder or int(row["epoch"]) != self.epoch:
            self.held = False
            raise LeaseLost(f"the {self.name} lease is no longer ours (epoch {self.epoch})")

    def release(self) -> None:
        """Give the lease up at a clean stop, so a standby takes over at once."""
        if not self.held:
            return
        with self.registry.transaction() as tx:
            tx.execute(
                "UPDATE leases SET expires_at=? WHERE name=? AND holder=? AND epoch=?",
                (0.0, self.name, self.holder, self.epoch),
            )
        self.held = False
