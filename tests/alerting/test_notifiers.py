"""Notifiers: one conformance suite for all (STYLE.md §11), then what is Twilio's own.

The conformance suite runs every test once per row of :data:`HARNESSES`: a notifier and a
way to read back what its provider received. Adding a notifier adds a row. The Twilio row is
the real ``twilio`` client talking HTTP to :class:`FakeTwilioServer` on 127.0.0.1; nothing
in the client is mocked.

Then, for Twilio: the request fields, the failure taxonomy (every code of ERROR_CODES and the
HTTP fallbacks), timeouts and network errors, the auth token kept out of every exception and
log record, the webhook signatures the fake sends, and the GSM-7 helpers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import socket
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.notifiers import (
    Delivery,
    Notifier,
    NotifyConfigError,
    NotifyError,
    NotifyRejected,
    NotifyTemporary,
    Outbound,
)
from alerting.notifiers.base import Channel
from alerting.notifiers.console import ConsoleNotifier
from alerting.notifiers.gsm import (
    GSM7,
    GSM7_BASIC,
    GSM7_EXTENSION,
    TRANSLITERATIONS,
    is_gsm7,
    segments,
    to_gsm7,
)
from alerting.notifiers.twilio import (
    ERROR_CODES,
    MAX_VALIDITY_S,
    MIN_VALIDITY_S,
    VOICE_REPEATS,
    TwilioNotifier,
    classify,
    gather_response,
    validate_signature,
    voice_for,
)
from tests.fakes.twilio_server import FakeTwilioServer

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dcafe5ec2e7a11ce0bad0c0ffee42"  # distinctive, so a leak is found by search
WRONG_TOKEN = "0badbadbadbadbadbadbadbadbadbad0"
FROM = "+15005550006"
TO = "+50255550101"
OTHER = "+5215512345678"
GATHER = "https://coldchain.example/webhooks/twilio/voice?alert=4821"
CALLBACK = "https://coldchain.example/webhooks/twilio/status"
ALERT_ES = "S042 Cámara 1: 9,5 °C desde 23:10. Responda OK 4821"


# -- the conformance harness


@dataclass(frozen=True, slots=True)
class Received:
    """What a provider got, normalised across providers."""

    channel: Channel
    to: str
    text: str
    language: str | None = None  # voice: base tag of the spoken language (es, pt, en)
    gather_url: str | None = None  # voice: where the keypad digits go


@dataclass
class Harness:
    """A notifier and a way to read what its provider received."""

    notifier: Notifier
    received: Callable[[], list[Received]]
    extra: dict[str, Any] = field(default_factory=dict)


def _console_received(notifier: ConsoleNotifier) -> list[Received]:
    return [
        Received(
            channel=m.channel,
            to=m.to,
            text=m.body,
            language=m.language if m.channel == "voice" else None,
            gather_url=m.gather_url if m.channel == "voice" else None,
        )
        for m in notifier.sent
    ]


@contextmanager
def _console_harness() -> Iterator[Harness]:
    lines: list[str] = []
    notifier = ConsoleNotifier(out=lines.append)
    yield Harness(notifier, lambda: _console_received(notifier), {"lines": lines})


def _parse_call(twiml: str) -> tuple[str, str | None, str | None]:
    """(spoken text, base language, gather action) of a call's TwiML."""
    root = ET.fromstring(twiml)
    say = root.find(".//Say")
    assert say is not None, twiml
    gather = root.find("Gather")
    language = say.get("language")
    return (
        say.text or "",
        language.split("-")[0] if language else None,
        gather.get("action") if gather is not None else None,
    )


def _twilio_received(server: FakeTwilioServer) -> list[Received]:
    out = []
    for r in server.requests:
        if not r.accepted:
            continue
        assert r.to is not None
        if r.resource == "Messages":
            whatsapp = r.to.startswith("whatsapp:")
            out.append(
                Received(
                    channel="whatsapp" if whatsapp else "sms",
                    to=r.to.removeprefix("whatsapp:"),
                    text=r.body or "",
                )
            )
        else:
            assert r.twiml is not None
            text, language, action = _parse_call(r.twiml)
            out.append(Received("voice", r.to, text, language, action))
    return out


@contextmanager
def _twilio_harness() -> Iterator[Harness]:
    with FakeTwilioServer(SID, TOKEN) as server:
        notifier = TwilioNotifier(SID, TOKEN, FROM, base_url=server.url, timeout_s=5)
        try:
            yield Harness(notifier, lambda: _twilio_received(server), {"server": server})
        finally:
            notifier.close()
        assert server.errors == []


