"""Operations: dead letters, the audit log, ingest and alerting health summaries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import Admin, Auditor, ChainWideReader
from api.context import Ctx
from api.errors import responses
from api.schemas import (
    AlertingHealth,
    AuditPage,
    AuditVerifyOut,
    DeadLetterOut,
    DeadLetterPage,
    IngestHealth,
    audit_out,
    utc,
    utc_required,
)
from core.registry import DeadLetter

router = APIRouter(tags=["operations"])

# Dead letters per page. Each carries up to 4 KiB of payload, so 500 is ~2 MB of JSON at
# worst; more makes one response heavy, fewer makes a bad firmware roll-out tedious to read.
MAX_DEAD_LETTERS_PAGE = 500
# Audit entries per page (small rows). Too many and a full export holds the registry lock
# for long; too few and an auditor's export takes many round trips.
MAX_AUDIT_PAGE = 1000
# An escalation step this late means the scheduler is not ticking.
OVERDUE_AFTER_S = 60.0

AUTH = responses(401, 403)


def _letter_out(d: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=d.id, at=utc_required(d.at), reason=d.reason, family=d.family, topic=d.topic,
        payload=d.payload, detail=d.detail,
    )  # fmt: skip


@router.get("/deadletters", response_model=DeadLetterPage, responses=AUTH)
def dead_letters(
    ctx: Ctx,
    _who: ChainWideReader,
    reason: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,64}$")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_DEAD_LETTERS_PAGE)] = 100,
) -> DeadLetterPage:
    """Undecodable or refused messages, newest first; page with ``before_id``."""
    letters = ctx.deps.registry.dead_letters(reason=reason, limit=limit, before_id=before_id)
    return DeadLetterPage(
        items=[_letter_out(d) for d in letters],
        next_before_id=letters[-1].id if len(letters) == limit else None,
    )


@router.get("/audit", response_model=AuditPage, responses=AUTH)
def audit_log(
    ctx: Ctx,
    _who: Auditor,
    after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
    subject: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
) -> AuditPage:
    """The audit log in order (every change and acknowledgement); page with ``after_id``."""
    entries = ctx.deps.registry.audit_entries(after_id=after_id, limit=limit, subject=subject)
    return AuditPage(
        items=[audit_out(e) for e in entries],
        next_after_id=entries[-1].id if len(entries) == limit else None,
    )


@router.get("/audit/verify", response_model=AuditVerifyOut, responses=AUTH)
def audit_verify(ctx: Ctx, _who: Admin) -> AuditVerifyOut:
    """Walk the hash chain (also ``coldchain audit verify``)."""
    intact, bad, checked = ctx.deps.registry.audit_verify()
    return AuditVerifyOut(intact=intact, first_bad_id=bad, checked=checked)


@router.get("/health/ingest", response_model=IngestHealth, responses=AUTH)
def ingest_health(ctx: Ctx, _who: ChainWideReader) -> IngestHealth:
    """Ingest counters of this process, stored dead letters, discovered devices."""
    stats = ctx.deps.ingest_stats
    ready = ctx.deps.mqtt_ready
    registry = ctx.deps.registry
    last_message = stats.last_message_at.value() if stats else 0.0
    last_write = stats.last_write_at.value() if stats else 0.0
    return IngestHealth(
        running_here=stats is not None,
        mqtt_connected=ready() if ready is not None else None,
        messages=stats.messages.total() if stats else 0.0,
        points_written=stats.points_written.total() if stats else 0.0,
        dead_letters=stats.dead_letters.total() if stats else 0.0,
        spool_batches=stats.spool_batches.value() if stats else 0.0,
        spool_bytes=stats.spool_bytes.value() if stats else 0.0,
        last_message_at=utc(last_message or None),
        last_write_at=utc(last_write or None),
        stored_dead_letters=registry.dead_letter_counts(),
        discovered_devices=len(registry.discovered()),
    )


@router.get("/health/alerting", response_model=AlertingHealth, responses=AUTH)
def alerting_health(ctx: Ctx, _who: ChainWideReader) -> AlertingHealth:
    """Open alerts by state and severity, undelivered notifications, late steps."""
    registry = ctx.deps.registry
    now = ctx.deps.clock.time()
    by_state = registry.query(
        "SELECT state, count(*) AS n FROM alerts WHERE state != 'resolved' GROUP BY state"
    )
    by_severity = registry.query(
        "SELECT severity, count(*) AS n FROM alerts WHERE state != 'resolved' GROUP BY severity"
    )
    notes = {
        r["status"]: int(r["n"])
        for r in registry.query(
            "SELECT status, count(*) AS n FROM notifications "
            "WHERE status IN ('pending', 'failed', 'undelivered') GROUP BY status"
        )
    }
    [overdue] = registry.query(
        "SELECT count(*) AS n FROM alerts WHERE state != 'resolved' AND next_at IS NOT NULL "
        "AND next_at < ?",
        (now - OVERDUE_AFTER_S,),
    )
    [queued] = registry.query("SELECT count(*) AS n FROM alert_commands WHERE done_at IS NULL")
    return AlertingHealth(
        engine_here=ctx.deps.engine is not None,
        open_alerts={r["state"]: int(r["n"]) for r in by_state},
        open_by_severity={r["severity"]: int(r["n"]) for r in by_severity},
        pending_notifications=notes.get("pending", 0),
        failed_notifications=notes.get("failed", 0) + notes.get("undelivered", 0),
        overdue_steps=int(overdue["n"]),
        queued_commands=int(queued["n"]),
    )
