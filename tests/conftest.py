"""The real-service harness: private Mosquitto, InfluxDB and PostgreSQL on free ports.

InfluxDB starts once per session (each test gets its own database); Mosquitto is cheap, so
each test that needs a broker gets a fresh one (no retained messages or persistent
sessions leak between tests). PostgreSQL starts once per session, the first time a test
asks for it; each such test gets a database of its own. All live in temporary folders and
are stopped at the end. ``make test`` installs the Debian packages first when missing.

The registry is SQLite unless ``--registry=postgresql`` (or COLDCHAIN_TEST_REGISTRY)
points every test's ``influx_settings.db`` at a fresh PostgreSQL database
(``make test-postgres``). Tests taking ``any_registry`` run on both in every run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coldchain.services import InfluxDB, Mosquitto, PostgreSQL
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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--registry",
        choices=("sqlite", "postgresql"),
        default=os.environ.get("COLDCHAIN_TEST_REGISTRY", "sqlite"),
        help="the registry backend of every test's settings (default: sqlite)",
    )


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    """One PostgreSQL 15 cluster for the session (started when first needed)."""
    server = PostgreSQL(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.remove()


def _registry_target(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "postgresql":
        server: PostgreSQL = request.getfixturevalue("postgres")
        return server.database()
    return str(tmp_path / "registry.sqlite3")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_registry(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh registry location on each backend in turn: a SQLite path, a PostgreSQL URL."""
    return _registry_target(str(request.param), request, tmp_path)


def _settings(influxd: InfluxDB, request: pytest.FixtureRequest, folder: Path) -> Settings:
    backend = str(request.config.getoption("--registry"))
    return Settings(
        influx_url=influxd.url,
        influx_db=f"t{next(_db_counter)}",
        db=_registry_target(backend, request, folder),
        spool_dir=folder / "spool",
    )


@pytest.fixture
def influx_settings(influxd: InfluxDB, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings pointing at the session InfluxDB with a database of this test's own, and
    a registry of its own (the backend ``--registry`` chose)."""
    return _settings(influxd, request, tmp_path)


@pytest.fixture
def run_settings(
    influxd: InfluxDB, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[str], Settings]:
    """For tests that compare independent runs: each call (a run's name) gives settings
    like :func:`influx_settings`, with an InfluxDB database, a registry and a spool of
    that run's own, so that no run starts from what another one stored."""

    def make(name: str) -> Settings:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        return _settings(influxd, request, folder)

    return make


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
