"""The security suite: a real Mosquitto with the ACL `coldchain broker acl` generates for
two stores' fleet, and the API harness (tests/api/conftest.py): the real app over real
HTTP, a real registry, the session's InfluxDB and the fake Twilio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coldchain.broker import RegisteredSensor, build_plan, load_broker_file
from coldchain.cli import main
from coldchain.services import Mosquitto
from core.chain import parse_chain
from core.registry import Registry

# Fixtures are found by name in a conftest's namespace: importing them is how they are
# shared between folders (pytest has no other cross-folder mechanism short of a plugin).
from tests.api.conftest import api, clock, paged, twilio  # noqa: F401
from tests.security import fleet as f


@pytest.fixture
def fleet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Fleet:
    """Both stores registered, and the ACL the CLI writes for them."""
    db = tmp_path / "registry.sqlite3"
    registry = Registry(db)
    registry.import_chain(parse_chain(f.chain()))
    sensors = [
        RegisteredSensor(i.sensor, i.family, i.store) for i in registry.sensor_infos().values()
    ]
    registry.close()
    broker_file = f.dump(f.broker_file(), tmp_path / "broker.yaml")
    monkeypatch.setenv("COLDCHAIN_DB", str(db))
    capsys.readouterr()
    assert main(["broker", "acl", "--devices", str(broker_file)]) == 0
    acl_text = capsys.readouterr().out
    plan = build_plan(sensors, load_broker_file(broker_file))
    return f.Fleet(plan, acl_text)


Fleet = f.Fleet


@pytest.fixture
def acl_broker(tmp_path: Path, fleet: Fleet) -> Iterator[Mosquitto]:
    """Mosquitto with the generated ACL, a password per user, anonymous refused."""
    acl = tmp_path / "acl"
    acl.write_text(fleet.acl_text)
    passwd = f.write_password_file(tmp_path / "passwd", fleet.plan.users())
    server = Mosquitto(tmp_path / "mosquitto", password_file=passwd, acl_file=acl)
    server.start()
    yield server
    server.stop()
