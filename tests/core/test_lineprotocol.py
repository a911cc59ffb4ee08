"""The hand-written serializer against influxdb_client.Point as the oracle."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point as ClientPoint  # noqa: TID251 - oracle
from influxdb_client.domain.write_precision import WritePrecision  # noqa: TID251

from core.lineprotocol import format_float, serialize, serialize_many
from core.types import Point

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_key = _text.filter(lambda k: k != "" and not k.endswith("\\"))
_field_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    _text,
)


@settings(max_examples=500)
@given(
    measurement=_key.filter(lambda m: not m.startswith("#")),  # "#" starts a comment
    tags=st.dictionaries(_key, _text, max_size=4),
    fields=st.dictionaries(_key, _field_value, min_size=1, max_size=4),
    ts=st.integers(min_value=0, max_value=2**53),
)
def test_matches_influxdb_client_point(
    measurement: str, tags: dict[str, str], fields: dict[str, object], ts: int
) -> None:
    ours = serialize(
        Point(measurement, tuple(tags.items()), tuple(fields.items()), ts)  # type: ignore[arg-type]
    )
    oracle = ClientPoint(measurement)
    for key, value in tags.items():
        oracle.tag(key, value)
    for key, field_value in fields.items():
        oracle.field(key, field_value)
    oracle.time(ts, WritePrecision.MS)
    expected = oracle.to_line_protocol()
    assert ours == (expected or None)


def test_reading_line_shape() -> None:
    point = Point(
        "temperature",
        (("store", "s042"), ("asset", "s042-wic1"), ("sensor", "tasmota-x:DS18B20-1")),
        (("value", 3.0),),
        1_795_406_706_500,
    )
    assert serialize(point) == (
        "temperature,asset=s042-wic1,sensor=tasmota-x:DS18B20-1,store=s042 value=3 1795406706500"
    )


def test_escaping_of_hostile_text() -> None:
    point = Point("m m,x", (("t=k", 'a b,c="d'),), (("f", 'say "hi" \\ bye'),), 1)
    assert serialize(point) == r'm\ m\,x,t\=k=a\ b\,c\="d f="say \"hi\" \\ bye" 1'


def test_non_finite_floats_are_dropped_not_written() -> None:
    assert serialize(Point("m", (), (("value", math.nan),), 1)) is None
    assert serialize_many([Point("m", (), (("value", math.inf),), 1)]) == b""


def test_float_formatting_round_trips() -> None:
    for value in (3.0, -25.0, 0.1, 1e-7, 123456789.125, -0.0):
        assert float(format_float(value)) == value
