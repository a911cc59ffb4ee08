"""The alert book: alerts, their frozen escalation and their notifications, in SQLite.

The database holds the truth (STYLE.md §2). Every state change of an alert is one
transaction that also appends an audit entry, so a restart resumes exactly where the
last committed step left off.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from alerting.conditions import Condition
from core import audit
from core.chain import PolicyStep
from core.db import Cursor, Row, Transaction
from core.errors import NotFound, RegistryError
from core.registry import Registry

FIRING, ACKNOWLEDGED, RESOLVED = "firing", "acknowledged", "resolved"


# An acknowledgement code is not given to a new alert for this long after an alert that
# had it opened: a reply to an old page (or a replayed one) must not acknowledge a new
# problem. 4-digit codes (9,000) last a month for chains opening under ~300 alerts a
# day; longer and busy chains fall back to reuse sooner.
CODE_REUSE_S = 30 * 86400
# Inbound message ids (Twilio MessageSid) are remembered this long, so a captured signed
# webhook replayed within it does nothing. Twilio retries within minutes; a week covers
# any replay of a recent capture, and older codes are dead anyway (CODE_REUSE_S).
INBOUND_KEEP_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as stored."""

    id: str
    key: str
    kind: str
    severity: str
    stage: str
    store: str
    asset: str | None
    sensor: str | None
    device: str | None
    state: str
    ack_code: str
    opened_at: float
    updated_at: float
    since: float
    acked_at: float | None
    acked_by: str | None
    ack_via: str | None
    ack_note: str | None
    resolved_at: float | None
    resolved_by: str | None
    resolve_note: str | None
    policy: list[PolicyStep]
    step: int  # index of the next step to run
    repeats: int  # times the repeating last step has run
    level: int  # steps run so far (escalation level)
    next_at: float | None
    value: float | None
    limit_value: float | None
    explanation: dict[str, Any]

    @property
    def open(self) -> bool:
        """Not resolved."""
        return self.state != RESOLVED


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one contact, about one or more alerts of one store."""

    id: int
    alert_ids: list[str]
    store: str
    step: int | None
    purpose: str  # page | reminder | resolved
    contact: str
    phone: str
    channel: str
    language: str
    body: str
    status: str  # pending | sent | delivered | failed | undelivered | unknown
    provider_id: str | None
    error: str | None
    attempts: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Page:
    """A notification to create: who, how, what, in which store's name."""

    contact: str
    phone: str
    channel: str
    language: str
    body: str
    store: str


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One escalation step to write: the alert as it was planned from, and its new place."""

    alert: Alert
    step: int
    repeats: int
    next_at: float | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One notification to write for a round: the alerts it carries and the message."""

    alert_ids: tuple[str, ...]
    page: Page
    step: int | None
    purpose: str


def _insert_pages(
    conn: Transaction,
    alert_ids: list[str],
    step: int | None,
    purpose: str,
    pages: list[Page],
    at: float,
) -> list[int]:
    ids = []
    for page in pages:
        cur = conn.execute(
            "INSERT INTO notifications(alert_ids, store, step, purpose, contact, phone, channel, "
            "language, body, status, attempts, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,'pending',0,?,?) RETURNING id",
            (json.dumps(alert_ids), page.store, step, purpose, page.contact, page.phone,
             page.channel, page.language, page.body, at, at),
        )  # fmt: skip
        ids.append(_returned_id(cur))
    _link(conn, alert_ids, ids)
    return ids


def _queue(conn: Transaction, at: float, alert_id: str | None, payload: dict[str, Any]) -> int:
    cur = conn.execute(
        "INSERT INTO alert_commands(at, alert_id, payload) VALUES (?,?,?) RETURNING id",
        (at, alert_id, json.dumps(payload)),
    )
    return _returned_id(cur)


def _returned_id(cur: Cursor) -> int:
    row = cur.fetchone()
    assert row is not None  # INSERT ... RETURNING id
    return int(row[0])


