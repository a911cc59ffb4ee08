"""Notification pipeline stages (STYLE.md §1): each filters or reshapes a list and counts
what it drops; :func:`alerting.engine.AlertingEngine._run_due` wires them in order:
inhibit -> silence -> (escalation step) -> group -> dedup. No stage sends anything."""

from alerting.stages.base import StageContext

__all__ = ["StageContext"]
