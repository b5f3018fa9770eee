"""Spending budgets, enforced exactly across gateways: reserve, then settle.

A project (or one of its keys) may have budgets (`RouteProject.budgets` from the routing feed):
a limit per UTC day or month, alert thresholds, a hard stop. Each budget has two counters per
period, in nano-dollars (`budrt.money`):

- **counted**: settled spend plus the reservations of requests in flight. A request reserves its
  worst-case cost (its prompt estimate and its most output tokens, `max_tokens` × `n` or 256
  without one, at its deployment's price) before it runs, and its actual cost replaces the
  reservation when it ends. A hard-stop budget admits a request only while `counted` is below the
  limit — checked and added atomically (one Lua script in Redis, where every gateway shares the
  counters) — so a period's spend passes the limit by at most the last admitted request's
  reservation (plus what a request without `max_tokens` generates beyond 256 tokens).
- **spent**: settled spend only; the alert thresholds are crossed on it. Each crossing is claimed
  once per period across the gateways (SET NX in Redis), then logged (`budget_alert`) and, when the
  budget has a `webhook_url`, POSTed there off the request path.

A refused request gets 429 `budget_exceeded` (gRPC RESOURCE_EXHAUSTED, `ErrorInfo` reason
BUDGET_EXCEEDED) with `Retry-After` up to the period's end. A new period starts from zero; a
raised limit or a deleted budget (delivered by the routing feed) lifts the stop at the next request.
Without Redis the counters live in the gateway's memory (one gateway; lost when it restarts).

Hooks for metrics (`on_alert`, `on_reject` on :class:`BudgetEnforcer`): callables given each
alert and each refusal; they must not block.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from budrt.errors import Reason, resource_exhausted
from budrt.money import NANOS_PER_MICRO, format_micros, format_nanos

log = logging.getLogger(__name__)

DAY = "day"
MONTH = "month"
# How long a period's counters outlive it (Redis keys' expiry), in seconds.
_KEEP_S = {DAY: 3 * 86400, MONTH: 40 * 86400}
WEBHOOK_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class BudgetEntry:
    """A budget as the routing feed gives it."""

    id: str
    api_key_id: str  # "": the whole project
    period: str  # "day" or "month"
    limit_micros: int
    thresholds: tuple[int, ...]
    hard_stop: bool
    webhook_url: str

    @property
    def limit_nanos(self) -> int:
        """The limit in nano-dollars."""
        return self.limit_micros * NANOS_PER_MICRO


def period_of(period: str, now: float) -> tuple[str, float]:
    """The period's name ("2026-11-30" or "2026-11") and when it ends (unix seconds, UTC)."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == DAY:
        return day.strftime("%Y-%m-%d"), day.timestamp() + 86400
    first = day.replace(day=1)
    following = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    return first.strftime("%Y-%m"), following.timestamp()


@dataclass
class Hold:
    """A request's reservation: the budgets it counts against, in which periods, and how much."""

    budgets: list[BudgetEntry]
    periods: list[str]
    reserved_nanos: int
    project_id: str
    settled: bool = False


@dataclass(frozen=True)
class Alert:
    """A threshold crossed: what the log line and the webhook carry."""

    project_id: str
    budget: BudgetEntry
    period: str
    threshold: int
    spent_nanos: int

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {
            "event": "budget_alert",
            "project_id": self.project_id,
            "budget_id": self.budget.id,
            "api_key_id": self.budget.api_key_id,
            "period": self.budget.period,
            "period_name": self.period,
            "threshold_percent": self.threshold,
            "limit_usd": format_micros(self.budget.limit_micros),
            "spent_usd": format_nanos(self.spent_nanos),
            "hard_stop": self.budget.hard_stop,
        }


class BudgetLedger(Protocol):
    """The counters: reserve atomically against hard stops, settle, claim alert crossings."""

    async def reserve(self, hold: Hold) -> int:
        """Adds the reservation to every budget's `counted`, unless a hard-stop budget's
        `counted` has reached its limit: then adds nothing and answers that budget's index
        (-1: reserved)."""
        ...

    async def settle(self, hold: Hold, actual_nanos: int) -> list[int]:
        """Replaces the reservation with the actual cost; answers each budget's `spent` after."""
        ...

    async def claim(self, budget_id: str, period: str, threshold: int, keep_s: int) -> bool:
        """Whether this call is the first to claim the crossing (once per period, all gateways)."""
        ...


