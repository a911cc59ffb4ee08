"""Twilio failing, end to end: the engine, its delivery thread and the real ``twilio`` client
against the fake Twilio server answering 500, 429 with Retry-After, or nothing in time.

The store and the contacts are tests/alerting/harness.py's: San Pedro at 23:00, Ana and
Beto are its store managers, NOC is on-call. The walk-in goes past its hard ceiling at
23:01, so Ana is paged at once. Simulated time stands still while delivery retries: its
backoff runs on the monotonic clock, shortened here to tenths of a second.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from alerting.book import Notification
from alerting.notifiers.twilio import TwilioNotifier
from tests.alerting.harness import GT, Harness
from tests.fakes.twilio_server import FakeTwilioServer, TwilioRequest

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "delivery-failures-token"  # a test credential
FROM = "+15005550006"
ANA, BETO, NOC = "+50255550101", "+50255550102", "+50255550199"
BACKOFF_S = (0.2, 0.4)
TIMEOUT_S = 0.3


@pytest.fixture
def server() -> Iterator[FakeTwilioServer]:
    with FakeTwilioServer(SID, TOKEN) as fake:
        yield fake


@pytest.fixture
def night(server: FakeTwilioServer, tmp_path: Path) -> Iterator[Harness]:
    notifier = TwilioNotifier(SID, TOKEN, FROM, base_url=server.url, timeout_s=TIMEOUT_S)
    harness = Harness(
        tmp_path, datetime(2026, 11, 17, 23, 0, tzinfo=GT), notifier, retry_delays_s=BACKOFF_S
    )
    yield harness
    harness.engine.stop()
    notifier.close()


def _to(server: FakeTwilioServer, number: str) -> list[TwilioRequest]:
    return [r for r in server.requests if r.to == number]


def _gaps(requests: list[TwilioRequest]) -> list[float]:
    times = [r.received_at.timestamp() for r in requests]
    return [b - a for a, b in itertools.pairwise(times)]


def _compressor_fails(night: Harness) -> tuple[str, list[Notification]]:
    night.minutes(1, value=11.0)  # 23:01, past the hard ceiling: critical, page Ana
    assert night.engine.delivery.drain(10)
    [alert] = night.engine.book.alerts(open_only=True)
    return alert.id, night.engine.book.notifications(alert_id=alert.id)


def _counted(night: Harness, result: str) -> float:
    return night.engine.stats.notifications.value("twilio", result)


def _audited(night: Harness, alert_id: str, action: str) -> list[dict[str, object]]:
    return [e.detail for e in night.registry.audit_entries(subject=alert_id) if e.action == action]


def test_5xx_is_retried_with_backoff_then_the_next_manager_is_paged(
    night: Harness, server: FakeTwilioServer
) -> None:
    server.fail_for(ANA, status=500, code=None)  # Twilio answers 500 to every try for Ana
    alert_id, notes = _compressor_fails(night)
    tries = _to(server, ANA)
    assert [r.response_status for r in tries] == [500, 500, 500]
    # Backed off between tries, longer each time.
    first, second = _gaps(tries)
    assert first >= BACKOFF_S[0]
    assert second >= BACKOFF_S[1]
    # Then the same text to Beto, the other store manager, and nobody waits 20 min for it.
    [to_beto] = server.messages
    assert (to_beto.to, to_beto.body) == (BETO, tries[0].body)
    assert [(n.contact, n.purpose, n.status, n.attempts) for n in notes] == [
        ("ana", "page", "failed", 3),
        ("beto", "fallback", "sent", 1),
    ]
    assert "gave up after 3 attempts" in (notes[0].error or "")
    assert "HTTP 500" in (notes[0].error or "")
    # Counted and audited on the alert, not only logged.
    assert (_counted(night, "retry"), _counted(night, "failed"), _counted(night, "sent")) == (
        2,
        1,
        1,
    )
    assert night.engine.stats.fallbacks.value("next_contact") == 1
    [failed] = _audited(night, alert_id, "notification.failed")
    assert (failed["contact"], failed["attempts"]) == ("ana", 3)
    assert "HTTP 500" in str(failed["error"])
    [fallback] = _audited(night, alert_id, "notification.fallback")
    assert (fallback["from"], fallback["to"]) == ("ana", "beto")
    assert night.registry.audit_verify()[0]


def test_429_waits_for_retry_after_then_sends(night: Harness, server: FakeTwilioServer) -> None:
    server.fail_next(1, status=429, code=20429, retry_after=1)
    _, notes = _compressor_fails(night)
    throttled, accepted = _to(server, ANA)
    assert (throttled.response_status, throttled.error_code) == (429, 20429)
    assert accepted.accepted
    [gap] = _gaps([throttled, accepted])
    assert gap >= 1.0  # Twilio's Retry-After, not the shorter backoff of 0.2 s
    assert [(n.contact, n.status, n.attempts) for n in notes] == [("ana", "sent", 2)]
    assert (_counted(night, "retry"), _counted(night, "sent"), _counted(night, "failed")) == (
        1,
        1,
        0,
    )
    assert night.engine.stats.fallbacks.value("next_contact") == 0


def test_an_unreasonable_retry_after_is_capped(night: Harness, server: FakeTwilioServer) -> None:
    night.engine.delivery.max_retry_after_s = 0.5
    server.fail_next(1, status=429, code=20429, retry_after=3600)
    _, notes = _compressor_fails(night)  # drains within 10 s: the hour was not waited out
    assert [(n.contact, n.status, n.attempts) for n in notes] == [("ana", "sent", 2)]
    [gap] = _gaps(_to(server, ANA))
    assert gap >= 0.5


def test_timeouts_are_retried_then_fall_back(night: Harness, server: FakeTwilioServer) -> None:
    server.delay_next(3, 2.0)  # Twilio hangs past the client's 0.3 s timeout three times
    alert_id, notes = _compressor_fails(night)
    assert [(n.contact, n.status, n.attempts) for n in notes] == [
        ("ana", "failed", 3),
        ("beto", "sent", 1),
    ]
    assert "no answer within 0.3 s; may have been sent" in (notes[0].error or "")
    assert [m.to for m in server.messages if m.to == BETO] == [BETO]
    assert _counted(night, "retry") == 2
    [failed] = _audited(night, alert_id, "notification.failed")
    assert "may have been sent" in str(failed["error"])


def test_nobody_else_in_the_role_escalates_at_once(
    night: Harness, server: FakeTwilioServer
) -> None:
    server.fail_for(ANA, status=503, code=None)
    server.fail_for(BETO, status=500, code=20500)
    alert_id, notes = _compressor_fails(night)
    # Both managers failed (three tries each). Simulated time stood still at 23:01 while
    # delivery tried: on-call is paged now, not when the step's 20 min wait ends at 23:21.
    assert [(n.contact, n.status) for n in notes] == [
        ("ana", "failed"),
        ("beto", "failed"),
        ("noc", "sent"),
    ]
    [to_noc] = server.messages
    assert to_noc.to == NOC
    assert "Sin respuesta (nivel 2)" in (to_noc.body or "")
    assert night.engine.stats.fallbacks.value("escalate_now") == 1
    [expedited] = _audited(night, alert_id, "alert.expedite")
    assert "delivery failed" in str(expedited["reason"])
    assert [d["contact"] for d in _audited(night, alert_id, "notification.failed")] == [
        "ana",
        "beto",
    ]
    assert not night.engine.book.notifications(status="pending")  # nothing left hanging
