"""Alerts and silences: list, explain, acknowledge, resolve, hold for maintenance.

Acknowledging or resolving here goes through the same command as an SMS reply
(:class:`alerting.commands.AlertCommands`): the alert's next step is cancelled in the
same transaction that records who did it, so escalation stops exactly as it does for
``OK 4821``, and a resolution tells whoever was paged, whether the engine runs in this
process or in a separate ``coldchain alerting`` (which carries out what was queued for it
on its next tick).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from alerting.book import ACKNOWLEDGED, RESOLVED, Alert, Notification
from alerting.conditions import CHAIN_STORE
from alerting.weights import WeightCalendar
from api.auth import Anyone, Principal, Responder, Silencer
from api.context import Context, Ctx
from api.errors import Unprocessable, problem, responses
from api.schemas import (
    ALERT_ID_PATTERN,
    ID_PATTERN,
    KIND_PATTERN,
    AckIn,
    AlertDetail,
    AlertOut,
    AlertPage,
    AlertState,
    NotificationOut,
    ResolveIn,
    Severity,
    SilenceIn,
    SilenceOut,
    audit_out,
    utc,
    utc_required,
)
from core.errors import NotFound

router = APIRouter(tags=["alerts"])

# Alerts per page. Too small and a NOC screen pages through a bad night many times; too
# large and one request serialises thousands of rows while holding the registry lock.
MAX_ALERTS_PAGE = 500
# Silences: at most this long (a refit that takes longer should retire or re-register
# sensors); too short and long repairs need a chain of windows, too long and a forgotten
# window hides a real failure for weeks.
MAX_SILENCE_S = 14 * 86400
# ...and starting at most this far ahead (planned maintenance is booked weeks ahead, not
# years; a far-future window is almost always a typo in the year).
MAX_SILENCE_LEAD_S = 90 * 86400
# Silences listed per request (the table only grows; history is in the audit log too).
MAX_SILENCES_PAGE = 500

AlertId = Annotated[str, Path(pattern=ALERT_ID_PATTERN, description="Alert id (al-...)")]

_COLUMNS = (
    "id, kind, severity, stage, store, asset, sensor, device, state, ack_code, opened_at, "
    "updated_at, since, acked_at, acked_by, ack_via, ack_note, resolved_at, resolved_by, "
    "resolve_note, level, next_at, value, limit_value"
)
_TIMES = ("opened_at", "updated_at", "since", "acked_at", "resolved_at", "next_at")


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: data[k] for k in AlertOut.model_fields}
    for name in _TIMES:
        out[name] = utc(out[name])
    return out


@router.get("/alerts", response_model=AlertPage, responses=responses(401, 403))
def list_alerts(
    ctx: Ctx,
    who: Anyone,
    store: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    state: AlertState | None = None,
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN)] = None,
    severity: Severity | None = None,
    open: Annotated[bool, Query(description="Only alerts not resolved")] = False,  # noqa: A002
    limit: Annotated[int, Query(ge=1, le=MAX_ALERTS_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AlertPage:
    """Alerts, newest first, filtered; a manager's key sees its stores only (so not the
    chain-wide ones, whose store is ``*``: those are on-call's)."""
    where: list[str] = []
    args: list[Any] = []
    if store is not None:
        who.check_store(store)
    for column, value in (("store", store), ("state", state), ("kind", kind),
                          ("severity", severity)):  # fmt: skip
        if value is not None:
            where.append(f"{column}=?")
            args.append(value)
    if who.scoped:
        where.append(f"store IN ({','.join('?' * len(who.key.stores))})")
        args.extend(who.key.stores)
    if open:
        where.append("state != ?")
        args.append(RESOLVED)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = ctx.deps.registry.query(
        f"SELECT {_COLUMNS} FROM alerts {clause} ORDER BY opened_at DESC, id LIMIT ? OFFSET ?",
        [*args, limit + 1, offset],
    )
    items = [AlertOut(**_summary(dict(r))) for r in rows[:limit]]
    return AlertPage(items=items, next_offset=offset + limit if len(rows) > limit else None)


def _visible_alert(ctx: Context, who: Principal, alert_id: str) -> Alert:
    alert = ctx.book.get(alert_id)
    who.check_store(alert.store)
    return alert


