"""A deployment's max_concurrency, enforced by the gateway: the limiters (in memory; leases in a
real Redis shared by gateways), the gateway's answers (a bounded queue, then 429 with
Retry-After over REST and RESOURCE_EXHAUSTED over gRPC), streams holding their slot to the last
byte or the client's leaving, live changes of the limit, and the default key rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from auth import keys
from bud.auth.v1 import routing_pb2
from bud.openai.v1 import chat_pb2, openai_service_pb2_grpc
from budrt.errors import ServiceError
from budrt.grpc_server import service_channel
from gateway import transcoder
from gateway.concurrency import MemoryConcurrencyLimiter, RedisConcurrencyLimiter
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.ratelimit import MemoryRateLimiter
from gateway.request_limits import RequestLimits
from gateway.server import build_transcoder, grpc_face
from gateway.settings import GatewaySettings
from gateway.tables import DeploymentEntry, KeyEntry, RoutingTables
from tests.gateway.conftest import http_server
from tests.support.instant_engine import InstantEngine, start_instant_engine
from tests.support.mesh import free_port
from tests.support.redis_server import redis_server

SECRET = "test-hash-secret"
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
DEP = "dep:d1"  # the name the servicer takes deployment d1's slots under


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


# ---- the limiters ------------------------------------------------------------------------


async def test_memory_limiter_queues_then_refuses_when_full_or_timed_out() -> None:
    limiter = MemoryConcurrencyLimiter(queue_timeout=0.3, queue_length=1)
    first, second = await limiter.acquire("d", 2), await limiter.acquire("d", 2)
    assert first and second and limiter.in_flight("d") == 2
    waiting = asyncio.create_task(limiter.acquire("d", 2))
    await asyncio.sleep(0.01)
    assert await limiter.acquire("d", 2) is None  # the queue (1) is full: refused at once
    limiter.release(first)
    third = await waiting  # handed the slot given back
    assert third is not None and limiter.in_flight("d") == 2
    assert await limiter.acquire("d", 2) is None  # waited 0.3 s in the queue, then refused
    limiter.release(first)  # a second release of one slot does nothing
    assert limiter.in_flight("d") == 2
    limiter.release(second)
    limiter.release(third)
    assert limiter.in_flight("d") == 0


async def test_memory_limiter_a_cancelled_waiter_takes_no_slot() -> None:
    limiter = MemoryConcurrencyLimiter(queue_timeout=5)
    held = await limiter.acquire("d", 1)
    assert held is not None
    waiter = asyncio.create_task(limiter.acquire("d", 1))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release(held)
    assert limiter.in_flight("d") == 0
    assert await limiter.acquire("d", 1) is not None


async def test_memory_limiter_a_raised_limit_serves_the_waiters() -> None:
    limiter = MemoryConcurrencyLimiter(queue_timeout=5)
    assert await limiter.acquire("d", 1) is not None
    waiter = asyncio.create_task(limiter.acquire("d", 1))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert await limiter.acquire("d", 3) is not None  # the limit is now 3: both get a slot
    assert await asyncio.wait_for(waiter, 1) is not None
    assert limiter.in_flight("d") == 3


async def test_redis_limiter_is_exact_across_two_gateways(redis_url: str) -> None:
    a = RedisConcurrencyLimiter(redis_url, queue_timeout=0.2, prefix="t1:")
    b = RedisConcurrencyLimiter(redis_url, queue_timeout=0.2, prefix="t1:")
    try:
        taken = await asyncio.gather(*(lim.acquire("d", 3) for lim in (a, b) * 4))
        held = [s for s in taken if s is not None]
        assert len(held) == 3 and await a.count("d") == 3
        waiting = asyncio.create_task(b.acquire("d", 3))
        await asyncio.sleep(0.05)
        owner = a if held[0].lease_id in a._held else b
        owner.release(held[0])  # a slot of the other gateway: b's waiter finds it by polling
        assert await waiting is not None
        for slot in held[1:]:
            (a if slot.lease_id in a._held else b).release(slot)
        await asyncio.sleep(0.05)
        assert await a.count("d") == 1
    finally:
        await a.close()
        await b.close()


async def test_redis_leases_are_renewed_while_held(redis_url: str) -> None:
    a = RedisConcurrencyLimiter(redis_url, queue_timeout=0, lease_ttl=0.6, prefix="t2:")
    b = RedisConcurrencyLimiter(redis_url, queue_timeout=0, lease_ttl=0.6, prefix="t2:")
    try:
        slot = await a.acquire("d", 1)
        assert slot is not None
        await asyncio.sleep(2.0)  # more than three lease lifetimes: renewed all along
        assert await b.acquire("d", 1) is None and await b.count("d") == 1
        a.release(slot)
        await asyncio.sleep(0.05)
        assert await b.acquire("d", 1) is not None
    finally:
        await a.close()
        await b.close()


def _dying_gateway(url: str, ready: Any) -> None:
    """A gateway process that takes two slots and hangs until it is killed."""

    async def main() -> None:
        limiter = RedisConcurrencyLimiter(url, lease_ttl=2.0, prefix="t3:")
        assert await limiter.acquire("d", 2) and await limiter.acquire("d", 2)
        ready.set()
        await asyncio.sleep(60)

    asyncio.run(main())


async def test_a_killed_gateways_leases_expire(redis_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_dying_gateway, args=(redis_url, ready))
    proc.start()
    survivor = RedisConcurrencyLimiter(redis_url, queue_timeout=0, prefix="t3:")
    try:
        assert await asyncio.to_thread(ready.wait, 30)
        assert await survivor.acquire("d", 2) is None  # both slots are the other gateway's
        os.kill(proc.pid, signal.SIGKILL)  # no release, no renewal: the leases run out
        await asyncio.to_thread(proc.join, 10)
        assert await survivor.count("d") == 2  # dead, its leases still count: nothing gave them back
        await _wait_for(lambda: _leases_of(survivor, "d", 0), timeout=10)  # expired within their ttl
        assert await survivor.acquire("d", 2) is not None
    finally:
        if proc.is_alive():
            proc.kill()
        await survivor.close()


# ---- the gateway -------------------------------------------------------------------------


def _snapshot(key: keys.NewKey, address: str, max_concurrency: int, revision: int = 1) -> Any:
    snapshot = routing_pb2.WatchRoutingResponse(revision=revision, reset=True)
    snapshot.upsert_projects.add(id="p1", name="team")
    snapshot.upsert_keys.add(id="k1", prefix=key.prefix, key_hash=key.key_hash, project_id="p1")
    dep = snapshot.upsert_deployments.add(
        id="d1", project_id="p1", name="chat", ready=True, max_concurrency=max_concurrency
    )
    dep.endpoints.add(address=address, served_model_name="m1")
    return snapshot


@dataclass
class Stack:
    """One gateway: its servicer and tables, REST and gRPC clients."""

    servicer: OpenAiServicer
    tables: RoutingTables
    http: httpx.AsyncClient
    grpc: openai_service_pb2_grpc.OpenAiServiceStub


@contextlib.asynccontextmanager
async def _gateway(
    key: keys.NewKey, address: str, max_concurrency: int, concurrency: Any
) -> AsyncIterator[Stack]:
    tables = RoutingTables()
    tables.apply(_snapshot(key, address, max_concurrency))
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, SECRET, concurrency=concurrency)
    grpc_server = grpc_face(servicer, "127.0.0.1:0", RequestLimits(), transcoder.MAX_BODY_BYTES)
    await grpc_server.start()
    headers = {"authorization": f"Bearer {key.secret}"}
    try:
        async with (
            http_server(build_transcoder(servicer, tables)) as url,
            httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http,
            service_channel(f"127.0.0.1:{grpc_server.port}", tls=None) as channel,
        ):
            yield Stack(servicer, tables, http, openai_service_pb2_grpc.OpenAiServiceStub(channel))
    finally:
        await grpc_server.stop(0)
        await pool.close()


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, InstantEngine]]:
    address = f"127.0.0.1:{free_port()}"
    server, instant = await start_instant_engine(address, ["m1"], chunks=40, chunk_delay=0.05)
    yield address, instant
    await server.stop(0)


class Peak:
    """Watches the engine's calls in progress (unary and streams) and keeps the most seen."""

    def __init__(self, engine: InstantEngine) -> None:
        self.engine, self.most = engine, 0
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            self.most = max(self.most, self.engine.open_unary + self.engine.open_streams)
            await asyncio.sleep(0.002)

    def stop(self) -> int:
        self._task.cancel()
        return self.most


