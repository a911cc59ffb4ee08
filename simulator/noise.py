"""The background a real broker carries besides good readings (issue 11, "Field reality").

A scenario with :class:`Noise` attached publishes, every step, next to its own devices:

- **strangers**: unregistered devices that appear, report for a while and disappear
  (native and Tasmota), a few with clocks hours ahead or weeks behind;
- **junk**: malformed and truncated JSON, binary garbage, wrong types, unknown topics,
  some on the topics of the scenario's own devices;
- **redeliveries**: copies of the scenario's own timestamped messages, at once
  (a QoS 1 duplicate) or minutes later (out of order);
- **retained leftovers** (:meth:`Noise.leftovers`): stale retained readings a previous
  life of the fleet left on the broker, delivered when ingest subscribes.

None of it may change what alerting says about the scenario: strangers are not registered,
junk is refused and counted, duplicates and late copies carry their device timestamps,
retained readings are of unknown age and skipped. Only families whose payloads carry the
device's time are redelivered: a copy of an ESPHome state (no timestamp) would be a new
reading at receive time, which is what such a device would really cause, and a known
limit (README), not noise. Seeded: the same scenario makes the same noise.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from devices.base import Family, Publish, iso_utc

# Unregistered devices alive at any moment (a chain always has a few: spares on a bench,
# a neighbour's sensor on the same broker, a probe installed but not yet registered).
STRANGERS = 6
# How long a stranger reports before it vanishes (a new one takes its place), minutes.
STRANGER_LIFE_MIN = (20, 90)
# Of the strangers, this share have a clock far off (hours ahead, weeks behind).
SKEWED_SHARE = 0.3
# Junk messages per simulated minute.
JUNK_PER_MIN = 2.0
# Redeliveries per simulated minute, and how far back a late copy reaches (minutes).
REDELIVERIES_PER_MIN = 3.0
LATE_WITHIN_MIN = 30
# Retained leftovers found on the broker at start.
LEFTOVERS = 5
# How many of the scenario's recent timestamped messages are kept for redelivery.
RECENT = 2000


@dataclass
class _Stranger:
    device: str
    family: str  # "native" | "tasmota"
    ends: float
    skew_s: float
    next_due: float
    seq: int = 0


class Noise:
    """Seeded background traffic; see the module docstring."""

    def __init__(self, seed: int, start_s: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.counts: Counter[str] = Counter()
        self._recent: deque[Publish] = deque(maxlen=RECENT)
        self._born = 0
        self._strangers: list[_Stranger] = []
        self._now = start_s
        for _ in range(STRANGERS):
            self._strangers.append(self._new_stranger(start_s))

    # -- the scenario's own messages -----------------------------------------------------

    def record(self, message: Publish, family: Family) -> None:
        """A message the scenario published; kept for redelivery if it carries time."""
        if family.profile.has_timestamp and not message.retain:
            self._recent.append(message)

    # -- devices a technician registers -------------------------------------------------

    def can_adopt(self, device: str) -> bool:
        """A stranger alive now with a sane clock (one a technician would register)."""
        return any(s.device == device and not s.skew_s for s in self._strangers)

    def adopt(self, device: str) -> None:
        """The stranger was registered: it is installed now and keeps reporting."""
        for stranger in self._strangers:
            if stranger.device == device:
                stranger.ends = float("inf")
                self.counts["stranger_registered"] += 1

    # -- what the noise publishes ------------------------------------------------------

    def leftovers(self) -> list[Publish]:
        """Stale retained readings, to publish before ingest subscribes."""
        out = []
        for i in range(LEFTOVERS):
            body = {"ts": iso_utc(round((self._now - 86400 * (i + 2)) * 1000)),
                    "temperature_c": 21.5 + i}  # fmt: skip
            out.append(Publish(f"coldchain/v1/old-unit-{i}/telemetry", _dumps(body), retain=True))
        self.counts["retained_leftover"] += len(out)
        return out

    def step(self, now: float, dt: float) -> list[Publish]:
        """Everything the noise publishes during the step that ends at ``now``."""
        self._now = now
        out: list[Publish] = []
        for index, alive in enumerate(self._strangers):
            stranger = alive
            if now >= alive.ends:
                self.counts["stranger_gone"] += 1
                stranger = self._strangers[index] = self._new_stranger(now)
            while stranger.next_due <= now:
                out.append(self._stranger_message(stranger, stranger.next_due))
                stranger.next_due += 60.0
        for _ in range(self.rng.poisson(JUNK_PER_MIN * dt / 60.0)):
            out.append(self._junk())
        for _ in range(self.rng.poisson(REDELIVERIES_PER_MIN * dt / 60.0)):
            copy = self._redelivery()
            if copy is not None:
                out.append(copy)
        return out

    def _new_stranger(self, now: float) -> _Stranger:
        self._born += 1
        self.counts["stranger_appeared"] += 1
        low, high = STRANGER_LIFE_MIN
        skew = 0.0
        if self.rng.random() < SKEWED_SHARE:
            skew = float(self.rng.choice([3 * 3600.0, -40 * 86400.0]))
        family = "native" if self._born % 2 else "tasmota"
        return _Stranger(
            device=f"stranger-{self._born:03d}",
            family=family,
            ends=now + 60.0 * float(self.rng.integers(low, high + 1)),
            skew_s=skew,
            next_due=now + float(self.rng.uniform(0, 60)),
        )

    def _stranger_message(self, stranger: _Stranger, at: float) -> Publish:
        stranger.seq += 1
        value = round(float(3.0 + self.rng.normal(0, 0.3)), 2)
        device_time = at + stranger.skew_s
        self.counts["skewed" if stranger.skew_s else "stranger_reading"] += 1
        if stranger.family == "native":
            body = {"ts": iso_utc(round(device_time * 1000)), "seq": stranger.seq,
                    "temperature_c": value}  # fmt: skip
            return Publish(f"coldchain/v1/{stranger.device}/telemetry", _dumps(body))
        # Tasmota with its clock in UTC and no Timezone set: what a fresh flash sends.
        clock = iso_utc(round(device_time * 1000))[:19]
        body = {"Time": clock, "DS18B20": {"Id": "0316A2791E3C", "Temperature": value},
                "TempUnit": "C"}  # fmt: skip
        return Publish(f"tele/{stranger.device}/SENSOR", _dumps(body))

    def _junk(self) -> Publish:
        kind = int(self.rng.integers(0, 6))
        recent = (
            self._recent[int(self.rng.integers(0, len(self._recent)))] if self._recent else None
        )
        if kind == 0:
            self.counts["junk_malformed_json"] += 1
            return Publish("coldchain/v1/junk-unit/telemetry", b'{"ts": 17, "temperature_c": ')
        if kind == 1 and recent is not None:
            self.counts["junk_truncated"] += 1  # a real device's topic, half its payload
            return Publish(recent.topic, recent.payload[: max(1, len(recent.payload) // 2)])
        if kind == 2:
            self.counts["junk_binary"] += 1
            return Publish("coldchain/v1/junk-unit/telemetry", bytes(self.rng.integers(0, 256, 48)))
        if kind == 3:
            self.counts["junk_wrong_types"] += 1
            wrong = {"ts": "yesterday", "temperature_c": "cold", "seq": [1]}
            return Publish("coldchain/v1/junk-unit/telemetry", _dumps(wrong))
        if kind == 4:
            self.counts["junk_fault_value"] += 1  # an unregistered probe's power-on 85.0
            body = {"ts": iso_utc(round(self._now * 1000)), "temperature_c": 85.0}
            return Publish("coldchain/v1/junk-unit/telemetry", _dumps(body))
        self.counts["junk_unknown_topic"] += 1
        return Publish(f"factory/line{int(self.rng.integers(1, 9))}/status", b"running")

    def _redelivery(self) -> Publish | None:
        if not self._recent:
            return None
        if self.rng.random() < 0.5:
            self.counts["duplicate"] += 1
            return self._recent[-1]  # the last message again: its PUBACK was lost
        depth = min(len(self._recent), int(self.rng.integers(1, LATE_WITHIN_MIN * 10)))
        self.counts["out_of_order"] += 1
        return self._recent[-depth]

    @property
    def injected(self) -> int:
        """Noise messages published so far (strangers, junk, copies, leftovers)."""
        events = ("stranger_appeared", "stranger_gone", "stranger_registered")
        return sum(v for k, v in self.counts.items() if k not in events)


def _dumps(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
