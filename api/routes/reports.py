"""Compliance reports: the HACCP temperature record of a store for a day.

``GET /reports/haccp?store=&date=&format=json|csv|html``: see :mod:`reports.haccp` for
what the record holds and how each figure is defined. Managers see their stores only.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.responses import HTMLResponse

from api.auth import Anyone
from api.context import Ctx
from api.errors import Unprocessable, responses
from api.schemas import ID_PATTERN
from reports.haccp import HaccpReport, build_report
from reports.render import to_csv, to_html

router = APIRouter(tags=["reports"])

# The days a report may ask for. InfluxDB keeps nothing older than the epoch, and a date
# far in the past only makes the query scan for nothing; the far end keeps date arithmetic
# (the next midnight of 9999-12-31) from overflowing. Future days are refused later.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2200, 1, 1)


class ReportFormat(StrEnum):
    """How the record is returned."""

    JSON = "json"
    CSV = "csv"
    HTML = "html"


@router.get(
    "/reports/haccp",
    response_model=HaccpReport,
    responses={
        **responses(401, 403, 404, 503),
        200: {
            "content": {"text/csv": {}, "text/html": {}},
            "description": "The record as JSON, CSV (one flat table) or a printable page",
        },
    },
)
def haccp(
    ctx: Ctx,
    who: Anyone,
    store: Annotated[str, Query(pattern=ID_PATTERN, description="Store id")],
    day: Annotated[date, Query(alias="date", description="The store's local date, YYYY-MM-DD")],
    format: ReportFormat = ReportFormat.JSON,  # noqa: A002 - the public query name
) -> Response:
    """The HACCP temperature record of one store for one local day.

    Per temperature sensor: min, max, mean (MKT for pharmacy fridges), the reading at each
    of the store's check times, excursions with duration and degree-minutes, gaps and
    calibration dates; and the day's alerts with who acknowledged and resolved them and
    their notes. A day still running is reported up to now (``complete`` is false).
    """
    who.check_store(store)
    if not EARLIEST_DAY <= day < LATEST_DAY:
        raise Unprocessable(["query", "date"], f"must be between {EARLIEST_DAY} and {LATEST_DAY}")
    deps = ctx.deps
    try:
        result = build_report(
            registry=deps.registry, influx=deps.influx, clock=deps.clock, store_id=store, day=day
        )
    except ValueError as exc:
        raise Unprocessable(["query", "date"], str(exc)) from None
    name = f"haccp-{store}-{day}"
    if format is ReportFormat.CSV:
        return Response(
            to_csv(result.report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format is ReportFormat.HTML:
        return HTMLResponse(to_html(result))
    return Response(result.report.model_dump_json(), media_type="application/json")