def _weight(ctx: Context, store: str, at: float) -> str:
    if store == CHAIN_STORE:
        return "x1 (chain-wide alert: no store calendar)"
    try:
        return WeightCalendar(ctx.deps.registry.store(store)).at(at).explain()
    except NotFound:
        return "unknown (store deleted)"


def _notification_out(n: Notification, *, phone_shown: bool = True) -> NotificationOut:
    return NotificationOut(
        id=n.id, step=n.step, purpose=n.purpose, contact=n.contact,
        phone=n.phone if phone_shown else None,
        channel=n.channel, language=n.language, body=n.body, status=n.status,
        provider_id=n.provider_id, error=n.error, attempts=n.attempts,
        created_at=utc_required(n.created_at), updated_at=utc_required(n.updated_at),
    )  # fmt: skip


def _detail(ctx: Context, alert: Alert, who: Principal) -> AlertDetail:
    """The alert with what was sent; a phone number only where the caller may see the
    contact (GET /contacts/{id}): a manager does not learn the NOC desk's number here."""
    data = {name: getattr(alert, name) for name in AlertOut.model_fields}
    notes = ctx.book.notifications(alert_id=alert.id)
    shown = {c.id for c in ctx.deps.registry.contacts() if who.can_see_contact(c.stores)}
    entries = ctx.deps.registry.audit_entries(subject=alert.id, limit=10_000)
    return AlertDetail(
        **_summary(data),
        explanation=alert.explanation,
        policy=alert.policy,
        weight_at_open=_weight(ctx, alert.store, alert.opened_at),
        weight_now=_weight(ctx, alert.store, ctx.deps.clock.time()),
        notifications=[
            _notification_out(n, phone_shown=not who.scoped or n.contact in shown) for n in notes
        ],
        audit=[audit_out(e) for e in entries],
    )


@router.get("/alerts/{alert_id}", response_model=AlertDetail, responses=responses(401, 403, 404))
def get_alert(ctx: Ctx, who: Anyone, alert_id: AlertId) -> AlertDetail:
    """One alert: why it fired, its frozen escalation, what was sent, who did what."""
    return _detail(ctx, _visible_alert(ctx, who, alert_id), who)


@router.post(
    "/alerts/{alert_id}/ack", response_model=AlertDetail, responses=responses(401, 403, 404, 409)
)
def acknowledge(ctx: Ctx, who: Responder, alert_id: AlertId, body: AckIn) -> AlertDetail:
    """Acknowledge: escalation stops (it re-escalates after the acknowledgement timeout if
    the problem is still there). Acknowledging an acknowledged alert changes nothing."""
    alert = _visible_alert(ctx, who, alert_id)
    if alert.state == RESOLVED:
        raise problem(409, f"alert {alert_id} is already resolved")
    if alert.state != ACKNOWLEDGED:
        alert = ctx.commands.acknowledge(alert, by=who.actor, via="api", note=body.note)
    return _detail(ctx, alert, who)


@router.post(
    "/alerts/{alert_id}/resolve",
    response_model=AlertDetail,
    responses=responses(401, 403, 404, 409),
)
def resolve(ctx: Ctx, who: Responder, alert_id: AlertId, body: ResolveIn) -> AlertDetail:
    """Resolve by hand with the corrective action taken; whoever was paged is told. If the
    problem is still there, the rules open a new alert."""
    alert = _visible_alert(ctx, who, alert_id)
    if alert.state == RESOLVED:
        raise problem(409, f"alert {alert_id} is already resolved")
    alert = ctx.commands.resolve(alert, by=who.actor, note=body.note)
    return _detail(ctx, alert, who)


# -- silences ---------------------------------------------------------------------------


def _silence_out(row: dict[str, Any], now: float) -> SilenceOut:
    return SilenceOut(
        id=row["id"], store=row["store"], asset=row["asset"], sensor=row["sensor"],
        starts=utc_required(row["starts"]), ends=utc_required(row["ends"]),
        reason=row["reason"], created_by=row["created_by"],
        created_at=utc_required(row["created_at"]),
        active=row["starts"] <= now < row["ends"],
    )  # fmt: skip


