"""The registry: chain upserts, sensors, discovered devices, dead letters."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.chain import Sensor, dump_chain, load_chain
from core.errors import NotFound
from core.registry import PAYLOAD_KEEP_BYTES, DiscoveredDevice, Registry, payload_text

GOOD = Path(__file__).parent / "testdata" / "chain" / "good.yaml"


def test_import_is_idempotent_and_export_round_trips(any_registry: str) -> None:
    registry = Registry(any_registry)
    chain = load_chain(GOOD)
    registry.import_chain(chain)
    registry.import_chain(chain)
    exported = registry.export_chain()
    for kind in ("stores", "assets", "sensors", "contacts", "policies"):
        ours = sorted(getattr(exported, kind), key=lambda x: x.id)
        assert ours == sorted(getattr(chain, kind), key=lambda x: x.id), kind
    assert dump_chain(registry.export_chain()) == dump_chain(exported)


def test_sensor_infos_denormalise_store_and_timezone(any_registry: str) -> None:
    registry = Registry(any_registry)
    registry.import_chain(load_chain(GOOD))
    info = registry.sensor_infos()["cc-s042-dc1"]
    assert (info.store, info.asset, info.asset_type) == ("s042", "s042-dc1", "dairy_case")
    assert (info.offset, info.interval_s, info.timezone) == (-0.3, 60.0, "America/Guatemala")


def test_moving_and_retiring_a_sensor(any_registry: str) -> None:
    registry = Registry(any_registry)
    registry.import_chain(load_chain(GOOD))
    before = registry.entity_version()
    registry.add_sensor(Sensor(id="cc-s042-dc1", asset="s042-wic1"))
    assert registry.entity_version() > before
    assert registry.sensor_infos()["cc-s042-dc1"].asset == "s042-wic1"
    registry.retire_sensor("cc-s042-dc1", at=1.0)
    assert "cc-s042-dc1" not in registry.sensor_infos()
    with pytest.raises(NotFound):
        registry.retire_sensor("cc-s042-dc1", at=2.0)
    with pytest.raises(NotFound, match="unknown asset"):
        registry.add_sensor(Sensor(id="x", asset="nope"))


def test_another_connection_sees_changes(any_registry: str) -> None:
    one, two = Registry(any_registry), Registry(any_registry)
    version = two.entity_version()
    one.import_chain(load_chain(GOOD))
    assert two.entity_version() > version
    assert len(two.sensor_infos()) == 2


def test_entity_version_moves_only_for_real_entity_changes(any_registry: str) -> None:
    """Side-table writes by any connection leave it alone (they used to move PRAGMA
    data_version and reset every excursion budget); each entity table counts apart."""
    one, two = Registry(any_registry), Registry(any_registry)
    chain = load_chain(GOOD)
    one.import_chain(chain)
    version = two.entity_version()
    sensors = two.entity_version("sensors")
    one.import_chain(chain)  # unchanged: rows rewritten with the same content
    one.add_dead_letters([(1.0, "bad_json", None, "t", "{", "x")])
    one.record_discovered([DiscoveredDevice("d", "native", 1.0, 1.0, 1, ["d"], "t", "{}")])
    one.create_api_key("oncall", name="noc")
    assert two.entity_version() == version
    contact = chain.contacts[0]
    one.upsert_contact(contact.model_copy(update={"name": "Ana Maria"}))
    assert two.entity_version() == version + 1
    assert two.entity_version("sensors") == sensors  # contacts moved, sensors did not
    one.retire_sensor(chain.sensors[0].id, at=2.0)
    assert two.entity_version("sensors") == sensors + 1
    with pytest.raises(ValueError, match="not entity tables"):
        two.entity_version("dead_letters")


def test_discovered_merges_and_hides_registered_sensors(any_registry: str) -> None:
    registry = Registry(any_registry)
    registry.import_chain(load_chain(GOOD))
    seen = DiscoveredDevice(
        "tasmota-s042-wic1", "tasmota", 1.0, 2.0, 3, ["tasmota-s042-wic1:DS18B20-2"], "t", "p"
    )
    registry.record_discovered([seen])
    registry.record_discovered([seen])
    [device] = registry.discovered()
    assert device.messages == 6
    assert device.sensors == ["tasmota-s042-wic1:DS18B20-2"]
    registry.add_sensor(Sensor(id="tasmota-s042-wic1:DS18B20-2", asset="s042-wic1"))
    assert registry.discovered() == []


def test_payload_text_keeps_binary_and_bounds_size() -> None:
    assert payload_text(b"\xff\x00") == "hex:ff00"
    big = payload_text(b"a" * (PAYLOAD_KEEP_BYTES + 10))
    assert len(big) == PAYLOAD_KEEP_BYTES + 1


def test_an_older_registry_is_migrated_with_its_notification_history(tmp_path: Path) -> None:
    """Migration 4 indexes which notifications carried which alerts, for rows written
    before it existed too (AlertBook.notifications(alert_id=) reads only the index)."""
    import json
    import sqlite3

    from alerting.book import AlertBook
    from core.migrations.legacy import MIGRATIONS

    path = tmp_path / "r.sqlite3"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        assert isinstance(script, str)
        conn.executescript(script)
    conn.execute("PRAGMA user_version=3")
    conn.execute(
        "INSERT INTO notifications(alert_ids, store, step, purpose, contact, phone, channel, "
        "language, body, status, attempts, created_at, updated_at) "
        "VALUES (?, 's042', 0, 'page', 'ana', '+50255550101', 'sms', 'es', 'x', 'sent', 1, 0, 0)",
        (json.dumps(["a1", "a2"]),),
    )
    conn.commit()
    conn.close()
    book = AlertBook(Registry(path))
    assert [n.alert_ids for n in book.notifications(alert_id="a2")] == [["a1", "a2"]]
    assert book.notifications(alert_id="a3") == []


def test_timestamps_come_back_exact_on_both_backends(any_registry: str) -> None:
    """PostgreSQL's REAL is 4 bytes: a 2026 epoch time came back up to 64 s off. Every
    time column is double precision on both backends."""
    registry = Registry(any_registry)
    at = 1_795_000_123.456789
    registry.add_dead_letters([(at, "bad_json", None, "t", "{", "x")])
    [letter] = registry.dead_letters()
    assert letter.at == at
    registry.create_api_key("oncall", at=at)
    assert registry.api_keys()[0].created_at == at
    registry.close()


def test_the_audit_chain_stays_linear_with_writers_in_parallel(any_registry: str) -> None:
    """Several connections (processes, in production) appending at once: one chain."""
    import threading

    writers = [Registry(any_registry) for _ in range(4)]

    def write(registry: Registry, n: int) -> None:
        for i in range(25):
            registry.create_api_key("oncall", name=f"w{n}-{i}")

    threads = [threading.Thread(target=write, args=(r, n)) for n, r in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    intact, bad, checked = writers[0].audit_verify()
    assert (intact, bad, checked) == (True, None, 100)
    for registry in writers:
        registry.close()
