"""Observations on the wire: how ingest hands readings to a separate alerting process.

In ``coldchain run`` observations pass in memory. Split across processes (DESIGN.md §2,
"events, not calls"), the ingester publishes each durable batch as one QoS 1 message on
:data:`TOPIC`, and ``coldchain alerting`` consumes it with a persistent session of its
own, so either side can restart without losing the other's work. A batch replayed after
an ingest crash is harmless: the rules ignore readings that are not newer than the last.

A batch is a JSON array of rows, or (since issue 14) an object ``{"durable_at": <unix
s>, "rows": [...]}`` saying when ingest made it durable, from which alerting measures its
evaluation lag. :func:`decode` reads both; an alerting process older than that reads
only arrays, so upgrade (restart) alerting before ingest (docs/operations.md, section 10).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Protocol

from core.types import Quantity
from ingest.pipeline import Observation

TOPIC = "coldchain/v1/_alerting/observations"


class Publishing(Protocol):
    """What :func:`publish` needs: a QoS 1 publish (``ingest.mqtt.MqttSource.publish``)."""

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish, re-sent until the broker acknowledges it."""
        ...


# Observations per MQTT message (~100-150 bytes each as JSON). Too many and one message
# exceeds the broker's max_packet_size (1 MiB in the configs we ship) and the broker
# drops the connection; too few and a 5,000-reading batch costs many publishes.
MAX_PER_MESSAGE = 2000
_FIELDS = ("kind", "ts_ms", "device", "sensor", "store", "asset", "asset_type", "quantity",
           "value", "code")  # fmt: skip


def chunks(batch: Sequence[Observation]) -> list[Sequence[Observation]]:
    """``batch`` in pieces of at most :data:`MAX_PER_MESSAGE`."""
    return [batch[i : i + MAX_PER_MESSAGE] for i in range(0, len(batch), MAX_PER_MESSAGE)]


def encode(batch: Sequence[Observation], durable_at: float | None = None) -> bytes:
    """A compact JSON array of arrays (field order :data:`_FIELDS`), inside an object with
    ``durable_at`` when given."""
    rows = [[getattr(o, f) for f in _FIELDS] for o in batch]
    body: Any = rows if durable_at is None else {"durable_at": durable_at, "rows": rows}
    return json.dumps(body, separators=(",", ":")).encode()


def publish(source: Publishing, batch: Sequence[Observation]) -> None:
    """Publish a durable batch (``coldchain ingest`` in split mode), stamped with the time
    it became durable (alerting measures its evaluation lag from it), in pieces that stay
    under the broker's ``max_packet_size`` (docs/operations.md)."""
    durable_at = time.time()
    for piece in chunks(batch):
        source.publish(TOPIC, encode(piece, durable_at=durable_at))


def decode(payload: bytes) -> list[Observation]:
    """Inverse of :func:`encode`; raises ValueError on anything else."""
    return decode_timed(payload)[0]


def decode_timed(payload: bytes) -> tuple[list[Observation], float | None]:
    """The observations and when ingest made them durable (None when the batch does not
    say); raises ValueError on anything but what :func:`encode` writes."""
    body: Any = json.loads(payload)
    durable_at = None
    if isinstance(body, dict):
        durable_at, rows = body.get("durable_at"), body.get("rows")
        if not isinstance(durable_at, int | float) or isinstance(durable_at, bool):
            raise ValueError("observation batch: durable_at must be a number")  # noqa: TRY004
    else:
        rows = body
    if not isinstance(rows, list):  # a wire-format error, like json's own ValueError
        raise ValueError("observation batch must be a JSON array")  # noqa: TRY004
    out = []
    for row in rows:
        if not isinstance(row, list) or len(row) != len(_FIELDS):
            raise ValueError("observation rows have 10 fields")
        data = dict(zip(_FIELDS, row, strict=True))
        if data["quantity"] is not None:
            data["quantity"] = Quantity(data["quantity"])
        out.append(Observation(**data))
    return out, None if durable_at is None else float(durable_at)
