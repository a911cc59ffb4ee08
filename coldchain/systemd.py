"""systemd's notification protocol without a dependency (sd_notify(3)).

A service with ``Type=notify`` tells systemd it is ready (``READY=1``) and that it is
stopping (``STOPPING=1``); with ``WatchdogSec=`` it must also send ``WATCHDOG=1`` more
often than that, or systemd kills it (SIGABRT) and, with ``Restart=``, starts it again,
and runs its ``OnFailure=`` units (the page that does not need coldchain:
docs/operations.md, section 8). Each message is one datagram to the unix socket named in
``$NOTIFY_SOCKET`` (``@name`` is an abstract socket). Outside systemd nothing is sent.

:class:`Watchdog` pings only while the process's own health check holds (alerting ticks,
ingest's writer loop turns), so a process whose HTTP port still answers but whose work
has stopped is killed and restarted rather than kept alive by a healthy side thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends notifications to ``$NOTIFY_SOCKET``; does nothing when it is unset."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if path.startswith("@"):  # abstract namespace
            self.address = "\0" + path[1:]
        elif path.startswith("/"):
            self.address = path
        self.watchdog_s: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process systemd watches; another (a child) must not ping.
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True under systemd with ``Type=notify`` (or ``NotifyAccess=``)."""
        return self.address is not None

    def notify(self, state: str) -> bool:
        """Send ``state`` (``READY=1``, ``WATCHDOG=1``, ...); True when it was sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(state.encode(), self.address)
        except OSError as exc:
            if not self._warned:  # once: a missing socket would fill the journal
                log.warning("systemd notification %r not sent: %s", state, exc)
                self._warned = True
            return False
        return True

    def ready(self) -> bool:
        """Start-up finished: systemd marks the unit active."""
        return self.notify("READY=1")

    def stopping(self) -> bool:
        """Draining before exit (so a slow drain is not taken for a hang)."""
        return self.notify("STOPPING=1")


class Watchdog:
    """Sends ``WATCHDOG=1`` every half ``WatchdogSec`` while ``healthy()`` holds.

    Lifecycle as every component: construct without I/O, :meth:`start`, :meth:`stop`.
    Without ``$WATCHDOG_USEC`` (not under a systemd watchdog) it starts no thread.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        healthy: Callable[[], bool],
        interval_s: float | None = None,
    ) -> None:
        self.notifier = notifier
        self.healthy = healthy
        # Half the watchdog period, as sd_watchdog_enabled(3) advises: one lost or late
        # ping is not yet a kill.
        period = notifier.watchdog_s
        self.interval_s = interval_s or (period / 2 if period else None)
        self.pings = 0
        self.withheld = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start pinging (when systemd asked for it)."""
        if self.interval_s is None or not self.notifier.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop pinging."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        assert self.interval_s is not None
        while not self._stop.is_set():
            try:
                ok = self.healthy()
            except Exception:  # a failing check is a failed check, not a dead pinger
                log.exception("watchdog health check failed")
                ok = False
            if ok:
                if self.notifier.notify("WATCHDOG=1"):
                    self.pings += 1
            else:
                self.withheld += 1
                if self.withheld == 1 or self.withheld % 10 == 0:
                    log.error("unhealthy: withholding the systemd watchdog ping (%d)",
                              self.withheld)  # fmt: skip
            self._stop.wait(self.interval_s)
