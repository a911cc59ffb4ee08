"""The generated ACL on a real Mosquitto, attacked by one store's devices (issue 13).

Every device and network server of two stores has its own user (the device id) and the
ACL `coldchain broker acl` writes for them. The ingester's user subscribes to ``#``: what
it receives is what would reach ingest. Each test is named after the attack it stops;
each proves the broker refused by a message the broker must deliver, sent after the
attack on the same connection (see tests/security/clients.py), and the last test shows
the same attacks getting through the ACL docs/operations.md used to recommend.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from coldchain.broker import SERVICE_USER, BrokerFile, RegisteredSensor, build_plan, render_acl
from coldchain.services import Mosquitto
from devices import Router
from devices.base import Publish
from simulator.publisher import Publisher, PublishError
from tests.security import fleet as f
from tests.security.clients import (
    Subscriber,
    device,
    publish_then_sentinel,
    subscriber,
    target,
)

ATTACKERS = ["cc-s042-wic1", "s042-node1", "tasmota-s042-wic1", "shellyplus1-a8032ab1c042"]
SERVERS = ["chirpstack-s042", "tts-s042"]
_numbers = itertools.count(1)
# What Mosquitto answers a refused CONNECT (3.1.1 return code 5 or 4).
REFUSED = "not authori[sz]ed|bad user name or password"


def _ingester(broker: Mosquitto) -> AbstractContextManager[Subscriber]:
    """The ingester's user subscribed to everything."""
    return subscriber(broker, SERVICE_USER, f.password(SERVICE_USER))


def _forged(fleet: f.Fleet, topics: list[Publish], seen: list[str]) -> list[str]:
    forged = {m.topic for m in topics}
    return [t for t in seen if t in forged]


def test_every_device_and_network_server_can_publish_its_own_topics(
    acl_broker: Mosquitto, fleet: f.Fleet
) -> None:
    """Not an attack: the control. Under the ACL every user's normal traffic arrives, and
    each message decodes to the device that sent it."""
    router = Router()
    with subscriber(acl_broker, SERVICE_USER, f.password(SERVICE_USER)) as ingest:
        for store in f.STORES:
            for user in fleet.users_of(store):
                messages = fleet.messages(user)
                with device(acl_broker, user, f.password(user)) as client:
                    for message in messages:
                        client.publish(message)
                    client.flush()
                for message in messages:
                    payload = ingest.wait_for(message.topic, message.payload)
                    owner = router.route(message.topic)
                    assert owner is not None, message.topic
                    decoded = owner.decode(message.topic, payload)
                    expected = user
                    if user.startswith("chirpstack-"):
                        expected = f.chirpstack_eui(store)
                    elif user.startswith("tts-"):
                        expected = f.tts_eui(store)
                    assert decoded.device_id == expected, message.topic


@pytest.mark.parametrize("attacker", ATTACKERS + SERVERS)
def test_a_device_cannot_publish_readings_or_status_as_another_stores_devices(
    acl_broker: Mosquitto, fleet: f.Fleet, attacker: str
) -> None:
    """s042's device (or network server) publishes, on their own topics, everything s043's
    native node, ESPHome node, Tasmota, Shelly and LoRaWAN devices publish."""
    forged = [m for victim in fleet.users_of("s043") for m in fleet.messages(victim)]
    with _ingester(acl_broker) as ingest, device(acl_broker, attacker, f.password(attacker)) as c:
        publish_then_sentinel(c, forged, fleet.sentinel(attacker, next(_numbers)), ingest)
        assert _forged(fleet, forged, ingest.topics()) == []


@pytest.mark.parametrize("attacker", ATTACKERS + SERVERS)
def test_a_device_cannot_mark_another_device_offline(
    acl_broker: Mosquitto, fleet: f.Fleet, attacker: str
) -> None:
    """Retained "offline" on every other device's availability topic, its own store's and
    the other's: nothing reaches the ingester, now or (retained) when it resubscribes."""
    victims = [u for s in f.STORES for u in fleet.users_of(s)[:4] if u != attacker]
    offline = [fleet.device(v) for v in victims]
    forged = [Publish(fleet.status_topic(v.id), _offline(v.family), retain=True) for v in offline]
    with _ingester(acl_broker) as ingest, device(acl_broker, attacker, f.password(attacker)) as c:
        publish_then_sentinel(c, forged, fleet.sentinel(attacker, next(_numbers)), ingest)
        assert _forged(fleet, forged, ingest.topics()) == []
    # A new subscription gets the retained messages first, then live ones: once a live
    # message published after SUBACK arrives, every retained one has.
    with (
        _ingester(acl_broker) as late,
        device(acl_broker, "cc-s043-wic1", f.password("cc-s043-wic1")) as live,
    ):
        publish_then_sentinel(live, [], fleet.sentinel("cc-s043-wic1", next(_numbers)), late)
        assert _forged(fleet, forged, late.topics()) == []


