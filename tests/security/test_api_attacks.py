"""Attacks on the API and the Twilio webhooks, each replayed against the real app, named
after what it caught (issue 13)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from core.clock import ManualClock
from core.influx import InfluxV1
from core.registry import Registry
from core.settings import Settings
from tests.api.conftest import FROM, SMS_URL, Api, api_settings
from tests.fakes.twilio_server import FakeTwilioServer

pytestmark = pytest.mark.integration

TECH_PHONE = "+50255550166"


def test_a_technician_made_itself_an_oncall_contact_and_acknowledged_by_sms(
    paged: tuple[Api, httpx.Client], twilio: FakeTwilioServer
) -> None:
    """Was: a technician key (403 on POST /alerts/{id}/ack) could PUT itself as a
    chain-wide on-call contact (201) and acknowledge by replying OK <code>."""
    api, proxy = paged
    tech = api.client("technician")
    me = {"id": "eve", "name": "Eve", "phone": TECH_PHONE, "roles": ["oncall"]}
    assert tech.put("/api/v1/contacts/eve", json=me).status_code == 403
    chain_wide = {**me, "roles": ["technician"]}  # no stores: every store
    assert tech.put("/api/v1/contacts/eve", json=chain_wide).status_code == 403
    noc = api.client("admin").get("/api/v1/contacts/noc").json()
    hijack = {**noc, "phone": TECH_PHONE}  # repoint the NOC desk to her phone
    assert tech.put("/api/v1/contacts/noc", json=hijack).status_code == 403
    assert tech.delete("/api/v1/contacts/noc").status_code == 403
    grant = {"id": "default", "steps": [{"notify": ["eve"], "wait": "1m"}]}
    assert tech.put("/api/v1/escalation-policies/default", json=grant).status_code == 403
    # What a technician may do: a store's technician contact. It still cannot ack.
    store_tech = {**me, "roles": ["technician"], "stores": ["s042"]}
    assert tech.put("/api/v1/contacts/eve", json=store_tech).status_code == 201
    api.minutes(1, wic1=11.0)
    alert = api.open_alert("s042")
    code = api.client("admin").get(f"/api/v1/alerts/{alert}").json()["ack_code"]
    reply = twilio.send_inbound_sms(SMS_URL, TECH_PHONE, FROM, f"OK {code}", http=proxy)
    assert "no valido para este numero" in reply.body
    assert api.client("admin").get(f"/api/v1/alerts/{alert}").json()["state"] == "firing"


def test_a_captured_signed_sms_replayed_acknowledged_again(
    paged: tuple[Api, httpx.Client], twilio: FakeTwilioServer
) -> None:
    """Was: the same signed webhook (same MessageSid) posted again was processed again;
    after the alert was resolved, the code could acknowledge a new alert."""
    api, proxy = paged
    api.minutes(1, wic1=11.0)
    alert = api.open_alert("s042")
    code = api.client("admin").get(f"/api/v1/alerts/{alert}").json()["ack_code"]
    sid = "SM" + "ab" * 16
    first = twilio.send_inbound_sms(SMS_URL, "+50255550101", FROM, f"OK {code}", http=proxy,
                                    extra={"MessageSid": sid})  # fmt: skip
    assert "reconocida" in first.body
    replay = twilio.send_inbound_sms(SMS_URL, "+50255550101", FROM, f"OK {code}", http=proxy,
                                     extra={"MessageSid": sid})  # fmt: skip
    assert replay.status == 200
    assert "<Message>" not in replay.body  # nothing said, nothing done
    assert (
        api.client("admin")
        .post(f"/api/v1/alerts/{alert}/resolve", json={"note": "fixed"})
        .status_code
        == 200
    )
    api.minutes(3, wic1=3.0, z10_wic1=11.0)  # another alert opens elsewhere
    other = api.open_alert("s043")
    assert api.client("admin").get(f"/api/v1/alerts/{other}").json()["ack_code"] != code


def test_ack_code_guessing_was_answered_and_told_live_codes_from_dead_ones(
    paged: tuple[Api, httpx.Client], twilio: FakeTwilioServer
) -> None:
    """Was: 9,000 guesses from one number in 14 s were all answered, each with an SMS,
    and "not authorised for 1527" vs "not found" told which codes were live."""
    api, proxy = paged
    api.minutes(1, wic1=11.0)
    alert = api.open_alert("s042")
    live = api.client("admin").get(f"/api/v1/alerts/{alert}").json()["ack_code"]
    guesser = "+15557770000"
    dead = "0000" if live != "0000" else "0001"
    answers = [
        twilio.send_inbound_sms(SMS_URL, guesser, FROM, f"OK {guess}", http=proxy).body
        for guess in (live, dead)
    ]
    assert answers[0].replace(live, "CODE") == answers[1].replace(dead, "CODE")
    for guess in range(1000, 1010):
        twilio.send_inbound_sms(SMS_URL, guesser, FROM, f"OK {guess}", http=proxy)
    silent = twilio.send_inbound_sms(SMS_URL, guesser, FROM, f"OK {live}", http=proxy)
    assert "<Message>" not in silent.body  # locked out: not answered, not evaluated
    assert api.client("admin").get(f"/api/v1/alerts/{alert}").json()["state"] == "firing"
    # Ana, who was paged, is not affected by the guesser's lockout.
    ana = twilio.send_inbound_sms(SMS_URL, "+50255550101", FROM, f"OK {live}", http=proxy)
    assert "reconocida" in ana.body
    metrics = api.anonymous.get("/metrics").text
    # 5 failures were answered (2 + 3 of the loop); the other 7 and the live one were not.
    assert 'coldchain_api_inbound_refused_total{reason="throttled"} 8.0' in metrics


def test_haccp_csv_carried_formulas_into_the_spreadsheet(api: Api) -> None:
    """Was: an asset named "=HYPERLINK(...)" or an SMS note "@SUM(...)" came out of the
    HACCP CSV as-is: a formula in the QA lead's spreadsheet."""
    evil = '=HYPERLINK("http://evil.example","ok")'
    body = {"id": "s042-wic1", "store": "s042", "type": "walkin_cooler", "name": evil}
    assert api.client("admin").put("/api/v1/assets/s042-wic1", json=body).status_code == 200
    now_ms = round(api.clock.time() * 1000)
    api.influx.write(
        "\n".join(
            f"temperature,store=s042,asset=s042-wic1,asset_type=walkin_cooler,sensor=wic1 "
            f"value={v} {now_ms - (3 - i) * 60_000}"
            for i, v in enumerate((3.0, -1.5, 3.0))  # a negative reading stays a number
        ).encode()
    )
    api.minutes(1, wic1=11.0)
    alert = api.open_alert("s042")
    api.client("oncall").post(f"/api/v1/alerts/{alert}/ack", json={"note": "@SUM(1+1)"})
    api.minutes(1, wic1=11.0)  # the record runs to now: the alert opened before it
    text = (
        api.client("admin")
        .get(
            "/api/v1/reports/haccp", params={"store": "s042", "date": "2026-11-17", "format": "csv"}
        )
        .text
    )
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert f"'{evil}" in cells
    assert any(cell.startswith("'@SUM") for cell in cells)
    assert not any(cell.startswith(("=", "@", "+")) for cell in cells)
    assert "-1.50" in cells


