"""Probes, metrics, health summaries, dead letters, the schema and the server lifecycle."""

from __future__ import annotations

import socket

import httpx
import pytest

from alerting.notifiers.console import ConsoleNotifier
from api import ApiServer
from coldchain.compose import build_stack
from core.clock import ManualClock
from core.influx import InfluxV1
from core.settings import Settings
from ingest.stats import IngestStats
from tests.api.conftest import NIGHT, Api, api_settings

pytestmark = pytest.mark.integration


def test_probes_need_no_key(api: Api) -> None:
    assert api.anonymous.get("/healthz").json() == {"status": "ok"}
    ready = api.anonymous.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"registry": "ok", "influxdb": "ok"}}
    assert api.anonymous.get("/api/v1/healthz").status_code == 200  # alias
    assert api.anonymous.get("/api/v1/readyz").status_code == 200


def test_readyz_lists_what_is_down(
    influx_settings: Settings, influx: InfluxV1, clock: ManualClock
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings = api_settings(influx_settings)
    dead = InfluxV1(settings.model_copy(update={"influx_url": f"http://127.0.0.1:{dead_port}"}))
    harness = Api(settings, dead, clock, mqtt_ready=lambda: False, with_engine=False)
    try:
        response = harness.anonymous.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "ready": False,
            "checks": {"registry": "ok", "influxdb": "down", "mqtt": "down"},
        }
        # Readings need InfluxDB: a 503 that says so, not a 500.
        latest = harness.client("admin").get("/api/v1/readings/latest", params={"store": "s042"})
        assert latest.status_code == 503
        assert "InfluxDB is not available" in latest.json()["detail"]
    finally:
        harness.close()
        dead.close()


ACK_200 = 'coldchain_api_requests_total{method="POST",route="/api/v1/alerts/{alert_id}/ack",status="200"} 1.0'  # noqa: E501
STORE_403 = (
    'coldchain_api_requests_total{method="GET",route="/api/v1/stores/{store_id}",status="403"} 1.0'
)


def test_metrics_are_prometheus_text_with_api_alerting_and_ingest_counters(
    influx_settings: Settings, influx: InfluxV1, clock: ManualClock
) -> None:
    harness = Api(api_settings(influx_settings), influx, clock)
    IngestStats(harness.metrics).messages.inc("native", amount=3)
    try:
        harness.minutes(1, wic1=11.0)
        harness.client("oncall").post(f"/api/v1/alerts/{harness.open_alert('s042')}/ack", json={})
        harness.client("manager").get("/api/v1/stores/s043")
        harness.anonymous.get("/api/v1/stores")
        response = harness.anonymous.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = response.text
        for line in (
            ACK_200,
            STORE_403,
            'coldchain_api_requests_total{method="GET",route="gate",status="401"} 1.0',
            'coldchain_api_auth_failures_total{reason="missing"} 1.0',
            'coldchain_alert_acks_total{via="api"} 1.0',
            'coldchain_alerts_opened_total{kind="temperature"} 1.0',
            'coldchain_ingest_messages_total{family="native"} 3.0',
        ):
            assert line in text.splitlines(), line
        assert "# TYPE coldchain_api_request_duration_seconds histogram" in text
        # Arbitrary methods do not become new series.
        harness.anonymous.request("BREW", "/healthz")
        assert 'method="BREW"' not in harness.anonymous.get("/metrics").text
    finally:
        harness.close()


def test_health_summaries_and_dead_letters(api: Api) -> None:
    bad_ids = [(2.0 + i, "bad_device_id", None, "coldchain/v1/bad id!/telemetry", "{}", "")
               for i in range(3)]  # fmt: skip
    api.registry.add_dead_letters(
        [(1.0, "bad_json", "native", "coldchain/v1/x/telemetry", "{", "Expecting value"), *bad_ids]
    )
    tech = api.client("technician")
    page = tech.get("/api/v1/deadletters", params={"limit": 2}).json()
    assert [d["reason"] for d in page["items"]] == ["bad_device_id", "bad_device_id"]
    rest = tech.get("/api/v1/deadletters", params={"before_id": page["next_before_id"]}).json()
    assert [d["reason"] for d in rest["items"]] == ["bad_device_id", "bad_json"]
    assert rest["next_before_id"] is None
    only = tech.get("/api/v1/deadletters", params={"reason": "bad_json"}).json()["items"]
    assert only[0]["payload"] == "{"
    assert api.client("manager").get("/api/v1/deadletters").status_code == 403
    ingest = tech.get("/api/v1/health/ingest").json()
    assert ingest["stored_dead_letters"] == {"bad_json": 1, "bad_device_id": 3}
    assert ingest["running_here"] is False
    api.minutes(1, wic1=11.0)
    alerting = tech.get("/api/v1/health/alerting").json()
    assert alerting["open_alerts"] == {"firing": 1}
    assert alerting["open_by_severity"] == {"critical": 1}
    assert alerting["engine_here"] is True


def test_a_bug_is_a_logged_500_and_the_connection_survives(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.deps.registry, "stores", broken)
    admin = api.client("admin")
    response = admin.get("/api/v1/stores")
    assert (response.status_code, response.json()) == (500, {"detail": "internal error (logged)"})
    assert admin.get("/api/v1/assets").status_code == 200  # same keep-alive connection
    assert any("GET /api/v1/stores failed" in r.getMessage() for r in caplog.records)


def test_openapi_and_docs(api: Api) -> None:
    schema = api.anonymous.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    paths = schema["paths"]
    for path in (
        "/api/v1/stores", "/api/v1/assets/{asset_id}", "/api/v1/sensors/register",
        "/api/v1/devices/discovered", "/api/v1/contacts", "/api/v1/escalation-policies",
        "/api/v1/alerts/{alert_id}/ack", "/api/v1/alerts/{alert_id}/resolve",
        "/api/v1/silences", "/api/v1/readings/latest", "/api/v1/readings", "/api/v1/audit",
        "/api/v1/webhooks/twilio/sms", "/api/v1/webhooks/twilio/status", "/healthz",
        "/readyz", "/metrics", "/api/v1/reports/haccp",
    ):  # fmt: skip
        assert path in paths, path
    assert "swagger" in api.anonymous.get("/docs").text.lower()


def test_the_server_stops_cleanly_and_refuses_a_taken_port(api: Api) -> None:
    taken = ApiServer(api.deps, "127.0.0.1", api.server.port)
    with pytest.raises(OSError):
        taken.start()
    second = ApiServer(api.deps, "127.0.0.1", 0)
    second.start()
    assert httpx.get(f"{second.url}/healthz").status_code == 200
    second.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{second.url}/healthz")


def test_coldchain_run_wires_the_api_into_its_stack(influx_settings: Settings) -> None:
    """``coldchain.compose.build_stack`` finds :class:`ApiServer` and serves on api_bind."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = influx_settings.model_copy(update={"api_bind": f"127.0.0.1:{port}"})
    stack = build_stack(settings, ManualClock(NIGHT), notifier=ConsoleNotifier(lambda _: None))
    assert isinstance(stack.api, ApiServer)
    stack.api.start()  # alone: the broker is not needed to serve
    try:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"registry": "ok", "influxdb": "ok", "mqtt": "down"}
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "coldchain_ingest_messages_total" in metrics  # the stack's shared registry
    finally:
        stack.api.stop()
        stack.engine.registry.close()
        stack.influx.close()
        stack.registry.close()