def _set_delivery(
    conn: Transaction,
    notification_id: int,
    at: float,
    *,
    status: str,
    error: str | None,
    attempt: bool,
    provider_id: str | None = None,
) -> None:
    """A notification's delivery state (the provider id is kept unless a new one comes)."""
    conn.execute(
        "UPDATE notifications SET status=?, provider_id=COALESCE(?, provider_id), "
        "error=?, attempts=attempts+?, updated_at=? WHERE id=?",
        (status, provider_id, error, 1 if attempt else 0, at, notification_id),
    )


def _link(conn: Transaction, alert_ids: list[str], notification_ids: list[int]) -> None:
    """Index which notifications carry which alerts (``AlertBook.notifications``)."""
    conn.executemany(
        "INSERT INTO notification_alerts(alert_id, notification_id) VALUES (?, ?) "
        "ON CONFLICT DO NOTHING",
        [(a, n) for a in alert_ids for n in notification_ids],
    )


def _alert(row: Row) -> Alert:
    data = dict(row)
    data["policy"] = [PolicyStep.model_validate(s) for s in json.loads(data["policy"])]
    data["explanation"] = json.loads(data["explanation"])
    return Alert(**data)


def _notification(row: Row) -> Notification:
    data = dict(row)
    data["alert_ids"] = json.loads(data["alert_ids"])
    return Notification(**data)


