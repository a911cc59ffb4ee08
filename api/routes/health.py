"""Probes and metrics, without authentication.

``/healthz`` says the process serves requests (a liveness probe: restart me if this fails).
``/readyz`` says whether it can do its job: the registry answers a query, InfluxDB answers
a ping, and the ingester is connected to the broker (when one runs in this process); a 503
lists what is down, so a load balancer stops routing and a person sees why.

``/metrics`` is Prometheus text without authentication, like the probes: scrapers rarely
carry bearer tokens, and what it exposes is counts (requests by route template and status,
ingest by family and reason, alerts by kind, notifications by result), with no secret, no
reading and no store or contact name. Deployments that must hide even counts keep the port
on a private network (DESIGN.md's default bind is 127.0.0.1). They answer at the root and,
for clients that prefix everything, under ``/api/v1`` too (not repeated in the schema).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from api.context import Ctx
from api.schemas import Health, Readiness
from core.db import DatabaseError

log = logging.getLogger(__name__)

router = APIRouter(tags=["operability"])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Something this process needs is down"}},
)
def readyz(ctx: Ctx) -> JSONResponse:
    """Registry, InfluxDB and (when ingest runs here) MQTT are reachable."""
    checks: dict[str, str] = {}
    try:
        ctx.deps.registry.query("SELECT 1")
        checks["registry"] = "ok"
    except DatabaseError as exc:
        log.warning("readiness: registry: %s", exc)
        checks["registry"] = "down"
    checks["influxdb"] = "ok" if ctx.deps.influx.ping() else "down"
    ready = ctx.deps.mqtt_ready
    if ready is not None:
        checks["mqtt"] = "ok" if ready() else "down"
    ok = all(v == "ok" for v in checks.values())
    body = Readiness(ready=ok, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}}}},
)
def metrics(ctx: Ctx) -> PlainTextResponse:
    """Prometheus text exposition (format 0.0.4)."""
    return PlainTextResponse(ctx.deps.metrics.render(), media_type=PROMETHEUS_TEXT)
