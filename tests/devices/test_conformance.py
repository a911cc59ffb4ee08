"""One suite every device family passes (STYLE.md §11): adding a family adds rows.

- golden cases: ``devices/<family>/testdata/*.yaml``, a real payload beside what it means;
- the LoRaWAN corpus: ``devices/corpus/lorawan/<vendor>/*.yaml``, the vendors' own codecs'
  output for their own examples (tests/devices/make_corpus.py), wrapped as a ChirpStack
  v4 and a The Things Stack v3 uplink, each decoded by its family;
- robustness: ``decode`` raises nothing but ``DecodeError`` on arbitrary topics and bytes
  and on golden and corpus payloads with any one value replaced;
- round trip: what ``encode`` writes (the simulator's output), ``decode`` reads back.

Adding a case is adding a file; the count per family and vendor is printed at the end of
the run (tests/devices/conftest.py).
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import devices
from core.types import FaultCode, Message, Quantity
from devices.base import VALID_RANGE, DecodeError, DeviceSample, Family
from tests.devices.uplinks import GATEWAY_RSSI, WRAPS, corpus_case, corpus_paths, corpus_uplink

FAMILIES = devices.families()
EXPECTED_FAMILIES = {"native", "esphome", "tasmota", "shelly", "chirpstack", "tts"}


def _cases() -> list[Any]:
    out = []
    for fam in FAMILIES:
        folder = Path(devices.__file__).parent / fam.name / "testdata"
        for path in sorted(folder.glob("*.yaml")):
            out.append(pytest.param(fam, path, id=f"{fam.name}/{path.stem}"))
    return out


def test_every_target_family_is_present() -> None:
    assert {f.name for f in FAMILIES} == EXPECTED_FAMILIES


def test_every_family_has_golden_cases() -> None:
    for fam in FAMILIES:
        folder = Path(devices.__file__).parent / fam.name / "testdata"
        assert len(list(folder.glob("*.yaml"))) >= 3, f"{fam.name} needs golden cases"


def _payload(case: dict[str, Any]) -> bytes:
    if "payload_hex" in case:
        return bytes.fromhex(case["payload_hex"])
    payload = case["payload"]
    return payload.encode() if isinstance(payload, str) else yaml.safe_dump(payload).encode()


@pytest.mark.parametrize(("fam", "path"), _cases())
def test_golden(fam: Family, path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    assert case.get("description"), f"{path}: say what the case shows"
    if case.get("vendor") or case.get("source"):  # from a vendor: say which file or page
        assert case.get("vendor"), "a case with a source names its vendor"
        assert case.get("source"), "a vendor case names the file or page it comes from"
    topic, payload = case["topic"], _payload(case)
    assert fam.matches(topic.split("/")), f"{fam.name} must claim {topic}"
    if "error" in case:
        with pytest.raises(DecodeError) as info:
            fam.decode(topic, payload)
        assert info.value.reason == case["error"]
        return
    message = fam.decode(topic, payload)
    expect = case["expect"]
    assert message.family == fam.name
    assert message.device_id == expect["device_id"]
    # Compared as sorted lists: the order of values in a message means nothing.
    got_readings = sorted([r.sensor, r.quantity.value, r.value] for r in message.readings)
    want_readings = sorted([s, q, float(v)] for s, q, v in expect.get("readings", []))
    assert got_readings == want_readings
    got_faults = sorted([f.sensor, f.quantity.value, f.code.value] for f in message.faults)
    assert got_faults == sorted(list(f) for f in expect.get("faults", []))
    assert message.online == expect.get("online")
    assert message.ts_ms == expect.get("ts_ms")
    assert message.seq == expect.get("seq")
    local = expect.get("local_time")
    assert message.local_time == (datetime.fromisoformat(local) if local else None)
    assert message.ignored == expect.get("ignored")
    if message.ignored is not None:
        assert message.detail, "an ignored message says what it held"
    assert list(message.unused) == expect.get("unused", [])


# -- the LoRaWAN corpus ----------------------------------------------------------------------

LORAWAN = [f for f in FAMILIES if f.name in WRAPS]


def _corpus_cases() -> list[Any]:
    return [
        pytest.param(fam, path, id=f"{fam.name}/{path.parent.name}/{path.stem}")
        for fam in LORAWAN
        for path in corpus_paths()
    ]


def test_corpus_covers_the_target_devices() -> None:
    """The devices a grocery chain buys are in the corpus, each from a vendor source."""
    models = {model for path in corpus_paths() for model in corpus_case(path)["models"]}
    wanted = {
        "EM300-TH", "EM300-MCS", "EM300-SLD", "EM300-ZLD", "EM500-PT100", "WS301",
        "LHT65", "LHT65N", "LHT65N-NE117", "LHT52", "LSN50v2-D20", "LDS02",
        "ERS", "TBHH100", "TBHV110", "TBDW100",
    }  # fmt: skip
    assert wanted <= models, wanted - models


@pytest.mark.parametrize("path", corpus_paths(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_corpus_case_names_its_source(path: Path) -> None:
    case = corpus_case(path)
    assert case.get("description"), "say what the case shows"
    codec = case["codec"]
    assert codec["repository"], "which vendor repository"
    assert codec["path"], "which vendor file ran"
    assert len(codec["commit"]) == 40, "the commit of the vendor file"
    example = case["example"]
    from_file = {"repository", "commit", "path"} <= set(example)
    assert from_file or example.get("page"), "which file or page the bytes come from"
    if "page" in example or "note" in example:
        assert example.get("description") or example.get("note"), "say how the bytes were made"
    if case["matches_vendor"] is False:
        assert "YAML" in case["description"] or "differs" in case["description"], (
            "a codec output that differs from the vendor's stated one must say why"
        )
    assert case["expect"] is not None, "write what coldchain must store (by hand)"
    assert path.parent.name == case["vendor"].lower()


def _expected(case: dict[str, Any], key: str) -> list[tuple[Any, ...]]:
    """Expected rows with full sensor ids: ``[channel, quantity, value]`` (channel null =
    the device), readings with a fourth element when they carry their own time."""
    device = case["dev_eui"]
    rows = case["expect"].get(key, [])
    return sorted((device if row[0] is None else f"{device}:{row[0]}", *row[1:]) for row in rows)


@pytest.mark.parametrize(("fam", "path"), _corpus_cases())
def test_corpus(fam: Family, path: Path) -> None:
    """A vendor codec's output, as the network server forwards it, decodes to what it means."""
    case = corpus_case(path)
    expect = case["expect"]
    topic, payload = corpus_uplink(path, fam.name)
    if "error" in expect:
        with pytest.raises(DecodeError) as info:
            fam.decode(topic, payload)
        assert info.value.reason == expect["error"]
        return
    message = fam.decode(topic, payload)
    assert message.device_id == case["dev_eui"]
    readings = sorted((r.sensor, r.quantity.value, r.value, r.ts_ms) for r in message.readings)
    faults = sorted((f.sensor, f.quantity.value, f.code.value) for f in message.faults)
    want_readings = [
        (s, q, float(v), *(rest or [None])) for s, q, v, *rest in _expected(case, "readings")
    ]
    want_faults = _expected(case, "faults")
    if want_readings or want_faults:  # the gateway's RSSI comes with anything stored
        signal = (case["dev_eui"], "signal", GATEWAY_RSSI, None)
        want_readings = sorted([*want_readings, signal])
    assert readings == want_readings
    assert faults == want_faults
    assert message.ignored == expect.get("ignored")
    assert list(message.unused) == sorted(expect.get("unused", []))


