"""Calibration due is an alert: one message per store to its technicians, weekly until
the sensors are recalibrated; never to the store manager (fake clock, real registry)."""

from __future__ import annotations

import random
from datetime import date, datetime
from pathlib import Path

from alerting.conditions import CALIBRATION_DUE
from alerting.engine import AlertingEngine
from alerting.notifiers.console import ConsoleNotifier
from core.chain import Sensor, parse_chain
from core.clock import ManualClock
from core.registry import Registry
from core.types import Quantity
from ingest.pipeline import Observation
from tests.alerting.harness import GT

TOM, ANA = "+50255550177", "+50255550101"
CHAIN = {
    "stores": [{"id": "s042", "name": "San Pedro", "country": "GT",
                "timezone": "America/Guatemala", "language": "es"}],
    "assets": [{"id": "s042-wic1", "store": "s042", "type": "walkin_cooler", "name": "Camara"}],
    "sensors": [
        {"id": "wic1", "asset": "s042-wic1", "interval": "1h", "calibration_due": "2026-11-18"},
        {"id": "wic1b", "asset": "s042-wic1", "interval": "1h", "calibration_due": "2026-11-20"},
    ],
    "contacts": [
        {"id": "ana", "name": "Ana", "phone": ANA, "roles": ["store_manager"], "stores": ["s042"]},
        {"id": "tom", "name": "Tom", "phone": TOM, "roles": ["technician"], "stores": ["s042"]},
    ],
}  # fmt: skip


def test_overdue_calibration_reminds_the_technician_weekly_until_done(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.sqlite3")
    registry.import_chain(parse_chain(CHAIN))
    clock = ManualClock(datetime(2026, 11, 17, 12, 0, tzinfo=GT))
    notifier = ConsoleNotifier(out=lambda _line: None)
    engine = AlertingEngine(registry, notifier, clock, rng=random.Random(5))
    engine.start()
    heard: list[tuple[str, str, str]] = []
    try:
        for step in range(11 * 24 * 6):  # 11 days, a tick every 10 minutes
            clock.advance(600)
            if step % 6 == 0:  # both probes report every hour, cycling normally
                ts = round(clock.time() * 1000)
                engine.observe([
                    Observation("reading", ts, sensor, sensor, "s042", "s042-wic1", None,
                                Quantity.TEMPERATURE, 3.0 + 0.2 * (step // 6 % 2))
                    for sensor in ("wic1", "wic1b")
                ])  # fmt: skip
            if clock.now().astimezone(GT) == datetime(2026, 11, 27, 10, 0, tzinfo=GT):
                other = Registry(tmp_path / "r.sqlite3")  # the technician, through the API
                for sensor in ("wic1", "wic1b"):
                    other.add_sensor(Sensor(id=sensor, asset="s042-wic1", interval=3600,
                                            calibrated_at=date(2026, 11, 27),
                                            calibration_due=date(2027, 11, 27)))  # fmt: skip
                other.close()
            engine.tick()
            engine.delivery.drain()
            when = clock.now().astimezone(GT).strftime("%m-%d %H:%M")
            heard += [(when, m.to, m.body) for m in notifier.sent[len(heard) :]]
    finally:
        engine.stop()
    assert [(when, to) for when, to, _ in heard] == [
        ("11-19 08:00", TOM),  # wic1's date passed on the 18th
        ("11-26 08:00", TOM),  # a week later, naming wic1b too (its date passed the 20th)
        ("11-27 10:00", TOM),  # recalibrated: done
    ]
    assert "calibracion vencida de 1 sensor(es): wic1." in heard[0][2]
    assert "calibracion vencida de 2 sensor(es): wic1, wic1b." in heard[1][2]
    assert "RESUELTO sensores calibrados" in heard[2][2]
    [alert] = engine.book.alerts(kinds=(CALIBRATION_DUE,))
    assert alert.explanation["sensors"] == ["wic1", "wic1b"]
    assert alert.state == "resolved"