class MemoryBudgetLedger:
    """Counters in this process (one gateway)."""

    def __init__(self) -> None:
        self.counted: dict[tuple[str, str], int] = {}
        self.spent: dict[tuple[str, str], int] = {}
        self._claimed: set[tuple[str, str, int]] = set()

    async def reserve(self, hold: Hold) -> int:
        keys = [(b.id, p) for b, p in zip(hold.budgets, hold.periods, strict=True)]
        for i, (budget, key) in enumerate(zip(hold.budgets, keys, strict=True)):
            if budget.hard_stop and self.counted.get(key, 0) >= budget.limit_nanos:
                return i
        for key in keys:
            self.counted[key] = self.counted.get(key, 0) + hold.reserved_nanos
        return -1

    async def settle(self, hold: Hold, actual_nanos: int) -> list[int]:
        after = []
        for budget, period in zip(hold.budgets, hold.periods, strict=True):
            key = (budget.id, period)
            self.counted[key] = self.counted.get(key, 0) + actual_nanos - hold.reserved_nanos
            self.spent[key] = self.spent.get(key, 0) + actual_nanos
            after.append(self.spent[key])
        return after

    async def claim(self, budget_id: str, period: str, threshold: int, keep_s: int) -> bool:
        key = (budget_id, period, threshold)
        if key in self._claimed:
            return False
        self._claimed.add(key)
        return True


# KEYS: the counted counter of each budget. ARGV: the reservation, the expiry, then per budget
# its limit (-1: no hard stop). Refuses (answers the 1-based index) when a hard-stop budget's
# counter has reached its limit; else adds the reservation to all and answers 0.
_RESERVE = """
local amount = tonumber(ARGV[1])
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 + i])
  if limit >= 0 and tonumber(redis.call('GET', KEYS[i]) or '0') >= limit then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], amount)
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 0
"""


class RedisBudgetLedger:
    """Counters in Redis, shared by every gateway that points at it."""

    def __init__(self, url: str, prefix: str = "bud:budget:") -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE)

    def _key(self, kind: str, budget: BudgetEntry, period: str) -> str:
        return f"{self._prefix}{budget.id}:{period}:{kind}"

    async def reserve(self, hold: Hold) -> int:
        keys = [self._key("counted", b, p) for b, p in zip(hold.budgets, hold.periods, strict=True)]
        keep = max(_KEEP_S.get(b.period, _KEEP_S[MONTH]) for b in hold.budgets)
        limits = [b.limit_nanos if b.hard_stop else -1 for b in hold.budgets]
        refused = int(await self._reserve(keys=keys, args=[hold.reserved_nanos, keep, *limits]))
        return refused - 1

    async def settle(self, hold: Hold, actual_nanos: int) -> list[int]:
        async with self._redis.pipeline(transaction=True) as pipe:
            for budget, period in zip(hold.budgets, hold.periods, strict=True):
                keep = _KEEP_S.get(budget.period, _KEEP_S[MONTH])
                counted, spent = self._key("counted", budget, period), self._key("spent", budget, period)
                pipe.incrby(counted, actual_nanos - hold.reserved_nanos)
                pipe.expire(counted, keep)
                pipe.incrby(spent, actual_nanos)
                pipe.expire(spent, keep)
            results = await pipe.execute()
        return [int(results[4 * i + 2]) for i in range(len(hold.budgets))]

    async def claim(self, budget_id: str, period: str, threshold: int, keep_s: int) -> bool:
        key = f"{self._prefix}{budget_id}:{period}:alert:{threshold}"
        return bool(await self._redis.set(key, b"1", nx=True, ex=keep_s))

    async def close(self) -> None:
        """Closes the connection pool."""
        await self._redis.aclose()


