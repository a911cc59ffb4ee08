"""The native decoder's memory of payload shapes (devices/native/family.py)."""

from __future__ import annotations

import json

from devices.native.family import _SHAPES_KEPT, NativeFamily

TOPIC = "coldchain/v1/cc-s042-wic1/telemetry"


def test_shapes_are_remembered_but_not_huge_or_unbounded_ones() -> None:
    native = NativeFamily()
    native.decode(TOPIC, b'{"ts":1795406706,"seq":1,"temperature_c":3.5}')
    native.decode(TOPIC, b'{"ts":1795406766,"seq":2,"temperature_c":3.6}')
    assert len(native._shapes) == 1  # one shape, whatever the values
    # A few huge invented keys: decoded (and listed as unused), not remembered.
    huge = {"temperature_c": 3.5, **{f"{n}{'x' * 20_000}": 1 for n in range(3)}}
    message = native.decode(TOPIC, json.dumps(huge).encode())
    assert [r.value for r in message.readings] == [3.5]
    assert message.unused
    assert len(native._shapes) == 1
    # A flood of small invented keys: the memory is cleared, not grown without bound.
    for n in range(_SHAPES_KEPT + 10):
        native.decode(TOPIC, json.dumps({"temperature_c": 1.0, f"k{n}": 0}).encode())
    assert len(native._shapes) <= _SHAPES_KEPT
