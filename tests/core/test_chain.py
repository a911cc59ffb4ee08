"""Chain-file validation: one good file, one bad file per failure mode (STYLE.md §5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.chain import dump_chain, load_chain, parse_chain, parse_duration
from core.errors import ConfigError

DATA = Path(__file__).parent / "testdata" / "chain"


def test_good_file_loads_and_round_trips_through_yaml() -> None:
    chain = load_chain(DATA / "good.yaml")
    assert [s.id for s in chain.stores] == ["s042"]
    assert chain.policies[0].steps[0].wait == 1800
    assert chain.stores[0].opening_hours()[6][0][0].hour == 8
    again = parse_chain(__import__("yaml").safe_load(dump_chain(chain)))
    assert again == chain


@pytest.mark.parametrize("path", sorted(DATA.glob("bad_*.yaml")), ids=lambda p: p.stem)
def test_bad_file_names_the_field(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(ConfigError) as info:
        load_chain(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), (45, 45)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "-5m", "0s", "5 minutes", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
