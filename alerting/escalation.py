"""Escalation: which step an alert runs next, who it notifies, and when the next is due.

Pure planning (STYLE.md §2): an alert's policy was frozen onto it when it opened; each
due step is planned from the alert as the book holds it now (:func:`plan`) into a
:class:`Step` with its :class:`~alerting.stages.base.Dispatch`es. Nothing is written here:
the pipeline filters the dispatches, then the alert book writes every surviving step, its
notifications and audit rows in one transaction (:meth:`AlertBook.commit_round`), so a
restart neither repeats a step nor skips one.

Waits are divided by the store's criticality weight at the time the step runs (fewer
people watching at night: on-call hears sooner). Chain-wide alerts (a pipeline stall, on
:data:`~alerting.conditions.CHAIN_STORE`) page roles regardless of their contacts' store
scope.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alerting import messages
from alerting.book import ACKNOWLEDGED, Alert
from alerting.conditions import CALIBRATION_DUE, CHAIN_STORE, Condition
from alerting.stages.base import Dispatch
from alerting.weights import Weight
from core.chain import Contact, Policy, PolicyStep, Store

# Used when neither the asset, the store nor a policy called "default" names one: store
# manager first, on-call after 30 min, regional management every 2 h after that.
DEFAULT_POLICY = [
    PolicyStep(notify=["store_manager"], wait=1800),
    PolicyStep(notify=["oncall"], wait=1800),
    PolicyStep(notify=["regional"], repeat=7200),
]
# Chain-wide alerts (a pipeline stall) when the chain has no policy called "pipeline":
# on-call, and on-call again every hour until acknowledged. Store managers cannot fix a
# broker, and regional management neither.
PIPELINE_POLICY = [
    PolicyStep(notify=["oncall"], wait=3600),
    PolicyStep(notify=["oncall"], repeat=3600),
]
PIPELINE_POLICY_ID = "pipeline"
# Sensors past their calibration date when the chain has no policy called "calibration":
# the technicians of the store, again every week until it is done. Nobody else can act
# on it, and more often than weekly is noise for a task that takes a visit.
CALIBRATION_POLICY = [PolicyStep(notify=["technician"], repeat=7 * 86400)]
CALIBRATION_POLICY_ID = "calibration"


@dataclass(frozen=True, slots=True)
class Place:
    """Where an alert is, as its messages need it: a store, or the whole chain."""

    id: str
    name: str
    language: str
    timezone: str


@dataclass(frozen=True, slots=True)
class Step:
    """One escalation step planned for one alert (nothing written yet).

    ``dispatches`` is empty for a *park*: the chain is finished (or the store is gone),
    so the alert waits without a next step and nobody is notified.
    """

    alert: Alert
    step: int  # the alert's step index after this one
    repeats: int
    next_at: float | None
    purpose: str  # "page" for the first step, "escalation" after
    detail: dict[str, Any]
    dispatches: tuple[Dispatch, ...]

    @property
    def park(self) -> bool:
        return not self.dispatches


def policy_for(
    condition: Condition,
    stores: Mapping[str, Store],
    asset_policy: Mapping[str, str | None],
    policies: Mapping[str, Policy],
) -> list[PolicyStep]:
    """The policy frozen onto a new alert: the asset's, the store's, ``default``, or
    :data:`DEFAULT_POLICY` (chain-wide alerts: ``pipeline`` or :data:`PIPELINE_POLICY`;
    calibration: ``calibration`` or :data:`CALIBRATION_POLICY`)."""
    if condition.store == CHAIN_STORE:
        chain = policies.get(PIPELINE_POLICY_ID)
        return list(chain.steps) if chain else list(PIPELINE_POLICY)
    if condition.kind == CALIBRATION_DUE:
        chosen = policies.get(CALIBRATION_POLICY_ID)
        return list(chosen.steps) if chosen else list(CALIBRATION_POLICY)
    store = stores.get(condition.store)
    for name in (asset_policy.get(condition.asset or ""), store.policy if store else None,
                 "default"):  # fmt: skip
        if name and name in policies:
            return list(policies[name].steps)
    return list(DEFAULT_POLICY)


def recipients(
    step: PolicyStep, store: str, contacts: Iterable[Contact]
) -> list[tuple[Contact, str]]:
    """Contacts a step notifies (by id or role, within their stores), with the channel."""
    wanted = set(step.notify)
    out: list[tuple[Contact, str]] = []
    for contact in contacts:
        if contact.stores and store not in contact.stores and store != CHAIN_STORE:
            continue
        if contact.id in wanted or wanted & set(contact.roles):
            out.append((contact, step.channel or contact.channel))
    return out


def plan(
    alert: Alert, now: float, place: Place | None, weight: Weight | None,
    contacts: Iterable[Contact],
) -> Step:  # fmt: skip
    """The step ``alert`` runs now (it is due)."""
    steps = alert.policy
    index = alert.step
    repeating = index >= len(steps)
    finished = repeating and steps[-1].repeat is None
    if finished and alert.state == ACKNOWLEDGED:
        index, finished = len(steps) - 1, False  # ack expired with the chain done: remind
    if finished or place is None:
        reason = "escalation chain finished" if finished else "store no longer exists"
        return Step(alert, alert.step, alert.repeats, None, "page",
                    {"step": alert.step, "reason": reason}, ())  # fmt: skip
    step = steps[min(index, len(steps) - 1)]
    factor = weight.value if weight else 1.0
    interval = step.repeat if (repeating or step.wait is None) else step.wait
    more = index + 1 < len(steps) or step.repeat is not None
    next_at = now + interval / factor if interval else (now if more else None)
    found = recipients(step, place.id, contacts)
    dispatches = tuple(
        Dispatch((alert,), place.id, contact.id, contact.phone, channel,
                 messages.language(contact.language or place.language))
        for contact, channel in found
    ) or (Dispatch((alert,), place.id, None, "", "", place.language),)  # fmt: skip
    return Step(
        alert,
        step=index + 1 if not repeating else len(steps),
        repeats=alert.repeats + (1 if repeating else 0),
        next_at=next_at,
        purpose="page" if alert.level == 0 else "escalation",
        detail={
            "step": index,
            "notify": step.notify,
            "recipients": [c.id for c, _ in found],
            "weight": weight.explain() if weight else "x1",
            "next_at": next_at,
            "reason": "acknowledgement expired" if alert.state == ACKNOWLEDGED else "due",
        },
        dispatches=dispatches,
    )
