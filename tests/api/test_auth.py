"""Who may do what: 401 for an unknown caller, 403 for a known one that may not."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from api.cli import cmd_keys_create
from core.chain import parse_chain
from core.errors import NotFound, RegistryError
from core.registry import Registry
from tests.api.conftest import CHAIN, Api

pytestmark = pytest.mark.integration


def test_missing_or_invalid_keys_are_401_with_a_bearer_challenge(api: Api) -> None:
    secret = api.keys["admin"]
    key_id = secret.split("_")[1]
    cases = {
        "missing": {},
        "other scheme": {"Authorization": f"Basic {secret}"},
        "malformed": {"Authorization": "Bearer not-a-key"},
        "unknown id": {"Authorization": f"Bearer cc_{'0' * 12}_{secret.split('_', 2)[2]}"},
        "wrong secret": {"Authorization": f"Bearer cc_{key_id}_{'A' * 43}"},
        "huge": {"Authorization": "Bearer " + "x" * 5000},
    }
    for case, headers in cases.items():
        response = api.anonymous.get("/api/v1/stores", headers=headers)
        assert response.status_code == 401, case
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), case
        assert response.json() == {"detail": "a valid API key is required"}, case
    assert (
        'error="invalid_token"'
        in api.anonymous.get("/api/v1/stores", headers=cases["wrong secret"]).headers[
            "WWW-Authenticate"
        ]
    )


def test_anonymous_requests_are_refused_before_the_body_is_parsed(api: Api) -> None:
    """Malformed JSON from nobody is a 401, not a 422 describing the route's schema."""
    response = api.anonymous.put(
        "/api/v1/stores/s099", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert api.anonymous.post("/api/v1/alerts/al-0000000000/ack", json={}).status_code == 401
    assert api.anonymous.get("/api/v1/no-such-route").status_code == 401


def test_a_revoked_key_stops_working_at_once(api: Api) -> None:
    assert api.client("oncall").get("/api/v1/stores").status_code == 200
    key_id = api.keys["oncall"].split("_")[1]
    api.registry.revoke_api_key(key_id, actor="test")
    assert api.client("oncall").get("/api/v1/stores").status_code == 401
    with pytest.raises(NotFound):
        api.registry.revoke_api_key(key_id)


def test_a_manager_of_store_a_cannot_see_or_ack_store_b(api: Api) -> None:
    api.minutes(1, wic1=11.0, z10_wic1=11.0)  # hard ceiling in both stores: two alerts
    mine, theirs = api.open_alert("s042"), api.open_alert("s043")
    manager = api.client("manager")  # scoped to s042
    forbidden = [
        manager.get("/api/v1/stores/s043"),
        manager.get("/api/v1/alerts", params={"store": "s043"}),
        manager.get(f"/api/v1/alerts/{theirs}"),
        manager.post(f"/api/v1/alerts/{theirs}/ack", json={"note": "not mine"}),
        manager.post(f"/api/v1/alerts/{theirs}/resolve", json={"note": "not mine"}),
        manager.get("/api/v1/readings/latest", params={"store": "s043"}),
        manager.get("/api/v1/readings", params={"sensor": "z10-wic1"}),
        manager.get("/api/v1/sensors/z10-wic1"),
        manager.get("/api/v1/assets", params={"store": "s043"}),
        manager.get("/api/v1/silences", params={"store": "s043"}),
        manager.post(
            "/api/v1/silences",
            json={"store": "s043", "ends": "2026-11-18T07:00:00Z", "reason": "x"},
        ),
        manager.get("/api/v1/contacts/zoe"),
    ]
    assert [r.status_code for r in forbidden] == [403] * len(forbidden)
    assert api.engine is not None
    assert api.engine.book.get(theirs).state == "firing"
    # Lists are filtered to the key's stores rather than refused.
    assert [a["id"] for a in manager.get("/api/v1/alerts").json()["items"]] == [mine]
    assert [s["id"] for s in manager.get("/api/v1/stores").json()] == ["s042"]
    assert {c["id"] for c in manager.get("/api/v1/contacts").json()} == {"ana"}
    assert {s["sensor"]["id"] for s in manager.get("/api/v1/sensors").json()} == {"wic1", "dc1"}
    # ... and its own store works.
    acked = manager.post(f"/api/v1/alerts/{mine}/ack", json={"note": "voy"})
    assert acked.status_code == 200
    assert acked.json()["acked_by"].startswith("ana-key [key ")


def test_roles_allow_exactly_their_jobs(api: Api) -> None:
    api.minutes(1, wic1=11.0)
    alert = api.open_alert("s042")
    store = {"id": "s099", "name": "Nueva", "country": "GT", "timezone": "America/Guatemala"}
    expectations = {
        # role: (registry write, ack, audit, discovered devices)
        "admin": (201, 200, 200, 200),
        "technician": (200, 403, 403, 200),
        "oncall": (403, 200, 200, 200),
        "manager": (403, 200, 403, 403),
    }
    for role, (write, ack, audit, discovered) in expectations.items():
        client = api.client(role)
        assert client.put("/api/v1/stores/s099", json=store).status_code == write, role
        assert client.post(f"/api/v1/alerts/{alert}/ack", json={}).status_code == ack, role
        assert client.get("/api/v1/audit").status_code == audit, role
        assert client.get("/api/v1/devices/discovered").status_code == discovered, role
    assert api.client("technician").get("/api/v1/audit/verify").status_code == 403
    assert api.client("admin").get("/api/v1/audit/verify").json()["intact"] is True


def test_keys_are_stored_hashed_and_their_creation_audited_without_the_secret(
    api: Api,
) -> None:
    tables = ("api_keys", "audit")
    dump = "\n".join(
        repr(tuple(r)) for t in tables for r in api.registry.query(f"SELECT * FROM {t}")
    )
    for key in api.keys.values():
        secret = key.split("_", 2)[2]
        assert secret not in dump
    created = [e for e in api.registry.audit_entries() if e.action == "api_key.create"]
    assert len(created) == len(api.keys)
    assert {e.detail["role"] for e in created} == {"admin", "technician", "oncall", "manager"}
    assert all(set(e.detail) == {"name", "role", "stores"} for e in created)


def test_key_creation_is_validated(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite3")
    registry.import_chain(parse_chain(CHAIN))
    try:
        with pytest.raises(RegistryError, match="unknown role"):
            registry.create_api_key("root")
        with pytest.raises(RegistryError, match="needs at least one store"):
            registry.create_api_key("manager")
        with pytest.raises(RegistryError, match="only manager keys"):
            registry.create_api_key("oncall", ["s042"])
        with pytest.raises(NotFound, match="unknown store"):
            registry.create_api_key("manager", ["nowhere"])
        key = registry.create_api_key("admin", name="ops")
        assert key.startswith("cc_")
        assert len(key) == 59
        found = registry.api_key(key)
        assert found is not None
        assert (found.role, found.name, found.stores) == ("admin", "ops", ())
        assert registry.api_key(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    finally:
        registry.close()


def test_keys_create_command_prints_a_working_key(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(role="manager", store=["s043"], name="zoe phone")
    assert cmd_keys_create(args, api.settings) == 0
    key = capsys.readouterr().out.strip()
    response = api.anonymous.get("/api/v1/stores", headers={"Authorization": f"Bearer {key}"})
    assert [s["id"] for s in response.json()] == ["s043"]
    bad = argparse.Namespace(role="manager", store=[], name="")
    assert cmd_keys_create(bad, api.settings) == 2
    assert "needs at least one store" in capsys.readouterr().err