# One row per notifier.
HARNESSES: dict[str, Callable[[], AbstractContextManager[Harness]]] = {
    "console": _console_harness,
    "twilio": _twilio_harness,
}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with HARNESSES[request.param]() as h:
        yield h


# -- conformance: every notifier


def test_names_are_set_and_unique() -> None:
    names = []
    for make in HARNESSES.values():
        with make() as h:
            names.append(h.notifier.name)
    assert all(names)
    assert len(set(names)) == len(names)


def test_sms_reaches_the_provider(harness: Harness) -> None:
    delivery = harness.notifier.send(Outbound(to=TO, channel="sms", body=ALERT_ES))
    assert isinstance(delivery, Delivery)
    assert delivery.provider_id
    assert delivery.status in {"queued", "accepted", "sent"}
    assert harness.received() == [Received("sms", TO, ALERT_ES)]


def test_whatsapp_reaches_the_provider(harness: Harness) -> None:
    body = "⚠️ S042 Cámara 1: 9,5 °C. Responda OK 4821"
    delivery = harness.notifier.send(Outbound(to=TO, channel="whatsapp", body=body))
    assert delivery.provider_id
    assert delivery.segments == 1
    assert harness.received() == [Received("whatsapp", TO, body)]


@pytest.mark.parametrize("language", ["es", "pt", "en"])
def test_voice_call_says_the_body_and_gathers_the_ack_code(harness: Harness, language: str) -> None:
    body = "Alerta en la tienda 42. Marque 4821 para confirmar."
    message = Outbound(to=OTHER, channel="voice", body=body, language=language, gather_url=GATHER)
    delivery = harness.notifier.send(message)
    assert delivery.provider_id
    assert harness.received() == [Received("voice", OTHER, body, language, GATHER)]


def test_text_goes_through_verbatim(harness: Harness) -> None:
    # Markup characters must reach the phone as text, also inside the call's TwiML.
    body = "Niño & <cámara> \"2\" 'A' ção € {x} ¿ok?"
    for channel in ("sms", "whatsapp", "voice"):
        harness.notifier.send(Outbound(to=TO, channel=channel, body=body, gather_url=GATHER))
    assert [r.text for r in harness.received()] == [body] * 3


@pytest.mark.parametrize(
    "body", ["x" * 160, "x" * 161, "x" * 306, "x" * 307, "á" * 70, "á" * 71, "€" * 81]
)
def test_sms_delivery_counts_segments(harness: Harness, body: str) -> None:
    delivery = harness.notifier.send(Outbound(to=TO, channel="sms", body=body))
    assert delivery.segments == segments(body)


def test_each_message_gets_its_own_provider_id(harness: Harness) -> None:
    ids = {
        harness.notifier.send(Outbound(to=TO, channel=ch, body="x", gather_url=GATHER)).provider_id
        for ch in ("sms", "sms", "whatsapp", "voice")
    }
    assert len(ids) == 4


def test_concurrent_sends_are_all_recorded(harness: Harness) -> None:
    def send(i: int) -> None:
        harness.notifier.send(Outbound(to=TO, channel="sms", body=f"alert {i}"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.text for r in harness.received()) == sorted(f"alert {i}" for i in range(8))


# -- console


def test_console_prints_one_readable_line_per_message() -> None:
    lines: list[str] = []
    notifier = ConsoleNotifier(out=lines.append)
    first = notifier.send(Outbound(to=TO, channel="sms", body="S042 9,5 C\nResponda OK 4821"))
    notifier.send(Outbound(to=TO, channel="voice", body="Alerta", gather_url=GATHER))
    assert first == Delivery(provider_id="console-1", status="sent", segments=1)
    assert lines == [
        f"SMS to {TO}: S042 9,5 C | Responda OK 4821",
        f"Voice call to {TO}: Alerta [es, keypad -> {GATHER}]",
    ]


def test_console_logs_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="alerting.notifiers.console")
    ConsoleNotifier().send(Outbound(to=TO, channel="whatsapp", body="100% lleno"))
    assert [r.getMessage() for r in caplog.records] == [f"WhatsApp to {TO}: 100% lleno"]


# -- Twilio: requests


@pytest.fixture
def server() -> Iterator[FakeTwilioServer]:
    with FakeTwilioServer(SID, TOKEN) as s:
        yield s
        assert s.errors == []


