"""Rate limits: exact per window, tokens reserved then settled, and exact across two gateway
processes sharing a real redis-server."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator

import pytest

from gateway import ratelimit
from gateway.ratelimit import Limit, MemoryRateLimiter, RedisRateLimiter
from tests.support.redis_server import redis_server


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


async def test_memory_requests_limit_is_exact_and_headers_say_so() -> None:
    limiter = MemoryRateLimiter()
    limits = [Limit("key:a:req", 3, "requests")]
    decisions = [await limiter.admit(limits, 0) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert ("x-ratelimit-remaining-requests", "0") in decisions[2].headers
    assert (
        decisions[3].retry_after >= 1
        and ("retry-after", str(decisions[3].retry_after)) in decisions[3].headers
    )


async def test_memory_tokens_reserved_then_settled() -> None:
    limiter = MemoryRateLimiter()
    limits = [Limit("dep:d:tok", 100, "tokens")]
    first = await limiter.admit(limits, 80)  # reserve 80
    assert first.allowed
    assert not (await limiter.admit(limits, 30)).allowed  # 80 + 30 > 100
    await limiter.settle(first, 20)  # it used only 20
    assert (await limiter.admit(limits, 30)).allowed  # 20 + 30 <= 100


async def test_memory_tokens_beyond_the_reservation_count_where_the_request_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request admitted in one minute that processed more than it reserved and ended in the
    next minute weighs on that next minute (its tokens were generated then), not on a past one."""
    now = [1_000_000 * 60 + 30.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: now[0])
    limiter = MemoryRateLimiter()
    limits = [Limit("key:k:tok", 1000, "tokens")]
    long_stream = await limiter.admit(limits, 100)
    now[0] += 60  # the next window
    await limiter.settle(long_stream, 900)  # the engine processed 900 tokens in all
    # The 100 reserved stay in the past minute; the 800 beyond them count in this one.
    assert not (await limiter.admit(limits, 201)).allowed
    assert (await limiter.admit(limits, 200)).allowed


async def test_a_refused_request_counts_nowhere() -> None:
    limiter = MemoryRateLimiter()
    key_limit = Limit("key:k:req", 10, "requests")
    dep_limit = Limit("dep:d:req", 1, "requests")
    assert (await limiter.admit([key_limit, dep_limit], 0)).allowed
    assert not (await limiter.admit([key_limit, dep_limit], 0)).allowed
    # the key's counter did not move for the refused request
    assert (await limiter.admit([key_limit], 0)).headers[1] == ("x-ratelimit-remaining-requests", "8")


async def test_redis_limiter_reserve_and_settle(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url, prefix="t1:")
    try:
        limits = [Limit("dep:x:tok", 100, "tokens"), Limit("dep:x:req", 5, "requests")]
        first = await limiter.admit(limits, 90)
        assert first.allowed
        assert not (await limiter.admit(limits, 20)).allowed
        await limiter.settle(first, 10)
        assert (await limiter.admit(limits, 20)).allowed
    finally:
        await limiter.close()


async def test_redis_tokens_beyond_the_reservation_count_where_the_request_ended(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_000_000 * 60 + 30.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: now[0])
    limiter = RedisRateLimiter(redis_url, prefix="t2:")
    try:
        limits = [Limit("key:k:tok", 1000, "tokens")]
        long_stream = await limiter.admit(limits, 100)
        now[0] += 60
        await limiter.settle(long_stream, 900)
        assert not (await limiter.admit(limits, 201)).allowed
        assert (await limiter.admit(limits, 200)).allowed
    finally:
        await limiter.close()


def _gateway_process(url: str, attempts: int, results: multiprocessing.Queue[int], start: object) -> None:
    async def run() -> int:
        limiter = RedisRateLimiter(url, prefix="shared:")
        try:
            await limiter.admit([Limit("warmup", 10**9, "requests")], 0)  # connect before the race
            start.wait()  # type: ignore[attr-defined]  # both processes hammer at the same time
            admitted = 0
            for _ in range(attempts):
                decision = await limiter.admit([Limit("key:shared:req", 50, "requests")], 0)
                admitted += decision.allowed
            return admitted
        finally:
            await limiter.close()

    results.put(asyncio.run(run()))


def test_redis_limit_is_exact_across_two_gateway_processes(redis_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = ctx.Queue()
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_gateway_process, args=(redis_url, 80, results, start)) for _ in range(2)]
    for p in procs:
        p.start()
    counts = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert sum(counts) == 50, counts  # 160 attempts, exactly the limit admitted
    assert all(c > 0 for c in counts)
