"""The InfluxDB adapter: the only module that speaks to InfluxDB.

Writes are line protocol over HTTP, reads are InfluxQL over ``/query``. Two write paths:

- ``v1`` (default): ``POST /write?db=&precision=ms`` on one keep-alive connection (httpx).
  InfluxDB 1.x serves it; 2.x and 3.x serve it as their v1-compatible API (token auth).
- ``v2``: ``POST /api/v2/write`` (org, bucket, token) through ``influxdb-client``'s
  *synchronous* write API. Its default batching API logs and drops a refused batch
  (research/perf-limits.md §3), so it is never used.

Every failure is classified (see :mod:`core.errors`) so the ingest writer can decide:
dead-letter, split, or spool and retry. Error messages never contain credentials.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from core.errors import (
    InfluxConfigError,
    InfluxError,
    InfluxRejected,
    InfluxTooLarge,
    InfluxUnavailable,
)
from core.settings import Settings

log = logging.getLogger(__name__)

# Connect fast so an outage is detected quickly and the writer spools; read generously
# because a large batch on a busy server can take seconds.
_TIMEOUT = httpx.Timeout(connect=2.0, read=15.0, write=15.0, pool=5.0)


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an InfluxQL result."""

    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """The values as dicts keyed by column, tags merged in."""
        return [{**self.tags, **dict(zip(self.columns, row, strict=True))} for row in self.values]