async def _wait_for(check: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


async def test_requests_over_the_limit_wait_their_turn(engine: tuple[str, InstantEngine]) -> None:
    address, instant = engine
    instant.unary_delay = 0.1
    key = keys.mint_key(SECRET)
    async with _gateway(key, address, 2, MemoryConcurrencyLimiter(queue_timeout=10)) as gw:
        peak = Peak(instant)
        answers = await asyncio.gather(*(gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(8)))
        assert [a.status_code for a in answers] == [200] * 8  # all served, two at a time
        assert peak.stop() == 2
        assert gw.servicer.concurrency.in_flight(DEP) == 0


async def test_a_full_queue_is_answered_429_with_retry_after(engine: tuple[str, InstantEngine]) -> None:
    address, instant = engine
    instant.unary_delay = 2.0  # the first call holds the one slot through both refusals
    key = keys.mint_key(SECRET)
    async with _gateway(key, address, 1, MemoryConcurrencyLimiter(queue_timeout=0.1, queue_length=5)) as gw:
        running = asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT))
        await _wait_for(lambda: _true(instant.open_unary == 1))
        refused = await gw.http.post("/v1/chat/completions", json=CHAT)  # waited 0.1 s, then refused
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        error = refused.json()["error"]
        assert error["code"] == "concurrency_limit_exceeded" and "concurrent" in error["message"]
        request = chat_pb2.ChatCompletionRequest(model="chat")
        request.messages.add(role="user", content_text="x")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.grpc.CreateChatCompletion(request, metadata=(("authorization", f"Bearer {key.secret}"),))
        err = caught.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = rpc_status.from_call(err).details
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        assert details[0].Unpack(info) and info.reason == "CONCURRENCY_LIMIT_EXCEEDED"
        assert details[1].Unpack(retry) and retry.retry_delay.seconds == 1
        assert (await running).status_code == 200
    assert gw.servicer.concurrency.in_flight(DEP) == 0