@router.post("/silences", response_model=SilenceOut, status_code=201, responses=responses(401, 403))
def create_silence(ctx: Ctx, who: Silencer, body: SilenceIn) -> SilenceOut:
    """Open a maintenance window for a store, an asset or a sensor."""
    registry = ctx.deps.registry
    now = ctx.deps.clock.time()
    store, asset = body.store, body.asset
    if body.sensor is not None:
        try:
            sensor, _ = registry.sensor(body.sensor)
        except NotFound as exc:
            raise Unprocessable(["body", "sensor"], str(exc)) from None
        if asset is not None and asset != sensor.asset:
            raise Unprocessable(["body", "asset"], f"sensor is on asset {sensor.asset!r}")
        asset = sensor.asset
    if asset is not None:
        try:
            found = registry.asset(asset)
        except NotFound as exc:
            raise Unprocessable(["body", "asset"], str(exc)) from None
        if store is not None and store != found.store:
            raise Unprocessable(["body", "store"], f"asset is in store {found.store!r}")
        store = found.store
    if store is None:
        raise Unprocessable(["body"], "give a store, an asset or a sensor")
    who.check_store(store)
    try:
        registry.store(store)
    except NotFound as exc:
        raise Unprocessable(["body", "store"], str(exc)) from None
    starts = body.starts.timestamp() if body.starts is not None else now
    ends = body.ends.timestamp()
    if ends <= starts:
        raise Unprocessable(["body", "ends"], "must be after starts")
    if ends <= now:
        raise Unprocessable(["body", "ends"], "is in the past")
    if ends - starts > MAX_SILENCE_S:
        raise Unprocessable(
            ["body", "ends"], f"a window lasts at most {MAX_SILENCE_S // 86400} days"
        )
    if starts - now > MAX_SILENCE_LEAD_S:
        raise Unprocessable(
            ["body", "starts"], f"starts at most {MAX_SILENCE_LEAD_S // 86400} days ahead"
        )
    silence_id = ctx.book.add_silence(
        store=store, asset=asset, sensor=body.sensor,
        starts=starts, ends=ends, reason=body.reason, by=who.actor, at=now,
    )  # fmt: skip
    [row] = registry.query("SELECT * FROM silences WHERE id=?", (silence_id,))
    return _silence_out(dict(row), now)


@router.post(
    "/silences/{silence_id}/end", response_model=SilenceOut, responses=responses(401, 403, 404)
)
def end_silence(
    ctx: Ctx, who: Silencer, silence_id: Annotated[int, Path(ge=1, le=2**62)]
) -> SilenceOut:
    """End a maintenance window now (the unit is back: alerts in scope notify again), or
    cancel one not begun. Audited; the window stays listed with its new end."""
    rows = ctx.deps.registry.query("SELECT store FROM silences WHERE id=?", (silence_id,))
    if not rows:
        raise problem(404, f"unknown silence {silence_id}")
    who.check_store(rows[0]["store"])
    now = ctx.deps.clock.time()
    return _silence_out(ctx.book.end_silence(silence_id, now, by=who.actor), now)


@router.get("/silences", response_model=list[SilenceOut], responses=responses(401, 403))
def list_silences(
    ctx: Ctx,
    who: Anyone,
    store: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    active: Annotated[bool, Query(description="Only windows in force now")] = True,
    limit: Annotated[int, Query(ge=1, le=MAX_SILENCES_PAGE)] = 100,
) -> list[SilenceOut]:
    """Maintenance windows, latest ending first (in force now by default)."""
    now = ctx.deps.clock.time()
    where: list[str] = []
    args: list[Any] = []
    if store is not None:
        who.check_store(store)
        where.append("store=?")
        args.append(store)
    if who.scoped:
        where.append(f"store IN ({','.join('?' * len(who.key.stores))})")
        args.extend(who.key.stores)
    if active:
        where.append("starts <= ? AND ends > ?")
        args += [now, now]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = ctx.deps.registry.query(
        f"SELECT * FROM silences {clause} ORDER BY ends DESC, id DESC LIMIT ?", [*args, limit]
    )
    return [_silence_out(dict(r), now) for r in rows]