def _offline(family: str) -> bytes:
    return {"native": b"offline", "esphome": b"offline", "tasmota": b"Offline"}.get(
        family, b"false"
    )


@pytest.mark.parametrize("victim", ["cc-s043-wic1", "s043-node1", "tasmota-s043-wic1",
                                    "shellyplus1-a8032ab1c043", "s042-node1"])  # fmt: skip
def test_a_last_will_on_another_devices_status_topic_is_never_published(
    acl_broker: Mosquitto, fleet: f.Fleet, victim: str
) -> None:
    """A device connects with its will on the victim's status topic and drops the
    connection; then connects with its own will and drops again. The broker sends the
    first will (or refuses it) before it handles the second connection, so once the
    attacker's own will arrived the forged one would have."""
    attacker = "tasmota-s042-wic1"
    will = Publish(fleet.status_topic(victim), _offline(fleet.device(victim).family), retain=True)
    own = Publish(fleet.status_topic(attacker), b"Offline", retain=True)
    with _ingester(acl_broker) as ingest:
        for last_will in (will, own):
            with device(acl_broker, attacker, f.password(attacker), will=last_will,
                        client_id=attacker) as client:  # fmt: skip
                client.drop()
        ingest.wait_for(own.topic, own.payload)
        assert will.topic not in ingest.topics()


def _invented(fleet: f.Fleet) -> list[Publish]:
    """Messages for devices nobody registered, in every family's namespace, including
    ids nested under the attacker's own prefix, and LoRaWAN uplinks in both stores'
    applications."""
    reading = b'{"temperature_c": 3.0}'
    out = [
        Publish("coldchain/v1/cc-s042-new/telemetry", reading),
        Publish("coldchain/v1/cc-s042-new/status", b"offline"),
        Publish("tele/tasmota-s042-new/SENSOR", b'{"DS18B20":{"Temperature":3.0}}'),
        Publish("s042-new-node/sensor/case_temp/state", b"3.0"),
        Publish("s042/s042-new-node/sensor/case_temp/state", b"3.0"),
        Publish("s042-new-node/status", b"offline"),
        Publish("shellyplus1-000000000001/events/rpc", b'{"method":"NotifyStatus"}'),
        Publish("shellyplus1-000000000001/online", b"false"),
    ]
    for store in f.STORES:
        app = f.APPS[("chirpstack", store)]
        out.append(Publish(f"application/{app}/device/24e1241300000001/event/up", reading))
        out.append(Publish(f"v3/{f.APPS[('tts', store)]}/devices/eui-a840410000000001/up", reading))
    return out


def _nested(fleet: f.Fleet, attacker: str) -> list[Publish]:
    """The topics the old ACL's ``pattern write %u/#`` and ``tele/%u/#`` allowed: the
    attacker's own id as the first levels of a path ESPHome reads as another node."""
    heads = [attacker, f"tele/{attacker}", f"{attacker}/s043"]
    out = []
    for head in heads:
        out.append(Publish(f"{head}/s043-node1/sensor/case_temp/state", b"25.0"))
        out.append(Publish(f"{head}/cc-s043-wic1/sensor/case_temp/state", b"25.0"))
        out.append(Publish(f"{head}/s043-node1/status", b"offline"))
    return out


@pytest.mark.parametrize("attacker", ATTACKERS + SERVERS)
def test_a_device_cannot_invent_device_ids(
    acl_broker: Mosquitto, fleet: f.Fleet, attacker: str
) -> None:
    """A flood of made-up devices starts with one made-up topic: none gets through."""
    forged = _invented(fleet) + _nested(fleet, attacker)
    with _ingester(acl_broker) as ingest, device(acl_broker, attacker, f.password(attacker)) as c:
        publish_then_sentinel(c, forged, fleet.sentinel(attacker, next(_numbers)), ingest)
        assert _forged(fleet, forged, ingest.topics()) == []


@pytest.mark.parametrize("server", SERVERS)
def test_a_network_server_cannot_publish_for_another_stores_lorawan_device(
    acl_broker: Mosquitto, fleet: f.Fleet, server: str
) -> None:
    """s042's network server sends uplinks of s043's registered device, in s042's own
    application and in s043's."""
    family = fleet.server(server).family
    victim_eui = f.chirpstack_eui("s043") if family == "chirpstack" else f.tts_eui("s043")
    forged = []
    for store in f.STORES:
        app = f.APPS[(family, store)]
        if family == "chirpstack":
            topic = f"application/{app}/device/{victim_eui}/event/up"
        else:
            topic = f"v3/{app}/devices/eui-{victim_eui}/up"
        forged.append(Publish(topic, b'{"object":{"temperature":25.0}}'))
    with _ingester(acl_broker) as ingest, device(acl_broker, server, f.password(server)) as c:
        publish_then_sentinel(c, forged, fleet.sentinel(server, next(_numbers)), ingest)
        assert _forged(fleet, forged, ingest.topics()) == []


