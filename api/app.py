"""The app factory: :func:`create_app` builds the FastAPI application over :class:`ApiDeps`.

Layout: the REST API under ``/api/v1`` (one router module per area in ``api/routes``),
probes and metrics at the root (and aliased under ``/api/v1``), OpenAPI at
``/openapi.json``, Swagger UI at ``/docs``.

Every request passes the gate (:class:`_Gate`, a plain ASGI middleware) first:

1. it counts the request by method, route template and status, and times it (``/metrics``);
2. it refuses bodies over :data:`MAX_BODY_BYTES` with 413 before anything reads them;
3. for ``/api/v1`` (except the Twilio webhooks and the probe aliases) it authenticates the
   bearer key and answers 401 itself, before FastAPI parses the body (see :mod:`api.auth`).

The lifespan does no I/O of substance: the services in :class:`ApiDeps` belong to whoever
built them, who starts them before serving and stops them after.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from alerting.book import AlertBook
from alerting.commands import AlertCommands, BookCommands
from api import errors
from api.auth import CHALLENGE, INVALID, authenticate
from api.context import ApiDeps, ApiStats, Context
from api.routes import alerts, health, keys, operations, readings, registry, reports, webhooks
from core.metrics import Registry as MetricsRegistry

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# Request bodies larger than this are refused (413) unread. The largest legitimate body
# is a store or policy document (a few KB); too low would refuse a store with a long
# calendar, too high lets one client make the server buffer megabytes per request.
MAX_BODY_BYTES = 256 * 1024
_PUBLIC = (f"{API_PREFIX}/webhooks/", f"{API_PREFIX}/healthz", f"{API_PREFIX}/readyz",
           f"{API_PREFIX}/metrics")  # fmt: skip

# Set in the scope when the gate answered a request itself (namespaced: scope keys are
# shared with every ASGI layer).
_GATED = "coldchain.gated"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# One set of API counters per metrics registry, however many apps are built on it (tests,
# a reload): registering twice would render every series twice in /metrics.
_STATS: weakref.WeakKeyDictionary[MetricsRegistry, ApiStats] = weakref.WeakKeyDictionary()


def _stats_for(metrics: MetricsRegistry) -> ApiStats:
    stats = _STATS.get(metrics)
    if stats is None:
        stats = _STATS[metrics] = ApiStats(metrics)
    return stats


# Label values for the request method: clients may send any token as a method, and each
# distinct label value is a new series in Prometheus; everything else counts as OTHER.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _template(scope: Scope) -> str:
    """The matched route's path template (bounded label values), or ``unmatched``.

    Requests the gate answers itself (401, 413) never reach routing: ``gate``.

    FastAPI sets the route it picked in the scope with the path it was declared with,
    without the ``/api/v1`` prefix of the router it was included into; put it back.
    """
    route_path = getattr(scope.get("route"), "path", None)
    if not isinstance(route_path, str):
        return "unmatched"
    prefixed = str(scope.get("path", "")).startswith(f"{API_PREFIX}/")
    return (
        f"{API_PREFIX}{route_path}"
        if prefixed and not route_path.startswith(API_PREFIX)
        else route_path
    )


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# The interactive docs and the schema they read (COLDCHAIN_API_PUBLIC_DOCS=false puts them
# behind a key: they map every route for whoever reads them).
_DOCS_PATHS = ("/docs", "/openapi.json", "/docs/oauth2-redirect")


class _Gate:
    """Metrics, body cap and authentication in front of every request."""

    def __init__(self, app: ASGIApp, context: Context) -> None:
        self.app = app
        self.context = context
        settings = context.deps.settings
        # Paths outside /api/v1 that need a key unless the settings make them public.
        self._private = frozenset(
            ([] if settings.api_public_docs else list(_DOCS_PATHS))
            + ([] if settings.api_public_metrics else [f"{API_PREFIX}/metrics", "/metrics"])
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self._handle(scope, receive, counting_send)
        except Exception:
            # A bug. Answer 500 here rather than let the exception reach uvicorn, which
            # would also drop the keep-alive connection under the client's next request.
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if status[0]:
                raise  # the response had started: nothing sane can be sent any more
            await _answer(counting_send, 500, "internal error (logged)", {})
        finally:
            template = "gate" if scope.get(_GATED) else _template(scope)
            method = str(scope.get("method", ""))
            stats = self.context.stats
            stats.requests.inc(method if method in _METHODS else "OTHER", template, str(status[0]))
            stats.latency.observe(time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            scope[_GATED] = True
            await _answer(send, 413, f"request body over {MAX_BODY_BYTES} bytes", {})
            return
        if length is None and headers.get("transfer-encoding"):
            replay = await self._buffered(receive, send)
            if replay is None:
                scope[_GATED] = True
                return
            receive = replay
        path: str = scope["path"]
        if (path.startswith(f"{API_PREFIX}/") and not path.startswith(_PUBLIC)) or (
            path in self._private
        ):
            found, reason = await run_in_threadpool(
                authenticate, self.context.deps.registry, headers.get("authorization")
            )
            if found is None:
                self.context.stats.auth_failures.inc(reason)
                challenge = CHALLENGE if reason in ("missing", "scheme") else INVALID
                scope[_GATED] = True
                await _answer(send, 401, "a valid API key is required", challenge)
                return
            scope.setdefault("state", {})["principal"] = found
        await self.app(scope, receive, send)

    @staticmethod
    async def _buffered(receive: Receive, send: Send) -> Receive | None:
        """Read a chunked body up to the cap (413 past it), then replay it."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _answer(send, 413, f"request body over {MAX_BODY_BYTES} bytes", {})
                return None
            chunks.append(chunk)
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _check_settings(deps: ApiDeps) -> None:
    settings = deps.settings
    if settings.twilio_auth_token is not None and settings.public_url is None:
        log.warning(
            "TWILIO_AUTH_TOKEN is set but COLDCHAIN_PUBLIC_URL is not: the Twilio webhooks "
            "will answer 503 (signatures are checked against the public URL)"
        )
    if deps.engine is None:
        log.info(
            "no alerting engine in this process: acknowledgements and resolutions are written "
            "to the alert book, the rest is queued for the alerting process"
        )


def create_app(deps: ApiDeps) -> FastAPI:
    """Build the API over ``deps`` (which the caller owns, starts and stops).

    Args:
        deps: The services to serve from.

    Returns:
        The FastAPI application, ready for uvicorn (see :mod:`api.server`).
    """
    commands: AlertCommands = deps.engine or BookCommands(
        deps.registry, deps.clock, deps.settings.ack_timeout
    )
    context = Context(
        deps=deps,
        book=AlertBook(deps.registry),
        stats=_stats_for(deps.metrics),
        commands=commands,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _check_settings(deps)
        log.info("API serving (%s)", API_PREFIX)
        yield
        log.info("API stopped")

    app = FastAPI(
        title="coldchain",
        version="1",
        summary="Cold-chain telemetry and escalating alerts for grocery chains",
        description=(
            "Bearer API keys (`coldchain keys create --role R [--store S]`). Roles: admin, "
            "technician (registry writes), manager (its stores: read, ack, resolve, silence), "
            "oncall (all stores: read, ack, resolve, silence). 401 = no or invalid key, "
            "403 = role or store scope forbids."
        ),
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.context = context
    errors.install(app)
    app.add_middleware(_Gate, context=context)
    v1 = APIRouter(prefix=API_PREFIX)
    for module in (registry, alerts, readings, reports, operations, webhooks, keys):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(health.router)
    app.include_router(health.router, prefix=API_PREFIX, include_in_schema=False)
    return app
