"""The CLI a technician uses (issue 12): `bench NAME --json`, `sensors add` refusing an
ambiguous bare device id, `devices discovered` showing the exact ids and what was not
stored. Over a real registry file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

import bench
from coldchain.cli import main
from core.chain import parse_chain
from core.registry import DiscoveredDevice, Registry

CHAIN = {
    "stores": [{"id": "s042", "name": "San Pedro", "country": "GT",
                "timezone": "America/Guatemala"}],
    "assets": [{"id": "s042-wic1", "store": "s042", "type": "walkin_cooler", "name": "C1"}],
}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "as_json", "extra"),
    [
        (["bench", "ingest", "--json"], True, []),
        (["bench", "--json", "ingest"], True, []),
        (["bench", "ingest", "--seconds", "5", "--json"], True, ["--seconds", "5"]),
        (["bench", "ingest", "--seconds", "5"], False, ["--seconds", "5"]),
    ],
)
def test_bench_takes_json_before_or_after_the_name(
    argv: list[str], as_json: bool, extra: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, bool, list[str]]] = []

    def record(name: str, *, as_json: bool, extra: Sequence[str] = ()) -> int:
        calls.append((name, as_json, list(extra)))
        return 0

    monkeypatch.setattr(bench, "run_benchmark", record)
    assert main(argv) == 0
    assert calls == [("ingest", as_json, extra)]


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    path = tmp_path / "registry.sqlite3"
    monkeypatch.setenv("COLDCHAIN_DB", str(path))
    found = Registry(path)
    found.import_chain(parse_chain(CHAIN))
    quantities = {
        "tasmota-s042-wic1:DS18B20-1": ["temperature"],
        "tasmota-s042-wic1:DS18B20-2": ["temperature"],
        "tasmota-s042-wic1:Switch1": ["door"],
    }
    found.record_discovered(
        [
            DiscoveredDevice("tasmota-s042-wic1", "tasmota", 1.0, 2.0, 3, sorted(quantities),
                             "tele/tasmota-s042-wic1/SENSOR", "{}", quantities=quantities),
            DiscoveredDevice("tasmota-s042-new", "tasmota", 1.0, 1.5, 2, [],
                             "tele/tasmota-s042-new/SENSOR", "{}", ignored={"no_sensor": 2},
                             last_ignored="no_sensor: keys: ANALOG.Range1",
                             unused=["ANALOG.Range1"]),
        ]
    )  # fmt: skip
    return found


def test_sensors_add_refuses_an_ambiguous_bare_id_and_lists_the_probes(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sensors", "add", "tasmota-s042-wic1", "--asset", "s042-wic1"]) == 2
    err = capsys.readouterr().err
    assert "carries 2 probes" in err
    assert "tasmota-s042-wic1:DS18B20-1  (temperature)" in err
    assert "tasmota-s042-wic1:DS18B20-2  (temperature)" in err
    assert registry.sensors() == []
    assert main(["sensors", "add", "tasmota-s042-wic1:DS18B20-2", "--asset", "s042-wic1"]) == 0
    assert [s.id for s in registry.sensors()] == ["tasmota-s042-wic1:DS18B20-2"]


def test_devices_discovered_shows_the_ids_to_register_and_what_was_not_stored(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["devices", "discovered"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["device", "family", "sensor", "id", "to", "register", "measures",
                                "last", "seen", "messages"]  # fmt: skip
    rows = [line.split() for line in lines[1:5]]
    assert [row[0] for row in rows] == [
        "tasmota-s042-wic1", "tasmota-s042-wic1:DS18B20-2", "tasmota-s042-wic1:Switch1",
        "tasmota-s042-new",
    ]  # fmt: skip
    assert rows[0][2:4] == ["tasmota-s042-wic1:DS18B20-1", "temperature"]
    assert rows[2][1] == "door"
    assert (
        "tasmota-s042-new: ignored messages: no_sensor x2 (last: no_sensor: keys: ANALOG.Range1)"
        in out
    )
    assert "tasmota-s042-new: sent but not stored: ANALOG.Range1" in out
