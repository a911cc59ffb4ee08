"""People at work on the registry while a scenario plays (issue 11, "Field reality").

A technician commissioning a new store and the NOC doing their day, through the real API
and the real CLI (subprocesses on the same registry), at fixed simulated minutes:

- creates an admin key with ``coldchain keys create`` and uses it for everything else;
- creates a store being commissioned (``ops-new``) with two units, and silences it;
- silences, for a while, a store of the scenario that has no part in its story;
- registers devices the technician finds in ``GET /devices/discovered`` on the new store
  (the simulator's :class:`~simulator.noise.Noise` keeps those devices reporting), and
  moves one between the two units;
- imports the scenario's unchanged chain file with ``coldchain registry import``.

None of it may change what the scenario's people hear: every registry change reloads
alerting (docs/design/state-continuity.md), and none may cost an excursion its budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from core.chain import dump_chain

if TYPE_CHECKING:
    from tests.acceptance.harness import Run

NEW_STORE = "ops-new"
# When (simulated minutes after the start) the operator does what. Spread over the first
# hours, where every scenario's story happens.
KEY_AT, COMMISSION_AT = 1, 2
SILENCE_OTHER_AT = 20
REGISTER_AT = (15, 45, 75, 105)
MOVE_AT = 60
IMPORT_AT = (30, 90)


class Operator:
    """A :class:`Run` hook; see the module docstring."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.actions: Counter[str] = Counter()
        self.started = run.clock.now()
        self.done: set[tuple[str, int]] = set()
        self.key: str | None = None
        self.registered: list[str] = []
        self.chain_file = run.tmp / "chain.yaml"
        self.chain_file.write_text(dump_chain(run.scenario.full_chain()))
        self._http: httpx.Client | None = None

    @property
    def total(self) -> int:
        return sum(self.actions.values())

    def __call__(self, run: Run) -> None:
        minute = int((run.clock.now() - self.started) / timedelta(minutes=1))
        for name, at in self._schedule():
            if minute >= at and (name, at) not in self.done:
                self.done.add((name, at))
                getattr(self, f"_{name}")()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def _schedule(self) -> list[tuple[str, int]]:
        plan = [("key", KEY_AT), ("commission", COMMISSION_AT), ("silence_other", SILENCE_OTHER_AT),
                ("move", MOVE_AT)]  # fmt: skip
        plan += [("register", at) for at in REGISTER_AT]
        plan += [("reimport", at) for at in IMPORT_AT]
        return sorted(plan, key=lambda item: item[1])

    # -- the CLI ------------------------------------------------------------------------

    def _cli(self, *args: str) -> str:
        settings = self.run.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLDCHAIN_", "TWILIO_"))}
        env.update(COLDCHAIN_DB=str(settings.db), COLDCHAIN_LOG_LEVEL="WARNING")
        done = subprocess.run(
            [sys.executable, "-m", "coldchain", *args], env=env, capture_output=True,
            text=True, timeout=60, check=True,
        )  # fmt: skip
        return done.stdout

    def _key(self) -> None:
        self.key = self._cli("keys", "create", "--role", "admin", "--name", "ops").strip()
        self.actions["cli_keys_create"] += 1

    def _reimport(self) -> None:
        self._cli("registry", "import", str(self.chain_file))
        self.actions["cli_registry_import_unchanged"] += 1

    # -- the API ------------------------------------------------------------------------

    def api(self) -> httpx.Client:
        if self._http is None:
            assert self.key is not None
            self._http = self.run.api_client(self.key)
        return self._http

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.api().request(method, f"/api/v1{path}", json=body)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        self.actions[f"api_{method.lower()}_{path.split('/')[1]}"] += 1
        return response.json() if response.content else None

    def _silence(self, store: str, hours: float, reason: str) -> None:
        now = self.run.clock.now()
        self._call("POST", "/silences", {"store": store, "ends": (now + timedelta(hours=hours))
                                         .isoformat(), "reason": reason})  # fmt: skip

    def _commission(self) -> None:
        zone = self.run.scenario.full_chain().stores[0].timezone
        self._call("PUT", f"/stores/{NEW_STORE}", {"id": NEW_STORE, "name": "Tienda nueva",
                                                   "timezone": zone})  # fmt: skip
        for unit in ("dc1", "dc2"):
            self._call("PUT", f"/assets/{NEW_STORE}-{unit}",
                       {"id": f"{NEW_STORE}-{unit}", "store": NEW_STORE, "type": "dairy_case",
                        "name": f"Lacteos {unit[-1]}"})  # fmt: skip
        self._silence(NEW_STORE, 48, "commissioning")

    def _silence_other(self) -> None:
        quiet = self.run.quiet_stores()
        if quiet:
            self._silence(quiet[0], 2, "cleaning the cases")

    def _register(self) -> None:
        noise = self.run.noise
        assert noise is not None
        found = self._call("GET", "/devices/discovered")
        for device in found:
            name = device["device_id"]
            if not name.startswith("stranger-") or not noise.can_adopt(name):
                continue
            sensor = device["sensors"][0]
            self._call("PUT", f"/sensors/{sensor}",
                       {"id": sensor, "asset": f"{NEW_STORE}-dc1", "interval": "60s"})  # fmt: skip
            noise.adopt(name)
            self.registered.append(sensor)
            return

    def _move(self) -> None:
        if self.registered:
            sensor = self.registered[0]
            self._call("PUT", f"/sensors/{sensor}",
                       {"id": sensor, "asset": f"{NEW_STORE}-dc2", "interval": "60s"})  # fmt: skip
