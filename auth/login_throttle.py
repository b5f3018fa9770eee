"""Slows password guessing at Login: per username, and per client address.

Each attempt is counted *before* its (slow) password check, in one step with the check that it
may run at all (:meth:`LoginThrottle.reserve`; nothing awaits in between, so on the event loop it
is atomic): concurrent attempts cannot all pass the check while the first ones are still hashing.
A reserved attempt counts as a failure until the login turns out right.

After `free` counted failures for a key, each further attempt for it is refused with
RESOURCE_EXHAUSTED until base · 2^(failures − free) seconds (at most `cap_s`) have passed since
the last counted one — the right password included, so a guesser cannot tell. Refused attempts
are not counted, so a flood delays the key's own logins by at most `cap_s`.

:class:`LoginThrottles` keeps two of them:

- per **username** (5 free failures): a success clears the count;
- per **client address** (20 free failures, forgotten 15 minutes after the last one): against
  spraying one password across many usernames. A success only gives back its own reservation (a
  sprayer holding one valid account cannot reset the count by logging into it), and the count is
  forgotten after a quiet period (users behind one NAT are not locked out by old typos).

The state is in memory, per app process, bounded in size (the oldest entries go first).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from budrt.errors import Reason, resource_exhausted


class LoginThrottle:
    """Counted failed logins per key (a username, an address), and the wait they impose."""

    def __init__(
        self,
        free: int = 5,
        base_s: float = 1.0,
        cap_s: float = 300.0,
        forget_s: float | None = None,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        what: str = "this user",
    ) -> None:
        self.free = free
        self.base_s = base_s
        self.cap_s = cap_s
        self.forget_s = forget_s  # None: a count lasts until a success clears it
        self.max_entries = max_entries
        self._clock = clock
        self._what = what
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (count, last)

    def _entry(self, key: str) -> tuple[int, float]:
        count, last = self._failures.get(key, (0, 0.0))
        if count and self.forget_s is not None and self._clock() - last >= self.forget_s:
            self._failures.pop(key, None)
            return 0, 0.0
        return count, last

    def wait_s(self, key: str) -> float:
        """Seconds before `key` may try again (0: now)."""
        count, last = self._entry(key)
        if count < self.free:
            return 0.0
        delay = min(self.cap_s, self.base_s * 2 ** (count - self.free))
        return max(0.0, last + delay - self._clock())

    def check(self, key: str) -> None:
        """Raises RESOURCE_EXHAUSTED while `key` must wait."""
        wait = self.wait_s(key)
        if wait > 0:
            seconds = math.ceil(wait)
            raise resource_exhausted(
                f"too many failed logins for {self._what}; try again in {seconds} s",
                reason=Reason.TOO_MANY_LOGIN_ATTEMPTS,
            )

    def reserve(self, key: str) -> None:
        """Checks `key` may try now, and counts the attempt as a failure (until `succeeded` or
        `release`): RESOURCE_EXHAUSTED, counting nothing, while it must wait."""
        self.check(key)
        self.failed(key)

    def failed(self, key: str) -> None:
        """Counts a failed attempt."""
        count, _ = self._entry(key)
        self._failures.pop(key, None)
        self._failures[key] = (count + 1, self._clock())
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)

    def release(self, key: str) -> None:
        """Gives back one reserved attempt that did not fail (the other failures stay)."""
        count, last = self._failures.get(key, (0, 0.0))
        if count <= 1:
            self._failures.pop(key, None)
        else:
            self._failures[key] = (count - 1, last)

    def succeeded(self, key: str) -> None:
        """Clears the count after a successful login."""
        self._failures.pop(key, None)


@dataclass
class LoginAttempt:
    """A login attempt counted against its username and client address; a failure needs nothing
    more, a success must call :meth:`succeeded`."""

    throttles: LoginThrottles
    username: str
    address: str

    def succeeded(self) -> None:
        """Clears the username's count and gives the address its reservation back."""
        self.throttles.by_username.succeeded(self.username)
        self.throttles.by_address.release(self.address)


class LoginThrottles:
    """The two throttles of Login: per username and per client address."""

    def __init__(
        self,
        by_username: LoginThrottle | None = None,
        by_address: LoginThrottle | None = None,
    ) -> None:
        self.by_username = by_username or LoginThrottle()
        self.by_address = by_address or LoginThrottle(free=20, forget_s=15 * 60, what="this address")

    def begin(self, username: str, address: str) -> LoginAttempt:
        """Reserves an attempt for `username` from `address`, or RESOURCE_EXHAUSTED (counting
        nothing) while either must wait. Synchronous: call it before anything awaits."""
        self.by_username.check(username)
        self.by_address.check(address)
        self.by_username.failed(username)
        self.by_address.failed(address)
        return LoginAttempt(self, username, address)
