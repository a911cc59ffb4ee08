"""Each notification stage on its own (one signature: dispatches and a context in,
dispatches out), and the pipeline's rule for which planned steps are written."""

from __future__ import annotations

import dataclasses
from typing import Any

from alerting.book import FIRING, RESOLVED, Alert
from alerting.escalation import Step
from alerting.pipeline import build_pipeline, run, steps_to_write
from alerting.stages import Dispatch, StageContext
from alerting.stages.dedup import dedup
from alerting.stages.group import group
from alerting.stages.inhibit import RECOVERY_HOLD_S, STALL_MAX_HOLD_S, inhibit
from alerting.stages.silence import silence

NOW = 1_800_000_000.0


def _alert(ident: str, kind: str = "temperature", store: str = "s1", **extra: Any) -> Alert:
    fields: dict[str, Any] = {
        "id": ident, "key": f"{kind}:{ident}", "kind": kind, "severity": "warning",
        "stage": "warning", "store": store, "asset": f"{store}-a{ident}", "sensor": ident,
        "device": ident, "state": FIRING, "ack_code": "1234", "opened_at": NOW - 60,
        "updated_at": NOW - 60, "since": NOW - 600, "acked_at": None, "acked_by": None,
        "ack_via": None, "ack_note": None, "resolved_at": None, "resolved_by": None,
        "resolve_note": None, "policy": [], "step": 0, "repeats": 0, "level": 0,
        "next_at": NOW, "value": 6.0, "limit_value": 5.0, "explanation": {},
    }  # fmt: skip
    fields.update(extra)
    return Alert(**fields)


def _to(alert: Alert, phone: str = "+1", contact: str | None = "ana") -> Dispatch:
    return Dispatch((alert,), alert.store, contact, phone, "sms", "es")


def _ctx(**fields: Any) -> StageContext:
    return StageContext(now=NOW, open_alerts=fields.pop("open_alerts", []),
                        silences=fields.pop("silences", []), **fields)  # fmt: skip


def _ids(dispatches: list[Dispatch]) -> list[list[str]]:
    return [[a.id for a in d.alerts] for d in dispatches]


def test_inhibit_holds_a_dark_store_but_not_its_outage() -> None:
    outage = _alert("o", "store_outage")
    other_store = _alert("x", store="s2")
    ctx = _ctx(open_alerts=[outage])
    kept = inhibit([_to(_alert("t")), _to(outage), _to(other_store)], ctx)
    assert _ids(kept) == [["o"], ["x"]]
    assert ctx.dropped["inhibited"] == 1


def test_inhibit_holds_a_store_pulling_down_after_its_power_came_back() -> None:
    for ago, held in ((RECOVERY_HOLD_S - 60, True), (RECOVERY_HOLD_S + 60, False)):
        ctx = _ctx(recovering={"s1": NOW - ago})
        assert (inhibit([_to(_alert("t"))], ctx) == []) is held


def test_inhibit_holds_a_temperature_alert_behind_its_open_door() -> None:
    door = _alert("d", "door_open", asset="s1-at")
    ctx = _ctx(open_alerts=[door])
    kept = inhibit([_to(_alert("t")), _to(_alert("u", asset="s1-other"))], ctx)
    assert _ids(kept) == [["u"]]


def test_inhibit_holds_silence_under_a_pipeline_stall_for_at_most_two_hours() -> None:
    silent = _alert("s", "sensor_silent")
    for age, held in ((STALL_MAX_HOLD_S - 60, True), (STALL_MAX_HOLD_S + 60, False)):
        stall = _alert("p", "pipeline_stalled", store="*", opened_at=NOW - age,
                       explanation={"stores": ["s1"]})  # fmt: skip
        kept = inhibit([_to(silent), _to(_alert("t"))], _ctx(open_alerts=[stall]))
        assert _ids(kept) == ([["t"]] if held else [["s"], ["t"]])


def test_silence_covers_by_store_asset_or_sensor() -> None:
    a, b = _alert("a"), _alert("b", store="s2")
    for scope, left in (
        ({"store": "s1"}, [["b"]]),
        ({"sensor": "b"}, [["a"]]),
        ({"asset": "s1-aa"}, [["b"]]),
        ({"store": "s9"}, [["a"], ["b"]]),
    ):
        ctx = _ctx(silences=[{"store": None, "asset": None, "sensor": None, **scope}])
        assert _ids(silence([_to(a), _to(b)], ctx)) == left, scope  # fmt: skip


def test_group_bundles_one_message_per_store_and_recipient() -> None:
    a, b, c = _alert("a"), _alert("b"), _alert("c", store="s2")
    nobody = Dispatch((_alert("n"),), "s1", None, "", "", "es")
    ctx = _ctx()
    kept = group([_to(a), _to(c), _to(b), _to(b, "+2", "beto"), nobody], ctx)
    assert _ids(kept) == [["a", "b"], ["c"], ["b"], ["n"]]
    assert ctx.dropped["bundled"] == 1


def test_dedup_sends_an_alert_once_to_a_phone_two_contacts_share() -> None:
    a, b = _alert("a"), _alert("b")
    ctx = _ctx()
    both = Dispatch((a, b), "s1", "ana", "+1", "sms", "es")
    shared_phone = _to(a, "+1", "ana-at-home")  # the same alert, the same phone: dropped
    by_voice = Dispatch((a,), "s1", "ana", "+1", "voice", "es")  # another channel: kept
    kept = dedup([both, shared_phone, by_voice], ctx)
    assert [(_ids([d])[0], d.channel) for d in kept] == [(["a", "b"], "sms"), (["a"], "voice")]
    assert ctx.dropped["duplicate"] == 1


def _step(alert: Alert, dispatches: tuple[Dispatch, ...]) -> Step:
    return Step(alert, 1, 0, NOW + 1800, "page", {"step": 0, "recipients": ["ana"]}, dispatches)


def test_a_held_step_is_not_written_and_keeps_its_place_but_a_park_is() -> None:
    outage = _alert("o", "store_outage")
    held, parked, free = _alert("h"), _alert("p"), _alert("f", store="s2")
    steps = [_step(held, (_to(held),)), _step(parked, ()), _step(free, (_to(free),)),
             _step(outage, (_to(outage),))]  # fmt: skip
    ctx = _ctx(open_alerts=[outage])
    kept = run(build_pipeline(), [d for s in steps for d in s.dispatches], ctx)
    assert [s.alert.id for s in steps_to_write(steps, kept)] == ["p", "f", "o"]
    assert sorted(_ids(kept)) == [["f"], ["o"]]


def test_a_resolved_alert_is_no_different_to_the_stages() -> None:
    """Stages filter on scope and other alerts only: staleness is the book's to judge
    (AlertBook.commit_round skips a step planned from an alert that moved on)."""
    done = dataclasses.replace(_alert("r"), state=RESOLVED)
    assert _ids(run(build_pipeline(), [_to(done)], _ctx())) == [["r"]]
