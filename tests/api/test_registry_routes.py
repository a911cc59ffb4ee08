"""The registry through the API: create, replace, refuse unsafe deletes, audit every change."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.integration

STORE = {"id": "s099", "name": "Nueva Tienda", "country": "MX", "timezone": "America/Mexico_City",
         "language": "es", "hours": {"mon-sun": "08:00-22:00"}}  # fmt: skip
ASSET = {"id": "s099-dc1", "store": "s099", "type": "dairy_case", "name": "Lácteos ❄ 1"}
SENSOR = {"id": "tasmota-s099:DS18B20-1", "asset": "s099-dc1", "family": "tasmota",
          "offset": -0.2, "interval": 300}  # fmt: skip


def test_a_technician_builds_a_store_and_every_change_is_audited(api: Api) -> None:
    tech = api.client("technician")
    assert tech.put("/api/v1/stores/s099", json=STORE).status_code == 201
    assert tech.put("/api/v1/stores/s099", json={**STORE, "name": "Renamed"}).status_code == 200
    assert tech.put("/api/v1/assets/s099-dc1", json=ASSET).status_code == 201
    created = tech.put(f"/api/v1/sensors/{SENSOR['id']}", json=SENSOR)
    assert created.status_code == 201
    sensor = created.json()
    assert (sensor["store"], sensor["asset_type"], sensor["retired_at"]) == (
        "s099",
        "dairy_case",
        None,
    )
    # Mexico's NOM-251 cold-holding limit is 7 °C for dairy: the effective limits say so.
    assert sensor["limits"]["warn_above"] == 7.0
    assert tech.get("/api/v1/assets/s099-dc1").json()["sensors"] == [SENSOR["id"]]
    assert tech.get("/api/v1/stores/s099").json()["name"] == "Renamed"
    assert api.client("manager").get("/api/v1/stores/s099").status_code == 403
    entries = api.client("admin").get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    mine = [(e["action"], e["subject"]) for e in entries if e["actor"].startswith("tech [key ")]
    assert mine == [
        ("store.create", "s099"),
        ("store.update", "s099"),
        ("asset.create", "s099-dc1"),
        ("sensor.create", SENSOR["id"]),
    ]


def test_unsafe_deletes_are_refused_with_409(api: Api) -> None:
    admin = api.client("admin")
    refused = admin.delete("/api/v1/stores/s042")
    assert refused.status_code == 409
    assert "asset" in refused.json()["detail"]
    assert admin.delete("/api/v1/assets/s042-wic1").status_code == 409
    assert admin.delete("/api/v1/escalation-policies/nope").status_code == 404
    admin.put("/api/v1/stores/s099", json={**STORE, "policy": "default"})
    assert admin.delete("/api/v1/escalation-policies/default").status_code == 409
    assert admin.delete("/api/v1/stores/s099").status_code == 204
    assert admin.get("/api/v1/stores/s099").status_code == 404
    assert admin.delete("/api/v1/escalation-policies/default").status_code == 204
    assert admin.delete("/api/v1/contacts/zoe").status_code == 204
    assert admin.get("/api/v1/contacts/zoe").status_code == 404


def test_moving_and_retiring_a_sensor(api: Api) -> None:
    tech = api.client("technician")
    moved = tech.put("/api/v1/sensors/dc1", json={"id": "dc1", "asset": "s042-wic1"})
    assert moved.status_code == 200
    assert moved.json()["asset_type"] == "walkin_cooler"
    [entry] = api.registry.audit_entries(subject="dc1")[-1:]
    assert (entry.action, entry.detail["from_asset"]) == ("sensor.move", "s042-dc1")
    retired = tech.post("/api/v1/sensors/dc1/retire")
    assert retired.status_code == 200
    assert retired.json()["retired_at"] is not None
    assert tech.post("/api/v1/sensors/dc1/retire").status_code == 409
    assert tech.post("/api/v1/sensors/nope/retire").status_code == 404
    active = {s["sensor"]["id"] for s in tech.get("/api/v1/sensors").json()}
    assert "dc1" not in active
    every = tech.get("/api/v1/sensors", params={"include_retired": True}).json()
    assert "dc1" in {s["sensor"]["id"] for s in every}
    assert tech.get("/api/v1/sensors/dc1").json()["retired_at"] is not None
    # Re-registering reinstates it.
    back = tech.put("/api/v1/sensors/dc1", json={"id": "dc1", "asset": "s042-dc1"})
    assert back.json()["retired_at"] is None


def test_bodies_are_validated_with_clear_messages(api: Api) -> None:
    tech = api.client("technician")
    cases = [
        ("/api/v1/stores/s099", {**STORE, "id": "s098"}, "body.id"),
        ("/api/v1/stores/s099", {**STORE, "timezone": "Mars/Olympus"}, "unknown timezone"),
        ("/api/v1/stores/s099", {**STORE, "hours": {"sun": "22:00-06:00"}}, "end 06:00"),
        ("/api/v1/stores/s099", {**STORE, "colour": "blue"}, "body.colour"),
        ("/api/v1/assets/s099-dc1", ASSET, "body.store"),  # the store does not exist yet
        ("/api/v1/assets/s042-x", {**ASSET, "id": "s042-x", "store": "s042", "type": "fridge"},
         "body.type"),
        ("/api/v1/sensors/x", {"id": "x", "asset": "nope"}, "unknown asset"),
        ("/api/v1/sensors/x", {"id": "x", "asset": "s042-dc1", "offset": 99}, "body.offset"),
        ("/api/v1/contacts/c1", {"id": "c1", "name": "C", "phone": "555", "roles": ["x"]},
         "body.phone"),
        ("/api/v1/escalation-policies/p1", {"id": "p1", "steps": []}, "body.steps"),
    ]  # fmt: skip
    for path, body, expected in cases:
        writer = api.client("admin") if "escalation-policies" in path else tech
        response = writer.put(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert expected in response.json()["message"], (expected, response.json())


def test_hostile_input_never_causes_a_server_error(api: Api) -> None:
    admin = api.client("admin")
    hostile_ids = [
        "s042'; DROP TABLE stores;--",
        'wic1" OR 1=1',
        "wic1' OR sensor =~ /.*/",
        "x" * 5000,
        "tienda-ñandú-❄",
        "..",
        "%00",
        "\u202e",
    ]
    for ident in hostile_ids:
        for response in (
            admin.get(f"/api/v1/stores/{ident}"),
            admin.get(f"/api/v1/sensors/{ident}"),
            admin.get("/api/v1/readings", params={"sensor": ident}),
            admin.get("/api/v1/readings/latest", params={"store": ident}),
            admin.get("/api/v1/alerts", params={"store": ident, "kind": ident}),
            admin.get("/api/v1/audit", params={"subject": ident[:200]}),
            admin.post("/api/v1/sensors/register", json={"sensor": ident, "asset": ident}),
        ):
            assert response.status_code < 500, (ident, response.request.url, response.text)
    assert [s["id"] for s in admin.get("/api/v1/stores").json()] == ["s042", "s043"]
    huge = admin.put("/api/v1/stores/s099", json={**STORE, "name": "n" * 400_000})
    assert huge.status_code == 413
    long_name = admin.put("/api/v1/stores/s099", json={**STORE, "name": "n" * 500})
    assert long_name.status_code == 422
    unicode = admin.put("/api/v1/stores/s099", json={**STORE, "name": "Café ❄ \u0000 ñ"})
    assert unicode.status_code == 201
    assert admin.get("/api/v1/stores/s099").json()["name"] == "Café ❄ \u0000 ñ"
    # Numbers JSON cannot carry back would poison the row for every later read.
    for raw in (
        b'{"id": "x1", "asset": "s042-dc1", "interval": 1e400}',
        b'{"id": "x1", "asset": "s042-dc1", "offset": NaN}',
        b'{"id": "x1", "asset": "s042-dc1", "interval": "' + b"9" * 400 + b's"}',
    ):
        refused = admin.put(
            "/api/v1/sensors/x1", content=raw, headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 422, refused.text
    assert admin.get("/api/v1/sensors/x1").status_code == 404
    assert admin.get("/api/v1/sensors").status_code == 200
    not_json = admin.put(
        "/api/v1/stores/s099", content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    assert 400 <= not_json.status_code < 500


def test_sensors_due_for_calibration_soonest_first_within_store_scope(api: Api) -> None:
    """It is 23:00 on 17 November in Guatemala (05:00 UTC on the 18th)."""
    tech = api.client("technician")
    for sensor, asset, due in (("wic1", "s042-wic1", "2026-11-16"),
                               ("dc1", "s042-dc1", "2026-12-10"),
                               ("z10-wic1", "s043-wic1", "2026-11-20"),
                               ("spare", "s042-dc1", "2027-06-01")):  # fmt: skip
        body = {"id": sensor, "asset": asset, "interval": 60, "calibration_due": due}
        assert tech.put(f"/api/v1/sensors/{sensor}", json=body).status_code in (200, 201)
    listed = tech.get("/api/v1/sensors/calibration-due").json()
    assert [(c["sensor"], c["days_left"], c["overdue"]) for c in listed] == [
        ("wic1", -1, True),
        ("z10-wic1", 3, False),
        ("dc1", 23, False),
    ]
    mine = api.client("manager").get("/api/v1/sensors/calibration-due").json()
    assert [c["sensor"] for c in mine] == ["wic1", "dc1"]  # her store only
    week = tech.get("/api/v1/sensors/calibration-due", params={"days": 7}).json()
    assert [c["sensor"] for c in week] == ["wic1", "z10-wic1"]
    assert (
        api.client("manager")
        .get("/api/v1/sensors/calibration-due", params={"store": "s043"})
        .status_code
        == 403
    )
    assert tech.get("/api/v1/sensors/calibration-due", params={"days": -1}).status_code == 422
