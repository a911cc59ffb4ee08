"""The alerting engine as timelines: who gets which message when (fake clock, console
notifier, real SQLite registry). The Twilio path is exercised in the acceptance tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alerting.book import ACKNOWLEDGED, FIRING, RESOLVED
from alerting.notifiers.base import Delivery, NotifyRejected, Outbound
from core.chain import Contact
from core.types import Quantity
from ingest.pipeline import Observation
from tests.alerting.harness import GT, Harness


@pytest.fixture
def night(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, datetime(2026, 11, 17, 23, 0, tzinfo=GT))
    yield harness
    harness.engine.stop()


def test_escalates_then_an_sms_reply_stops_it_and_recovery_notifies(night: Harness) -> None:
    night.minutes(10)  # 23:10, all normal
    assert night.sent() == []
    night.minutes(1, value=11.0)  # 23:11 hard ceiling: critical at once
    [(to, body)] = night.sent()
    assert to == "+50255550101"
    assert body.startswith("COLDCHAIN San Pedro: CRITICO Camara 1 11C (limite 10C)")
    [alert] = night.engine.book.alerts(open_only=True)
    assert body.endswith(f"Responda OK {alert.ack_code}")
    # closed store at night: x1.5 before midnight, so the 30 min wait is 20 min
    night.minutes(19, value=11.0)  # 23:30
    assert len(night.sent()) == 1
    night.minutes(1, value=11.0)  # 23:31
    assert [to for to, _ in night.sent()] == ["+50255550101", "+50255550199"]
    assert "Sin respuesta (nivel 2)" in night.sent()[1][1]
    reply = night.engine.handle_sms("+50255550199", f"ok {alert.ack_code} voy en camino")
    assert reply.text == f"Alerta {alert.ack_code} reconocida por NOC. Gracias."
    acked = night.engine.book.get(alert.id)
    assert (acked.state, acked.acked_by, acked.ack_via, acked.ack_note) == (
        ACKNOWLEDGED,
        "noc",
        "sms",
        "voy en camino",
    )
    night.minutes(60, value=11.0)  # an hour on: nothing more while acknowledged
    assert len(night.sent()) == 2
    night.minutes(30, value=3.0)  # back to normal, held 10 min -> resolved
    resolved = night.engine.book.get(alert.id)
    assert resolved.state == RESOLVED
    assert [to for to, _ in night.sent()[2:]] == ["+50255550101", "+50255550199"]
    assert all("RESUELTO" in body for _, body in night.sent()[2:])


def test_acknowledged_but_unresolved_re_escalates(night: Harness) -> None:
    night.engine.ack_timeout_s = 3600
    night.minutes(1, value=11.0)
    [alert] = night.engine.book.alerts(open_only=True)
    night.engine.handle_sms("+50255550101", f"OK {alert.ack_code}")
    night.minutes(59, value=11.0)
    assert len(night.sent()) == 1
    night.minutes(1, value=11.0)
    assert len(night.sent()) == 2
    # Somebody did answer: the next level hears it was acknowledged, not ignored.
    assert "Reconocida y sin resolver (nivel 2)" in night.sent()[1][1]
    assert night.engine.book.get(alert.id).state == FIRING


def test_restart_between_steps_resumes_without_repeating_or_skipping(night: Harness) -> None:
    night.minutes(1, value=11.0)  # 23:01: step 0 to Ana
    night.minutes(10, value=11.0)
    night.restart()  # the process dies and comes back at 23:11
    assert len(night.sent()) == 1  # nothing re-sent on start-up
    night.minutes(9, value=11.0)  # 23:20
    assert len(night.sent()) == 1
    night.minutes(1, value=11.0)  # 23:21: step 1 exactly when it was due
    assert [to for to, _ in night.sent()] == ["+50255550101", "+50255550199"]
    [alert] = night.engine.book.alerts(open_only=True)
    assert alert.level == 2
    actions = [e.action for e in night.registry.audit_entries(subject=alert.id)]
    assert actions == ["alert.open", "alert.escalate", "alert.escalate"]
    ok, bad, checked = night.registry.audit_verify()
    assert ok
    assert bad is None
    assert checked >= 3


def test_sms_from_an_unknown_number_does_not_acknowledge(night: Harness) -> None:
    night.minutes(1, value=11.0)
    [alert] = night.engine.book.alerts(open_only=True)
    reply = night.engine.handle_sms("+15550000000", f"OK {alert.ack_code}")
    assert reply.text == f"Codigo {alert.ack_code} no valido para este numero."
    assert night.engine.book.get(alert.id).state == FIRING
    # An unknown code gets the same answer: a guesser cannot tell live codes.
    assert night.engine.handle_sms("+50255550101", "OK 0000").text == (
        "Codigo 0000 no valido para este numero."
    )
    assert "responda OK y el codigo" in night.engine.handle_sms("+50255550101", "hola").text


def test_two_problems_in_one_store_are_one_sms(night: Harness) -> None:
    """Alerts due in the same evaluation round are bundled per store and recipient.
    (Ingest hands over a whole batch at once; there is no group-wait delay, which would
    cost the 100 ms decision-latency target.)"""
    night.clock.advance(60)
    night.reading("wic1", 3.0)
    night.reading("dc1", 3.0)
    night.clock.advance(60)
    ts = round(night.clock.time() * 1000)
    night.engine.observe(
        [
            Observation("reading", ts - 30_000 * k, sensor, sensor, "s042", asset, None,
                        Quantity.TEMPERATURE, value)
            for k in (1, 0)  # each jump confirmed by a second reading
            for sensor, asset, value in (("wic1", "s042-wic1", 11.0), ("dc1", "s042-dc1", 12.5))
        ]
    )  # fmt: skip
    night.engine.delivery.drain()
    sent = night.sent()
    assert len(sent) == 1
    assert sent[0][1].startswith("COLDCHAIN San Pedro: 2 alertas: ")
    alerts = night.engine.book.alerts(open_only=True)
    assert all(f"OK {a.ack_code}" in sent[0][1] for a in alerts)
    # Bundling happens before the notification log is written: each alert's log shows
    # the one SMS that carried both, and nothing else.
    [sms] = night.engine.book.notifications(status="sent")
    assert sorted(sms.alert_ids) == sorted(a.id for a in alerts)
    for alert in alerts:
        assert [n.id for n in night.engine.book.notifications(alert_id=alert.id)] == [sms.id]


class RejectingFirst:
    """Rejects messages to Ana (e.g. Twilio 21211), accepts everyone else."""

    name = "rejecting"

    def __init__(self) -> None:
        self.sent: list[Outbound] = []

    def send(self, message: Outbound) -> Delivery:
        if message.to == "+50255550101":
            raise NotifyRejected("invalid To number (21211)", 21211)
        self.sent.append(message)
        return Delivery(f"ok-{len(self.sent)}", "queued")


def test_rejected_delivery_falls_back_to_the_next_contact(tmp_path: Path) -> None:
    harness = Harness(tmp_path, datetime(2026, 11, 17, 23, 0, tzinfo=GT), RejectingFirst())
    try:
        harness.minutes(1, value=11.0)
        harness.engine.delivery.drain()
        assert [to for to, _ in harness.sent()] == ["+50255550102"]  # Beto, same role
        [alert] = harness.engine.book.alerts(open_only=True)
        notes = harness.engine.book.notifications(alert_id=alert.id)
        assert [(n.contact, n.status) for n in notes] == [("ana", "failed"), ("beto", "sent")]
        assert "21211" in (notes[0].error or "")
    finally:
        harness.engine.stop()


def test_silence_holds_notifications(night: Harness) -> None:
    now = night.clock.time()
    night.engine.book.add_silence(
        store="s042", asset="s042-wic1", sensor=None, starts=now, ends=now + 3600,
        reason="compressor service", by="tech", at=now,
    )  # fmt: skip
    night.minutes(30, value=11.0)
    assert night.sent() == []
    night.minutes(31, value=11.0)  # the window ended: the held alert pages now
    assert [to for to, _ in night.sent()] == ["+50255550101"]


def test_weighted_wait_shortens_at_night(tmp_path: Path) -> None:
    """The same 30 min wait lasts 15 min after midnight (closed overnight x2)."""
    harness = Harness(tmp_path, datetime(2026, 11, 18, 1, 0, tzinfo=GT))
    try:
        harness.minutes(1, value=11.0)
        harness.minutes(14, value=11.0)
        assert len(harness.sent()) == 1
        harness.minutes(1, value=11.0)
        assert len(harness.sent()) == 2
        steps = [e for e in harness.registry.audit_entries() if e.action == "alert.escalate"]
        assert steps[0].detail["weight"] == "x2 (closed overnight x2)"
        assert steps[0].detail["next_at"] == pytest.approx(
            (datetime(2026, 11, 18, 1, 1, tzinfo=GT) + timedelta(minutes=15)).timestamp()
        )
    finally:
        harness.engine.stop()


def test_a_registry_reload_keeps_the_learned_defrosts(night: Harness) -> None:
    """New contacts or sensors rebuild the rules; days of learning must not go with them."""
    learner = night.engine.rules.learned["s042-wic1"]
    for day in (1, 2):  # seen at 14:00 on two days
        learner.add(datetime(2026, 11, 15 + day, 14, 0, tzinfo=GT).timestamp(), 1800)
    assert len(learner.windows) == 1
    night.registry.upsert_contact(
        Contact(id="eva", name="Eva", phone="+50255550120", roles=["store_manager"]),
        at=night.clock.time(),
    )
    night.minutes(1)
    assert "eva" in {c.id for c in night.engine.contacts}  # reloaded
    assert night.engine.rules.learned["s042-wic1"] is learner


def test_learned_defrosts_survive_a_restart(tmp_path: Path) -> None:
    """Two days of a dairy case defrosting at 14:00 (no schedule declared) are learned,
    kept in the registry, and known to the engine that starts after a crash."""
    monday = datetime(2026, 11, 16, 0, 0, tzinfo=GT)
    harness = Harness(tmp_path, monday)
    try:
        for minute in range(2 * 1440):
            at = minute % 1440
            rise = 14 * 60 <= at < 14 * 60 + 30
            value = 5.5 if rise else 1.0 + 0.25 * (minute % 4)
            harness.clock.set(monday + timedelta(minutes=minute))
            harness.reading("dc1", value)
        learned = harness.engine.rules.learned["s042-dc1"].windows
        assert len(learned) == 1
        harness.restart()  # stopping saves nothing: what was learned is already stored
        assert harness.engine.rules.learned["s042-dc1"].windows == learned
    finally:
        harness.engine.stop()