@pytest.fixture
def twilio(server: FakeTwilioServer) -> Iterator[TwilioNotifier]:
    notifier = TwilioNotifier(SID, TOKEN, FROM, base_url=server.url, timeout_s=5)
    yield notifier
    notifier.close()


def test_sms_request_carries_callback_and_validity(
    server: FakeTwilioServer, twilio: TwilioNotifier
) -> None:
    delivery = twilio.send(
        Outbound(to=TO, channel="sms", body="S042", status_callback=CALLBACK, validity_s=900)
    )
    [sent] = server.messages
    assert (sent.to, sent.from_, sent.body) == (TO, FROM, "S042")
    assert sent.status_callback == CALLBACK
    assert sent.validity_period == 900
    assert sent.account_sid == SID
    assert delivery == Delivery(provider_id=sent.sid or "", status="queued", segments=1)
    assert delivery.provider_id.startswith("SM")
    assert len(delivery.provider_id) == 34


def test_no_status_callback_sends_no_field(
    server: FakeTwilioServer, twilio: TwilioNotifier
) -> None:
    twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    assert "StatusCallback" not in server.messages[0].params


@pytest.mark.parametrize(
    ("validity_s", "sent"),
    [(0, MIN_VALIDITY_S), (1, MIN_VALIDITY_S), (1800, 1800), (10**6, MAX_VALIDITY_S)],
)
def test_validity_is_clamped_to_what_the_api_accepts(
    server: FakeTwilioServer, twilio: TwilioNotifier, validity_s: int, sent: int
) -> None:
    twilio.send(Outbound(to=TO, channel="sms", body="S042", validity_s=validity_s))
    assert server.messages[0].validity_period == sent


def test_whatsapp_prefixes_both_numbers(server: FakeTwilioServer, twilio: TwilioNotifier) -> None:
    twilio.send(Outbound(to=TO, channel="whatsapp", body="S042", status_callback=CALLBACK))
    [sent] = server.messages
    assert (sent.to, sent.from_) == (f"whatsapp:{TO}", f"whatsapp:{FROM}")
    assert sent.status_callback == CALLBACK


def test_whatsapp_prefix_is_not_doubled(server: FakeTwilioServer) -> None:
    notifier = TwilioNotifier(SID, TOKEN, f"whatsapp:{FROM}", base_url=server.url)
    try:
        notifier.send(Outbound(to=f"whatsapp:{TO}", channel="whatsapp", body="S042"))
    finally:
        notifier.close()
    assert (server.messages[0].to, server.messages[0].from_) == (
        f"whatsapp:{TO}",
        f"whatsapp:{FROM}",
    )


def test_voice_twiml_gathers_four_digits_in_the_right_voice(
    server: FakeTwilioServer, twilio: TwilioNotifier
) -> None:
    delivery = twilio.send(
        Outbound(
            to=OTHER,
            channel="voice",
            body="Alerta <42> & más",
            language="pt",
            gather_url=GATHER,
            status_callback=CALLBACK,
        )
    )
    [call] = server.calls
    assert delivery.provider_id == call.sid
    assert delivery.provider_id.startswith("CA")
    assert (call.to, call.from_, call.status_callback) == (OTHER, FROM, CALLBACK)
    assert call.twiml is not None
    root = ET.fromstring(call.twiml)
    gathers = root.findall("Gather")
    assert len(gathers) == VOICE_REPEATS
    for gather in gathers:
        assert gather.attrib["numDigits"] == "4"
        assert gather.attrib["action"] == GATHER  # the & of the query survives escaping
        assert gather.attrib["method"] == "POST"
        say = gather.find("Say")
        assert say is not None
        assert say.text == "Alerta <42> & más"
        assert say.attrib == {"voice": "Polly.Camila", "language": "pt-BR"}


def test_voice_without_gather_url_only_speaks(
    server: FakeTwilioServer, twilio: TwilioNotifier
) -> None:
    twilio.send(Outbound(to=OTHER, channel="voice", body="Alerta", language="en"))
    assert server.calls[0].twiml is not None
    root = ET.fromstring(server.calls[0].twiml)
    assert root.find("Gather") is None
    says = root.findall("Say")
    assert [s.attrib["language"] for s in says] == ["en-US"] * VOICE_REPEATS


