"""What InfluxDB 1.6.7 answers at its cardinality limits (issue 13), on private servers.

Each index gets a server with tiny limits (``max-values-per-tag`` 5,
``max-series-per-database`` 40) and a flood of made-up sensor ids, as a compromised
device's traffic would be written (unregistered readings carry only the ``sensor`` tag).
What these tests pin down, for ingest's handling of floods:

- **inmem** enforces both limits. ``max-values-per-tag`` is checked against the count
  before each batch: a batch that starts under the limit is written whole, however many
  values it adds. Past the limit, a batch gets **400** with
  ``partial write: max-values-per-tag limit exceeded (<n>/<limit>): measurement="…"
  tag="…" value="<first refused value>" dropped=<points>``: only the points that would add
  a value are refused, the rest of the batch (registered sensors' points) is written. A
  sensor registered after the flood is refused for good. The limit counts per measurement
  and tag key. ``max-series-per-database`` refuses **every** new series of a batch that
  would cross it (``partial write: max-series-per-database limit exceeded: (<limit>)
  dropped=<points>``), also 400.
- **inmem loses more than it says**: in a partially refused batch, points of existing
  series are lost too (in these runs the first points of the batch, up to as many as
  were refused), and ``dropped`` counts only the refused ones. The same points written
  again, in a batch without refused points, are stored.
- **tsi1** (our setting) enforces neither: the same floods are written, and so is the
  sensor registered afterwards. InfluxDB 1.6 to 1.8 check both limits in the inmem index
  only (``tsdb/index/inmem/inmem.go``); nothing stops a flood in the database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldchain.services import InfluxDB
from core.errors import InfluxRejected
from core.influx import InfluxV1
from core.settings import Settings

LIMIT_VALUES = 5
LIMIT_SERIES = 40
T0 = 1_715_310_900_000  # ms; all points fall in one shard (7-day shards)
REGISTERED = "temperature,asset=s042-wic1,asset_type=walkin_cooler,sensor=reg-1,store=s042"


def _server(root: Path, index: str) -> Iterator[InfluxDB]:
    server = InfluxDB(
        root,
        index_version=index,
        max_values_per_tag=LIMIT_VALUES,
        max_series_per_database=LIMIT_SERIES,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def inmem(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    yield from _server(tmp_path_factory.mktemp("influx-inmem"), "inmem")


@pytest.fixture(scope="module")
def tsi1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    yield from _server(tmp_path_factory.mktemp("influx-tsi1"), "tsi1")


@contextlib.contextmanager
def _db(server: InfluxDB, name: str, tmp_path: Path) -> Iterator[InfluxV1]:
    settings = Settings(influx_url=server.url, influx_db=name, db=tmp_path / "r.sqlite3")
    adapter = InfluxV1(settings)
    try:
        assert adapter.ensure_database()
        yield adapter
    finally:
        adapter.close()


def _write(db: InfluxV1, lines: list[str]) -> InfluxRejected | None:
    """Write; the refusal if InfluxDB answered with one."""
    try:
        db.write("\n".join(lines).encode())
    except InfluxRejected as exc:
        return exc
    return None


def _values(db: InfluxV1, sensor: str, measurement: str = "temperature") -> list[float]:
    """The values stored for one sensor, in time order."""
    query = f'SELECT "value" FROM "{measurement}" WHERE "sensor" = $s'
    return [row["value"] for series in db.query(query, {"s": sensor}) for row in series.rows()]


def _counts(db: InfluxV1, measurement: str = "temperature") -> dict[str, int]:
    """Points stored per sensor."""
    out: dict[str, int] = {}
    for series in db.query(f'SELECT count("value") FROM "{measurement}" GROUP BY "sensor"'):
        out[series.tags["sensor"]] = int(series.rows()[0]["count"])
    return out


def _flood(prefix: str, n: int, t: int = T0) -> list[str]:
    return [f"temperature,sensor={prefix}-{i} value=1 {t + i}" for i in range(n)]


def test_inmem_max_values_per_tag_refuses_the_points_that_add_a_value(
    inmem: InfluxDB, tmp_path: Path
) -> None:
    with _db(inmem, "values", tmp_path) as db:
        assert _write(db, [f"{REGISTERED} value=3.0 {T0}"]) is None
        # One batch of 10 new ids starting under the limit (1 value): written whole.
        assert _write(db, _flood("junk", 10, T0 + 10)) is None
        assert len(_counts(db)) == 11
        # Now at 11/5: a batch of the registered sensor and one sensor registered later.
        late = "temperature,asset=s042-wic2,asset_type=walkin_cooler,sensor=late-1,store=s042"
        batch = [
            f"{REGISTERED} value=3.1 {T0 + 100}",
            f"{late} value=4.0 {T0 + 101}",
            f"{REGISTERED} value=3.2 {T0 + 102}",
        ]
        refused = _write(db, batch)
        assert refused is not None
        assert refused.status == 400
        assert str(refused) == (
            "InfluxDB answered 400: partial write: max-values-per-tag limit exceeded (11/5): "
            'measurement="temperature" tag="sensor" value="late-1" dropped=1'
        )
        assert _values(db, "late-1") == []
        # Says dropped=1, but the registered sensor's first point of the batch is gone too.
        assert _values(db, "reg-1") == [3.0, 3.2]
        # Written again without the refused point, it is stored.
        assert _write(db, [batch[0]]) is None
        assert _values(db, "reg-1") == [3.0, 3.1, 3.2]
        # The later sensor stays refused, whatever its batch: until the flood's series are
        # dropped, no new sensor id is accepted in this measurement.
        again = _write(db, [f"temperature,sensor=late-1 value=4.0 {T0 + 200}"])
        assert again is not None
        assert again.status == 400
        assert _values(db, "late-1") == []
        # The limit is per measurement and tag key: humidity has room, and a new asset
        # value for the registered sensor is a new series but no new sensor value.
        assert _write(db, [f"humidity,sensor=late-1 value=80 {T0 + 300}"]) is None
        moved = REGISTERED.replace("asset=s042-wic1", "asset=s042-wic9")
        assert _write(db, [f"{moved} value=3.3 {T0 + 400}"]) is None
        assert _values(db, "reg-1") == [3.0, 3.1, 3.2, 3.3]


def test_inmem_max_series_per_database_refuses_every_new_series_of_the_batch(
    inmem: InfluxDB, tmp_path: Path
) -> None:
    with _db(inmem, "series", tmp_path) as db:
        assert _write(db, [f"{REGISTERED} value=3.0 {T0}"]) is None
        # 45 new series in 9 measurements (5 values each: the per-tag limit is not in play)
        # between two points of the registered sensor.
        lines = [f"m{i // 5},sensor=s{i % 5} value=1 {T0 + 10 + i}" for i in range(45)]
        batch = [f"{REGISTERED} value=3.1 {T0 + 1}", *lines, f"{REGISTERED} value=3.2 {T0 + 100}"]
        refused = _write(db, batch)
        assert refused is not None
        assert refused.status == 400
        assert str(refused) == (
            "InfluxDB answered 400: partial write: max-series-per-database limit exceeded: "
            "(40) dropped=45"
        )
        names = {row["name"] for series in db.query("SHOW MEASUREMENTS") for row in series.rows()}
        assert names == {"temperature"}
        assert _values(db, "reg-1") == [3.0, 3.2]  # 3.1 lost, as above
        # Under the limit the same kind of batch goes through.
        assert _write(db, lines[:30]) is None


def test_tsi1_enforces_neither_limit(tsi1: InfluxDB, tmp_path: Path) -> None:
    """Our index: the floods above are written, and so is the sensor registered after."""
    with _db(tsi1, "both", tmp_path) as db:
        assert _write(db, [f"{REGISTERED} value=3.0 {T0}"]) is None
        for batch in range(6):  # 60 values in separate batches: 12x the per-tag limit
            assert _write(db, _flood(f"junk{batch}", 10, T0 + 10 + 20 * batch)) is None
        late = "temperature,asset=s042-wic2,asset_type=walkin_cooler,sensor=late-1,store=s042"
        mixed = [f"{REGISTERED} value=3.1 {T0 + 500}", f"{late} value=4.0 {T0 + 501}"]
        assert _write(db, mixed) is None
        series = [f"m{i},sensor=x value=1 {T0 + i}" for i in range(60)]  # 1.5x the limit
        assert _write(db, series) is None
        assert len(_counts(db)) == 62
        assert _values(db, "late-1") == [4.0]
        assert _values(db, "reg-1") == [3.0, 3.1]
        cardinality = db.query("SHOW SERIES CARDINALITY")[0].rows()[0]
        assert next(iter(cardinality.values())) > LIMIT_SERIES
