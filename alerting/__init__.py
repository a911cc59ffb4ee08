"""Alerting: rules, pipeline, escalation, notifiers (DESIGN.md §4)."""
