"""One interface through which people command alerts, wherever the engine runs.

The API's routes and Twilio webhooks (acknowledge, resolve, an SMS reply, a keypad entry,
a delivery status) talk to an :class:`AlertCommands`:

- in ``coldchain run`` the :class:`~alerting.engine.AlertingEngine` itself, which acts at
  once (an acknowledgement stops the escalation, a resolve tells whoever was paged, a
  failed delivery falls back to the next contact);
- in split mode (``coldchain api`` beside ``coldchain alerting``) a :class:`BookCommands`:
  what the alert book can decide (the acknowledgement, the resolution, who may reply) is
  written at once, and in the same transaction a command is queued for the alerting
  process (``alert_commands``), which carries out the rest on its next tick
  (:meth:`AlertingEngine.run_commands`): the resolved messages, the fallback after a late
  delivery failure, the rules forgetting a resolved condition, the alert_event points.

So a route never asks where the engine is, and nothing said in split mode is lost.
"""

from __future__ import annotations

from typing import Protocol

from alerting import acks
from alerting.acks import AckReply
from alerting.book import Alert, AlertBook
from core.clock import Clock
from core.registry import Registry

# Queued command kinds (alert_commands.kind).
ACKNOWLEDGED = "acknowledged"  # tell the engine: alert_event, counters
RESOLVED = "resolved"  # tell whoever was paged; the rules forget the condition
STATUS = "status"  # a delivery status callback: fall back when it failed


class AlertCommands(Protocol):
    """What people can do to alerts (see the module docstring)."""

    def acknowledge(self, alert: Alert, *, by: str, via: str, note: str = "") -> Alert:
        """Stop the escalation (it re-escalates after the ack timeout)."""
        ...

    def resolve(self, alert: Alert, *, by: str, note: str) -> Alert:
        """Close it by hand; whoever was paged is told."""
        ...

    def handle_sms(self, from_number: str, body: str) -> AckReply:
        """An inbound SMS (``OK 4821 [note]``)."""
        ...

    def acknowledge_by_code(self, sender: str, code: str, *, via: str, note: str = "") -> AckReply:
        """Acknowledge by short code for ``sender`` (SMS reply, voice keypad)."""
        ...

    def help_reply(self, sender: str) -> AckReply:
        """How to acknowledge, in the sender's language."""
        ...

    def handle_status(self, provider_id: str, status: str, error_code: str | None) -> bool:
        """A provider's delivery status callback."""
        ...


class BookCommands:
    """:class:`AlertCommands` for an engine in another process (split mode)."""

    def __init__(self, registry: Registry, clock: Clock, ack_timeout_s: float) -> None:
        self.registry = registry
        self.book = AlertBook(registry)
        self.clock = clock
        self.ack_timeout_s = ack_timeout_s

    def acknowledge(self, alert: Alert, *, by: str, via: str, note: str = "") -> Alert:
        now = self.clock.time()
        return self.book.acknowledge(
            alert, now, by=by, via=via, note=note, rearm_at=now + self.ack_timeout_s,
            queue={"kind": ACKNOWLEDGED, "via": via},
        )  # fmt: skip

    def resolve(self, alert: Alert, *, by: str, note: str) -> Alert:
        return self.book.resolve(
            alert, self.clock.time(), by=by, note=note, queue={"kind": RESOLVED}
        )

    def handle_sms(self, from_number: str, body: str) -> AckReply:
        parsed = acks.parse_sms(body)
        if parsed is None:
            return self.help_reply(from_number)
        code, note = parsed
        return self.acknowledge_by_code(from_number, code, via="sms", note=note)

    def acknowledge_by_code(self, sender: str, code: str, *, via: str, note: str = "") -> AckReply:
        stores = {s.id: s for s in self.registry.stores()}
        return acks.acknowledge_by_code(
            self.book, self.registry.contacts(), stores, sender, code, via=via, note=note,
            acknowledge=lambda alert, by, how, text: self.acknowledge(
                alert, by=by, via=how, note=text
            ),
        )  # fmt: skip

    def help_reply(self, sender: str) -> AckReply:
        return acks.help_reply(sender, self.registry.contacts())

    def handle_status(self, provider_id: str, status: str, error_code: str | None) -> bool:
        self.book.queue_command(
            self.clock.time(),
            {"kind": STATUS, "provider_id": provider_id, "status": status, "error": error_code},
        )
        return True