def test_api_keys_could_not_be_listed_or_revoked(api: Api) -> None:
    """Was: `keys` had only `create`: a leaked key could not be found nor revoked."""
    admin = api.client("admin")
    made = admin.post("/api/v1/keys", json={"role": "manager", "stores": ["s042"],
                                            "name": "tablet-s042"})  # fmt: skip
    assert made.status_code == 201
    key = made.json()
    assert key["key"].startswith(f"cc_{key['id']}_")
    listed = admin.get("/api/v1/keys").json()
    assert all("key" not in k and "hash" not in k for k in listed)
    assert {"tablet-s042", "ana-key", "noc-desk"} <= {k["name"] for k in listed}
    tablet = httpx.Client(base_url=api.server.url, timeout=15,
                          headers={"Authorization": f"Bearer {key['key']}"})  # fmt: skip
    try:
        assert tablet.get("/api/v1/alerts").status_code == 200
        assert api.client("oncall").delete(f"/api/v1/keys/{key['id']}").status_code == 403
        assert admin.delete(f"/api/v1/keys/{key['id']}").status_code == 204
        assert tablet.get("/api/v1/alerts").status_code == 401  # at once
        assert admin.delete(f"/api/v1/keys/{key['id']}").status_code == 404
    finally:
        tablet.close()
    actions = [e["action"] for e in admin.get("/api/v1/audit", params={"limit": 1000})
               .json()["items"] if e["subject"] == f"key-{key['id']}"]  # fmt: skip
    assert actions == ["api_key.create", "api_key.revoke"]


