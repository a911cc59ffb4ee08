"""Who may keep texting us: a guard for the inbound SMS and keypad webhooks (issue 13).

Acknowledgement codes are four digits; a phone that guesses thousands of them, each
answered with an outbound SMS, both probes for live codes and spends the chain's Twilio
money. So a number that has made :data:`FAILURES_PER_NUMBER` attempts that did not
acknowledge anything within :data:`FAILURE_WINDOW_S` is neither answered nor evaluated
until the window has passed (its attempts are counted); and whatever the numbers, at most
:data:`REPLIES_PER_MINUTE` replies go out a minute (acknowledgements are still recorded
beyond it, only the courtesy answer is skipped). Per process, in memory: a restart
forgets, which only lets an attacker start again at a handful of guesses.
"""

from __future__ import annotations

import threading
from collections import deque

# Failed attempts (unknown or refused code, text that is no acknowledgement) a number may
# make in the window. A person mistyping a code tries two or three times; higher lets a
# guesser cover more of the 9,000 codes (5 an hour: ~1 chance in 1,800 per hour to hit
# one of a handful of live codes, and a paged number has no need to guess).
FAILURES_PER_NUMBER = 5
FAILURE_WINDOW_S = 3600.0
# Replies sent a minute, over every number. A real night of a 300-store chain is a few
# acknowledgements a minute at worst; higher lets a flood from many numbers run up the
# SMS bill, lower could leave a genuine acknowledgement unanswered (still recorded).
REPLIES_PER_MINUTE = 60
# Numbers tracked at most (oldest forgotten): bounded memory under a flood of senders.
TRACKED_NUMBERS = 10_000


class InboundThrottle:
    """Per-number failure lockout and a global reply budget (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._replies: deque[float] = deque()

    def blocked(self, sender: str, now: float) -> bool:
        """True while ``sender`` has used up its failed attempts."""
        with self._lock:
            recent = self._recent(sender, now)
            return recent is not None and len(recent) >= FAILURES_PER_NUMBER

    def failed(self, sender: str, now: float) -> None:
        """An attempt from ``sender`` that acknowledged nothing."""
        with self._lock:
            recent = self._recent(sender, now)
            if recent is None:
                if len(self._failures) >= TRACKED_NUMBERS:
                    self._failures.pop(next(iter(self._failures)))
                recent = self._failures[sender] = deque()
            recent.append(now)

    def may_reply(self, now: float) -> bool:
        """Take one reply from the global budget; False when it is spent."""
        with self._lock:
            while self._replies and now - self._replies[0] >= 60.0:
                self._replies.popleft()
            if len(self._replies) >= REPLIES_PER_MINUTE:
                return False
            self._replies.append(now)
            return True

    def _recent(self, sender: str, now: float) -> deque[float] | None:
        recent = self._failures.get(sender)
        if recent is not None:
            while recent and now - recent[0] >= FAILURE_WINDOW_S:
                recent.popleft()
        return recent
