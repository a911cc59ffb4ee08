"""The audit log: readable at GET /audit, and tampering is detected."""

from __future__ import annotations

import argparse
import itertools
import json

import pytest

from api.cli import cmd_audit_verify
from tests.api.conftest import Api

pytestmark = pytest.mark.integration


def test_audit_pages_in_order(api: Api) -> None:
    api.minutes(1, wic1=11.0)
    api.client("manager").post(f"/api/v1/alerts/{api.open_alert('s042')}/ack", json={})
    oncall = api.client("oncall")
    first = oncall.get("/api/v1/audit", params={"limit": 3}).json()
    assert [e["id"] for e in first["items"]] == [1, 2, 3]
    assert first["next_after_id"] == 3
    everything = oncall.get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    assert everything[0]["action"] == "chain.import"
    assert everything[-1]["action"] == "alert.acknowledge"
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(everything))
    alert_only = oncall.get("/api/v1/audit", params={"subject": api.open_alert("s042")}).json()
    assert [e["action"] for e in alert_only["items"]] == [
        "alert.open",
        "alert.escalate",
        "alert.acknowledge",
    ]
    assert oncall.get("/api/v1/audit", params={"limit": 1001}).status_code == 422


def test_tampering_with_an_audit_row_is_detected(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    api.minutes(1, wic1=11.0)
    alert = api.open_alert("s042")
    api.client("oncall").post(f"/api/v1/alerts/{alert}/ack", json={"note": "voy"})
    args = argparse.Namespace()
    assert cmd_audit_verify(args, api.settings) == 0
    assert "intact" in capsys.readouterr().out
    [ack] = [e for e in api.registry.audit_entries(subject=alert) if e.action.endswith("ledge")]
    # Someone rewrites who acknowledged, straight in the database.
    forged = json.dumps({**ack.detail, "note": "fixed before the auditor came"})
    api.registry.db.run("UPDATE audit SET detail=? WHERE id=?", (forged, ack.id))
    intact, bad, checked = api.registry.audit_verify()
    assert (intact, bad) == (False, ack.id)
    assert checked == ack.id - 1
    assert cmd_audit_verify(args, api.settings) == 1
    out = capsys.readouterr().out
    assert "TAMPERED" in out
    assert f"first bad entry id {ack.id}" in out
    verdict = api.client("admin").get("/api/v1/audit/verify").json()
    assert verdict == {"intact": False, "first_bad_id": ack.id, "checked": ack.id - 1}