@pytest.mark.parametrize(
    ("tag", "voice", "language"),
    [
        ("es", "Polly.Mia", "es-MX"),
        ("es-GT", "Polly.Mia", "es-MX"),
        ("pt_BR", "Polly.Camila", "pt-BR"),
        ("EN", "Polly.Joanna", "en-US"),
        ("de", "Polly.Mia", "es-MX"),  # unknown: the chain's default, Spanish
    ],
)
def test_voice_for_language_tags(tag: str, voice: str, language: str) -> None:
    assert (voice_for(tag).voice, voice_for(tag).language) == (voice, language)


def test_gather_response_is_escaped_twiml() -> None:
    root = ET.fromstring(gather_response("Alerta 4821 <reconocida> & cerrada", "es"))
    assert root.tag == "Response"
    [say] = list(root)
    assert say.tag == "Say"
    assert say.text == "Alerta 4821 <reconocida> & cerrada"
    assert say.attrib == {"voice": "Polly.Mia", "language": "es-MX"}


def test_edge_and_region_in_the_environment_do_not_redirect_the_client(
    server: FakeTwilioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With environment={} the client would read these (an empty dict is falsy) and rewrite
    # 127.0.0.1 into 127.sydney.au1.0.1.
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "9" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", WRONG_TOKEN)
    notifier = TwilioNotifier(SID, TOKEN, FROM, base_url=server.url)
    try:
        notifier.send(Outbound(to=TO, channel="sms", body="S042"))
    finally:
        notifier.close()
    assert len(server.messages) == 1


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"account_sid": "SK" + "0" * 32}, "TWILIO_ACCOUNT_SID"),
        ({"account_sid": TOKEN}, "TWILIO_ACCOUNT_SID"),  # token pasted in the wrong field
        ({"auth_token": " "}, "TWILIO_AUTH_TOKEN"),
        ({"from_number": ""}, "TWILIO_FROM"),
        ({"base_url": "ftp://127.0.0.1"}, "COLDCHAIN_TWILIO_BASE_URL"),
        ({"timeout_s": 0}, "timeout"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_setting(
    kwargs: dict[str, Any], setting: str
) -> None:
    args: dict[str, Any] = {"account_sid": SID, "auth_token": TOKEN, "from_number": FROM}
    args.update(kwargs)
    with pytest.raises(NotifyConfigError) as info:
        TwilioNotifier(**args)
    assert setting in str(info.value)
    assert TOKEN not in str(info.value)


# -- Twilio: the failure taxonomy


def _status_for(code: int) -> int:
    return {20003: 401, 20404: 404, 20429: 429, 20500: 500, 20503: 503}.get(code, 400)


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_tabled_code_maps_to_its_kind(
    server: FakeTwilioServer, twilio: TwilioNotifier, code: int
) -> None:
    server.fail_next(status=_status_for(code), code=code)
    with pytest.raises(NotifyError) as info:
        twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    rule = ERROR_CODES[code]
    assert type(info.value) is rule.kind
    assert info.value.code == code
    assert str(code) in str(info.value)
    assert rule.reason in str(info.value)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (21211, NotifyRejected),
        (21610, NotifyRejected),
        (21614, NotifyRejected),
        (21635, NotifyRejected),
        (30005, NotifyRejected),
        (30006, NotifyRejected),
        (21612, NotifyRejected),
        (20429, NotifyTemporary),
        (30001, NotifyTemporary),
        (30003, NotifyTemporary),
        (30008, NotifyTemporary),
        (21611, NotifyTemporary),
        (20003, NotifyConfigError),
        (21212, NotifyConfigError),
        (21606, NotifyConfigError),
        (21408, NotifyConfigError),
        (30007, NotifyConfigError),
    ],
)
def test_table_follows_the_research_notes(code: int, kind: type[NotifyError]) -> None:
    # research/domain.md §D.3 and the brief's decisions, written out once more so that a
    # change to ERROR_CODES is a deliberate one.
    assert ERROR_CODES[code].kind is kind


@pytest.mark.parametrize(
    ("status", "code", "kind", "reported"),
    [
        (400, 12345, NotifyRejected, 12345),  # unknown 4xx
        (422, None, NotifyRejected, None),
        (500, None, NotifyTemporary, None),
        (502, None, NotifyTemporary, None),
        (503, None, NotifyTemporary, None),
        (503, 20503, NotifyTemporary, 20503),
        (429, None, NotifyTemporary, None),
        (403, None, NotifyConfigError, None),
        (401, None, NotifyConfigError, None),
        (404, None, NotifyConfigError, None),
    ],
)
def test_codes_not_in_the_table_fall_back_on_the_http_status(
    server: FakeTwilioServer,
    twilio: TwilioNotifier,
    status: int,
    code: int | None,
    kind: type[NotifyError],
    reported: int | None,
) -> None:
    server.fail_next(status=status, code=code)
    with pytest.raises(NotifyError) as info:
        twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    assert type(info.value) is kind
    assert info.value.code == reported
    assert f"HTTP {status}" in str(info.value)


