"""What the routes run against: the services handed to :func:`api.create_app`.

The API owns none of them. Whoever builds the app (``coldchain run``'s stack, ``coldchain
api``, the tests) starts them before and stops them after; the app's lifespan only checks
and reports what it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from alerting.book import AlertBook
from alerting.commands import AlertCommands
from alerting.engine import AlertingEngine
from api.latest import LatestCache, StoreLayouts
from api.throttle import InboundThrottle
from core.clock import Clock
from core.influx import TimeSeriesStore
from core.metrics import Counter, Histogram
from core.metrics import Registry as MetricsRegistry
from core.registry import Registry
from core.settings import Settings
from ingest.stats import IngestStats

# Request latency buckets (seconds): the latest-readings target is 20 ms p99 and the 24 h
# history target 100 ms, so resolution sits there; the tail shows InfluxDB timeouts.
API_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)


@dataclass(frozen=True, slots=True)
class ApiDeps:
    """The services one API instance serves from.

    Attributes:
        settings: The process settings (``public_url`` and ``twilio_auth_token`` for the
            webhooks, ``ack_timeout`` for acknowledgements made without an engine).
        registry: A registry connection of the API's own (SQLite WAL: the engine and the
            ingester keep theirs).
        influx: The InfluxDB adapter (readings, readiness).
        engine: The alerting engine when it runs in this process; without it, commands go
            through :class:`alerting.commands.BookCommands` (the book decides at once, the
            alerting process carries out the rest on its next tick).
        clock: The service clock (audit stamps, default time ranges).
        metrics: Where the API's request counters are registered and what ``/metrics``
            renders (share the stack's registry to expose ingest and alerting counters).
        ingest_stats: The ingester's counters, for ``/api/v1/health/ingest``.
        mqtt_ready: True while the ingester is connected to the broker (``/readyz``).
        latest: The latest-value cache ingest feeds when it runs in this process, or
            its published observations feed (split mode; ``/readings/latest`` is then
            served from memory; see :mod:`api.latest`).
    """

    settings: Settings
    registry: Registry
    influx: TimeSeriesStore
    engine: AlertingEngine | None
    clock: Clock
    metrics: MetricsRegistry = field(default_factory=MetricsRegistry)
    ingest_stats: IngestStats | None = None
    mqtt_ready: Callable[[], bool] | None = None
    latest: LatestCache | None = None


class ApiStats:
    """The API's own counters, registered once per app."""

    def __init__(self, metrics: MetricsRegistry) -> None:
        self.requests = metrics.add(
            Counter(
                "coldchain_api_requests_total",
                "API requests by route template and status",
                ["method", "route", "status"],
            )
        )
        self.latency = metrics.add(
            Histogram(
                "coldchain_api_request_duration_seconds",
                "API request duration",
                API_LATENCY_BUCKETS,
            )
        )
        self.auth_failures = metrics.add(
            Counter("coldchain_api_auth_failures_total", "Refused requests", ["reason"])
        )
        self.inbound_refused = metrics.add(
            Counter(
                "coldchain_api_inbound_refused_total",
                "Inbound SMS/keypad webhooks not answered (replay, throttled, reply_budget)",
                ["reason"],
            )
        )


@dataclass(frozen=True, slots=True)
class Context:
    """Per-app state the routes need: the deps, an alert book on the API's connection,
    the stores' sensor layouts (see :class:`~api.latest.StoreLayouts`)."""

    deps: ApiDeps
    book: AlertBook
    stats: ApiStats
    commands: AlertCommands  # the engine here, or the book plus a queue for it
    layouts: StoreLayouts = field(default_factory=StoreLayouts)
    throttle: InboundThrottle = field(default_factory=InboundThrottle)


def _context(request: Request) -> Context:
    ctx: Context = request.app.state.context
    return ctx


Ctx = Annotated[Context, Depends(_context)]
