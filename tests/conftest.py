"""The real-service harness: private Mosquitto and InfluxDB on free loopback ports.

InfluxDB starts once per session (each test gets its own database); Mosquitto is cheap, so
each test that needs a broker gets a fresh one (no retained messages or persistent
sessions leak between tests). Both live in pytest's temporary folders and are stopped at
the end. ``make test`` installs the Debian packages first when they are missing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldchain.services import InfluxDB, Mosquitto
from core.influx import InfluxV1
from core.settings import Settings

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """One InfluxDB 1.x server for the whole session."""
    server = InfluxDB(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influx_settings(influxd: InfluxDB, tmp_path: Path) -> Settings:
    """Settings pointing at the session InfluxDB with a database of this test's own."""
    return Settings(
        influx_url=influxd.url,
        influx_db=f"t{next(_db_counter)}",
        db=tmp_path / "registry.sqlite3",
        spool_dir=tmp_path / "spool",
    )


@pytest.fixture
def influx(influx_settings: Settings) -> Iterator[InfluxV1]:
    """An adapter on this test's fresh database."""
    adapter = InfluxV1(influx_settings)
    adapter.ensure_database()
    yield adapter
    adapter.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto for this test."""
    server = Mosquitto(tmp_path / "mosquitto")
    server.start()
    yield server
    server.stop()
