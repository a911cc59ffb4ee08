"""No secret in any response or log line: API keys (and their hashes), the Twilio auth token,
the InfluxDB password, across successes, refusals, validation errors and outages."""

from __future__ import annotations

import hashlib
import logging
import socket

import httpx
import pytest
from pydantic import SecretStr

from core.clock import ManualClock
from core.influx import InfluxV1
from core.settings import Settings
from tests.api.conftest import INFLUX_PASSWORD, TWILIO_TOKEN, Api, api_settings

pytestmark = pytest.mark.integration


def _exercise(api: Api) -> list[httpx.Response]:
    admin = api.client("admin")
    key_id, secret = api.keys["admin"].split("_", 2)[1:]
    near_misses = [
        f"cc_{key_id}_{secret[:-1]}x",  # one character off
        f"cc_{key_id}_{secret}extra",
        api.keys["admin"].upper(),
        f"cc_{key_id}",
    ]
    responses = [
        api.anonymous.get("/api/v1/stores", headers={"Authorization": f"Bearer {bad}"})
        for bad in near_misses
    ]
    for path in (
        "/api/v1/stores", "/api/v1/assets", "/api/v1/sensors", "/api/v1/contacts",
        "/api/v1/escalation-policies", "/api/v1/devices/discovered", "/api/v1/alerts",
        "/api/v1/silences?active=false", "/api/v1/deadletters", "/api/v1/audit?limit=1000",
        "/api/v1/audit/verify", "/api/v1/health/ingest", "/api/v1/health/alerting",
        "/api/v1/readings/latest?store=s042", "/api/v1/readings?sensor=wic1", "/readyz",
        "/metrics", "/openapi.json", "/healthz",
    ):  # fmt: skip
        responses.append(admin.get(path))
    alert = api.open_alert("s042")
    responses += [
        admin.get(f"/api/v1/alerts/{alert}"),
        admin.post(f"/api/v1/alerts/{alert}/ack", json={"note": "checking"}),
        admin.put("/api/v1/stores/s042", json={"id": "s042", "name": "x", "timezone": "Nope/No"}),
        admin.get("/api/v1/readings", params={"sensor": "wic1", "start": "yesterday"}),
        # Webhooks: a forged signature, and a body that carries the token as a field.
        api.anonymous.post(
            "/api/v1/webhooks/twilio/sms",
            data={"From": "+50255550101", "Body": f"OK 1234 {TWILIO_TOKEN}"},
            headers={"X-Twilio-Signature": "forged"},
        ),
        api.anonymous.post("/api/v1/webhooks/twilio/status", data={"MessageSid": "SM1"}),
    ]
    return responses


def test_no_secret_in_responses_or_logs(
    influx_settings: Settings,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = api_settings(
        influx_settings, influx_user="coldchain", influx_password=SecretStr(INFLUX_PASSWORD)
    )
    influx = InfluxV1(settings)
    influx.ensure_database()
    api = Api(settings, influx, clock)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    down = InfluxV1(settings.model_copy(update={"influx_url": f"http://127.0.0.1:{dead_port}"}))
    outage = Api(settings, down, clock, with_engine=False)
    try:
        api.minutes(1, wic1=11.0)
        responses = _exercise(api)
        responses.append(
            outage.client("admin").get("/api/v1/readings/latest", params={"store": "s042"})
        )
        responses.append(outage.anonymous.get("/readyz"))
        secrets = [TWILIO_TOKEN, INFLUX_PASSWORD]
        for key in [*api.keys.values(), *outage.keys.values()]:
            secret = key.split("_", 2)[2]
            secrets += [key, secret, hashlib.sha256(secret.encode()).hexdigest()]
        texts = [r.text + repr(dict(r.headers)) for r in responses]
        logged = [record.getMessage() + (record.exc_text or "") for record in caplog.records]
        for secret in secrets:
            assert not [t for t in texts if secret in t], "a response carries a secret"
            assert not [line for line in logged if secret in line], "a log line carries one"
        statuses = {r.status_code for r in responses}
        assert {200, 401, 403, 422, 503} <= statuses  # every kind of answer was looked at
        assert any("refused a webhook" in line for line in logged)
    finally:
        outage.close()
        api.close()
        down.close()
        influx.close()
