"""Active/standby alerting (alerting/lease.py) on both registry backends: one holder, a
takeover after expiry with the next epoch, fenced writes, no message from an ex-holder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from alerting.book import AlertBook
from alerting.conditions import TEMPERATURE, Condition
from alerting.lease import LEASE_TTL_S, Lease, LeaseLost
from core.chain import parse_chain
from core.clock import ManualClock
from core.registry import Registry
from core.types import Quantity
from ingest.pipeline import Observation
from tests.alerting.harness import CHAIN, GT, Instance, Monotonic

START = datetime(2026, 11, 17, 23, 0, tzinfo=GT)


def test_one_holder_a_takeover_after_expiry_and_a_fenced_ex_holder(any_registry: str) -> None:
    clock = ManualClock(START)
    a_mono, b_mono = Monotonic(), Monotonic()
    a = Lease(Registry(any_registry), "a", clock, monotonic=a_mono)
    b = Lease(Registry(any_registry), "b", clock, monotonic=b_mono)
    assert a.try_acquire()
    assert a.epoch == 1
    assert not b.try_acquire()
    clock.advance(LEASE_TTL_S - 1)
    assert a.try_acquire()  # renewed
    clock.advance(LEASE_TTL_S - 1)
    assert not b.try_acquire()  # renewed 9 s ago: still a's
    # a hangs (SIGSTOP): no renewal for longer than the TTL.
    clock.advance(LEASE_TTL_S + 1)
    a_mono.now += LEASE_TTL_S + 1
    assert b.try_acquire()
    assert b.epoch == 2
    assert not a.valid()  # a knows from its own clock, before touching the database
    with pytest.raises(LeaseLost), a.registry.transaction() as tx:
        a.fence(tx)
    assert not a.try_acquire()  # and the database agrees
    with b.registry.transaction() as tx:
        b.fence(tx)  # b may write
    b.release()
    assert a.try_acquire()  # a clean handover is immediate
    assert a.epoch == 3


def test_a_restarted_instance_resumes_its_own_lease_at_once(any_registry: str) -> None:
    clock = ManualClock(START)
    first = Lease(Registry(any_registry), "alerting-1", clock)
    assert first.try_acquire()
    again = Lease(Registry(any_registry), "alerting-1", clock)  # the same name, restarted
    assert again.try_acquire()
    assert again.epoch == 2
    with pytest.raises(LeaseLost), first.registry.transaction() as tx:
        first.fence(tx)  # whatever was left of the old run is fenced out


@pytest.fixture
def pair(any_registry: str) -> Iterator[tuple[ManualClock, Instance, Instance]]:
    Registry(any_registry).import_chain(parse_chain(CHAIN))
    clock = ManualClock(START)
    one, two = Instance(any_registry, "one", clock), Instance(any_registry, "two", clock)
    one.engine.start()
    two.engine.start()
    yield clock, one, two
    for instance in (one, two):
        instance.engine.stop()


def _minute(clock: ManualClock, instances: list[Instance], value: float) -> None:
    clock.advance(60)
    ts = round(clock.time() * 1000)
    for instance in instances:
        instance.mono.now += 1  # a tick a second in real time: the lease stays fresh
        instance.engine.observe([
            Observation("reading", ts, s, s, "s042", a, None, Quantity.TEMPERATURE, v)
            for s, a, v in (("wic1", "s042-wic1", value), ("dc1", "s042-dc1", 3.0))
        ])  # fmt: skip
        instance.engine.tick()
        instance.engine.delivery.drain()


def test_the_standby_takes_over_mid_escalation_without_repeating_or_skipping(
    pair: tuple[ManualClock, Instance, Instance],
) -> None:
    clock, one, two = pair
    assert one.engine.leading
    assert not two.engine.leading
    _minute(clock, [one, two], 11.0)  # a hard ceiling: one pages Ana
    assert (one.sent(), two.sent()) == (["+50255550101"], [])
    for _ in range(5):
        _minute(clock, [one, two], 11.0)
    # one hangs (SIGSTOP) mid-escalation: only two keeps ticking.
    for _ in range(25):
        _minute(clock, [two], 11.0)
    assert two.engine.leading
    # On-call was due 20 min after Ana (x1.5 at night): paged once, by two, on time.
    assert two.sent() == ["+50255550199"]
    # one wakes up: it may not write nor send any more.
    one.mono.now += 25 * 60
    _minute(clock, [one, two], 11.0)
    assert not one.engine.leading
    assert one.sent() == ["+50255550101"]
    book = AlertBook(two.engine.registry)
    [alert] = book.alerts(open_only=True)
    steps = [e.action for e in two.engine.registry.audit_entries(subject=alert.id)]
    assert steps == ["alert.open", "alert.escalate", "alert.escalate"]


def test_a_fenced_write_is_refused_in_the_same_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sqlite3")
    Registry(path).import_chain(parse_chain(CHAIN))
    clock = ManualClock(START)
    old = Lease(Registry(path), "old", clock)
    assert old.try_acquire()
    book = AlertBook(Registry(path))
    book.fence = old.fence
    clock.advance(LEASE_TTL_S + 1)
    assert Lease(Registry(path), "new", clock).try_acquire()
    condition = Condition(f"{TEMPERATURE}:s042-wic1", TEMPERATURE, "critical", "critical",
                          "s042", "s042-wic1", "wic1", "wic1", 0, 11.0, 10.0, {})  # fmt: skip
    with pytest.raises(LeaseLost):
        book.open(condition, clock.time(), [])
    assert book.alerts() == []  # nothing was written
