"""Rule evaluation: one module per rule kind behind the :class:`RuleEngine` façade.

Pure: observations, configuration and the instant in; transitions out (no I/O, no clock
reads). The vocabulary (kinds, :class:`~alerting.conditions.Condition`,
:class:`~alerting.conditions.Transition`) lives in :mod:`alerting.conditions`.
"""

from alerting.rules.engine import RuleEngine

__all__ = ["RuleEngine"]
