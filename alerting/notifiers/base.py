"""The notifier contract and its failure taxonomy (STYLE.md §7).

    NotifyError
    ├── NotifyRejected     this recipient cannot get this message (invalid number,
    │                      unsubscribed, landline for SMS): do not retry; next contact
    ├── NotifyTemporary    try again later (throttled, 5xx, timeout, unreachable handset)
    └── NotifyConfigError  our side is wrong (credentials, sender, geo-permissions):
                           fail loudly, alert the operators, fall back to another channel

Exception texts and logs never contain credentials; ``tests/alerting`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Channel = Literal["sms", "whatsapp", "voice"]


class NotifyError(Exception):
    """A message that was not handed to the provider."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # the provider's error code (Twilio: 21211, 30003, ...)


class NotifyRejected(NotifyError):
    """Permanent for this recipient: move on to the next contact."""


class NotifyTemporary(NotifyError):
    """Transient: retry with backoff, then fall back."""

    def __init__(
        self, message: str, code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class NotifyConfigError(NotifyError):
    """Our configuration is wrong: no retry helps."""


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message to one person on one channel.

    ``body`` is the text (SMS, WhatsApp) or what a voice call says; for voice,
    ``gather_url`` is where the keypad digits are posted (the ack code).
    """

    to: str  # E.164, e.g. "+50255550101"
    channel: Channel
    body: str
    language: str = "es"  # es | pt | en: voice and templates
    status_callback: str | None = None
    gather_url: str | None = None
    # Seconds after which the provider should give up delivering (stale alerts are worse
    # than none: research/domain.md §D.4).
    validity_s: int = 1800
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the provider said when it accepted the message."""

    provider_id: str  # Twilio Message SID or Call SID
    status: str  # queued, accepted, sent, ...
    segments: int = 1


class Notifier(Protocol):
    """Hands one message to a provider."""

    name: str

    def send(self, message: Outbound) -> Delivery:
        """Send, or raise one of the NotifyError subclasses."""
        ...