async def _true(value: bool) -> bool:
    return value


async def test_a_stream_holds_its_slot_until_the_client_leaves(engine: tuple[str, InstantEngine]) -> None:
    address, instant = engine
    key = keys.mint_key(SECRET)
    limiter = MemoryConcurrencyLimiter(queue_timeout=0.1)
    async with _gateway(key, address, 1, limiter) as gw:
        body = {**CHAT, "stream": True}
        async with gw.http.stream("POST", "/v1/chat/completions", json=body) as streamed:
            lines = streamed.aiter_lines()
            assert (await anext(lines)).startswith("data:")  # streaming: the slot is held
            assert limiter.in_flight(DEP) == 1
            refused = await gw.http.post("/v1/chat/completions", json=CHAT)
            assert refused.status_code == 429
        # The client left mid-stream (40 chunks, 50 ms apart): the slot comes back.
        await _wait_for(lambda: _true(limiter.in_flight(DEP) == 0 and instant.open_streams == 0))
        assert (await gw.http.post("/v1/chat/completions", json=CHAT)).status_code == 200
        # A stream read to its end gives its slot back too.
        instant.chunk_delay = 0
        whole = await gw.http.post("/v1/chat/completions", json=body)
        assert whole.status_code == 200 and whole.text.rstrip().endswith("[DONE]")
        assert limiter.in_flight(DEP) == 0


