"""Observations on the wire: how ingest hands readings to a separate alerting process.

In ``coldchain run`` observations pass in memory. Split across processes (DESIGN.md §2,
"events, not calls"), the ingester publishes each durable batch as one QoS 1 message on
:data:`TOPIC`, and ``coldchain alerting`` consumes it with a persistent session of its
own, so either side can restart without losing the other's work. A batch replayed after
an ingest crash is harmless: the rules ignore readings that are not newer than the last.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.types import Quantity
from ingest.pipeline import Observation

TOPIC = "coldchain/v1/_alerting/observations"
_FIELDS = ("kind", "ts_ms", "device", "sensor", "store", "asset", "asset_type", "quantity",
           "value", "code")  # fmt: skip


def encode(batch: Sequence[Observation]) -> bytes:
    """A compact JSON array of arrays (field order :data:`_FIELDS`)."""
    rows = [[getattr(o, f) for f in _FIELDS] for o in batch]
    return json.dumps(rows, separators=(",", ":")).encode()


def decode(payload: bytes) -> list[Observation]:
    """Inverse of :func:`encode`; raises ValueError on anything else."""
    rows: Any = json.loads(payload)
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
    return out
