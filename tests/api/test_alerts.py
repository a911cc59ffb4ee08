"""Alerts through the API as timelines: an ack stops escalation exactly like an SMS reply."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from alerting.conditions import CHAIN_STORE, PIPELINE_STALLED, Condition
from alerting.escalation import PIPELINE_POLICY
from core.clock import ManualClock
from core.influx import InfluxV1
from core.settings import Settings
from tests.api.conftest import NIGHT, Api, api_settings

pytestmark = pytest.mark.integration


def test_an_ack_by_api_stops_a_running_escalation(api: Api) -> None:
    # 23:01 in San Pedro (closed): both walk-ins pass their hard ceiling.
    api.minutes(1, wic1=11.0, z10_wic1=11.0)
    assert sorted(to for to, _ in api.sent()) == ["+50255550101", "+50255550301"]
    acked = api.open_alert("s042")
    response = api.client("oncall").post(f"/api/v1/alerts/{acked}/ack", json={"note": "voy"})
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["ack_via"], body["ack_note"]) == ("acknowledged", "api", "voy")
    assert body["acked_by"].startswith("noc-desk [key ")
    assert body["next_at"] is not None  # re-escalates after the ack timeout, not before
    # An hour of the same excursion: the unacknowledged store escalates to on-call at
    # 23:31 and again at 00:01; the acknowledged one sends nothing more.
    api.minutes(60, wic1=11.0, z10_wic1=11.0)
    later = api.sent()[2:]
    assert [to for to, _ in later] == ["+50255550199", "+50255550199"]
    assert all(body.startswith("COLDCHAIN Zona 10") for _, body in later)
    detail = api.client("oncall").get(f"/api/v1/alerts/{acked}").json()
    assert [n["contact"] for n in detail["notifications"]] == ["ana"]
    actions = [(e["action"], e["actor"]) for e in detail["audit"]]
    assert actions[:2] == [("alert.open", "coldchain"), ("alert.escalate", "coldchain")]
    assert actions[2][0] == "alert.acknowledge"
    assert actions[2][1].startswith("noc-desk [key ")
    # Acknowledging again changes nothing.
    again = api.client("oncall").post(f"/api/v1/alerts/{acked}/ack", json={"note": "x"})
    assert again.json()["ack_note"] == "voy"


def test_alert_detail_explains_itself(api: Api) -> None:
    api.minutes(1, wic1=11.0)
    alert = api.open_alert("s042")
    detail = api.client("manager").get(f"/api/v1/alerts/{alert}").json()
    assert (detail["kind"], detail["severity"], detail["store"]) == (
        "temperature",
        "critical",
        "s042",
    )
    assert detail["explanation"]
    assert [s["notify"] for s in detail["policy"]] == [["store_manager"], ["oncall"], ["oncall"]]
    assert detail["weight_at_open"].startswith("x1.5 (closed")
    assert detail["notifications"][0]["body"].endswith(f"Responda OK {detail['ack_code']}")
    assert api.client("manager").get("/api/v1/alerts/al-0000000000").status_code == 404
    assert api.client("manager").get("/api/v1/alerts/not-an-id").status_code == 422


def test_resolve_needs_a_note_notifies_whoever_was_paged_and_is_final(api: Api) -> None:
    api.minutes(1, wic1=11.0)
    alert = api.open_alert("s042")
    manager = api.client("manager")
    for note in ("", "   "):
        refused = manager.post(f"/api/v1/alerts/{alert}/resolve", json={"note": note})
        assert refused.status_code == 422
        assert "note" in refused.json()["message"]
    assert manager.post(f"/api/v1/alerts/{alert}/resolve", json={}).status_code == 422
    done = manager.post(
        f"/api/v1/alerts/{alert}/resolve", json={"note": "puerta cerrada, producto movido"}
    )
    assert done.status_code == 200
    assert (done.json()["state"], done.json()["resolve_note"]) == (
        "resolved",
        "puerta cerrada, producto movido",
    )
    assert api.engine is not None
    api.engine.delivery.drain()
    assert [to for to, _ in api.sent()] == ["+50255550101", "+50255550101"]
    assert "RESUELTO" in api.sent()[1][1]
    assert manager.post(f"/api/v1/alerts/{alert}/resolve", json={"note": "x"}).status_code == 409
    assert manager.post(f"/api/v1/alerts/{alert}/ack", json={}).status_code == 409


def test_listing_filters_and_pages(api: Api) -> None:
    api.minutes(1, wic1=11.0)  # a first reading: nothing to doubt it against
    # A jump from 3 to 11 °C waits for a second reading to confirm it. (This passed with
    # one minute only while key creation rebuilt the rules and wiped that history.)
    api.minutes(2, z10_wic1=11.0)
    oncall = api.client("oncall")
    first = oncall.get("/api/v1/alerts", params={"limit": 1}).json()
    assert len(first["items"]) == 1
    assert first["next_offset"] == 1
    second = oncall.get("/api/v1/alerts", params={"limit": 1, "offset": 1}).json()
    assert second["next_offset"] is None
    assert {first["items"][0]["store"], second["items"][0]["store"]} == {"s042", "s043"}
    only = oncall.get("/api/v1/alerts", params={"store": "s043", "severity": "critical"}).json()
    assert [a["store"] for a in only["items"]] == ["s043"]
    assert oncall.get("/api/v1/alerts", params={"state": "resolved"}).json()["items"] == []
    for bad in ({"limit": 501}, {"limit": 0}, {"state": "open"}, {"kind": "DROP TABLE"}):
        assert oncall.get("/api/v1/alerts", params=bad).status_code == 422, bad


def test_a_chain_wide_alert_is_for_oncall_not_for_store_managers(api: Api) -> None:
    """A pipeline stall lives on the reserved store "*": managers' keys, scoped to their
    stores, neither list nor open it; on-call and admin do."""
    assert api.engine is not None
    stall = api.engine.book.open(
        Condition(f"{PIPELINE_STALLED}:{CHAIN_STORE}", PIPELINE_STALLED, "critical",
                  "critical", CHAIN_STORE, None, None, None,
                  round(api.clock.time() * 1000), 2.0, 2.0,
                  {"cause": "silence", "stores": ["s042", "s043"], "stalled": 2}),
        api.clock.time(),
        PIPELINE_POLICY,
    )  # fmt: skip
    for role in ("oncall", "admin"):
        listed = api.client(role).get("/api/v1/alerts").json()["items"]
        assert [(a["id"], a["store"]) for a in listed] == [(stall.id, "*")]
        detail = api.client(role).get(f"/api/v1/alerts/{stall.id}").json()
        assert detail["weight_now"] == "x1 (chain-wide alert: no store calendar)"
        assert [s["notify"] for s in detail["policy"]] == [["oncall"], ["oncall"]]
    manager = api.client("manager")
    assert manager.get("/api/v1/alerts").json()["items"] == []
    assert manager.get("/api/v1/alerts", params={"kind": PIPELINE_STALLED}).json()["items"] == []
    assert manager.get(f"/api/v1/alerts/{stall.id}").status_code == 403
    assert manager.post(f"/api/v1/alerts/{stall.id}/ack", json={"note": "x"}).status_code == 403


def test_a_maintenance_window_holds_pages(api: Api) -> None:
    technician = api.client("technician")
    ends = (NIGHT + timedelta(hours=1)).isoformat()
    created = technician.post(
        "/api/v1/silences", json={"asset": "s042-wic1", "ends": ends, "reason": "compresor"}
    )
    assert created.status_code == 201
    window = created.json()
    assert (window["store"], window["asset"], window["active"]) == ("s042", "s042-wic1", True)
    assert window["created_by"].startswith("tech [key ")
    listed = api.client("manager").get("/api/v1/silences").json()
    assert [w["id"] for w in listed] == [window["id"]]
    api.minutes(30, wic1=11.0)
    assert api.sent() == []  # held while the compressor is serviced
    api.minutes(31, wic1=11.0)
    assert [to for to, _ in api.sent()] == ["+50255550101"]  # the window ended
    assert api.client("manager").get("/api/v1/silences").json() == []
    assert len(api.client("manager").get("/api/v1/silences", params={"active": False}).json()) == 1


def test_maintenance_windows_are_validated(api: Api) -> None:
    technician = api.client("technician")
    soon = (NIGHT + timedelta(hours=1)).isoformat()
    cases = {
        "no scope": {"ends": soon, "reason": "x"},
        "unknown asset": {"asset": "nope", "ends": soon, "reason": "x"},
        "asset of another store": {"store": "s043", "asset": "s042-wic1", "ends": soon,
                                   "reason": "x"},
        "past": {"store": "s042", "ends": (NIGHT - timedelta(hours=1)).isoformat(),
                 "reason": "x"},
        "ends before starts": {"store": "s042", "starts": soon,
                               "ends": (NIGHT + timedelta(minutes=5)).isoformat(), "reason": "x"},
        "too long": {"store": "s042", "ends": (NIGHT + timedelta(days=15)).isoformat(),
                     "reason": "x"},
        "naive time": {"store": "s042", "ends": "2026-11-18T07:00:00", "reason": "x"},
        "no reason": {"store": "s042", "ends": soon, "reason": " "},
        "unknown field": {"store": "s042", "ends": soon, "reason": "x", "everything": True},
    }  # fmt: skip
    for case, body in cases.items():
        response = technician.post("/api/v1/silences", json=body)
        assert response.status_code == 422, (case, response.text)
        assert response.json()["message"], case


def test_without_an_engine_acks_go_to_the_alert_book(
    influx_settings: Settings, influx: InfluxV1
) -> None:
    """``coldchain api`` beside a separate alerting process: same effect, via the database."""
    clock = ManualClock(NIGHT)
    alerting = Api(api_settings(influx_settings), influx, clock)
    try:
        alerting.minutes(1, wic1=11.0)
        alert = alerting.open_alert("s042")
    finally:
        alerting.close()
    standalone = Api(api_settings(influx_settings), influx, clock, with_engine=False)
    try:
        standalone_key = standalone.client("oncall")
        acked = standalone_key.post(f"/api/v1/alerts/{alert}/ack", json={"note": "ok"})
        assert acked.status_code == 200
        assert acked.json()["state"] == "acknowledged"
        rearm = datetime.fromisoformat(acked.json()["next_at"]).timestamp()
        assert rearm == pytest.approx(clock.time() + standalone.settings.ack_timeout)
        health = standalone_key.get("/api/v1/health/alerting").json()
        assert health["engine_here"] is False
        assert health["open_alerts"] == {"acknowledged": 1}
    finally:
        standalone.close()
