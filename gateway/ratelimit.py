"""Rate limits per API key and per deployment: requests per minute and tokens per minute.

Fixed one-minute windows, counted exactly: a request is admitted only if every counter it touches
stays within its limit, all counters moving together (atomically in Redis, where several gateways
share them). Tokens are reserved up front (prompt estimate + max output tokens) and settled to
the tokens the engine processed when the request ends, so a window's count is exact once requests
finish. That holds for requests that do not finish too: a stream cut by its client, a unary call
whose client left and a call that failed settle to what the engine processed up to its end
(`OpenAiServicer._charge_unfinished`), never to zero — a cut request is not a refund. Tokens
processed beyond the reservation by a request that ends in a later window than it was admitted
in count in the window where it ended: a long stream's tokens weigh on the limit when they are
generated, not in a window already past.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Limit:
    """One counter and its limit per window, e.g. ("key:abc:req", 100)."""

    name: str
    limit: int
    kind: str  # "requests", "tokens", or a counted kind ("images") with its `amount`
    amount: int = 1  # what one request adds to a counted kind

    def added(self, tokens: int) -> int:
        """What the request adds to this counter: 1 request, its tokens, or its amount."""
        if self.kind == "requests":
            return 1
        return tokens if self.kind == "tokens" else self.amount


@dataclass
class Decision:
    """The outcome of an admission: allowed or not, and the headers clients expect."""

    allowed: bool
    window: int
    reserved_tokens: int
    token_counters: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    retry_after: int = 0


class RateLimiter(Protocol):
    """Admits requests against limits and settles their token reservations."""

    async def admit(self, limits: list[Limit], tokens: int) -> Decision: ...

    async def settle(self, decision: Decision, actual_tokens: int) -> None: ...


def _window(now: float) -> tuple[int, int]:
    window = int(now // WINDOW_SECONDS)
    reset = (window + 1) * WINDOW_SECONDS - now
    return window, max(1, int(reset + 0.999))


def _settle_window(decision: Decision, delta: int) -> int:
    """The window a settlement of `delta` tokens goes to: a refund to the admission's window (where
    the reservation was counted), tokens beyond the reservation to the window of now."""
    return decision.window if delta < 0 else max(decision.window, _window(time.time())[0])


def _headers(limits: list[Limit], counts: list[int], reset: int) -> list[tuple[str, str]]:
    # OpenAI's header names; with both a key and a deployment limit of a kind, the tighter one.
    headers: dict[str, tuple[int, int]] = {}
    for limit, count in zip(limits, counts, strict=True):
        remaining = max(0, limit.limit - count)
        best = headers.get(limit.kind)
        if best is None or remaining < best[1]:
            headers[limit.kind] = (limit.limit, remaining)
    out: list[tuple[str, str]] = []
    for kind, (limit_value, remaining) in headers.items():
        out += [
            (f"x-ratelimit-limit-{kind}", str(limit_value)),
            (f"x-ratelimit-remaining-{kind}", str(remaining)),
            (f"x-ratelimit-reset-{kind}", f"{reset}s"),
        ]
    return out


class MemoryRateLimiter:
    """Counters in this process (one gateway)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._window = -1

    async def admit(self, limits: list[Limit], tokens: int) -> Decision:
        window, reset = _window(time.time())
        if window != self._window:  # drop old windows
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= window - 1}
            self._window = window
        amounts = [limit.added(tokens) for limit in limits]
        current = [self._counts.get((limit.name, window), 0) for limit in limits]
        over = [lim for lim, c, a in zip(limits, current, amounts, strict=True) if c + a > lim.limit]
        if over:
            return Decision(
                False,
                window,
                0,
                headers=[*_headers(limits, current, reset), ("retry-after", str(reset))],
                retry_after=reset,
            )
        for limit, amount in zip(limits, amounts, strict=True):
            self._counts[(limit.name, window)] = self._counts.get((limit.name, window), 0) + amount
        after = [c + a for c, a in zip(current, amounts, strict=True)]
        return Decision(
            True,
            window,
            tokens,
            [lim.name for lim in limits if lim.kind == "tokens"],
            _headers(limits, after, reset),
        )

    async def settle(self, decision: Decision, actual_tokens: int) -> None:
        delta = actual_tokens - decision.reserved_tokens
        if not delta:
            return
        window = _settle_window(decision, delta)
        for name in decision.token_counters:
            key = (name, window)
            if key in self._counts or delta > 0:
                self._counts[key] = max(0, self._counts.get(key, 0) + delta)


# Atomically: read every counter, refuse if any would pass its limit, else add to all of them.
_ADMIT = """
local n = #KEYS
local counts = {}
for i = 1, n do
  counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, n do
  if counts[i] + tonumber(ARGV[2*i-1]) > tonumber(ARGV[2*i]) then
    return {0, unpack(counts)}
  end
end
for i = 1, n do
  counts[i] = redis.call('INCRBY', KEYS[i], ARGV[2*i-1])
  redis.call('EXPIRE', KEYS[i], ARGV[2*n+1])
end
return {1, unpack(counts)}
"""


class RedisRateLimiter:
    """Counters in Redis, shared by every gateway that points at it."""

    def __init__(self, url: str, prefix: str = "bud:rl:") -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self._prefix = prefix
        self._admit = self._redis.register_script(_ADMIT)

    async def admit(self, limits: list[Limit], tokens: int) -> Decision:
        window, reset = _window(time.time())
        keys = [f"{self._prefix}{limit.name}:{window}" for limit in limits]
        args: list[int] = []
        for limit in limits:
            args += [limit.added(tokens), limit.limit]
        args.append(WINDOW_SECONDS * 2)
        result = await self._admit(keys=keys, args=args)
        allowed, counts = bool(result[0]), [int(c) for c in result[1:]]
        if not allowed:
            return Decision(
                False,
                window,
                0,
                headers=[*_headers(limits, counts, reset), ("retry-after", str(reset))],
                retry_after=reset,
            )
        return Decision(
            True,
            window,
            tokens,
            [k for k, lim in zip(keys, limits, strict=True) if lim.kind == "tokens"],
            _headers(limits, counts, reset),
        )

    async def settle(self, decision: Decision, actual_tokens: int) -> None:
        delta = actual_tokens - decision.reserved_tokens
        if delta and decision.token_counters:
            window = _settle_window(decision, delta)
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in decision.token_counters:
                    if window != decision.window:  # the same counter in the window of the end
                        key = f"{key.rsplit(':', 1)[0]}:{window}"
                    pipe.incrby(key, delta)
                    pipe.expire(key, WINDOW_SECONDS * 2)
                await pipe.execute()

    async def close(self) -> None:
        """Closes the connection pool."""
        await self._redis.aclose()
