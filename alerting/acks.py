"""Acknowledging by reply: who may acknowledge which alert with its short code.

One rule for an SMS reply (``OK 4821 [note]``) and a voice keypad entry: the alert must be
open, and the sender must have been paged for it, or be a contact its frozen escalation
policy would page (one of the policy's roles or contacts, covering its store; a contact
with no stores covers all). Being a contact is not enough: a technician who made itself
a contact could otherwise acknowledge what the API refuses it (issue 13). An unknown code
and a refused one get the same answer, so a guesser learns nothing about which codes are
live. The answer is in the sender's language, else the store's. Used by the engine
(``coldchain run``) and by :class:`alerting.commands.BookCommands` when the engine runs in
another process (split mode). Replays and guessing are stopped before this, at the
webhooks (api/throttle.py, ``AlertBook.claim_inbound``).
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
    refused = AckReply(messages.reply("ack_refused", lang, code=code), lang)
    alert = book.open_by_code(code)
    if alert is None:
        return refused
    paged = {n.phone for n in book.notifications(alert_id=alert.id)}
    if sender not in paged and not (contact is not None and would_page(contact, alert)):
        return refused
    store = stores.get(alert.store)
    if (contact is None or contact.language is None) and store is not None:
        lang = messages.language(store.language)
    if alert.state != ACKNOWLEDGED:
        acknowledge(alert, contact.id if contact else sender, via, note)
    name = contact.name if contact else sender
    return AckReply(messages.reply("ack_ok", lang, code=code, name=name), lang, alert.id)


def would_page(contact: Contact, alert: Alert) -> bool:
    """The alert's frozen policy names the contact (by id or by one of its roles) and the
    contact covers the alert's store."""
    covers = not contact.stores or alert.store in contact.stores
    named = {n for step in alert.policy for n in step.notify}
    return covers and (contact.id in named or bool(named & set(contact.roles)))


def _contact(phone: str, contacts: Iterable[Contact]) -> Contact | None:
    return next((c for c in contacts if c.phone == phone), None)
