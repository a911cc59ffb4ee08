"""The console notifier: what would have been sent, written as a line of text.

Wired when no Twilio credentials are configured (DESIGN.md §3), so a demo or a development
install still shows every page it would send. It never fails: delivery problems are what
the Twilio notifier and its tests are for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from alerting.notifiers.base import Channel, Delivery, Outbound
from alerting.notifiers.gsm import segments

log = logging.getLogger(__name__)

_LABELS: Final[dict[Channel, str]] = {"sms": "SMS", "whatsapp": "WhatsApp", "voice": "Voice call"}


class ConsoleNotifier:
    """Records and prints every message instead of sending it.

    Attributes:
        name: ``"console"``.
        sent: Every message handed to :meth:`send`, in order.
    """

    name = "console"

    def __init__(self, out: Callable[[str], None] | None = None) -> None:
        """Create the notifier.

        Args:
            out: Where each line goes; by default this module's logger at INFO (``print``
                works too, from a CLI).
        """
        self._out = out if out is not None else log.info
        self.sent: list[Outbound] = []
        self._lock = threading.Lock()  # escalation steps may run on several threads

    def send(self, message: Outbound) -> Delivery:
        """Record ``message`` and print it as ``SMS to +50255550101: text``.

        Args:
            message: What to send.

        Returns:
            A delivery with id ``console-<n>`` (n counts from 1) and status ``sent``.
        """
        with self._lock:
            self.sent.append(message)
            n = len(self.sent)
        # One line per message, whatever the body holds: multi-line alerts stay greppable.
        text = " | ".join(message.body.splitlines())
        line = f"{_LABELS[message.channel]} to {message.to}: {text}"
        if message.channel == "voice":
            line += f" [{message.language}"
            line += f", keypad -> {message.gather_url}]" if message.gather_url else "]"
        self._out(line)
        return Delivery(
            provider_id=f"console-{n}",
            status="sent",
            segments=segments(message.body) if message.channel == "sms" else 1,
        )