@dataclass
class BudgetEnforcer:
    """Budgets on the request path: `reserve` before a request runs, `settle` when it ends."""

    ledger: BudgetLedger = field(default_factory=MemoryBudgetLedger)
    webhook_timeout_s: float = WEBHOOK_TIMEOUT_S
    # Webhook URLs are set by project owners: unless allowed, one whose host resolves to a
    # loopback, private, link-local or otherwise non-public address is not called (the gateway
    # sits inside the platform's network).
    allow_private_webhooks: bool = False
    # Metrics hooks (obs-telemetry): called with each Alert, and with each refused Hold.
    on_alert: list[Callable[[Alert], None]] = field(default_factory=list)
    on_reject: list[Callable[[Hold], None]] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _client: httpx.AsyncClient | None = None

    async def reserve(
        self,
        project_id: str,
        api_key_id: str,
        budgets: Sequence[BudgetEntry],
        reserved_nanos: int,
        model: str,
    ) -> Hold | None:
        """Reserves `reserved_nanos` against the budgets that apply (the project's and the
        key's); None when none does. RESOURCE_EXHAUSTED (BUDGET_EXCEEDED) when a hard-stop
        budget is spent for its period."""
        applying = [b for b in budgets if not b.api_key_id or b.api_key_id == api_key_id]
        if not applying:
            return None
        now = time.time()
        periods = [period_of(b.period, now) for b in applying]
        hold = Hold(applying, [name for name, _ in periods], max(0, reserved_nanos), project_id)
        refused = await self.ledger.reserve(hold)
        if refused < 0:
            return hold
        hold.settled = True
        for hook in self.on_reject:
            _call(hook, hold)
        budget, (period, ends) = applying[refused], periods[refused]
        retry_after = max(1, int(ends - now + 0.999))
        whose = f"API key {budget.api_key_id!r}" if budget.api_key_id else f"project {project_id!r}"
        error = resource_exhausted(
            f"Budget exceeded: {whose} has spent its {'daily' if budget.period == DAY else 'monthly'} "
            f"budget of ${format_micros(budget.limit_micros)} for {period}, so {model} calls are refused "
            f"until the period ends ({datetime.fromtimestamp(ends, UTC):%Y-%m-%dT%H:%M:%SZ}) or the "
            "budget is raised.",
            reason=Reason.BUDGET_EXCEEDED,
        )
        error.retry_after = retry_after  # Retry-After over REST, RetryInfo over gRPC
        log.warning(
            "budget_exceeded",
            extra={
                "event": "budget_exceeded",
                "project": project_id,
                "budget_id": budget.id,
                "period": period,
            },
        )
        raise error

    async def release(self, hold: Hold | None) -> None:
        """Gives the whole reservation back (the request ran nothing)."""
        await self.settle(hold, 0)

    async def settle(self, hold: Hold | None, actual_nanos: int) -> None:
        """Settles the reservation to the request's actual cost, then raises the alerts of the
        thresholds this crossed (each once per period across gateways). Never raises."""
        if hold is None or hold.settled:
            return
        hold.settled = True
        try:
            spent = await self.ledger.settle(hold, max(0, actual_nanos))
            if actual_nanos <= 0:
                return
            for budget, period, total in zip(hold.budgets, hold.periods, spent, strict=True):
                before = total - actual_nanos
                for threshold in budget.thresholds:
                    line = budget.limit_nanos * threshold  # crossed when spent * 100 >= line
                    if before * 100 < line <= total * 100 and await self.ledger.claim(
                        budget.id, period, threshold, _KEEP_S.get(budget.period, _KEEP_S[MONTH])
                    ):
                        self._alert(Alert(hold.project_id, budget, period, threshold, total))
        except Exception:
            log.exception("settling a budget reservation failed")

    def _alert(self, alert: Alert) -> None:
        log.warning("budget_alert", extra=alert.payload())
        for hook in self.on_alert:
            _call(hook, alert)
        if alert.budget.webhook_url:
            task = asyncio.get_running_loop().create_task(self._post(alert))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, alert: Alert) -> None:
        """POSTs the alert to the budget's webhook (once; a failure is logged)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.webhook_timeout_s, follow_redirects=False)
        try:
            if not self.allow_private_webhooks and not await _public(alert.budget.webhook_url):
                log.warning(
                    "budget webhook not called: its host is not a public address",
                    extra={"budget_id": alert.budget.id},
                )
                return
            response = await self._client.post(alert.budget.webhook_url, json=alert.payload())
            if response.status_code >= 400:
                log.warning(
                    "budget webhook answered an error",
                    extra={"budget_id": alert.budget.id, "status": response.status_code},
                )
        except (httpx.HTTPError, OSError) as err:
            log.warning(
                "budget webhook failed", extra={"budget_id": alert.budget.id, "error": type(err).__name__}
            )

    async def drain(self) -> None:
        """Waits for the webhook calls under way (bounded by their timeout)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.webhook_timeout_s * 2)

    async def close(self) -> None:
        """Ends webhook calls and closes the HTTP client and the ledger's connections."""
        await self.drain()
        if self._client is not None:
            await self._client.aclose()
        close = getattr(self.ledger, "close", None)
        if close is not None:
            await close()


async def _public(url: str) -> bool:
    """Whether every address the URL's host resolves to is a public (global) one."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    return bool(addresses) and all(a.is_global for a in addresses)


def _call(hook: Callable[[Any], None], value: Any) -> None:
    try:
        hook(value)
    except Exception:
        log.exception("a budget hook failed")
