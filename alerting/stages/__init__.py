"""Notification pipeline stages (STYLE.md §1): each filters or reshapes the round's
dispatches and counts what it drops; :func:`alerting.pipeline.build_pipeline` wires them:
inhibit -> silence -> group -> dedup. No stage writes or sends anything."""

from alerting.stages.base import Dispatch, Stage, StageContext

__all__ = ["Dispatch", "Stage", "StageContext"]