def test_a_silence_could_not_be_ended_early(api: Api) -> None:
    """Was: a maintenance window set for 48 h by mistake held every page for 48 h."""
    manager = api.client("manager")
    ends = (api.clock.now() + timedelta(hours=48)).isoformat()
    made = manager.post("/api/v1/silences", json={"store": "s042", "ends": ends,
                                                  "reason": "cleaning"}).json()  # fmt: skip
    assert api.client("manager_b").post(f"/api/v1/silences/{made['id']}/end").status_code == 403
    ended = manager.post(f"/api/v1/silences/{made['id']}/end")
    assert ended.status_code == 200
    assert ended.json()["active"] is False
    api.minutes(1, wic1=11.0)  # pages again at once
    assert [to for to, _ in api.sent()] == ["+50255550101"]
    assert manager.post("/api/v1/silences/999999/end").status_code == 404


def test_a_manager_read_the_noc_phone_number_in_alert_details(api: Api) -> None:
    """Was: GET /contacts/noc is 403 for a manager, but the alert's notification log
    showed the NOC desk's number to her."""
    api.minutes(1, wic1=11.0)
    api.minutes(30, wic1=11.0)  # store closed at night: on-call is paged too
    alert = api.open_alert("s042")
    seen = api.client("manager").get(f"/api/v1/alerts/{alert}").json()["notifications"]
    phones = {n["contact"]: n["phone"] for n in seen}
    assert phones == {"ana": "+50255550101", "noc": None}
    assert api.client("manager").get("/api/v1/contacts/noc").status_code == 403
    full = api.client("oncall").get(f"/api/v1/alerts/{alert}").json()["notifications"]
    assert {n["contact"]: n["phone"] for n in full}["noc"] == "+50255550199"


def test_docs_and_metrics_could_not_be_put_behind_a_key(
    influx_settings: Settings, influx: InfluxV1, clock: ManualClock
) -> None:
    """Was: /docs, /openapi.json and /metrics were always open; exposing the API meant
    exposing the route map and the chain's traffic counters."""
    settings = api_settings(influx_settings, api_public_docs=False, api_public_metrics=False)
    closed = Api(settings, influx, clock)
    try:
        for path in ("/docs", "/openapi.json", "/metrics", "/api/v1/metrics"):
            assert closed.anonymous.get(path).status_code == 401, path
            assert closed.client("oncall").get(path).status_code == 200, path
        assert closed.anonymous.get("/healthz").status_code == 200  # probes stay open
    finally:
        closed.close()
    with_defaults = Api(api_settings(influx_settings), influx, clock)
    try:
        assert with_defaults.anonymous.get("/metrics").status_code == 200
    finally:
        with_defaults.close()


def test_the_registry_file_was_readable_by_every_user(tmp_path: Path) -> None:
    """Was: the registry (phone numbers, key hashes, the audit log) was created 0644."""
    path = tmp_path / "registry.sqlite3"
    Registry(path).close()
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)  # an older install
    registry = Registry(path)
    registry.create_api_key("oncall")  # writes through the WAL
    assert path.stat().st_mode & 0o777 == 0o600
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_mode & 0o777 == 0o600
    registry.close()


def test_tightening_the_registry_mode_broke_sqlite_locks_in_the_same_process(
    tmp_path: Path,
) -> None:
    """Caught while fixing the above: opening (and closing) the database file to set its
    mode dropped this process's POSIX locks on it; another process (a CLI command) then
    took the database for unused, reset its WAL index, and this process's connections
    failed with "disk I/O error"."""
    path = tmp_path / "registry.sqlite3"
    first = Registry(path)
    first.create_api_key("oncall")
    second = Registry(path)  # a second connection of this process, as in `coldchain run`
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDCHAIN_")}
    for _ in range(3):  # the operator's CLI, in another process
        subprocess.run(
            [sys.executable, "-m", "coldchain", "keys", "create", "--role", "oncall"],
            env={**env, "COLDCHAIN_DB": str(path)}, capture_output=True, check=True,
            timeout=60,
        )  # fmt: skip
        first.create_api_key("oncall")
        second.create_api_key("oncall")
    assert len(Registry(path).api_keys()) == 10
    first.close()
    second.close()
