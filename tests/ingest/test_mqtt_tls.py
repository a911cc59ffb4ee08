"""MQTT over TLS, as docs/operations.md (sections 4 and 12.3) deploys it: a private CA,
the broker's certificate naming its host, Mosquitto's TLS 1.2+ listener, and coldchain's
clients (ingest's receive client and the simulator's publisher) verifying the certificate
against the CA store OpenSSL is pointed at (the system store after
``update-ca-certificates``; here ``SSL_CERT_FILE``).

What it catches: a TLS path that never ran (the receive client and the publisher are
coldchain's own), reads that stall on bytes OpenSSL already decrypted, and a client that
would accept a certificate it cannot verify or one issued for another host.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldchain.services import Mosquitto
from core.settings import parse_mqtt_url
from devices.base import Publish
from ingest.mqtt import AckToken, MqttSource
from simulator.publisher import Publisher, PublishError
from tests.ingest.helpers import wait_for

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(folder: Path, name: str) -> None:
    """``<name>.crt``/``<name>.key``: a self-signed CA."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=folder,
    )  # fmt: skip


def _server_cert(folder: Path, ca: str, host: str) -> tuple[Path, Path]:
    """A server certificate for ``host`` signed by ``ca`` (operations.md, section 4)."""
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
        "-keyout", "server.key", "-out", "server.csr", cwd=folder,
    )  # fmt: skip
    (folder / "san.ext").write_text(f"subjectAltName=DNS:{host}\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
        cwd=folder,
    )  # fmt: skip
    return folder / "server.crt", folder / "server.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA (``ca``), another one nobody trusts (``rogue``), and the broker's
    certificate for ``localhost`` signed by ``ca``."""
    folder = tmp_path_factory.mktemp("pki")
    _ca(folder, "ca")
    _ca(folder, "rogue")
    _server_cert(folder, "ca", "localhost")
    return folder


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[Mosquitto]:
    """A Mosquitto with a TLS listener presenting the ``localhost`` certificate."""
    server = Mosquitto(tmp_path / "mosquitto", tls=(pki / "server.crt", pki / "server.key"))
    server.start()
    yield server
    server.stop()


class _Inbox:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.tokens: list[AckToken] = []

    def __call__(self, topic: str, payload: bytes, retained: bool, token: AckToken) -> None:
        self.payloads.append(payload)
        self.tokens.append(token)


def _source(url: str, inbox: _Inbox) -> MqttSource:
    source = MqttSource(parse_mqtt_url(url), "tls-ingest", ["t/+"], inbox, receive_maximum=5000)
    source.start()
    return source


def test_ingest_and_the_publisher_speak_tls_with_a_private_ca(
    tls_broker: Mosquitto, pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.crt"))
    url = tls_broker.tls_url("localhost")
    inbox = _Inbox()
    source = _source(url, inbox)
    try:
        assert source.connected.wait(10), source.last_error
        wait_for(source.subscribed.is_set, 10, "SUBACK over TLS")
        # Large enough that one recv() leaves records decrypted inside OpenSSL.
        messages = [
            Publish(f"t/{i % 5}", f"{i:05d}".encode().ljust(900, b".")) for i in range(3000)
        ]
        publisher = Publisher(parse_mqtt_url(url), "tls-publisher", window=500)
        publisher.connect()
        publisher.publish_many(messages)
        publisher.disconnect()
        wait_for(lambda: len(inbox.payloads) == 3000, 30, "3,000 messages over TLS")
        assert inbox.payloads == [m.payload for m in messages]
        source.ack_many(inbox.tokens)
    finally:
        source.stop()

    # Acknowledged over TLS: the resumed session has nothing left to give.
    again = _Inbox()
    resumed = _source(url, again)
    try:
        assert resumed.connected.wait(10), resumed.last_error
        assert resumed.session_present
        time.sleep(1.0)
        assert again.payloads == []
    finally:
        resumed.stop()


@pytest.mark.parametrize(
    ("trusted", "host", "why"),
    [
        ("rogue", "localhost", "certificate verify failed"),  # signed by a CA we do not trust
        ("ca", "127.0.0.1", "certificate verify failed"),  # issued for another name
    ],
)
def test_ingest_refuses_a_broker_it_cannot_verify(
    tls_broker: Mosquitto,
    pki: Path,
    monkeypatch: pytest.MonkeyPatch,
    trusted: str,
    host: str,
    why: str,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / f"{trusted}.crt"))
    source = _source(tls_broker.tls_url(host), _Inbox())
    try:
        wait_for(lambda: bool(source.last_error), 10, "a failed connection")
        assert not source.connected.is_set()
        assert why in source.last_error
    finally:
        source.stop()

    publisher = Publisher(parse_mqtt_url(tls_broker.tls_url(host)), "tls-publisher")
    with pytest.raises(PublishError, match=why):
        publisher.connect()