@pytest.mark.parametrize("spy", ATTACKERS + SERVERS)
def test_a_device_cannot_read_other_devices_data(
    acl_broker: Mosquitto, fleet: f.Fleet, spy: str
) -> None:
    """The spy subscribes to ``#`` and to s043's topics by name (Mosquitto 2.0 grants the
    subscription; the ACL is applied on delivery). s043's devices publish, retained
    statuses included; the ingester gets everything, the spy nothing."""
    victims = fleet.users_of("s043")
    filters = ["#", *(m.topic for v in victims for m in fleet.messages(v))]
    with (
        _ingester(acl_broker) as ingest,
        subscriber(acl_broker, spy, f.password(spy), filters) as spying,
    ):
        sent = []
        for victim in victims:
            messages = fleet.messages(victim, seq=next(_numbers))
            with device(acl_broker, victim, f.password(victim)) as client:
                for message in messages:
                    client.publish(message)
                client.flush()
            sent += messages
        for message in sent:
            ingest.wait_for(message.topic, message.payload)
        # The spy's own sentinel proves its subscription works and is in order.
        with device(acl_broker, spy, f.password(spy)) as own:
            publish_then_sentinel(own, [], fleet.sentinel(spy, next(_numbers)), ingest)
    assert spying.received == []


def test_anonymous_and_wrong_password_connections_are_refused(
    acl_broker: Mosquitto, fleet: f.Fleet
) -> None:
    """No user, or a device's id with another device's password: the broker refuses the
    connection (to publish and to subscribe)."""
    for user, secret in [(None, None), ("cc-s043-wic1", f.password("cc-s042-wic1")),
                         ("cc-s042-wic1", None)]:  # fmt: skip
        with pytest.raises(PublishError, match=REFUSED), device(acl_broker, user, secret):
            pass
        sub = Subscriber(acl_broker, user, secret)
        try:
            assert sub.exit_code() != 0
            assert any(re.search(REFUSED, line) for line in sub.output), sub.output
        finally:
            sub.close()
    # The control: the right password connects.
    with device(acl_broker, "cc-s042-wic1", f.password("cc-s042-wic1")):
        pass


def test_the_ingester_user_cannot_publish_as_a_device(
    acl_broker: Mosquitto, fleet: f.Fleet
) -> None:
    """coldchain's own credentials (they sit in COLDCHAIN_MQTT_URL on the server) write
    only the split-mode observations topic, not device topics."""
    forged = [m for v in fleet.users_of("s043") for m in fleet.messages(v)] + _invented(fleet)
    observations = Publish("coldchain/v1/_alerting/observations", b"[]")
    sentinel = Publish(observations.topic, f"[{next(_numbers)}]".encode())
    with (
        _ingester(acl_broker) as ingest,
        device(acl_broker, SERVICE_USER, f.password(SERVICE_USER)) as client,
    ):
        publish_then_sentinel(client, [*forged, observations], sentinel, ingest)
        ingest.wait_for(observations.topic, observations.payload)
        assert _forged(fleet, forged, ingest.topics()) == []


# The ACL docs/operations.md recommended until issue 13, verbatim in what matters.
OLD_ACL = """\
user coldchain-svc
topic read #
pattern write coldchain/v1/%u/telemetry
pattern write coldchain/v1/%u/status
pattern write tele/%u/#
pattern write stat/%u/#
pattern read cmnd/%u/#
pattern write %u/#
"""


def test_the_acl_once_recommended_let_these_attacks_through(tmp_path: Path, fleet: f.Fleet) -> None:
    """The control for the attack tests: under the old patterns the nested paths of
    ``test_a_device_cannot_invent_device_ids`` reach the ingester and decode as s043's
    ESPHome node (a reading and an "offline"), so those tests would see the hole."""
    acl = tmp_path / "old-acl"
    acl.write_text(OLD_ACL)
    passwd = f.write_password_file(tmp_path / "passwd", fleet.plan.users())
    router = Router()
    with Mosquitto(tmp_path / "old", password_file=passwd, acl_file=acl) as broker:
        for attacker in ("s042-node1", "tasmota-s042-wic1", "shellyplus1-a8032ab1c042"):
            forged = _nested(fleet, attacker)
            with (
                _ingester(broker) as ingest,
                device(broker, attacker, f.password(attacker)) as client,
            ):
                sentinel = fleet.sentinel(attacker, next(_numbers))
                publish_then_sentinel(client, forged, sentinel, ingest)
                through = _forged(fleet, forged, ingest.topics())
                assert through, attacker
                named = set()
                for topic in through:
                    owner = router.route(topic)
                    assert owner is not None
                    payload = next(m.payload for m in forged if m.topic == topic)
                    named.add(owner.decode(topic, payload).device_id)
                assert "s043-node1" in named, (attacker, through)


