"""Slows password guessing at Login.

After `free` consecutive failed logins for a username, each further attempt for it is refused
with RESOURCE_EXHAUSTED until base · 2^(failures − free) seconds (at most `cap_s`) have passed
since the last failure — the right password included, so a guesser cannot tell. A successful
login clears the count. Keyed by username (a caller's address is the gateway's, behind it), so a
flood of wrong passwords can delay a user's own login by at most `cap_s`; the state is in memory,
per app process, bounded in size (the oldest entries go first).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from budrt.errors import Reason, resource_exhausted


class LoginThrottle:
    """Failed-login counts per username, and the wait they impose."""

    def __init__(
        self,
        free: int = 5,
        base_s: float = 1.0,
        cap_s: float = 300.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.base_s = base_s
        self.cap_s = cap_s
        self.max_entries = max_entries
        self._clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # username -> (count, last)

    def wait_s(self, username: str) -> float:
        """Seconds before `username` may try again (0: now)."""
        count, last = self._failures.get(username, (0, 0.0))
        if count < self.free:
            return 0.0
        delay = min(self.cap_s, self.base_s * 2 ** (count - self.free))
        return max(0.0, last + delay - self._clock())

    def check(self, username: str) -> None:
        """Raises RESOURCE_EXHAUSTED while `username` must wait."""
        wait = self.wait_s(username)
        if wait > 0:
            seconds = math.ceil(wait)
            raise resource_exhausted(
                f"too many failed logins for this user; try again in {seconds} s",
                reason=Reason.TOO_MANY_LOGIN_ATTEMPTS,
            )

    def failed(self, username: str) -> None:
        """Counts a failed attempt."""
        count, _ = self._failures.pop(username, (0, 0.0))
        self._failures[username] = (count + 1, self._clock())
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)

    def succeeded(self, username: str) -> None:
        """Clears the count after a successful login."""
        self._failures.pop(username, None)
