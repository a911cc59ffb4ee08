"""The vocabulary shared by the rules, the alert book, the stages and the API.

A :class:`Condition` is an active problem as the rules see it; a :class:`Transition` says
it fired, got worse, or cleared. Conditions are per problem, not per reading:
``temperature:<asset>`` climbs from *rising* to *warning* to *critical* as one problem,
so a manager gets one message about the walk-in, not three. Nothing here does anything:
the rules (:mod:`alerting.rules`) make conditions, the alert book persists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Problem kinds (stable strings: stored, shown and used in templates).
TEMPERATURE = "temperature"  # stages: rising < warning < critical (high or low)
DEFROST_OVERRUN = "defrost_overrun"  # first stage of a temperature problem (same key)
DOOR_OPEN = "door_open"
SENSOR_SILENT = "sensor_silent"
DEVICE_OFFLINE = "device_offline"
STORE_OUTAGE = "store_outage"
LOW_BATTERY = "low_battery"
SENSOR_FAULT = "sensor_fault"
CALIBRATION_DUE = "calibration_due"  # a store's sensors past their calibration date
PIPELINE_STALLED = "pipeline_stalled"  # chain-wide: readings stopped from many stores
# The kinds a pipeline stall explains (and holds): they are what a central stall looks
# like from each store.
SILENCE_KINDS = frozenset({SENSOR_SILENT, DEVICE_OFFLINE, STORE_OUTAGE})

# The reserved store id of chain-wide alerts (``alerts.store`` is NOT NULL, and messages,
# recipients and policies are per store). It can never be a real store: chain ids start
# with a letter or digit. Its alerts page roles regardless of their contacts' store scope,
# speak the chain's most common store language, and are invisible to store-scoped API keys.
CHAIN_STORE = "*"

WARNING, CRITICAL = "warning", "critical"
RISING = "rising"
# Stage -> level: a condition only ever climbs (an upgrade), or clears.
LEVELS = {RISING: 1, WARNING: 2, CRITICAL: 3}
STAGES = {level: stage for stage, level in LEVELS.items()}


def stage_level(stage: str) -> int:
    """The level of a stage (a stage this version does not know counts as warning)."""
    return LEVELS.get(stage, 2)


@dataclass(frozen=True, slots=True)
class Condition:
    """An active problem and everything needed to explain it."""

    key: str  # "<kind>:<subject>", stable for the life of the problem
    kind: str
    severity: str  # "warning" | "critical"
    stage: str  # temperature: "rising" | "warning" | "critical"; others = severity
    store: str
    asset: str | None
    sensor: str | None
    device: str | None
    since_ms: int  # when the excursion or problem began
    value: float | None  # the reading that decided it
    limit: float | None
    explanation: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """A condition fired, got worse, or cleared, at ``at_ms``."""

    action: str  # "fire" | "upgrade" | "clear"
    condition: Condition
    at_ms: int