def test_routing_is_unambiguous() -> None:
    """No golden topic is claimed by two families."""
    for param in _cases():
        fam, path = param.values
        topic = yaml.safe_load(path.read_text())["topic"]
        owners = [f.name for f in FAMILIES if f.matches(topic.split("/"))]
        assert owners == [fam.name], f"{topic} claimed by {owners}"


_topic_levels = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "tele",
                "SENSOR",
                "LWT",
                "STATE",
                "status",
                "online",
                "events",
                "rpc",
                "sensor",
                "binary_sensor",
                "state",
                "application",
                "device",
                "event",
                "up",
                "v3",
                "devices",
                "coldchain",
                "v1",
                "telemetry",
                "abc",
                "x@ttn",
            ]
        ),
        st.text(min_size=0, max_size=12),
    ),
    min_size=1,
    max_size=7,
)


@functools.cache
def _golden_payloads(family: str) -> tuple[tuple[str, bytes], ...]:
    """Each golden (and, for LoRaWAN, corpus) case's topic and payload, parsed once."""
    folder = Path(devices.__file__).parent / family / "testdata"
    cases = [yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))]
    found = [(case["topic"], _payload(case)) for case in cases]
    if family in WRAPS:
        found += [corpus_uplink(path, family) for path in corpus_paths()]
    return tuple(found)


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(levels=_topic_levels, payload=st.binary(max_size=300))
def test_decode_raises_only_decode_error_on_bytes(
    fam: Family, levels: list[str], payload: bytes
) -> None:
    topic = "/".join(levels)
    if not fam.matches(levels):
        return
    try:
        message = fam.decode(topic, payload)
    except DecodeError:
        return
    assert isinstance(message, Message)


