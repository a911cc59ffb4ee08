"""Prints what background each acceptance run carried (noise and operator actions)."""

from __future__ import annotations

import pytest

from tests.acceptance.harness import REPORTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("acceptance background (noise messages, operator actions)")
    for scenario, noise, actions in REPORTS:
        events = ("stranger_appeared", "stranger_gone", "stranger_registered")
        sent = sum(v for k, v in noise.items() if k not in events)
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(noise.items()))
        done = ", ".join(f"{k} {v}" for k, v in sorted(actions.items()))
        terminalreporter.write_line(
            f"{scenario}: {sent} noise messages ({kinds}); "
            f"{sum(actions.values())} operator actions ({done})"
        )