async def test_a_failed_call_gives_its_slot_back(engine: tuple[str, InstantEngine]) -> None:
    address, instant = engine
    instant.fail_after = 0  # every generation breaks
    key = keys.mint_key(SECRET)
    limiter = MemoryConcurrencyLimiter(queue_timeout=0.1)
    async with _gateway(key, address, 1, limiter) as gw:
        for _ in range(3):
            answer = await gw.http.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 500  # the engine's failure, never a 429 from a leaked slot
        assert limiter.in_flight(DEP) == 0


async def test_a_changed_limit_takes_effect_without_restart(engine: tuple[str, InstantEngine]) -> None:
    address, instant = engine
    instant.unary_delay = 1.0
    key = keys.mint_key(SECRET)
    async with _gateway(key, address, 1, MemoryConcurrencyLimiter(queue_timeout=0.05)) as gw:
        answers = await asyncio.gather(*(gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(3)))
        assert sorted(a.status_code for a in answers) == [200, 429, 429]
        gw.tables.apply(_snapshot(key, address, 3, revision=2))  # what the routing watch delivers
        peak = Peak(instant)
        answers = await asyncio.gather(*(gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(3)))
        assert [a.status_code for a in answers] == [200] * 3 and peak.stop() == 3
        gw.tables.apply(_snapshot(key, address, 0, revision=3))  # 0: no limit
        answers = await asyncio.gather(*(gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(6)))
        assert [a.status_code for a in answers] == [200] * 6


async def test_two_gateways_never_exceed_the_limit_and_leak_no_slot(
    engine: tuple[str, InstantEngine], redis_url: str
) -> None:
    """Two gateway stacks (servicer, transcoder, gRPC face) sharing one Redis and one engine: the
    engine never sees more than the limit at once, and clients killed mid-stream leave no lease."""
    address, instant = engine
    instant.unary_delay = 0.2
    key = keys.mint_key(SECRET)
    limiters = [RedisConcurrencyLimiter(redis_url, queue_timeout=20, prefix="t4:") for _ in range(2)]
    try:
        async with (
            _gateway(key, address, 3, limiters[0]) as one,
            _gateway(key, address, 3, limiters[1]) as two,
        ):
            peak = Peak(instant)
            calls = [gw.http.post("/v1/chat/completions", json=CHAT) for gw in (one, two) * 12]
            answers = await asyncio.gather(*calls)
            assert [a.status_code for a in answers] == [200] * 24
            assert peak.stop() == 3

            async def cut_stream(gw: Stack) -> None:
                body = {**CHAT, "stream": True}
                async with gw.http.stream("POST", "/v1/chat/completions", json=body) as streamed:
                    await anext(streamed.aiter_lines())  # then the client goes away

            peak = Peak(instant)
            await asyncio.gather(*(cut_stream(gw) for gw in (one, two) * 5))
            assert peak.stop() <= 3
            await _wait_for(lambda: _leases(limiters[0], 0))
            assert limiters[0].in_flight(DEP) == limiters[1].in_flight(DEP) == 0
    finally:
        for limiter in limiters:
            await limiter.close()


async def _leases(limiter: RedisConcurrencyLimiter, expected: int) -> bool:
    return await _leases_of(limiter, DEP, expected)


async def _leases_of(limiter: RedisConcurrencyLimiter, name: str, expected: int) -> bool:
    return await limiter.count(name) == expected


# ---- default key rate limits -------------------------------------------------------------