_json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_decode_raises_only_decode_error_on_mutated_golden(
    fam: Family, data: st.DataObject
) -> None:
    """Structure-aware fuzzing: take a golden payload and replace one value anywhere."""
    import json

    topic, payload = data.draw(st.sampled_from(_golden_payloads(fam.name)))
    try:
        doc = json.loads(payload)
    except ValueError:
        return
    paths: list[list[Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, [*path, k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, [*path, i])

    walk(doc, [])
    path = data.draw(st.sampled_from(paths))
    replacement = data.draw(_json_values)
    if not path:
        doc = replacement
    else:
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = replacement
    try:
        message = fam.decode(topic, json.dumps(doc).encode())
    except DecodeError:
        return
    assert isinstance(message, Message)
    for reading in message.readings:
        low, high = VALID_RANGE[reading.quantity]
        assert math.isfinite(reading.value)
        assert low <= reading.value <= high


def _value_strategy(quantity: Quantity) -> st.SearchStrategy[float]:
    if quantity is Quantity.DOOR:
        return st.sampled_from([0.0, 1.0])
    low, high = {
        Quantity.TEMPERATURE: (-40.0, 40.0),
        Quantity.HUMIDITY: (1.0, 99.0),
        Quantity.BATTERY: (1.0, 100.0),
        Quantity.SIGNAL: (-120.0, -30.0),
    }[quantity]
    return st.floats(min_value=low, max_value=high, allow_nan=False)


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_encode_decode_round_trip(fam: Family, data: st.DataObject) -> None:
    faults = sorted(fam.profile.fault_codes)
    values: dict[str | None, dict[Quantity, float | FaultCode]] = {}
    for channel, layout_quantities in fam.layout.items():
        values[channel] = {}
        for quantity in layout_quantities:
            use_fault = quantity is Quantity.TEMPERATURE and faults and data.draw(st.booleans())
            values[channel][quantity] = (
                data.draw(st.sampled_from(faults))
                if use_fault
                else data.draw(_value_strategy(quantity))
            )
    ts_ms = data.draw(st.integers(min_value=1_700_000_000_000, max_value=1_900_000_000_000))
    sample = DeviceSample(device_id="dev-1", ts_ms=ts_ms, values=values, seq=7)
    decoded = [fam.decode(p.topic, p.payload) for p in fam.encode(sample)]
    readings = {(r.sensor, r.quantity): r.value for m in decoded for r in m.readings}
    got_faults = {(f.sensor, f.quantity): f.code for m in decoded for f in m.faults}
    for channel, quantities in values.items():
        sensor = "dev-1" if channel is None else f"dev-1:{channel}"
        for quantity, value in quantities.items():
            key = (sensor, quantity)
            if isinstance(value, FaultCode):
                assert got_faults.get(key) == value, key
            else:
                step = fam.profile.resolution.get(quantity, 0.01)
                assert key in readings, f"{key} lost in {fam.name} round trip"
                assert abs(readings[key] - value) <= step / 2 + 1e-9, (key, readings[key], value)
    for m in decoded:
        assert m.device_id == "dev-1"
        if fam.profile.has_timestamp and m.ts_ms is not None:
            assert abs(m.ts_ms - ts_ms) < 1000


@pytest.mark.parametrize(
    "fam", [f for f in FAMILIES if f.profile.availability == "lwt"], ids=lambda f: f.name
)
def test_status_round_trip(fam: Family) -> None:
    for online in (True, False):
        publish = fam.encode_status("dev-1", online)
        assert publish.retain
        message = fam.decode(publish.topic, publish.payload)
        assert (message.device_id, message.online) == ("dev-1", online)
