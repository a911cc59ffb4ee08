"""Notifiers: one protocol, a failure taxonomy, Twilio (SMS, WhatsApp, voice) and console."""

from alerting.notifiers.base import (
    Delivery,
    Notifier,
    NotifyConfigError,
    NotifyError,
    NotifyRejected,
    NotifyTemporary,
    Outbound,
)

__all__ = [
    "Delivery",
    "Notifier",
    "NotifyConfigError",
    "NotifyError",
    "NotifyRejected",
    "NotifyTemporary",
    "Outbound",
]
