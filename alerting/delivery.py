"""Delivery: pending notifications to the notifier, with retries, in a thread of its own.

The engine never waits on a provider. It commits notifications as ``pending`` and hands
their ids here. For each one: send; on :class:`NotifyTemporary` retry with backoff up to
:data:`MAX_ATTEMPTS`; on :class:`NotifyRejected`, :class:`NotifyConfigError` or retries
exhausted, mark it failed and call ``on_failed`` so the engine can fall back to the next
contact. Every outcome is stored on the notification and counted, and every failure is an
audit entry on its alerts: nothing fails silently.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

from alerting.book import AlertBook, Notification
from alerting.notifiers.base import (
    Notifier,
    NotifyConfigError,
    NotifyRejected,
    NotifyTemporary,
    Outbound,
)
from core.clock import Clock
from core.metrics import Counter

log = logging.getLogger(__name__)

# Attempts per notification on temporary failures, and the waits between them. Too few and
# a carrier hiccup costs a page; too many and a dead route delays the fall-back contact.
MAX_ATTEMPTS = 3
RETRY_DELAYS_S = (5.0, 30.0)
# A provider's Retry-After is honoured up to this long. Too low and a throttled account is
# hammered (and stays throttled); too high and one throttled answer holds a critical page
# for as long as the provider cares to say, instead of falling back to the next contact.
MAX_RETRY_AFTER_S = 60.0


class Delivery:
    """Owns the delivery thread."""

    def __init__(
        self,
        book: AlertBook,
        notifier: Notifier,
        clock: Clock,
        *,
        status_callback: str | None,
        gather_url: str | None,
        on_failed: Callable[[Notification, str], None],
        sent: Counter,
        may_send: Callable[[], bool] | None = None,
    ) -> None:
        self.book = book
        self.notifier = notifier
        self.clock = clock
        self.status_callback = status_callback
        self.gather_url = gather_url
        self.on_failed = on_failed
        self.sent = sent
        # Asked right before each message goes to the provider: a process that lost the
        # alerting lease (alerting/lease.py) leaves it pending for the active instance.
        self.may_send = may_send
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, int]] = []  # (due monotonic, seq, notification id)
        self._seq = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._busy = False
        self.retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
        self.max_retry_after_s = MAX_RETRY_AFTER_S

    def start(self) -> None:
        """Start the thread (:meth:`resume_pending` queues what a previous run left)."""
        self._thread = threading.Thread(target=self._run, name="alert-delivery", daemon=True)
        self._thread.start()

    def resume_pending(self) -> None:
        """Queue every notification left pending (by a previous run, or the instance this
        one took over from)."""
        for pending in self.book.notifications(status="pending"):
            self.submit(pending.id)

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is due now, then stop (retries still waiting stay pending)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, notification_id: int, delay_s: float = 0.0) -> None:
        """Queue a pending notification for sending."""
        with self._cond:
            self._seq += 1
            heapq.heappush(self._queue, (time.monotonic() + delay_s, self._seq, notification_id))
            self._cond.notify()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is due (tests, shutdown). True when the queue emptied."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._queue and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else 1.0
                    self._cond.wait(max(0.001, wait))
                if self._stopping and (not self._queue or self._queue[0][0] > time.monotonic()):
                    return
                _, _, notification_id = heapq.heappop(self._queue)
                self._busy = True
            try:
                self._send(notification_id)
            except Exception:  # the thread must survive a bug; the row stays visible
                log.exception("delivery of notification %s failed", notification_id)
            finally:
                with self._cond:
                    self._busy = False

    def _send(self, notification_id: int) -> None:
        note = self.book.notification(notification_id)
        if note is None or note.status != "pending":
            return  # already sent, bundled or cancelled
        if self.may_send is not None and not self.may_send():
            log.warning("notification %s left pending: this instance no longer holds the "
                        "alerting lease", notification_id)  # fmt: skip
            return
        message = Outbound(
            to=note.phone,
            channel=note.channel,  # type: ignore[arg-type]
            body=note.body,
            language=note.language,
            status_callback=self.status_callback,
            gather_url=self.gather_url,
        )
        now = self.clock.time()
        try:
            delivery = self.notifier.send(message)
        except NotifyTemporary as exc:
            attempts = note.attempts + 1
            if attempts < MAX_ATTEMPTS:
                self.book.mark(note.id, now, status="pending", error=str(exc), attempt=True)
                delays = self.retry_delays_s
                delay = delays[min(attempts - 1, len(delays) - 1)]
                if exc.retry_after is not None:
                    delay = min(exc.retry_after, self.max_retry_after_s)
                self.sent.inc(self.notifier.name, "retry")
                self.submit(note.id, delay)
                return
            self._fail(note, now, f"gave up after {attempts} attempts: {exc}")
            return
        except (NotifyRejected, NotifyConfigError) as exc:
            problem = str(exc)
            config = isinstance(exc, NotifyConfigError)
        else:
            self.book.mark(
                note.id, now, status="sent", provider_id=delivery.provider_id, attempt=True
            )
            self.sent.inc(self.notifier.name, "sent")
            return
        if config:
            log.error("notifier configuration problem: %s", problem)
        self._fail(note, now, problem)

    def _fail(self, note: Notification, now: float, error: str) -> None:
        self.book.fail(note, now, error=error[:300], attempt=True)
        self.sent.inc(self.notifier.name, "failed")
        log.warning("notification %s to %s failed: %s", note.id, note.contact, error[:200])
        self.on_failed(note, error)
