"""Schema fuzzing: schemathesis drives every operation of ``/openapi.json`` against the live
app (uvicorn on a free port, an admin key, a seeded registry, InfluxDB and an alert).

Two checks, as DESIGN.md §6 and issue 5 ask: no 5xx (``not_a_server_error``) and every
response matches its documented schema (``response_schema_conformance``). Generated ids
are mixed with real ones (schemathesis "dictionaries") so operations reach their logic
instead of answering 404, and requests to the Twilio webhooks are signed like Twilio signs
them, so the fuzzer reaches the engine behind the signature check too.

Bounded to :data:`MAX_EXAMPLES` cases per operation and phase (about a minute on two cores).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import response_schema_conformance

# The one twilio import outside the notifier, as in tests/fakes/twilio_server.py: the
# signatures must come from Twilio's own algorithm, not from a copy of ours.
from twilio.request_validator import RequestValidator  # noqa: TID251

from api import ApiDeps, create_app
from coldchain.services import InfluxDB
from core.clock import ManualClock
from core.influx import InfluxV1
from core.registry import DiscoveredDevice, Registry
from core.settings import Settings
from core.types import Quantity
from ingest.pipeline import Observation
from tests.api.conftest import NIGHT, PUBLIC_URL, TWILIO_TOKEN, Api, api_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Cases per operation and phase. Each costs a few ms of HTTP; 41 operations x 40 keep the
# whole test near a minute here. Fewer and rare branches go untried; more and the suite
# outgrows its two-minute budget without finding different bugs.
MAX_EXAMPLES = 40
WEBHOOKS = "/api/v1/webhooks/twilio/"
_turn = itertools.count()


def _seed(api: Api, clock: ManualClock) -> list[str]:
    """Readings, an open alert, a discovered device and a dead letter; returns alert ids."""
    now_ms = round(clock.time() * 1000)
    lines = [
        f"temperature,store=s042,asset=s042-wic1,asset_type=walkin_cooler,sensor=wic1 "
        f"value={3.0 + i / 10} {now_ms - i * 60_000}"
        for i in range(120)
    ]
    api.influx.write("\n".join(lines).encode())
    assert api.engine is not None
    api.engine.observe(
        [Observation("reading", now_ms, "wic1", "wic1", "s042", "s042-wic1", None,
                     Quantity.TEMPERATURE, 11.0)]
    )  # fmt: skip
    api.engine.delivery.drain()
    alerts = [a.id for a in api.engine.book.alerts(open_only=True)]
    api.registry.record_discovered(
        [DiscoveredDevice("cc-new-1", "native", 1.0, 2.0, 1, ["cc-new-1"], "t", "{}")]
    )
    api.registry.add_dead_letters([(1.0, "bad_json", "native", "t", "{", "x")])
    assert alerts, "the seed reading opened no alert"
    return alerts


def _openapi() -> dict[str, Any]:
    """The app's schema, built without serving (the live /openapi.json is compared to it)."""
    settings = Settings()
    influx = InfluxV1(settings)  # no I/O until a query
    registry = Registry(":memory:")
    try:
        deps = ApiDeps(settings=settings, registry=registry, influx=influx, engine=None,
                       clock=ManualClock(NIGHT))  # fmt: skip
        return create_app(deps).openapi()
    finally:
        influx.close()
        registry.close()


# Real ids of the seeded chain, drawn half of the time instead of generated ones.
_IDS = {
    "stores": ["s042", "s043"],
    "assets": ["s042-wic1", "s042-dc1", "s043-wic1"],
    "sensors": ["wic1", "dc1", "z10-wic1", "cc-new-1"],
    "contacts": ["ana", "zoe", "noc"],
    "policies": ["default"],
}
_BINDINGS = {
    "path.store_id": "stores", "query.store": "stores", "body.store": "stores",
    "path.asset_id": "assets", "query.asset": "assets", "body.asset": "assets",
    "path.sensor_id": "sensors", "query.sensor": "sensors", "body.sensor": "sensors",
    "path.contact_id": "contacts", "path.policy_id": "policies",
}  # fmt: skip
schema = schemathesis.openapi.from_dict(
    _openapi(),
    config=schemathesis.Config.from_dict(
        {
            "seed": 20261118,
            "dictionaries": {name: {"values": values} for name, values in _IDS.items()},
            "parameters": {
                key: {"dictionary": name, "probability": 0.5} for key, name in _BINDINGS.items()
            },
            "generation": {"max-examples": MAX_EXAMPLES},
            "warnings": False,
        }
    ),
)


@pytest.fixture(scope="module")
def fuzzed(
    influxd: InfluxDB, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, list[str]]]:
    """One live API for every operation's test, seeded once."""
    tmp = tmp_path_factory.mktemp("fuzz")
    settings = Settings(
        influx_url=influxd.url, influx_db="fuzz", db=tmp / "registry.sqlite3",
        spool_dir=tmp / "spool",
    )  # fmt: skip
    influx = InfluxV1(settings)
    influx.ensure_database()
    clock = ManualClock(NIGHT)
    api = Api(api_settings(settings), influx, clock)
    try:
        served = api.anonymous.get("/openapi.json").json()
        assert served == schema.raw_schema, "the live /openapi.json differs from the fuzzed one"
        yield api, _seed(api, clock)
    finally:
        api.close()
        influx.close()


def _steer(case: Case[Any], alerts: list[str], now: float) -> None:
    """Every other case, make a generated request plausible so it gets past validation
    into the logic behind it: a real alert id, a body id equal to the path id, a
    maintenance window that ends in the future."""
    if next(_turn) % 2:
        return
    params = case.path_parameters or {}
    if "alert_id" in params:
        params["alert_id"] = alerts[0]
    body = case.body
    if case.method == "PUT" and isinstance(body, dict) and len(params) == 1:
        body["id"] = next(iter(params.values()))
    if case.path.endswith("/silences") and case.method == "POST" and isinstance(body, dict):
        for key in ("starts", "asset", "sensor"):
            body.pop(key, None)
        body["store"] = "s042"
        body["ends"] = datetime.fromtimestamp(now + 3600, UTC).isoformat()


def _sign(case: Case[Any]) -> None:
    """Sign a webhook request for the public URL, as Twilio would."""
    if not case.path.startswith(WEBHOOKS) or not isinstance(case.body, dict):
        return
    form = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in case.body.items()}
    case.body = dict(form)
    url = PUBLIC_URL + case.formatted_path
    case.headers["X-Twilio-Signature"] = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)  # fmt: skip
def test_no_server_errors_and_responses_match_the_schema(
    case: Case[Any], fuzzed: tuple[Api, list[str]]
) -> None:
    api, alerts = fuzzed
    _steer(case, alerts, api.clock.time())
    _sign(case)
    case.call_and_validate(
        base_url=api.server.url,
        headers={"Authorization": f"Bearer {api.keys['admin']}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
