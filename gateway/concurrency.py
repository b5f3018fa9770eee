"""A deployment's `max_concurrency`: at most that many of its requests in flight at once, across
every gateway.

A request takes a slot before it calls an engine and gives it back when its call ends: its last
byte sent, its client gone, or its call failed. A request that finds every slot taken waits in a
bounded queue (`queue_length` waiters per deployment in this gateway, `queue_timeout` seconds
at most) and is then refused (the servicer answers 429 with `Retry-After`). The limit is read on
every request, so a changed `max_concurrency` takes effect on the next one without a restart.

Two implementations with one interface, chosen like the rate limiter (`redis_url`):
- `MemoryConcurrencyLimiter`: counters in this process (one gateway); waiters are served in order.
- `RedisConcurrencyLimiter`: a Redis sorted set per deployment whose members are lease ids scored
  by their expiry (Redis's own clock, so gateways' clocks need not agree). Taking, renewing and
  giving back a lease are Lua scripts, atomic in Redis, so the count is exact across gateways.
  A gateway renews its leases every third of `lease_ttl` while their calls run; a gateway that
  dies stops renewing, and its leases expire after at most `lease_ttl` seconds, freeing the slots.
  Waiters poll Redis (and wake at once when a slot of this gateway is given back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

# How long a refused request is told to wait before retrying (`Retry-After`, seconds).
RETRY_AFTER_S = 1
# How often a Redis waiter asks again when no slot of its own gateway was given back (seconds).
POLL_INTERVAL_S = 0.05


@dataclass
class Slot:
    """One request's place under a deployment's limit; given back with `release` (once)."""

    name: str
    lease_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    released: bool = False


class ConcurrencyLimiter(Protocol):
    """Admits at most `limit` holders per name at once."""

    async def acquire(self, name: str, limit: int) -> Slot | None:
        """A slot under `limit` for `name`, waiting in the queue when all are taken; None when the
        queue is full or the wait timed out."""
        ...

    def release(self, slot: Slot) -> None:
        """Gives the slot back (a second call does nothing). Never waits: safe in `finally`
        blocks of cancelled calls."""
        ...

    def in_flight(self, name: str) -> int:
        """The slots this gateway holds for `name` (for tests and metrics)."""
        ...

    def queued(self, name: str) -> int:
        """The requests of `name` waiting for a slot in this gateway (the load reports)."""
        ...


class MemoryConcurrencyLimiter:
    """Slots counted in this process (one gateway). A slot given back goes straight to the first
    waiter (the count does not drop in between), so waiters are served in order."""

    def __init__(self, queue_timeout: float = 30.0, queue_length: int = 100) -> None:
        self.queue_timeout = queue_timeout
        self.queue_length = queue_length
        self._held: dict[str, int] = {}
        self._limits: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def in_flight(self, name: str) -> int:
        return self._held.get(name, 0)

    def queued(self, name: str) -> int:
        return sum(1 for waiter in self._waiters.get(name, ()) if not waiter.done())

    def _hand_off(self, name: str) -> None:
        """Gives the free slots of `name` to its waiters, first come first."""
        queue = self._waiters.get(name)
        while queue and self._held.get(name, 0) < self._limits.get(name, 0):
            waiter = queue.popleft()
            if not waiter.done():
                self._held[name] = self._held.get(name, 0) + 1
                waiter.set_result(None)

    async def acquire(self, name: str, limit: int) -> Slot | None:
        self._limits[name] = limit  # the latest limit wins: a raised one frees slots for waiters
        self._hand_off(name)
        queue = self._waiters.setdefault(name, deque())
        if not queue and self._held.get(name, 0) < limit:
            self._held[name] = self._held.get(name, 0) + 1
            return Slot(name)
        if len(queue) >= self.queue_length:
            return None
        waiter = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            async with asyncio.timeout(self.queue_timeout):
                await waiter
        except BaseException as err:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
            if waiter.done() and not waiter.cancelled():  # handed a slot as it gave up: pass it on
                self.release(Slot(name))
            if isinstance(err, TimeoutError):
                return None
            raise
        return Slot(name)  # counted when it was handed over

    def release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        self._held[slot.name] = max(0, self._held.get(slot.name, 0) - 1)
        self._hand_off(slot.name)


# KEYS[1]: the deployment's lease set. ARGV: limit, lease id, lease ttl (ms).
# Drops expired leases, then adds this one if fewer than `limit` remain. Returns {taken, count}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[1]) then
  return {0, count}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return {1, count + 1}
"""