def test_rejected_keeps_code_and_twilio_message(
    server: FakeTwilioServer, twilio: TwilioNotifier
) -> None:
    server.fail_next(status=400, code=21211, message="The 'To' number +1500 is not valid.")
    with pytest.raises(NotifyRejected) as info:
        twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    assert info.value.code == 21211
    assert "21211" in str(info.value)
    assert "The 'To' number +1500 is not valid." in str(info.value)


def test_unreachable_handset_is_temporary(server: FakeTwilioServer, twilio: TwilioNotifier) -> None:
    server.fail_next(status=400, code=30003)
    with pytest.raises(NotifyTemporary) as info:
        twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    assert (info.value.code, info.value.retry_after) == (30003, None)


def test_503_is_temporary(server: FakeTwilioServer, twilio: TwilioNotifier) -> None:
    server.fail_next(status=503, code=None, message="Service Unavailable")
    with pytest.raises(NotifyTemporary):
        twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    # and the next attempt goes through
    assert twilio.send(Outbound(to=TO, channel="sms", body="S042")).status == "queued"


@pytest.mark.parametrize("code", [20429, None])
def test_429_carries_retry_after(
    server: FakeTwilioServer, twilio: TwilioNotifier, code: int | None
) -> None:
    server.fail_next(status=429, code=code, retry_after=7)
    with pytest.raises(NotifyTemporary) as info:
        twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    assert info.value.retry_after == 7.0
    assert info.value.code == code


def test_retry_after_does_not_stick_to_the_next_error(
    server: FakeTwilioServer, twilio: TwilioNotifier
) -> None:
    server.fail_next(status=429, code=20429, retry_after=30)
    server.fail_next(status=503, code=None)
    with pytest.raises(NotifyTemporary):
        twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    with pytest.raises(NotifyTemporary) as info:
        twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    assert info.value.retry_after is None


def test_wrong_token_is_a_config_error(server: FakeTwilioServer) -> None:
    notifier = TwilioNotifier(SID, WRONG_TOKEN, FROM, base_url=server.url)
    try:
        with pytest.raises(NotifyConfigError) as info:
            notifier.send(Outbound(to=TO, channel="sms", body="S042"))
    finally:
        notifier.close()
    assert info.value.code == 20003
    assert (server.requests[0].response_status, server.requests[0].error_code) == (401, 20003)


def test_problem_details_errors_are_mapped_too(
    server: FakeTwilioServer, twilio: TwilioNotifier
) -> None:
    # Twilio's newer APIs answer RFC 9457 bodies, which the client raises as another class.
    server.fail_next(status=400, code=21610, message="unsubscribed", rfc9457=True)
    with pytest.raises(NotifyRejected) as info:
        twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    assert info.value.code == 21610


def test_calls_fail_the_same_way(server: FakeTwilioServer, twilio: TwilioNotifier) -> None:
    server.fail_next(status=400, code=21217)
    with pytest.raises(NotifyRejected) as info:
        twilio.send(Outbound(to=TO, channel="voice", body="Alerta", gather_url=GATHER))
    assert info.value.code == 21217


def test_fail_for_refuses_one_recipient_only(
    server: FakeTwilioServer, twilio: TwilioNotifier
) -> None:
    server.fail_for(OTHER, status=400, code=21610)
    for channel in ("sms", "whatsapp"):
        with pytest.raises(NotifyRejected):
            twilio.send(Outbound(to=OTHER, channel=channel, body="S042"))
    twilio.send(Outbound(to=TO, channel="sms", body="S042"))
    assert [m.to for m in server.messages] == [TO]
    assert [r.error_code for r in server.requests] == [21610, 21610, None]


