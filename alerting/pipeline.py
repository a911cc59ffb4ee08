"""The notification path of one escalation round, as alertmanager's is: plan, filter,
then write and send.

::

    due alerts -> escalation.plan (one Step each, with its Dispatches)
               -> stages: inhibit -> silence -> group -> dedup   (build_pipeline)
               -> AlertBook.commit_round (steps + notifications + audit, one transaction)
               -> delivery

A step whose every dispatch a stage dropped (an inhibited or silenced alert) is not
written: the alert keeps its place and is planned again next round. A park (the chain is
finished) has no dispatches and is written as such.
"""

from __future__ import annotations

from alerting.escalation import Step
from alerting.stages.base import Dispatch, Stage, StageContext
from alerting.stages.dedup import dedup
from alerting.stages.group import group
from alerting.stages.inhibit import inhibit
from alerting.stages.silence import silence


def build_pipeline() -> list[Stage]:
    """The stages, in order: hold what another alert explains, what maintenance covers,
    bundle per store and recipient, then drop repeats."""
    return [inhibit, silence, group, dedup]


def run(stages: list[Stage], dispatches: list[Dispatch], ctx: StageContext) -> list[Dispatch]:
    """Pass the round's dispatches through every stage."""
    for stage in stages:
        dispatches = stage(dispatches, ctx)
    return dispatches


def steps_to_write(steps: list[Step], kept: list[Dispatch]) -> list[Step]:
    """The planned steps that run: parks, and steps with an alert still in a dispatch."""
    carried = {a.id for d in kept for a in d.alerts}
    return [s for s in steps if s.park or s.alert.id in carried]
