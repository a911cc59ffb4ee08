"""Error answers: one JSON shape per status, documented in the OpenAPI schema.

- 4xx/5xx other than 422: ``{"detail": "<what is wrong, for a person>"}``;
- 422: FastAPI's ``{"detail": [{"loc", "msg", "type"}]}`` (the request's own values are
  not echoed back: a 10 MB string or a secret pasted in the wrong field stays out of the
  response), plus ``"message"``, every problem on one line.

Exceptions from the core map to statuses here, so routes just call the registry:
:class:`~core.errors.NotFound` 404, :class:`~core.errors.RegistryError` 409 (conflicts such
as deleting a store that has assets; also SQLite integrity errors from a concurrent change),
InfluxDB unavailable 503. Anything else is a bug: the app's gate answers 500 with a fixed
text and logs the traceback (which carries no secrets: settings keep them in ``SecretStr``
and the adapters never put them in exception texts).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core.db import IntegrityError
from core.errors import (
    InfluxConfigError,
    InfluxError,
    InfluxUnavailable,
    NotFound,
    RegistryError,
)

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    """An error answer."""

    detail: str


_DESCRIPTIONS = {
    401: "Missing or invalid API key (`Authorization: Bearer cc_...`)",
    403: "The key's role or store scope does not allow this",
    404: "No such resource",
    409: "Conflicts with the current state",
    413: "Request body too large",
    502: "InfluxDB refused the query",
    503: "A dependency is not available",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    return {s: {"model": ErrorOut, "description": _DESCRIPTIONS[s]} for s in statuses}


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
    """An HTTPException with a plain-text detail."""
    return HTTPException(status_code=status, detail=detail, headers=headers)


class Unprocessable(Exception):
    """A semantic check failed after parsing (``start`` after ``end``, path id differs from
    the body's id); answered as a 422 in FastAPI's validation-error shape."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = list(loc)
        self.message = message


def require_finite(value: Any, loc: Sequence[str | int] = ("body",)) -> None:
    """Raise a 422 naming the first NaN or infinite number in a parsed request body.

    Python's JSON parser accepts ``NaN``, ``Infinity`` and ``1e400``, pydantic's float
    fields keep them, and a duration such as ``"999...9s"`` (400 digits) parses to ``inf``
    in :func:`core.chain.parse_duration`. JSON cannot carry them back, so such a registry
    row would fail to load on every later read. The chain models are shared with the chain
    file, so until they refuse non-finite numbers themselves the API checks what it takes.
    """
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, float) and not math.isfinite(value):
        raise Unprocessable(loc, "must be a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            require_finite(item, [*loc, str(key)])
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            require_finite(item, [*loc, index])


def _validation_body(errors: Sequence[dict[str, Any]]) -> dict[str, Any]:
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in errors
    ]
    lines = [
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: "
        f"{str(e.get('msg', '')).removeprefix('Value error, ')}"
        for e in errors
    ]
    return {"detail": detail, "message": "; ".join(lines)}


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(_validation_body(exc.errors()), status_code=422)

    async def on_unprocessable(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Unprocessable)
        body = _validation_body([{"loc": exc.loc, "msg": exc.message, "type": "value_error"}])
        return JSONResponse(body, status_code=422)

    async def on_not_found(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    async def on_conflict(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    async def on_integrity(request: Request, exc: Exception) -> JSONResponse:
        # A concurrent change won the race (a store deleted while its asset was written):
        # the registry's foreign keys refused ours.
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "conflicts with a concurrent registry change"}, 409)

    async def on_influx(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, InfluxUnavailable | InfluxConfigError):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return JSONResponse({"detail": f"InfluxDB is not available: {exc}"}, 503)
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"InfluxDB refused the query: {exc}"}, 502)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Unprocessable, on_unprocessable)
    app.add_exception_handler(NotFound, on_not_found)
    app.add_exception_handler(RegistryError, on_conflict)
    app.add_exception_handler(IntegrityError, on_integrity)
    app.add_exception_handler(InfluxError, on_influx)
