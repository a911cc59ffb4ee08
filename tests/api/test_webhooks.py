"""Twilio webhooks, signed by the local Twilio-compatible server with Twilio's own
algorithm, arriving through a "reverse proxy": Twilio calls ``PUBLIC_URL``, the app listens
on 127.0.0.1, and signatures must be checked against the public URL."""

from __future__ import annotations

import httpx
import pytest

from core.clock import ManualClock
from core.influx import InfluxV1
from core.settings import Settings
from tests.api.conftest import FROM, PUBLIC_URL, SMS_URL, STATUS_URL, VOICE_URL, Api, api_settings
from tests.fakes.twilio_server import FakeTwilioServer, ReverseProxy

pytestmark = pytest.mark.integration


def test_a_forged_sms_is_refused_and_a_signed_one_acknowledges(
    paged: tuple[Api, httpx.Client], twilio: FakeTwilioServer
) -> None:
    api, proxy = paged
    api.minutes(1, wic1=11.0)
    [page] = twilio.messages
    assert page.to == "+50255550101"
    alert = api.open_alert("s042")
    code = api.client("admin").get(f"/api/v1/alerts/{alert}").json()["ack_code"]
    forged = twilio.send_inbound_sms(
        SMS_URL, "+50255550101", FROM, f"OK {code}", http=proxy, auth_token="not-the-token"
    )
    assert forged.status == 403
    unsigned = proxy.post(SMS_URL, data={"From": "+50255550101", "Body": f"OK {code}"})
    assert unsigned.status_code == 403
    # Signed for the address uvicorn sees, not the one Twilio calls: refused too.
    local = twilio.send_inbound_sms(
        f"{api.server.url}/api/v1/webhooks/twilio/sms", "+50255550101", FROM, f"OK {code}"
    )
    assert local.status == 403
    assert api.engine is not None
    assert api.engine.book.get(alert).state == "firing"

    reply = twilio.send_inbound_sms(
        SMS_URL, "+50255550101", FROM, f"ok {code} ya voy", http=proxy,
        extra={"FromCountry": "GT"},  # Twilio adds fields without notice
    )  # fmt: skip
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/xml")
    assert reply.body == (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Message>Alerta {code} reconocida por Ana Lopez. Gracias.</Message>"
        "</Response>"
    )
    acked = api.engine.book.get(alert)
    assert (acked.state, acked.ack_via, acked.acked_by, acked.ack_note) == (
        "acknowledged",
        "sms",
        "ana",
        "ya voy",
    )
    api.minutes(60, wic1=11.0)
    assert len(twilio.messages) == 1  # nothing more after the ack


def test_status_callbacks_update_delivery(
    paged: tuple[Api, httpx.Client], twilio: FakeTwilioServer
) -> None:
    api, proxy = paged
    api.minutes(1, wic1=11.0)
    [page] = twilio.messages
    assert page.sid is not None
    assert page.status_callback == STATUS_URL  # the engine's callback uses the public URL
    forged = twilio.send_status_callback(
        page.sid, "delivered", STATUS_URL, http=proxy, auth_token="x"
    )
    assert forged.status == 403
    answer = twilio.send_status_callback(page.sid, "delivered", STATUS_URL, http=proxy)
    assert (answer.status, answer.body) == (204, "")
    assert api.engine is not None
    [note] = api.engine.book.notifications(alert_id=api.open_alert("s042"))
    assert note.status == "delivered"
    unknown = twilio.send_status_callback(
        "SM" + "f" * 32, "failed", STATUS_URL, 30003, to="+1", from_=FROM, http=proxy
    )
    assert unknown.status == 204  # valid signature: always 204, even for a SID we never sent


def test_a_keypad_ack_on_an_alert_call(
    paged: tuple[Api, httpx.Client], twilio: FakeTwilioServer
) -> None:
    api, proxy = paged
    contact = api.client("technician").get("/api/v1/contacts/ana").json()
    voice = {**contact, "channel": "voice"}
    assert api.client("technician").put("/api/v1/contacts/ana", json=voice).status_code == 200
    assert api.engine is not None
    assert api.engine.reload_if_changed()  # the engine sees the API's change
    api.minutes(1, wic1=11.0)
    [call] = twilio.calls
    assert call.to == "+50255550101"
    assert call.sid is not None
    assert VOICE_URL in (call.twiml or "")
    alert = api.open_alert("s042")
    code = api.client("admin").get(f"/api/v1/alerts/{alert}").json()["ack_code"]
    assert twilio.send_gather(VOICE_URL, call.sid, code, http=proxy, auth_token="x").status == 403
    wrong = twilio.send_gather(VOICE_URL, call.sid, "0000", http=proxy)
    assert wrong.status == 200
    assert "no valido" in wrong.body
    answer = twilio.send_gather(VOICE_URL, call.sid, code, http=proxy)
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert f"Alerta {code} reconocida por Ana Lopez" in answer.body
    assert "<Say" in answer.body
    acked = api.engine.book.get(alert)
    assert (acked.state, acked.ack_via, acked.acked_by) == ("acknowledged", "voice", "ana")