def _wait_for(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_slow_api_is_temporary_and_may_have_sent(server: FakeTwilioServer) -> None:
    notifier = TwilioNotifier(SID, TOKEN, FROM, base_url=server.url, timeout_s=0.2)
    server.delay_next(1, 1.0)
    try:
        started = time.monotonic()
        with pytest.raises(NotifyTemporary) as info:
            notifier.send(Outbound(to=TO, channel="sms", body="S042"))
        assert time.monotonic() - started < 0.9
    finally:
        notifier.close()
    assert "may have been sent" in str(info.value)
    # The fake, like Twilio, goes on to accept it: a retry would send a second SMS.
    _wait_for(lambda: len(server.messages) == 1)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_connection_refused_is_temporary() -> None:
    notifier = TwilioNotifier(SID, TOKEN, FROM, base_url=f"http://127.0.0.1:{_closed_port()}")
    try:
        with pytest.raises(NotifyTemporary) as info:
            notifier.send(Outbound(to=TO, channel="sms", body="S042"))
    finally:
        notifier.close()
    assert "network error" in str(info.value)


def test_a_malformed_base_url_is_a_config_error() -> None:
    notifier = TwilioNotifier(SID, TOKEN, FROM, base_url="http://")
    try:
        with pytest.raises(NotifyConfigError):
            notifier.send(Outbound(to=TO, channel="sms", body="S042"))
    finally:
        notifier.close()


@pytest.mark.parametrize(
    ("code", "kind"),
    [(30003, NotifyTemporary), (30007, NotifyConfigError), (30006, NotifyRejected)],
)
def test_classify_serves_status_callbacks_too(code: int, kind: type[NotifyError]) -> None:
    assert classify(code).kind is kind
    assert classify(99999).kind is NotifyRejected  # unknown, no HTTP status: move on


# -- Twilio: secrets stay out of exceptions and logs


def _secrets_of(token: str) -> list[str]:
    return [token, base64.b64encode(f"{SID}:{token}".encode()).decode()]


# Client timeouts: ample where the fake answers at once (a loaded CI box must not turn an
# answer into a timeout), short where the test is about the timeout.
PATIENT_S = 5.0
IMPATIENT_S = 0.2


def _fail_rejected(server: FakeTwilioServer) -> tuple[str, float]:
    server.fail_next(status=400, code=21211)
    return TOKEN, PATIENT_S


def _fail_echoing_token(server: FakeTwilioServer) -> tuple[str, float]:
    # A proxy or a future API echoing our credentials back in the error message.
    server.fail_next(status=400, code=None, message=f"bad request from {SID}:{TOKEN}")
    return TOKEN, PATIENT_S


def _fail_unavailable(server: FakeTwilioServer) -> tuple[str, float]:
    server.fail_next(status=503, code=None)
    return TOKEN, PATIENT_S


def _fail_throttled(server: FakeTwilioServer) -> tuple[str, float]:
    server.fail_next(status=429, code=20429, retry_after=2)
    return TOKEN, PATIENT_S


def _fail_wrong_token(server: FakeTwilioServer) -> tuple[str, float]:
    return WRONG_TOKEN, PATIENT_S


def _fail_slow(server: FakeTwilioServer) -> tuple[str, float]:
    server.delay_next(1, 2.0)  # cut short when the server stops
    return TOKEN, IMPATIENT_S


def _fail_refused(server: FakeTwilioServer) -> tuple[str, float]:
    server.stop()
    return TOKEN, PATIENT_S


@pytest.mark.parametrize(
    "provoke",
    [
        _fail_rejected,
        _fail_echoing_token,
        _fail_unavailable,
        _fail_throttled,
        _fail_wrong_token,
        _fail_slow,
        _fail_refused,
    ],
)
@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_the_token_appears_in_no_exception_and_no_log_record(
    caplog: pytest.LogCaptureFixture,
    provoke: Callable[[FakeTwilioServer], tuple[str, float]],
    channel: Channel,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("twilio", "twilio.http_client", "urllib3", "alerting"):
        caplog.set_level(logging.DEBUG, logger=name)
    with FakeTwilioServer(SID, TOKEN) as server:
        url = server.url
        token, timeout_s = provoke(server)
        notifier = TwilioNotifier(SID, token, FROM, base_url=url, timeout_s=timeout_s)
        caught: NotifyError | None = None
        try:
            notifier.send(Outbound(to=TO, channel=channel, body="S042", gather_url=GATHER))
        except NotifyError as error:
            # What an escalation step does with a failure: log it with its traceback.
            logging.getLogger("alerting.test").exception("notify failed")
            caught = error
        finally:
            notifier.close()
    assert caught is not None, "the send should have failed"
    exc = caught
    assert exc.__cause__ is None
    assert exc.__context__ is None
    texts = [str(exc), repr(exc), *map(str, exc.args), *traceback.format_exception(exc)]
    formatter = logging.Formatter("%(name)s %(message)s")
    texts += [formatter.format(r) for r in caplog.records]
    assert any(r.name == "twilio.http_client" for r in caplog.records), "logger not exercised"
    for secret in _secrets_of(token):
        for text in texts:
            assert secret not in text


# -- Twilio: webhooks towards the app


@dataclass
class _Hit:
    path: str
    signature: str
    params: dict[str, str]


class _Receiver:
    """A tiny app standing in for the API: records webhooks, answers empty TwiML."""

    def __init__(self) -> None:
        self.hits: list[_Hit] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
                params = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                receiver.hits.append(
                    _Hit(self.path, self.headers.get("X-Twilio-Signature", ""), params)
                )
                body = b"<Response/>"
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    r.thread.start()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()
    r.thread.join()


def _reference_signature(token: str, url: str, params: dict[str, str]) -> str:
    # Twilio's documented algorithm, written independently of RequestValidator.
    data = url + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_status_callback_is_signed_like_twilio(
    server: FakeTwilioServer, twilio: TwilioNotifier, receiver: _Receiver
) -> None:
    url = receiver.url("/webhooks/twilio/status?store=s042")
    delivery = twilio.send(Outbound(to=TO, channel="sms", body="S042", status_callback=url))
    reply = server.send_status_callback(delivery.provider_id, "undelivered", url, error_code=30003)
    assert reply.status == 200
    [hit] = receiver.hits
    assert hit.path == "/webhooks/twilio/status?store=s042"
    assert hit.params == {
        "MessageSid": delivery.provider_id,
        "SmsSid": delivery.provider_id,
        "MessageStatus": "undelivered",
        "SmsStatus": "undelivered",
        "AccountSid": SID,
        "From": FROM,
        "To": TO,
        "ApiVersion": "2010-04-01",
        "ErrorCode": "30003",
    }
    assert validate_signature(TOKEN, url, hit.params, hit.signature)
    assert hit.signature == _reference_signature(TOKEN, url, hit.params)
    assert not validate_signature(WRONG_TOKEN, url, hit.params, hit.signature)
    assert not validate_signature(TOKEN, url + "&x=1", hit.params, hit.signature)
    assert not validate_signature(TOKEN, url, {**hit.params, "To": OTHER}, hit.signature)


def test_status_callback_for_an_unknown_message_needs_numbers(server: FakeTwilioServer) -> None:
    with pytest.raises(ValueError, match="unknown message"):
        server.send_status_callback("SM" + "0" * 32, "delivered", CALLBACK)


def test_inbound_sms_is_signed_like_twilio(server: FakeTwilioServer, receiver: _Receiver) -> None:
    url = receiver.url("/webhooks/twilio/sms")
    reply = server.send_inbound_sms(url, TO, FROM, "ok 4821 puerta cerrada")
    assert (reply.status, reply.body) == (200, "<Response/>")
    [hit] = receiver.hits
    assert hit.params["Body"] == "ok 4821 puerta cerrada"
    assert (hit.params["From"], hit.params["To"]) == (TO, FROM)
    assert hit.params["NumMedia"] == "0"
    assert hit.params["NumSegments"] == "1"
    assert hit.params["AccountSid"] == SID
    assert hit.params["MessageSid"].startswith("SM")
    assert validate_signature(TOKEN, url, hit.params, hit.signature)
    assert hit.signature == _reference_signature(TOKEN, url, hit.params)
    assert not validate_signature(WRONG_TOKEN, url, hit.params, hit.signature)


def test_forged_webhooks_fail_validation(server: FakeTwilioServer, receiver: _Receiver) -> None:
    url = receiver.url("/webhooks/twilio/sms")
    server.send_inbound_sms(url, TO, FROM, "OK 4821", auth_token=WRONG_TOKEN)
    [hit] = receiver.hits
    assert not validate_signature(TOKEN, url, hit.params, hit.signature)


def test_gather_digits_are_signed_like_twilio(
    server: FakeTwilioServer, twilio: TwilioNotifier, receiver: _Receiver
) -> None:
    url = receiver.url("/webhooks/twilio/voice?alert=4821")
    call = twilio.send(Outbound(to=OTHER, channel="voice", body="Alerta", gather_url=url))
    server.send_gather(url, call.provider_id, "4821")
    [hit] = receiver.hits
    assert (hit.params["Digits"], hit.params["CallSid"]) == ("4821", call.provider_id)
    assert (hit.params["To"], hit.params["From"]) == (OTHER, FROM)
    assert validate_signature(TOKEN, url, hit.params, hit.signature)


def test_webhooks_can_go_through_a_given_http_client(server: FakeTwilioServer) -> None:
    # An app behind an httpx transport instead of a socket, validating the signature of the
    # URL it was called on, as the API's webhook will.
    def app(request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validate_signature(TOKEN, str(request.url), form, signature):
            return httpx.Response(403)
        return httpx.Response(200, text=gather_response(f"Recibido: {form['Body']}", "es"))

    url = "https://coldchain.example/webhooks/twilio/sms"
    with httpx.Client(transport=httpx.MockTransport(app)) as client:
        good = server.send_inbound_sms(url, TO, FROM, "OK 4821", http=client)
        forged = server.send_inbound_sms(
            url, TO, FROM, "OK 4821", http=client, auth_token=WRONG_TOKEN
        )
    assert good.status == 200
    assert "Recibido: OK 4821" in good.body
    assert forged.status == 403


# -- GSM-7


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Atención: la cámara está a 9,5 °C", "Atencion: la camara esta a 9,5 C"),
        (
            "Atenção: câmara fria a 9,5 °C, ação imediata",
            "Atencao: camara fria a 9,5 C, acao imediata",
        ),
        ("¿Niño? ¡Sí! Pingüino, señal", "¿Niño? ¡Si! Pingüino, señal"),
        ("Refrigerador nº 3 — “urgente” …", 'Refrigerador no 3 - "urgente" ...'),
        ("Congelador a \u221218 °C", "Congelador a -18 C"),  # U+2212 MINUS SIGN
        ("ÁÉÍÓÚ àèìòù ÂÊÔ ÃÕ Ç ç", "AÉIOU àèìòù AEO AO Ç c"),
        ("Sensor 🧊 caído", "Sensor ? caido"),
    ],
)
def test_to_gsm7_spanish_and_portuguese(text: str, expected: str) -> None:
    assert to_gsm7(text) == expected
    assert is_gsm7(expected)


def test_gsm7_alphabet() -> None:
    assert len(GSM7_BASIC) == 127  # 128 code points, less the escape
    assert is_gsm7("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!#¤%&ÄÖÑÜ§¿äöñüà¡\n\r")
    assert is_gsm7("€[]{}^~|\\\f")
    for c in "áíóúãõâêôç`°\t\x1b":
        assert not is_gsm7(c), c
    assert is_gsm7("")


def test_transliterations_only_produce_gsm7() -> None:
    for source, target in TRANSLITERATIONS.items():
        assert source not in GSM7
        assert is_gsm7(target), source


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 1),
        ("x" * 160, 1),
        ("x" * 161, 2),
        ("x" * 306, 2),
        ("x" * 307, 3),
        ("€" * 80, 1),  # 160 septets: escape + character each
        ("€" * 81, 2),
        ("x" * 159 + "€", 2),
        # The escape pair is not split across parts: 152 + (2) does not fit 153.
        ("x" * 152 + "€" + "x" * 152, 3),
        ("á" * 70, 1),
        ("á" * 71, 2),
        ("á" * 134, 2),
        ("á" * 135, 3),
        ("😀" * 35, 1),  # 70 UTF-16 units
        ("😀" * 36, 2),
        ("x" * 160 + "á", 3),  # one non-GSM character makes 161 UCS-2 units
    ],
)
def test_segments_at_the_boundaries(text: str, count: int) -> None:
    assert segments(text) == count


def test_transliteration_saves_segments() -> None:
    alert = "Atención: cámara 1 de la tienda San Pedro está a 9,5 °C desde las 23:10. " * 2
    assert segments(alert) == 3  # UCS-2: 148 characters
    assert segments(to_gsm7(alert)) == 1


@given(st.text())
def test_to_gsm7_is_always_gsm7_and_idempotent(text: str) -> None:
    once = to_gsm7(text)
    assert is_gsm7(once)
    assert to_gsm7(once) == once
    assert segments(once) >= 1


@given(st.text(alphabet=sorted(GSM7)))
def test_gsm7_text_is_left_alone(text: str) -> None:
    assert to_gsm7(text) == text
    extension = sum(c in GSM7_EXTENSION for c in text)
    assert segments(text) == 1 or len(text) + extension > 160
