"""Acknowledging by reply: who may acknowledge which alert with its short code.

One rule for an SMS reply (``OK 4821 [note]``) and a voice keypad entry: the alert must be
open, and the sender must have been paged for it or be a contact responsible for its store
(a contact with no stores is responsible for all). The answer is in the sender's language,
else the store's. Used by the engine (``coldchain run``) and by the API's webhooks when the
engine runs in another process (split mode), where the acknowledgement is written to the
alert book and the alerting process sees it before its next step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from alerting import messages
from alerting.book import ACKNOWLEDGED, Alert, AlertBook
from core.chain import Contact, Store

# "OK 4821", "ok #4821 voy en camino", "Recibido 4821." ... in es, pt and en.
ACK_PATTERN = re.compile(
    r"^\s*(?:OK|ACK|RECIBIDO|VISTO|ATENDIDO|ENTENDIDO|LISTO|CIENTE|RECEBIDO|SIM)\s*#?\s*"
    r"(\d{4})\b[\s.,:;-]*(.*)$",
    re.IGNORECASE | re.DOTALL,
)
# The longest note kept from a reply (an SMS is at most 1,600 characters).
MAX_NOTE = 500

# acknowledge(alert, by, via, note) -> the acknowledged alert
Acknowledge = Callable[[Alert, str, str, str], Alert]


@dataclass(frozen=True, slots=True)
class AckReply:
    """What to answer, in which language, and the alert acknowledged (if any)."""

    text: str
    language: str
    acknowledged: str | None = None


def parse_sms(body: str) -> tuple[str, str] | None:
    """``(code, note)`` of an acknowledging SMS, or None."""
    match = ACK_PATTERN.match(body or "")
    if match is None:
        return None
    return match.group(1), match.group(2).strip()[:MAX_NOTE]


def help_reply(sender: str, contacts: Iterable[Contact]) -> AckReply:
    """How to acknowledge, in the sender's language."""
    contact = _contact(sender, contacts)
    lang = messages.language(contact.language if contact else None)
    return AckReply(messages.reply("ack_help", lang), lang)


def acknowledge_by_code(
    book: AlertBook,
    contacts: Iterable[Contact],
    stores: Mapping[str, Store],
    sender: str,
    code: str,
    *,
    via: str,
    note: str,
    acknowledge: Acknowledge,
) -> AckReply:
    """Acknowledge the open alert with ``code`` for ``sender`` if the rule allows it."""
    contact = _contact(sender, contacts)
    lang = messages.language(contact.language if contact else None)
    alert = book.open_by_code(code)
    if alert is None:
        return AckReply(messages.reply("ack_unknown", lang, code=code), lang)
    store = stores.get(alert.store)
    if (contact is None or contact.language is None) and store is not None:
        lang = messages.language(store.language)
    paged = {n.phone for n in book.notifications(alert_id=alert.id)}
    responsible = contact is not None and (not contact.stores or alert.store in contact.stores)
    if sender not in paged and not responsible:
        return AckReply(messages.reply("ack_forbidden", lang, code=code), lang)
    if alert.state != ACKNOWLEDGED:
        acknowledge(alert, contact.id if contact else sender, via, note)
    name = contact.name if contact else sender
    return AckReply(messages.reply("ack_ok", lang, code=code, name=name), lang, alert.id)


def _contact(phone: str, contacts: Iterable[Contact]) -> Contact | None:
    return next((c for c in contacts if c.phone == phone), None)
