"""Real ``coldchain`` processes for drills: spawned with the test's settings, killed with
SIGKILL or stopped with SIGTERM, paging the fake Twilio through the real ``twilio``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from core.settings import Settings, as_env
from tests.fakes.twilio_server import FakeTwilioServer

SID = "AC" + "fedcba9876543210" * 2
TOKEN = "process-drill-token"  # a test credential
FROM = "+15005550006"


def wait_for(
    what: str, condition: Callable[[], bool], timeout_s: float = 20.0, poll_s: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


class Coldchain:
    """One ``coldchain <command>`` process at a time, restartable, logging to ``log``."""

    def __init__(
        self, command: list[str], settings: Settings, twilio: FakeTwilioServer, log: Path,
        **env: str,
    ) -> None:  # fmt: skip
        self.command = command
        self.settings = settings
        self.twilio = twilio
        self.log = log
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLDCHAIN_", "TWILIO_"))}
        env.update(
            as_env(self.settings),
            COLDCHAIN_LOG_LEVEL="INFO",
            TWILIO_ACCOUNT_SID=SID,
            TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_FROM=FROM,
            COLDCHAIN_TWILIO_BASE_URL=self.twilio.url,
            **self.extra_env,
        )
        return env

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coldchain", *self.command],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill_9(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no drain, no goodbye
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> int | None:
        """SIGTERM and wait for a clean exit (its code), or kill after 15 s (None)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None
        finally:
            self.proc = None

    def tail(self, chars: int = 4000) -> str:
        """The end of the log, for failure notes."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""