class TimeSeriesStore(Protocol):
    """What the rest of coldchain needs from InfluxDB."""

    def write(self, body: bytes) -> None:
        """Write a line-protocol body (millisecond timestamps); raise a classified error."""
        ...

    def query(
        self, influxql: str, params: Mapping[str, str | int | float] | None = None
    ) -> list[Series]:
        """Run one InfluxQL statement; times come back as epoch milliseconds."""
        ...

    def ping(self) -> bool:
        """True when the server answers."""
        ...

    def ensure_database(self) -> bool:
        """Create the database when missing; False when that could not be done now."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)[:300]
    return str(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(status: int, message: str, retry_after: float | None = None) -> InfluxError:
    """Map an HTTP status and InfluxDB error text to the error the writer acts on."""
    text = f"InfluxDB answered {status}: {message}"
    if status == 413:
        return InfluxTooLarge(text, status)
    if status == 400 or (status == 404 and "unable to parse" in message):
        # 1.x answers 404 for a point whose time is out of range: still the point's fault.
        return InfluxRejected(text, status)
    if status in (401, 403, 404):
        return InfluxConfigError(text, status)
    if status == 429 or status >= 500:
        return InfluxUnavailable(text, status, retry_after)
    return InfluxRejected(text, status)


class InfluxV1:
    """Line-protocol writes to ``/write`` and InfluxQL reads from ``/query``."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.database = settings.influx_db
        headers: dict[str, str] = {}
        auth: httpx.BasicAuth | None = None
        if settings.influx_token is not None:
            headers["Authorization"] = f"Token {settings.influx_token.get_secret_value()}"
        elif settings.influx_user and settings.influx_password is not None:
            auth = httpx.BasicAuth(
                settings.influx_user, settings.influx_password.get_secret_value()
            )
        self._http = httpx.Client(
            base_url=settings.influx_url,
            headers=headers,
            auth=auth,
            timeout=_TIMEOUT,
            transport=transport,
        )

    def ensure_database(self) -> bool:
        """Create the database if the server allows it (1.x); harmless when it exists.

        Returns False (and logs) when InfluxDB is unreachable or refuses: ingest starts
        anyway and spools; the writer calls this again when a write says 404.
        """
        try:
            self._post_query(f"CREATE DATABASE {quote_ident(self.database)}", with_db=False)
        except InfluxConfigError as exc:
            log.warning("cannot create database %s (%s); assuming it exists", self.database, exc)
            return False
        except InfluxUnavailable as exc:
            log.warning("cannot create database %s yet: %s", self.database, exc)
            return False
        return True

    def write(self, body: bytes) -> None:
        if not body:
            return
        try:
            response = self._http.post(
                "/write",
                params={"db": self.database, "precision": "ms"},
                content=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        except httpx.TimeoutException as exc:
            raise InfluxUnavailable(f"InfluxDB write timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise InfluxUnavailable(f"InfluxDB unreachable ({type(exc).__name__})") from None
        if response.status_code in (200, 204):
            return
        raise classify(response.status_code, _error_text(response), _retry_after(response))

    def query(
        self, influxql: str, params: Mapping[str, str | int | float] | None = None
    ) -> list[Series]:
        return self._post_query(influxql, params=params)

    def _post_query(
        self,
        influxql: str,
        params: Mapping[str, str | int | float] | None = None,
        *,
        with_db: bool = True,
    ) -> list[Series]:
        form: dict[str, str] = {"q": influxql, "epoch": "ms"}
        if with_db:
            form["db"] = self.database
        if params:
            form["params"] = json.dumps(dict(params))
        try:
            response = self._http.post("/query", data=form)
        except httpx.TimeoutException as exc:
            raise InfluxUnavailable(f"InfluxDB query timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise InfluxUnavailable(f"InfluxDB unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise classify(response.status_code, _error_text(response), _retry_after(response))
        return _parse_results(response.json())

    def ping(self) -> bool:
        try:
            return self._http.get("/ping").status_code in (200, 204)
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()


def _parse_results(body: Mapping[str, Any]) -> list[Series]:
    results: Sequence[Mapping[str, Any]] = body.get("results") or []
    out: list[Series] = []
    for result in results:
        if "error" in result:
            raise InfluxRejected(f"InfluxQL error: {result['error']}", 400)
        out.extend(
            Series(
                name=series.get("name", ""),
                columns=list(series.get("columns", [])),
                values=[list(v) for v in series.get("values", [])],
                tags=dict(series.get("tags") or {}),
            )
            for series in result.get("series") or []
        )
    return out


class InfluxV2Writer(InfluxV1):
    """Writes through ``/api/v2/write`` with influxdb-client; reads stay on ``/query``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        from influxdb_client.client.influxdb_client import (  # noqa: TID251 - the one import site
            InfluxDBClient,
        )
        from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: TID251

        if not settings.influx_org or not settings.influx_bucket:
            raise InfluxConfigError(
                "COLDCHAIN_INFLUX_API=v2 needs COLDCHAIN_INFLUX_ORG and COLDCHAIN_INFLUX_BUCKET"
            )
        token = settings.influx_token.get_secret_value() if settings.influx_token else ""
        self._org = settings.influx_org
        self._bucket = settings.influx_bucket
        self._client = InfluxDBClient(
            url=settings.influx_url, token=token, org=settings.influx_org, timeout=15_000
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def ensure_database(self) -> bool:
        """Buckets are created by the operator on 2.x/3.x; nothing to do."""
        return True

    def write(self, body: bytes) -> None:
        if not body:
            return
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: TID251
        from influxdb_client.rest import ApiException  # noqa: TID251
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self._write_api.write(
                bucket=self._bucket,
                org=self._org,
                record=body,
                # The library annotates the class but its constants are plain strings.
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            message = str(exc.body or exc.reason or "")[:300]
            retry = exc.headers.get("Retry-After") if exc.headers else None
            raise classify(status, message, float(retry) if retry else None) from None
        except (Urllib3Error, OSError) as exc:
            raise InfluxUnavailable(f"InfluxDB unreachable ({type(exc).__name__})") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
        super().close()


def connect(settings: Settings) -> InfluxV1:
    """The adapter selected by ``COLDCHAIN_INFLUX_API``."""
    return InfluxV2Writer(settings) if settings.influx_api == "v2" else InfluxV1(settings)