def test_a_device_cannot_knock_another_offline_by_taking_its_client_id(
    tmp_path: Path, fleet: f.Fleet
) -> None:
    """An attacker connects with the victim's client id (ESPHome and Tasmota derive theirs
    from the MAC). Mosquitto takes the session over: it disconnects the victim and
    publishes the victim's own last will, "offline". The ACL cannot see it (the will is
    the victim's); ``use_username_as_clientid`` on the listener makes every client id the
    user name, so the attacker only ever takes over its own sessions."""
    passwd = f.write_password_file(tmp_path / "passwd", fleet.plan.users())
    acl = tmp_path / "acl"
    acl.write_text(fleet.acl_text)
    victim, attacker = "cc-s043-wic1", "tasmota-s042-wic1"
    will = Publish(fleet.status_topic(victim), b"offline", retain=True)
    for forced, knocked_off in ((False, True), (True, False)):
        with (
            Mosquitto(
                tmp_path / f"broker-{forced}",
                password_file=passwd,
                acl_file=acl,
                username_as_client_id=forced,
            ) as broker,
            _ingester(broker) as ingest,
            device(broker, victim, f.password(victim), will=will, client_id="esp-a4cf12b3"),
            device(broker, attacker, f.password(attacker), client_id="esp-a4cf12b3") as own,
        ):
            # The takeover, if any, happened before the attacker's CONNACK.
            publish_then_sentinel(own, [], fleet.sentinel(attacker, next(_numbers)), ingest)
            if knocked_off:
                ingest.wait_for(will.topic, will.payload)
            else:
                assert will.topic not in ingest.topics()


def test_a_device_added_or_removed_takes_effect_at_the_reload(
    tmp_path: Path, fleet: f.Fleet
) -> None:
    """The roll-out of docs/operations.md 12.1: a new device is refused until the password
    file and the regenerated ACL are in place and Mosquitto gets SIGHUP; then it
    publishes. The reload keeps valid clients connected with their new lines, and refuses
    a user removed from both files."""
    new, removed, kept = "cc-s042-wic2", "cc-s042-wic1", "tasmota-s042-wic1"
    acl, passwd = tmp_path / "acl", tmp_path / "passwd"
    acl.write_text(fleet.acl_text)
    f.write_password_file(passwd, fleet.plan.users())
    added = BrokerFile.model_validate(
        {
            **f.broker_file(),
            "devices": [*f.broker_file()["devices"], {"id": new, "family": "native"}],
        }
    )
    sensors = [
        RegisteredSensor(s["id"], s["family"], s["asset"].partition("-")[0])
        for s in f.chain()["sensors"]
        if s["id"] != removed
    ]
    plan = build_plan(sensors, added)
    reading = Publish(f"coldchain/v1/{new}/telemetry", b'{"temperature_c": 3.5}')
    with Mosquitto(tmp_path / "broker", password_file=passwd, acl_file=acl) as broker:
        with pytest.raises(PublishError, match=REFUSED), device(broker, new, f.password(new)):
            pass
        with (
            _ingester(broker) as ingest,
            device(broker, kept, f.password(kept)) as still,
            subscriber(broker, removed, f.password(removed)) as gone,
        ):
            acl.write_text(render_acl(plan))
            f.write_password_file(passwd, plan.users())
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGHUP)
            with _connected(broker, new) as client:
                publish_then_sentinel(client, [], reading, ingest)
            publish_then_sentinel(still, [], fleet.sentinel(kept, next(_numbers)), ingest)
            assert still.reconnects == 0  # never dropped by the reload
            # The removed device's open connection is closed; its client's retries fail.
            gone.wait_output(REFUSED)
        with (
            pytest.raises(PublishError, match=REFUSED),
            device(broker, removed, f.password(removed)),
        ):
            pass


@contextmanager
def _connected(broker: Mosquitto, user: str, timeout: float = 10.0) -> Iterator[Publisher]:
    """A connection as ``user``, retried until the broker's reload has let it in."""
    deadline = time.monotonic() + timeout
    while True:
        client = Publisher(target(broker, user, f.password(user)), f"acl-test-{user}")
        try:
            client.connect()
            break
        except PublishError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield client
    finally:
        client.disconnect()
