"""A careful InfluxDB line-protocol serializer, ~8x cheaper than ``influxdb_client.Point``.

It escapes exactly as ``influxdb_client.Point`` does (measurement: comma, space and control
characters; keys and tag values: also ``=``; string fields: quote and backslash), sorts tags
and fields by key, drops empty tag values and non-finite floats, and writes whole floats
without ``.0``. ``tests/core/test_lineprotocol.py`` checks it against ``Point`` as an oracle
with hypothesis. Timestamps are integer milliseconds (``precision=ms`` on the write).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from core.types import FieldValue, Point

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})
_NEEDS_ESCAPE = frozenset(",= \n\t\r")


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    if _NEEDS_ESCAPE.isdisjoint(text):
        return text
    return text.translate(_ESCAPE_KEY)


def _escape_tag_value(text: str) -> str:
    escaped = escape_key(text)
    # A trailing backslash would escape the separator that follows; Point pads it.
    return escaped + " " if escaped.endswith("\\") else escaped


def format_float(value: float) -> str:
    """Shortest round-trip text of a finite float, without a trailing ``.0``."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def string_field(value: str) -> str:
    """A string field value, quoted and escaped."""
    return f'"{value.translate(_ESCAPE_STRING)}"'


def _format_field(key: str, value: FieldValue) -> str | None:
    if isinstance(value, bool):
        return f"{escape_key(key)}={'true' if value else 'false'}"
    if isinstance(value, int):
        return f"{escape_key(key)}={value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return f"{escape_key(key)}={format_float(value)}"
    return f"{escape_key(key)}={string_field(value)}"


def serialize(point: Point) -> str | None:
    """One line of line protocol, or None when the point has no writable field."""
    fields = [
        text
        for key, value in sorted(point.fields, key=lambda kv: kv[0])
        if (text := _format_field(key, value)) is not None
    ]
    if not fields:
        return None
    parts = [point.measurement.translate(_ESCAPE_MEASUREMENT)]
    for key, value in sorted(point.tags, key=lambda kv: kv[0]):
        tag_key, tag_value = escape_key(key), _escape_tag_value(value)
        if tag_key and tag_value:
            parts.append(f"{tag_key}={tag_value}")
    return f"{','.join(parts)} {','.join(fields)} {point.ts_ms}"


def serialize_many(points: Iterable[Point]) -> bytes:
    """A write body: one line per writable point, newline-separated, UTF-8."""
    lines = [line for point in points if (line := serialize(point)) is not None]
    return "\n".join(lines).encode()