class AlertBook:
    """Reads and writes alerts through the registry's connection."""

    def __init__(self, registry: Registry, rng: random.Random | None = None) -> None:
        self.registry = registry
        # Alert ids and acknowledgement codes are what an SMS reply or a URL guesses at:
        # from the OS's generator unless a test seeds one.
        self._rng = rng or random.SystemRandom()
        # Called inside every write the alerting leader alone may make (opening, upgrading
        # and resolving by the rules, escalation rounds, fallbacks): raises when this
        # process lost the lease (alerting/lease.py). None: no lease (tests, the API).
        self.fence: Callable[[Transaction], None] | None = None

    @contextmanager
    def _write(self, *, fenced: bool = False) -> Iterator[Transaction]:
        with self.registry.transaction() as tx:
            if fenced and self.fence is not None:
                self.fence(tx)
            yield tx

    # -- reads ------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert:
        """One alert. Raises NotFound."""
        rows = self.registry.query("SELECT * FROM alerts WHERE id=?", (alert_id,))
        if not rows:
            raise NotFound(f"unknown alert {alert_id!r}")
        return _alert(rows[0])

    def open_by_key(self, key: str) -> Alert | None:
        """The open alert for a condition key, if any."""
        rows = self.registry.query(
            "SELECT * FROM alerts WHERE key=? AND state != ?", (key, RESOLVED)
        )
        return _alert(rows[0]) if rows else None

    def open_by_code(self, code: str) -> Alert | None:
        """The open alert with an acknowledgement code, if any."""
        rows = self.registry.query(
            "SELECT * FROM alerts WHERE ack_code=? AND state != ?", (code, RESOLVED)
        )
        return _alert(rows[0]) if rows else None

    def alerts(
        self,
        *,
        store: str | None = None,
        stores: Iterable[str] | None = None,
        state: str | None = None,
        kind: str | None = None,
        kinds: Iterable[str] | None = None,
        severity: str | None = None,
        open_only: bool = False,
        resolved_since: float | None = None,
        limit: int = 200,
    ) -> list[Alert]:
        """Alerts, newest first, filtered (``resolved_since``: resolved at or after)."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("store", store), ("state", state), ("kind", kind),
                              ("severity", severity)):  # fmt: skip
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        for column, values in (("store", stores), ("kind", kinds)):
            if values is not None:
                allowed = list(values)
                where.append(f"{column} IN ({','.join('?' * len(allowed))})" if allowed else "0")
                args.extend(allowed)
        if open_only:
            where.append("state != 'resolved'")
        if resolved_since is not None:
            where.append("state = 'resolved' AND resolved_at >= ?")
            args.append(resolved_since)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.registry.query(
            f"SELECT * FROM alerts {clause} ORDER BY opened_at DESC LIMIT ?", [*args, limit]
        )
        return [_alert(r) for r in rows]

    def overlapping(self, store: str, start: float, end: float) -> list[Alert]:
        """A store's alerts open at any moment of ``[start, end)``, oldest first."""
        rows = self.registry.query(
            "SELECT * FROM alerts WHERE store=? AND opened_at < ? "
            "AND (resolved_at IS NULL OR resolved_at >= ?) ORDER BY opened_at",
            (store, end, start),
        )
        return [_alert(r) for r in rows]

    def due(self, now: float) -> list[Alert]:
        """Firing alerts whose next step is due, and acknowledged ones whose ack expired."""
        rows = self.registry.query(
            "SELECT * FROM alerts WHERE state IN (?, ?) AND next_at IS NOT NULL "
            "AND next_at <= ? ORDER BY next_at",
            (FIRING, ACKNOWLEDGED, now),
        )
        return [_alert(r) for r in rows]

    def notifications(
        self, *, alert_id: str | None = None, status: str | None = None
    ) -> list[Notification]:
        """Notifications in creation order, optionally of one alert or status."""
        where: list[str] = []
        args: list[Any] = []
        if alert_id is not None:
            where.append("id IN (SELECT notification_id FROM notification_alerts WHERE alert_id=?)")
            args.append(alert_id)
        if status is not None:
            where.append("status=?")
            args.append(status)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.registry.query(f"SELECT * FROM notifications {clause} ORDER BY id", args)
        return [_notification(r) for r in rows]

    def defrost_episodes(self, since: float) -> list[tuple[str, float, float]]:
        """Learned defrost-like rises ``(asset, start, duration)`` that started at or after
        ``since``."""
        rows = self.registry.query(
            "SELECT asset, start, duration FROM defrost_episodes WHERE start >= ?", (since,)
        )
        return [(r["asset"], r["start"], r["duration"]) for r in rows]

    def record_defrost_episodes(
        self, episodes: list[tuple[str, float, float]], forget_before: float
    ) -> None:
        """Keep newly learned episodes; drop those too old to matter."""
        with self.registry.transaction() as conn:
            conn.executemany(
                "INSERT INTO defrost_episodes(asset, start, duration) VALUES (?,?,?) "
                "ON CONFLICT(asset, start) DO UPDATE SET duration = excluded.duration",
                episodes,
            )
            conn.execute("DELETE FROM defrost_episodes WHERE start < ?", (forget_before,))

    def notification(self, notification_id: int) -> Notification | None:
        """One notification by id."""
        rows = self.registry.query("SELECT * FROM notifications WHERE id=?", (notification_id,))
        return _notification(rows[0]) if rows else None

    def notification_by_provider(self, provider_id: str) -> Notification | None:
        """The notification a provider id (Twilio SID) belongs to."""
        rows = self.registry.query(
            "SELECT * FROM notifications WHERE provider_id=?", (provider_id,)
        )
        return _notification(rows[0]) if rows else None

    def active_silences(self, now: float) -> list[dict[str, Any]]:
        """Silences (maintenance windows) in force at ``now``."""
        rows = self.registry.query(
            "SELECT * FROM silences WHERE starts <= ? AND ends > ?", (now, now)
        )
        return [dict(r) for r in rows]

    # -- writes -----------------------------------------------------------------------

    def _new_code(self, conn: Transaction, at: float) -> str:
        """A code no open alert has, nor one opened in the last :data:`CODE_REUSE_S`
        (an old page's code must not acknowledge a new alert), falling back to any code
        no open alert has when a busy month used them up."""
        for recent in (True, False):
            for _ in range(1000):
                code = f"{self._rng.randrange(1000, 10000)}"
                taken = conn.execute(
                    "SELECT 1 FROM alerts WHERE ack_code=? AND (state != ? OR opened_at > ?)",
                    (code, RESOLVED, at - CODE_REUSE_S if recent else math.inf),
                ).fetchone()
                if taken is None:
                    return code
        raise RegistryError("no free acknowledgement code (9,000 alerts open?)")

    def claim_inbound(self, message_id: str, sender: str, at: float) -> bool:
        """Record an inbound message id; False when it was seen before (a replay)."""
        with self.registry.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO inbound_messages(id, sender, at) VALUES (?,?,?) "
                "ON CONFLICT DO NOTHING",
                (message_id[:64], sender[:32], at),
            )
            conn.execute("DELETE FROM inbound_messages WHERE at < ?", (at - INBOUND_KEEP_S,))
            return cur.rowcount == 1

    def open(self, condition: Condition, at: float, policy: list[PolicyStep]) -> Alert:
        """Open an alert for a newly fired condition, with its escalation frozen."""
        alert_id = f"al-{self._rng.getrandbits(40):010x}"
        with self._write(fenced=True) as conn:
            code = self._new_code(conn, at)
            conn.execute(
                "INSERT INTO alerts(id, key, kind, severity, stage, store, asset, sensor, "
                "device, state, ack_code, opened_at, updated_at, since, policy, step, repeats, "
                "level, next_at, value, limit_value, explanation) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0,?,?,?,?)",
                (
                    alert_id, condition.key, condition.kind, condition.severity,
                    condition.stage, condition.store, condition.asset, condition.sensor,
                    condition.device, FIRING, code, at, at, condition.since_ms / 1000,
                    json.dumps([s.model_dump(mode="json") for s in policy]), at,
                    condition.value, condition.limit,
                    json.dumps(condition.explanation, default=str),
                ),
            )  # fmt: skip
            audit.append(
                conn, at=at, actor="coldchain", action="alert.open", subject=alert_id,
                detail={"key": condition.key, "severity": condition.severity,
                        "stage": condition.stage, "code": code,
                        "explanation": condition.explanation},
            )  # fmt: skip
        return self.get(alert_id)

    def upgrade(self, alert: Alert, condition: Condition, at: float) -> Alert:
        """Record that the problem got worse (rising -> warning -> critical)."""
        with self._write(fenced=True) as conn:
            conn.execute(
                "UPDATE alerts SET severity=?, stage=?, value=?, limit_value=?, explanation=?, "
                "updated_at=? WHERE id=?",
                (
                    condition.severity, condition.stage, condition.value, condition.limit,
                    json.dumps(condition.explanation, default=str), at, alert.id,
                ),
            )  # fmt: skip
            audit.append(
                conn, at=at, actor="coldchain", action="alert.upgrade", subject=alert.id,
                detail={"severity": condition.severity, "stage": condition.stage,
                        "explanation": condition.explanation},
            )  # fmt: skip
        return self.get(alert.id)

    def acknowledge(
        self, alert: Alert, at: float, *, by: str, via: str, note: str, rearm_at: float | None,
        queue: dict[str, Any] | None = None,
    ) -> Alert:  # fmt: skip
        """Stop the escalation; re-escalate at ``rearm_at`` if still unresolved.

        ``queue``: a command for the alerting process, written in the same transaction
        (alerting/commands.py, split mode).
        """
        if alert.state == RESOLVED:
            raise RegistryError(f"alert {alert.id} is already resolved")
        with self.registry.transaction() as conn:
            if queue is not None:
                _queue(conn, at, alert.id, queue)
            conn.execute(
                "UPDATE alerts SET state=?, acked_at=?, acked_by=?, ack_via=?, ack_note=?, "
                "next_at=?, updated_at=? WHERE id=?",
                (ACKNOWLEDGED, at, by, via, note, rearm_at, at, alert.id),
            )
            audit.append(
                conn, at=at, actor=by, action="alert.acknowledge", subject=alert.id,
                detail={"via": via, "note": note, "code": alert.ack_code},
            )  # fmt: skip
        return self.get(alert.id)

    def resolve(
        self, alert: Alert, at: float, *, by: str, note: str, queue: dict[str, Any] | None = None,
        fenced: bool = False,
    ) -> Alert:  # fmt: skip
        """Close the alert (condition cleared, or resolved by a person with a note).

        ``queue``: as for :meth:`acknowledge`. ``fenced``: the rules cleared it (only the
        lease holder may); a person's resolution is never fenced.
        """
        with self._write(fenced=fenced) as conn:
            if queue is not None:
                _queue(conn, at, alert.id, queue)
            conn.execute(
                "UPDATE alerts SET state=?, resolved_at=?, resolved_by=?, resolve_note=?, "
                "next_at=NULL, updated_at=? WHERE id=?",
                (RESOLVED, at, by, note, at, alert.id),
            )
            audit.append(
                conn, at=at, actor=by, action="alert.resolve", subject=alert.id,
                detail={"note": note},
            )  # fmt: skip
        return self.get(alert.id)

    def commit_round(
        self, at: float, steps: list[StepRecord], outgoing: list[Outgoing]
    ) -> list[int | None]:
        """Write one escalation round atomically: every step that runs (the alert's new
        step, level and next time, an audit row) and every notification it sends, as
        *pending* (delivery sends them after the commit).

        A step is stale when the book moved on since it was planned (another process ran
        it, or the alert was resolved): it is skipped, and its alert is left out of the
        notifications. Returns the notification id of each ``outgoing`` (None when every
        alert it carried was stale). The alert returns to firing (an expired
        acknowledgement re-escalates).
        """
        with self._write(fenced=True) as conn:
            fresh: list[StepRecord] = []
            for record in steps:
                current = conn.execute(
                    "SELECT state, step, repeats FROM alerts WHERE id=?", (record.alert.id,)
                ).fetchone()
                if (
                    current is not None
                    and current["state"] != RESOLVED
                    and (current["step"], current["repeats"])
                    == (record.alert.step, record.alert.repeats)
                ):
                    fresh.append(record)
            live = {r.alert.id for r in fresh}
            ids: list[int | None] = []
            carried: dict[str, list[int]] = {a: [] for a in live}
            for out in outgoing:
                alert_ids = [a for a in out.alert_ids if a in live]
                if not alert_ids:
                    ids.append(None)
                    continue
                [nid] = _insert_pages(conn, alert_ids, out.step, out.purpose, [out.page], at)
                ids.append(nid)
                for alert_id in alert_ids:
                    carried[alert_id].append(nid)
            for record in fresh:
                conn.execute(
                    "UPDATE alerts SET state=?, step=?, repeats=?, level=level+1, next_at=?, "
                    "updated_at=? WHERE id=?",
                    (FIRING, record.step, record.repeats, record.next_at, at, record.alert.id),
                )
                audit.append(
                    conn, at=at, actor="coldchain", action="alert.escalate",
                    subject=record.alert.id,
                    detail={**record.detail, "notifications": carried[record.alert.id]},
                )  # fmt: skip
        return ids

    def add_notifications(
        self, alert_ids: list[str], at: float, purpose: str,
        pages: list[Page],
    ) -> list[int]:  # fmt: skip
        """Pending notifications not tied to an escalation step (resolved, replies)."""
        with self._write(fenced=True) as conn:
            return _insert_pages(conn, alert_ids, None, purpose, pages, at)

    def expedite(self, alert: Alert, at: float, *, reason: str) -> None:
        """Make the next escalation step due now (a delivery failed with no backup)."""
        with self._write(fenced=True) as conn:
            conn.execute(
                "UPDATE alerts SET next_at=?, updated_at=? WHERE id=? AND state=?",
                (at, at, alert.id, FIRING),
            )
            audit.append(
                conn, at=at, actor="coldchain", action="alert.expedite", subject=alert.id,
                detail={"reason": reason},
            )  # fmt: skip

    def fail(
        self,
        note: Notification,
        at: float,
        *,
        error: str,
        status: str = "failed",
        attempt: bool = True,
    ) -> None:
        """A delivery that will not happen: mark it and audit it on each of its alerts."""
        with self.registry.transaction() as conn:
            _set_delivery(conn, note.id, at, status=status, error=error, attempt=attempt)
            for alert_id in note.alert_ids:
                audit.append(
                    conn, at=at, actor="coldchain", action="notification.failed",
                    subject=alert_id,
                    detail={"notification": note.id, "contact": note.contact,
                            "channel": note.channel, "purpose": note.purpose,
                            "attempts": note.attempts + (1 if attempt else 0),
                            "status": status, "error": error},
                )  # fmt: skip

    def fallback(self, failed: Notification, at: float, page: Page) -> int:
        """The message ``failed`` could not deliver, to another contact (pending, audited)."""
        with self._write(fenced=True) as conn:
            [nid] = _insert_pages(conn, failed.alert_ids, None, "fallback", [page], at)
            for alert_id in failed.alert_ids:
                audit.append(
                    conn, at=at, actor="coldchain", action="notification.fallback",
                    subject=alert_id,
                    detail={"failed": failed.id, "from": failed.contact, "to": page.contact,
                            "notification": nid},
                )  # fmt: skip
        return nid

    def mark(
        self,
        notification_id: int,
        at: float,
        *,
        status: str,
        provider_id: str | None = None,
        error: str | None = None,
        attempt: bool = False,
    ) -> None:
        """Update a notification's delivery state."""
        with self.registry.transaction() as conn:
            _set_delivery(
                conn, notification_id, at, status=status, error=error, attempt=attempt,
                provider_id=provider_id,
            )  # fmt: skip

    def queue_command(self, at: float, payload: dict[str, Any], alert_id: str | None = None) -> int:
        """Queue a command for the alerting process (alerting/commands.py)."""
        with self.registry.transaction() as conn:
            return _queue(conn, at, alert_id, payload)

    def pending_commands(self, limit: int = 1000) -> list[tuple[int, str | None, dict[str, Any]]]:
        """``(id, alert_id, payload)`` of the commands not carried out yet, oldest first."""
        rows = self.registry.query(
            "SELECT id, alert_id, payload FROM alert_commands WHERE done_at IS NULL "
            "ORDER BY id LIMIT ?",
            (limit,),
        )
        return [(int(r["id"]), r["alert_id"], json.loads(r["payload"])) for r in rows]

    def command_done(self, command_id: int, at: float) -> None:
        """Mark a command carried out."""
        with self.registry.transaction() as conn:
            conn.execute("UPDATE alert_commands SET done_at=? WHERE id=?", (at, command_id))

    def end_silence(self, silence_id: int, at: float, *, by: str) -> dict[str, Any]:
        """End a maintenance window now (one not begun yet is cancelled: it ends before it
        starts); the row is kept for the record. Raises NotFound."""
        with self.registry.transaction() as conn:
            row = conn.execute("SELECT * FROM silences WHERE id=?", (silence_id,)).fetchone()
            if row is None:
                raise NotFound(f"unknown silence {silence_id}")
            ends = min(float(row["ends"]), max(at, float(row["starts"])))
            conn.execute("UPDATE silences SET ends=? WHERE id=?", (ends, silence_id))
            audit.append(
                conn, at=at, actor=by, action="silence.end", subject=f"silence-{silence_id}",
                detail={"ends": ends, "was": float(row["ends"])},
            )  # fmt: skip
            return {**dict(row), "ends": ends}

    def add_silence(
        self, *, store: str | None, asset: str | None, sensor: str | None, starts: float,
        ends: float, reason: str, by: str, at: float,
    ) -> int:  # fmt: skip
        """A maintenance window: alerts in scope do not notify while it lasts."""
        with self.registry.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO silences(store, asset, sensor, starts, ends, reason, created_by, "
                "created_at) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                (store, asset, sensor, starts, ends, reason, by, at),
            )
            silence_id = _returned_id(cur)
            audit.append(
                conn, at=at, actor=by, action="silence.create", subject=f"silence-{silence_id}",
                detail={"store": store, "asset": asset, "sensor": sensor, "starts": starts,
                        "ends": ends, "reason": reason},
            )  # fmt: skip
        return silence_id