def test_webhooks_without_a_token_or_a_public_url_answer_503(
    influx_settings: Settings, influx: InfluxV1, clock: ManualClock, twilio: FakeTwilioServer
) -> None:
    unconfigured = Api(influx_settings.model_copy(update={"public_url": PUBLIC_URL}), influx, clock)
    try:
        response = unconfigured.anonymous.post(
            "/api/v1/webhooks/twilio/sms", data={"From": "+1", "Body": "OK 1234"}
        )
        assert response.status_code == 503
        assert "TWILIO_AUTH_TOKEN" in response.json()["detail"]
    finally:
        unconfigured.close()
    no_public = Api(
        api_settings(influx_settings).model_copy(update={"public_url": None}), influx, clock
    )
    try:
        response = no_public.anonymous.post("/api/v1/webhooks/twilio/status", data={})
        assert response.status_code == 503
        assert "COLDCHAIN_PUBLIC_URL" in response.json()["detail"]
    finally:
        no_public.close()


def test_split_mode_a_late_delivery_failure_falls_back_and_a_resolve_tells_who_was_paged(
    influx_settings: Settings, influx: InfluxV1, clock: ManualClock, twilio: FakeTwilioServer
) -> None:
    """Was: without the engine in its process the API answered Twilio's status callbacks
    503 (a failed SMS never fell back to the next contact) and a resolve by hand told
    nobody. Now both are queued for the alerting process, which acts on its next tick."""
    settings = api_settings(influx_settings)
    alerting = Api(settings, influx, clock)  # plays `coldchain alerting`
    api = Api(settings, influx, clock, with_engine=False)  # `coldchain api`, same registry
    proxy = httpx.Client(transport=ReverseProxy(api.server.url), timeout=15)
    assert alerting.engine is not None
    try:
        alerting.minutes(1, wic1=11.0)
        [(to, _page)] = alerting.sent()
        assert to == "+50255550101"  # Ana
        [note] = alerting.engine.book.notifications(status="sent")
        assert note.provider_id is not None
        failed = twilio.send_status_callback(
            note.provider_id, "undelivered", STATUS_URL, to=to, from_=FROM, http=proxy,
            error_code=30003,
        )  # fmt: skip
        assert failed.status == 204
        health = api.client("oncall").get("/api/v1/health/alerting").json()
        assert health["queued_commands"] == 1  # waiting for the alerting process
        alerting.minutes(1, wic1=11.0)  # the alerting process's next tick
        assert [to for to, _ in alerting.sent()] == ["+50255550101", "+50255550199"]
        alert = alerting.open_alert("s042")
        done = api.client("oncall").post(
            f"/api/v1/alerts/{alert}/resolve", json={"note": "compresor reiniciado"}
        )
        assert done.status_code == 200
        alerting.minutes(1, wic1=3.5)
        # On-call was paged and hears it is over; Ana's page never reached her phone.
        [(to, body)] = alerting.sent()[2:]
        assert (to, "RESUELTO" in body) == ("+50255550199", True)
        assert alerting.engine.run_commands() == 0  # each carried out once
    finally:
        proxy.close()
        api.close()
        alerting.close()


def test_split_mode_an_sms_reply_to_the_api_stops_the_other_process_escalation(
    influx_settings: Settings, influx: InfluxV1, clock: ManualClock, twilio: FakeTwilioServer
) -> None:
    """`coldchain api` without the engine (split mode) writes the acknowledgement to the
    alert book; the alerting process re-reads the alert before its next step."""
    settings = api_settings(influx_settings)
    alerting = Api(settings, influx, clock)  # plays `coldchain alerting`
    api = Api(settings, influx, clock, with_engine=False)  # `coldchain api`, same registry
    proxy = httpx.Client(transport=ReverseProxy(api.server.url), timeout=15)
    try:
        alerting.minutes(1, wic1=11.0)
        [(to, page)] = alerting.sent()
        code = page.split("OK ")[-1][:4]
        reply = twilio.send_inbound_sms(SMS_URL, to, FROM, f"OK {code} ya voy", http=proxy)
        assert reply.status == 200
        assert "reconocida por Ana Lopez" in reply.body
        alert = api.deps.registry.query("SELECT state, acked_by, ack_via, ack_note FROM alerts")
        assert tuple(alert[0]) == ("acknowledged", "ana", "sms", "ya voy")
        alerting.minutes(45, wic1=11.0)  # on-call would have been paged after 30 min
        assert len(alerting.sent()) == 1
        stranger = twilio.send_inbound_sms(SMS_URL, "+15550000000", FROM, f"OK {code}",
                                           http=proxy)  # fmt: skip
        assert "no valido para este numero" in stranger.body
    finally:
        proxy.close()
        api.close()
        alerting.close()