# KEYS: lease sets; ARGV[1]: ttl (ms), then one lease id per key. Pushes each still-held lease's
# expiry forward (a lease already expired and dropped is not brought back: its slot may be
# someone else's now). Returns how many were renewed.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local renewed = 0
for i = 1, #KEYS do
  local score = redis.call('ZSCORE', KEYS[i], ARGV[i + 1])
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[i], 'XX', now + ttl, ARGV[i + 1])
    redis.call('PEXPIRE', KEYS[i], ttl * 2)
    renewed = renewed + 1
  end
end
return renewed
"""


class RedisConcurrencyLimiter:
    """Slots as leases in Redis, shared by every gateway that points at it."""

    def __init__(
        self,
        url: str,
        queue_timeout: float = 30.0,
        queue_length: int = 100,
        lease_ttl: float = 15.0,
        prefix: str = "bud:cc:",
    ) -> None:
        import redis.asyncio as redis

        self.queue_timeout = queue_timeout
        self.queue_length = queue_length
        self.lease_ttl = lease_ttl
        self._redis = redis.from_url(url)
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._held: dict[str, Slot] = {}  # lease id → slot: the leases this gateway renews
        # Each name's waiters in this gateway, in order: only the first polls Redis; the next one
        # takes its place when it leaves (served, timed out or gone).
        self._waiters: dict[str, deque[asyncio.Event]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None

    def in_flight(self, name: str) -> int:
        return sum(1 for slot in self._held.values() if slot.name == name)

    def queued(self, name: str) -> int:
        return len(self._waiters.get(name, ()))

    def _key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    async def _try(self, name: str, limit: int) -> Slot | None:
        slot = Slot(name)
        # Held (and so renewed, or given back) before Redis answers: a caller cancelled while the
        # script runs gives back a lease it may have been granted, instead of leaving it to expire.
        self._held[slot.lease_id] = slot
        try:
            taken, _ = await self._acquire(
                keys=[self._key(name)], args=[limit, slot.lease_id, int(self.lease_ttl * 1000)]
            )
        except BaseException:
            self.release(slot)
            raise
        if not taken:
            self._held.pop(slot.lease_id, None)
            return None
        self._start_renewing()
        return slot

    async def acquire(self, name: str, limit: int) -> Slot | None:
        queue = self._waiters.setdefault(name, deque())
        if not queue:
            slot = await self._try(name, limit)
            if slot is not None:
                return slot
        if len(queue) >= self.queue_length:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.queue_timeout
        turn = asyncio.Event()
        queue.append(turn)
        try:
            while True:
                first = queue[0] is turn
                if first:
                    slot = await self._try(name, limit)
                    if slot is not None:
                        return slot
                left = deadline - loop.time()
                if left <= 0:
                    return None
                # The first waiter asks again when a slot of this gateway is given back or after a
                # poll interval (a slot of another gateway given back, a lease expired); the others
                # when the one before them leaves.
                turn.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(POLL_INTERVAL_S, left) if first else left):
                        await turn.wait()
        finally:
            queue.remove(turn)
            if queue:
                queue[0].set()

    def release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        self._held.pop(slot.lease_id, None)
        task = asyncio.get_running_loop().create_task(self._give_back(slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _give_back(self, slot: Slot) -> None:
        try:
            await self._redis.zrem(self._key(slot.name), slot.lease_id)
        except Exception:  # the lease expires by itself after lease_ttl
            log.warning("giving back a concurrency lease failed; it expires on its own", exc_info=True)
        queue = self._waiters.get(slot.name)
        if queue:
            queue[0].set()

    async def count(self, name: str) -> int:
        """The unexpired leases of `name` in Redis, every gateway's (for tests and metrics)."""
        now_s, now_us = await self._redis.time()
        return int(await self._redis.zcount(self._key(name), now_s * 1000 + now_us // 1000 + 1, "+inf"))

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop())

    async def _renew_loop(self) -> None:
        """Renews every held lease each third of `lease_ttl`, while there are any."""
        while self._held:
            await asyncio.sleep(self.lease_ttl / 3)
            slots = list(self._held.values())
            if not slots:
                break
            try:
                await self._renew(
                    keys=[self._key(s.name) for s in slots],
                    args=[int(self.lease_ttl * 1000), *(s.lease_id for s in slots)],
                )
            except Exception:
                log.warning("renewing concurrency leases failed; retrying", exc_info=True)

    async def close(self) -> None:
        """Gives back what is being given back, stops renewing and closes the connection pool."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2)
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self._redis.aclose()