def test_the_default_key_limits_are_100_rpm_and_no_tpm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUD_DEFAULT_KEY_REQUESTS_PER_MINUTE", raising=False)
    settings = GatewaySettings()
    assert (settings.default_key_requests_per_minute, settings.default_key_tokens_per_minute) == (100, 0)
    servicer = OpenAiServicer(RoutingTables(), EnginePool(), SECRET)
    assert servicer.default_key_limits == (100, 0)


async def test_keys_without_limits_get_the_default_and_others_keep_theirs(
    engine: tuple[str, InstantEngine],
) -> None:
    address, _ = engine
    plain, own = keys.mint_key(SECRET), keys.mint_key(SECRET)
    tables = RoutingTables()
    snapshot = _snapshot(plain, address, 0)
    snapshot.upsert_keys.add(
        id="k2", prefix=own.prefix, key_hash=own.key_hash, project_id="p1", requests_per_minute=5
    )
    tables.apply(snapshot)
    pool = EnginePool()
    servicer = OpenAiServicer(
        tables, pool, SECRET, limiter=MemoryRateLimiter(), default_key_requests_per_minute=3
    )
    async with (
        http_server(build_transcoder(servicer, tables)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):

        async def codes(key: keys.NewKey, n: int) -> list[int]:
            headers = {"authorization": f"Bearer {key.secret}"}
            return [
                (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code
                for _ in range(n)
            ]

        assert await codes(plain, 4) == [200, 200, 200, 429]  # the default: 3 a minute
        assert await codes(own, 6) == [200] * 5 + [429]  # its own 5, not the default
    await pool.close()


async def test_default_tokens_per_minute_apply_to_keys_without_their_own(
    engine: tuple[str, InstantEngine],
) -> None:
    address, _ = engine
    key = keys.mint_key(SECRET)
    tables = RoutingTables()
    tables.apply(_snapshot(key, address, 0))
    pool = EnginePool()
    servicer = OpenAiServicer(
        tables,
        pool,
        SECRET,
        limiter=MemoryRateLimiter(),
        default_key_requests_per_minute=0,
        default_key_tokens_per_minute=100,
    )
    async with (
        http_server(build_transcoder(servicer, tables)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        headers = {"authorization": f"Bearer {key.secret}"}
        big = await http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 200}, headers=headers)
        assert big.status_code == 429 and big.json()["error"]["code"] == "rate_limit_exceeded"
        small = await http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 10}, headers=headers)
        assert small.status_code == 200 and small.headers["x-ratelimit-limit-tokens"] == "100"
    await pool.close()


class _Context:
    """The part of a servicer context `_admit` uses."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send_initial_metadata(self, headers: Any) -> None:
        self.sent.append(headers)

    def set_trailing_metadata(self, headers: Any) -> None:
        self.sent.append(headers)


async def test_a_keyless_studio_call_gets_its_deployments_limits_not_a_shared_key_default() -> None:
    """A studio run acting for a project has no key (id ""): the key default must not apply to it,
    or every project's studio runs would share one "key:" counter of 100 requests a minute."""
    servicer = OpenAiServicer(
        RoutingTables(), EnginePool(), SECRET, limiter=MemoryRateLimiter(), default_key_requests_per_minute=2
    )
    acting = KeyEntry("", "", b"", "p1", frozenset(), None, 0, 0)
    unlimited = DeploymentEntry("d1", "p1", "chat", [], True, 0, 0, 0)
    limited = DeploymentEntry("d2", "p1", "chat2", [], True, 2, 0, 0)
    request = chat_pb2.ChatCompletionRequest(model="chat")
    for _ in range(5):
        assert await servicer._admit(_Context(), acting, unlimited, request) is None
    assert await servicer._admit(_Context(), acting, limited, request) is not None
    assert await servicer._admit(_Context(), acting, limited, request) is not None
    with pytest.raises(ServiceError) as refused:  # the deployment's own 2 a minute still apply
        await servicer._admit(_Context(), acting, limited, request)
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
