"""An append-only, tamper-evident audit log: each entry hashes the one before it.

``hash = sha256(prev_hash | at | actor | action | subject | canonical-json(detail))``.
Changing, deleting or reordering any row breaks every hash after it, which
:func:`verify` reports (``coldchain audit verify``). Entries are written inside the same
transaction as the change they record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # core.db imports nothing of this module, but keeps audit light to import
    from core.db import Database, Transaction

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log."""

    id: int
    at: float
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def _digest(prev: str, at: float, actor: str, action: str, subject: str, detail: str) -> str:
    payload = "|".join([prev, repr(float(at)), actor, action, subject, detail])
    return hashlib.sha256(payload.encode()).hexdigest()


def _canonical(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)


def append(
    conn: Transaction,
    *,
    at: float,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any] | None = None,
) -> str:
    """Append one entry (call inside a write transaction); returns its hash."""
    row = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS
    text = _canonical(detail or {})
    digest = _digest(prev, at, actor, action, subject, text)
    conn.execute(
        "INSERT INTO audit(at, actor, action, subject, detail, prev_hash, hash) "
        "VALUES (?,?,?,?,?,?,?)",
        (at, actor, action, subject, text, prev, digest),
    )
    return digest


def entries(
    db: Database, *, after_id: int = 0, limit: int = 1000, subject: str | None = None
) -> list[AuditEntry]:
    """Entries in order, optionally for one subject."""
    sql = "SELECT * FROM audit WHERE id > ?"
    args: list[Any] = [after_id]
    if subject is not None:
        sql += " AND subject = ?"
        args.append(subject)
    sql += " ORDER BY id LIMIT ?"
    args.append(limit)
    return [
        AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])
        for r in db.query(sql, args)
    ]


def verify(db: Database) -> tuple[bool, int | None, int]:
    """Walk the chain. Returns (intact, id of the first bad entry or None, entries checked)."""
    prev = GENESIS
    checked = 0
    for row in db.query(
        "SELECT id, at, actor, action, subject, detail, prev_hash, hash FROM audit ORDER BY id"
    ):
        ident, at, actor, action, subject, detail, prev_hash, digest = row
        if prev_hash != prev or _digest(prev, at, actor, action, subject, detail) != digest:
            return False, int(ident), checked
        prev = digest
        checked += 1
    return True, None, checked
