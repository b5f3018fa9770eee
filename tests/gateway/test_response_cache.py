"""The response cache (issue 15, "Caching"): a deployment with `caching` on answers a repeated
deterministic request from the stored answer — `x-bud-cache: hit`, no engine call, a stream
replayed, a usage record flagged cached with zero tokens — and never a non-deterministic one, never
across projects; entries expire and are bounded by bytes, in memory and in a Redis shared by two
gateway stacks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from auth import keys
from bud.app.v1 import usage_pb2
from bud.auth.v1 import routing_pb2
from bud.openai.v1 import chat_pb2, openai_service_pb2_grpc, response_pb2
from budrt.grpc_server import GrpcServer, ServiceBinding, service_channel
from gateway.concurrency import MemoryConcurrencyLimiter
from gateway.engines import EnginePool
from gateway.openai_service import LARGE_REQUEST_BYTES, OpenAiServicer
from gateway.ratelimit import Limit, MemoryRateLimiter
from gateway.response_cache import (
    ENTRY_OVERHEAD,
    MemoryResponseCache,
    RedisResponseCache,
    ResponseCache,
    cache_key,
    pack,
    unpack,
)
from gateway.server import OPENAI_SERVICE, build_transcoder, response_cache
from gateway.settings import GatewaySettings
from gateway.tables import RoutingTables
from gateway.usage import UsageRecorder
from tests.gateway.conftest import http_server
from tests.support.instant_engine import PROMPT_TOKENS, InstantEngine
from tests.support.redis_server import redis_server

SECRET = "test-hash-secret"
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hello"}]
DETERMINISTIC = {"model": "chat", "messages": MESSAGES, "temperature": 0}
ADDRESS = "127.0.0.1:1"  # the engine is co-hosted (EnginePool.local): never dialled


class CollectedUsage(UsageRecorder):
    """The gateway's recorder, keeping what it would send (never flushed here)."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1:1")
        self.records: list[usage_pb2.UsageRecord] = []

    def add(self, rec: usage_pb2.UsageRecord) -> None:
        self.records.append(rec)


def _deployment(
    update: routing_pb2.WatchRoutingResponse, dep_id: str, project: str, name: str, caching: bool = True
) -> None:
    dep = update.upsert_deployments.add(id=dep_id, project_id=project, name=name, ready=True, caching=caching)
    dep.endpoints.add(address=ADDRESS, served_model_name="m1")


def _tables(k1: keys.NewKey, k2: keys.NewKey, rpm: int = 0, tpm: int = 0) -> RoutingTables:
    """Two projects: p1 (key k1; `chat` caching, `plain` not) and p2 (key k2; its own `chat`,
    caching) — both `chat` deployments served by the same engine model."""
    tables = RoutingTables()
    snapshot = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    for project, key in (("p1", k1), ("p2", k2)):
        snapshot.upsert_projects.add(id=project, name=project)
        snapshot.upsert_keys.add(
            id=f"k{project[1]}",
            prefix=key.prefix,
            key_hash=key.key_hash,
            project_id=project,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
        )
    _deployment(snapshot, "d1", "p1", "chat")
    _deployment(snapshot, "d3", "p1", "plain", caching=False)
    _deployment(snapshot, "d2", "p2", "chat")
    tables.apply(snapshot)
    return tables


@dataclass
class Gateway:
    url: str
    k1: keys.NewKey
    k2: keys.NewKey
    engine: InstantEngine
    servicer: OpenAiServicer
    usage: CollectedUsage
    limiter: MemoryRateLimiter
    cache: ResponseCache
    tables: RoutingTables

    def client(self, key: keys.NewKey | None = None) -> httpx.AsyncClient:
        secret = (key or self.k1).secret
        return httpx.AsyncClient(base_url=self.url, headers={"authorization": f"Bearer {secret}"}, timeout=10)


@contextlib.asynccontextmanager
async def _gateway(
    cache: ResponseCache | None = None,
    engine: InstantEngine | None = None,
    rpm: int = 0,
    tpm: int = 0,
    k1: keys.NewKey | None = None,
    k2: keys.NewKey | None = None,
) -> AsyncIterator[Gateway]:
    k1, k2 = k1 or keys.mint_key(SECRET), k2 or keys.mint_key(SECRET)
    engine = engine or InstantEngine(["m1"], chunks=4)
    cache = cache if cache is not None else MemoryResponseCache(ttl_s=60, max_bytes=1 << 20)
    pool = EnginePool(local={ADDRESS: engine})
    usage, limiter = CollectedUsage(), MemoryRateLimiter()
    tables = _tables(k1, k2, rpm, tpm)
    servicer = OpenAiServicer(tables, pool, SECRET, usage=usage, limiter=limiter, response_cache=cache)
    try:
        async with http_server(build_transcoder(servicer, tables)) as url:
            yield Gateway(url, k1, k2, engine, servicer, usage, limiter, cache, tables)
    finally:
        await pool.close()


def _content(reply: httpx.Response) -> str:
    return reply.json()["choices"][0]["message"]["content"]


def _events(reply: httpx.Response) -> list[dict[str, Any]]:
    lines = [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", reply.text
    return [orjson.loads(line) for line in lines[:-1]]


def _streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])


# ---- hits and misses ---------------------------------------------------------------------------
async def test_a_repeated_deterministic_request_is_answered_from_the_cache() -> None:
    async with _gateway() as gw, gw.client() as http:
        first = await http.post(CHAT, json=DETERMINISTIC)
        second = await http.post(CHAT, json=DETERMINISTIC)
    assert first.status_code == second.status_code == 200
    assert (first.headers["x-bud-cache"], second.headers["x-bud-cache"]) == ("miss", "hit")
    assert gw.engine.calls == 1  # the hit never reached the engine
    assert _content(second) == _content(first) == "ok"
    one, two = first.json(), second.json()
    assert two["model"] == "chat" and two["id"].startswith("chatcmpl-") and two["id"] != one["id"]
    assert two["usage"] == one["usage"]  # the stored answer's usage: what producing it took


async def test_a_stream_is_stored_whole_and_replayed_as_a_stream() -> None:
    body = {**DETERMINISTIC, "stream": True}
    async with _gateway() as gw, gw.client() as http:
        first = await http.post(CHAT, json=body)
        second = await http.post(CHAT, json=body)
        # The client's stream_options are applied on replay: the same entry, usage when asked.
        third = await http.post(CHAT, json={**body, "stream_options": {"include_usage": True}})
        unary = await http.post(CHAT, json=DETERMINISTIC)  # a unary call is an entry of its own
    assert [r.headers["x-bud-cache"] for r in (first, second, third, unary)] == ["miss", "hit", "hit", "miss"]
    assert gw.engine.calls == 2  # the stream's miss and the unary miss
    a, b, c = _events(first), _events(second), _events(third)
    assert _streamed_text(a) == _streamed_text(b) == _streamed_text(c) == "w0 w1 w2 w3 "
    assert len(b) == len(a) and not any(e.get("usage") for e in a + b)
    assert c[-1]["usage"]["completion_tokens"] == 4 and not c[-1]["choices"]
    # Every chunk of a replay shares one new id and `created`, and names the client's model.
    assert len({e["id"] for e in b}) == 1 and b[0]["id"] != a[0]["id"]
    assert {e["model"] for e in b} == {"chat"}


@pytest.mark.parametrize(
    "extra",
    [{}, {"temperature": 0.7}, {"temperature": 1, "top_p": 0.5}],
    ids=["default-temperature", "temperature-0.7", "temperature-1"],
)
async def test_a_non_deterministic_request_is_never_cached(extra: dict[str, Any]) -> None:
    body = {"model": "chat", "messages": MESSAGES, **extra}
    async with _gateway() as gw, gw.client() as http:
        replies = [await http.post(CHAT, json=body) for _ in range(2)]
        streams = [await http.post(CHAT, json={**body, "stream": True}) for _ in range(2)]
    assert all(r.status_code == 200 and "x-bud-cache" not in r.headers for r in replies + streams)
    assert gw.engine.calls == 4
    assert len(gw.cache) == 0  # type: ignore[arg-type]


async def test_a_seed_makes_a_sampled_request_cacheable() -> None:
    body = {"model": "chat", "messages": MESSAGES, "temperature": 0.9, "seed": 7, "n": 2}
    async with _gateway() as gw, gw.client() as http:
        first = await http.post(CHAT, json=body)
        second = await http.post(CHAT, json=body)
        other_seed = await http.post(CHAT, json={**body, "seed": 8})
    assert [r.headers["x-bud-cache"] for r in (first, second, other_seed)] == ["miss", "hit", "miss"]
    assert gw.engine.calls == 2


async def test_the_key_holds_every_field_that_changes_the_answer_and_none_that_does_not() -> None:
    async with _gateway() as gw, gw.client() as http:
        await http.post(CHAT, json=DETERMINISTIC)
        same = [
            {**DETERMINISTIC, "user": "someone-else"},
            {**DETERMINISTIC, "metadata": {"a": "b"}, "store": True},
            {**DETERMINISTIC, "temperature": 0.0},
        ]
        different = [
            {**DETERMINISTIC, "max_tokens": 5},
            {**DETERMINISTIC, "messages": [{"role": "user", "content": "hello!"}]},
            {**DETERMINISTIC, "logprobs": True},
            {**DETERMINISTIC, "stop": ["x"]},
            {**DETERMINISTIC, "n": 2},
        ]
        hits = [(await http.post(CHAT, json=body)).headers["x-bud-cache"] for body in same]
        misses = [(await http.post(CHAT, json=body)).headers["x-bud-cache"] for body in different]
    assert hits == ["hit"] * len(same)
    assert misses == ["miss"] * len(different)


async def test_completions_and_embeddings_are_cached_embeddings_always() -> None:
    completion = {"model": "chat", "prompt": "Once", "temperature": 0}
    embedding = {"model": "chat", "input": ["a", "b"]}  # no temperature: an embedding is deterministic
    async with _gateway() as gw, gw.client() as http:
        c1 = await http.post("/v1/completions", json=completion)
        c2 = await http.post("/v1/completions", json=completion)
        s1 = await http.post("/v1/completions", json={**completion, "stream": True})
        s2 = await http.post("/v1/completions", json={**completion, "stream": True})
        e1 = await http.post("/v1/embeddings", json=embedding)
        e2 = await http.post("/v1/embeddings", json=embedding)
    assert [r.headers["x-bud-cache"] for r in (c1, c2, s1, s2, e1, e2)] == ["miss", "hit"] * 3
    assert gw.engine.calls == 3
    assert c2.json()["choices"][0]["text"] == "ok" and c2.json()["id"].startswith("cmpl-")
    assert s2.text.count("data: ") == s1.text.count("data: ")
    assert e2.json()["data"] == e1.json()["data"] and len(e2.json()["data"]) == 2


async def test_responses_are_cached_through_their_chat_request() -> None:
    body = {"model": "chat", "input": "hello", "temperature": 0, "store": False}
    async with _gateway() as gw, gw.client() as http:
        first = await http.post("/v1/responses", json=body)
        second = await http.post("/v1/responses", json=body)
    assert (first.headers["x-bud-cache"], second.headers["x-bud-cache"]) == ("miss", "hit")
    assert gw.engine.calls == 1
    assert second.json()["output"][0]["content"] == first.json()["output"][0]["content"]
    assert second.json()["id"] != first.json()["id"]  # a new response, ids and all


async def test_a_large_request_is_keyed_off_the_event_loop_and_cached() -> None:
    body = {**DETERMINISTIC, "messages": [{"role": "user", "content": "x" * 200_000}]}
    async with _gateway() as gw, gw.client() as http:
        first = await http.post(CHAT, json=body)
        second = await http.post(CHAT, json=body)
        other = await http.post(
            CHAT, json={**body, "messages": [{"role": "user", "content": "x" * 199_999 + "y"}]}
        )
    assert [r.headers["x-bud-cache"] for r in (first, second, other)] == ["miss", "hit", "miss"]
    assert gw.engine.calls == 2


async def test_a_large_answer_is_stored_and_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.support.instant_engine.EMBEDDING_DIMENSIONS", 64)
    body = {"model": "chat", "input": [f"text {i}" for i in range(300)]}  # ~80 KB of floats
    async with _gateway() as gw, gw.client() as http:
        first = await http.post("/v1/embeddings", json=body)
        second = await http.post("/v1/embeddings", json=body)
    assert [r.headers["x-bud-cache"] for r in (first, second)] == ["miss", "hit"]
    assert second.json()["data"] == first.json()["data"] and len(second.json()["data"][0]["embedding"]) == 64
    assert gw.engine.calls == 1
    assert gw.cache.bytes > LARGE_REQUEST_BYTES  # type: ignore[attr-defined]  # the off-the-loop path


async def test_streamed_responses_are_cached_and_say_so_before_their_first_event() -> None:
    body = {"model": "chat", "input": "hello", "temperature": 0, "store": False, "stream": True}
    async with _gateway() as gw, gw.client() as http:
        first = await http.post("/v1/responses", json=body)
        second = await http.post("/v1/responses", json=body)
    assert (first.headers["x-bud-cache"], second.headers["x-bud-cache"]) == ("miss", "hit")
    assert gw.engine.calls == 1
    assert (
        second.text.count("response.output_text.delta")
        == first.text.count("response.output_text.delta")
        == 8  # event + type lines
    )


# ---- isolation and the switch ------------------------------------------------------------------
async def test_projects_never_share_entries() -> None:
    async with _gateway() as gw, gw.client() as p1, gw.client(gw.k2) as p2:
        await p1.post(CHAT, json=DETERMINISTIC)
        other = await p2.post(CHAT, json=DETERMINISTIC)  # the same request, another project
        again = await p2.post(CHAT, json=DETERMINISTIC)
    assert (other.headers["x-bud-cache"], again.headers["x-bud-cache"]) == ("miss", "hit")
    assert gw.engine.calls == 2


def test_the_key_names_the_project_and_the_deployment() -> None:
    request = chat_pb2.ChatCompletionRequest(model="chat", temperature=0)
    request.messages.add(role="user", content_text="hello")
    keys_made = {
        cache_key("CreateChatCompletion", project, dep, names, request)
        for project, dep, names in (
            ("p1", "d1", ["m1"]),
            ("p2", "d1", ["m1"]),
            ("p1", "d2", ["m1"]),
            ("p1", "d1", ["m1-g2"]),  # a new generation of the model
        )
    }
    assert len(keys_made) == 4
    assert all(k is not None and k.startswith(("p1:", "p2:")) for k in keys_made)


async def test_caching_off_means_no_header_and_no_entry_and_the_switch_applies_live() -> None:
    body = {**DETERMINISTIC, "model": "plain"}
    async with _gateway() as gw, gw.client() as http:
        off = [await http.post(CHAT, json=body) for _ in range(2)]
        assert all("x-bud-cache" not in r.headers for r in off) and gw.engine.calls == 2
        # The switch turned on through the routing watch: no restart.
        update = routing_pb2.WatchRoutingResponse(revision=2)
        _deployment(update, "d3", "p1", "plain", caching=True)
        gw.tables.apply(update)
        on = [(await http.post(CHAT, json=body)).headers["x-bud-cache"] for _ in range(2)]
        assert on == ["miss", "hit"] and gw.engine.calls == 3
        # And off again: the entry is no longer used.
        update = routing_pb2.WatchRoutingResponse(revision=3)
        _deployment(update, "d3", "p1", "plain", caching=False)
        gw.tables.apply(update)
        last = await http.post(CHAT, json=body)
        assert "x-bud-cache" not in last.headers and gw.engine.calls == 4


async def test_the_cache_bounds_change_live() -> None:
    cache = MemoryResponseCache(ttl_s=60, max_bytes=1 << 20)
    async with _gateway(cache) as gw, gw.client() as http:
        await http.post(CHAT, json=DETERMINISTIC)
        cache.ttl_s = 0.05  # set on the running cache
        await asyncio.sleep(0.1)
        assert (await http.post(CHAT, json=DETERMINISTIC)).headers["x-bud-cache"] == "miss"
        cache.max_bytes = 0  # 0: the response cache is off
        reply = await http.post(CHAT, json=DETERMINISTIC)
        assert "x-bud-cache" not in reply.headers and gw.engine.calls == 3


# ---- what is never stored ----------------------------------------------------------------------
async def test_a_failed_call_is_never_stored() -> None:
    engine = InstantEngine(["m1"], chunks=4)
    engine.fail_after = 0
    async with _gateway(engine=engine) as gw, gw.client() as http:
        failed = await http.post(CHAT, json=DETERMINISTIC)
        failed_stream = await http.post(CHAT, json={**DETERMINISTIC, "stream": True})
        engine.fail_after = None
        after = await http.post(CHAT, json=DETERMINISTIC)
        after_stream = await http.post(CHAT, json={**DETERMINISTIC, "stream": True})
    assert failed.status_code == 500 and '"error"' in failed_stream.text
    assert (after.headers["x-bud-cache"], after_stream.headers["x-bud-cache"]) == ("miss", "miss")
    assert gw.engine.calls == 4


async def test_a_stream_cut_by_its_client_is_never_stored() -> None:
    engine = InstantEngine(["m1"], chunks=200, chunk_delay=0.005)
    body = {**DETERMINISTIC, "stream": True}
    async with _gateway(engine=engine) as gw, gw.client() as http:
        async with http.stream("POST", CHAT, json=body) as response:
            read = 0
            async for line in response.aiter_lines():
                read += line.startswith("data: ")
                if read == 5:
                    break
        await asyncio.sleep(0.2)  # the gateway notices the client left
        await gw.servicer.drain()
        again = await http.post(CHAT, json=body)
    assert again.headers["x-bud-cache"] == "miss" and _streamed_text(_events(again)).startswith("w0 w1")
    assert len(gw.cache) == 1  # type: ignore[arg-type]  # the complete second stream only


# ---- accounting --------------------------------------------------------------------------------
async def test_a_hit_is_recorded_as_cached_with_zero_tokens() -> None:
    async with _gateway() as gw, gw.client() as http:
        await http.post(CHAT, json=DETERMINISTIC)
        await http.post(CHAT, json=DETERMINISTIC)
        await http.post(CHAT, json={**DETERMINISTIC, "stream": True})
        await http.post(CHAT, json={**DETERMINISTIC, "stream": True})
    await gw.servicer.drain()
    seen = [(r.cached, r.prompt_tokens, r.completion_tokens, r.status_code) for r in gw.usage.records]
    assert seen == [
        (False, PROMPT_TOKENS, 1, 200),
        (True, 0, 0, 200),
        (False, PROMPT_TOKENS, 4, 200),
        (True, 0, 0, 200),
    ]
    assert {(r.project_id, r.deployment_id) for r in gw.usage.records} == {("p1", "d1")}


async def test_a_hit_counts_as_a_request_and_reserves_no_tokens() -> None:
    async with _gateway(rpm=3, tpm=10_000) as gw, gw.client() as http:
        miss = await http.post(CHAT, json=DETERMINISTIC)
        hit = await http.post(CHAT, json=DETERMINISTIC)
        assert hit.headers["x-bud-cache"] == "hit"
        # The hit's request is counted; its tokens are not.
        assert hit.headers["x-ratelimit-remaining-requests"] == "1"
        assert miss.headers["x-bud-cache"] == "miss"
        # The miss's reservation settled to what the engine processed; the hit added nothing.
        assert int(hit.headers["x-ratelimit-remaining-tokens"]) == 10_000 - (PROMPT_TOKENS + 1)
        decision = await gw.limiter.admit([Limit("key:k1:tok", 10_000, "tokens")], 0)
        assert 10_000 - int(dict(decision.headers)["x-ratelimit-remaining-tokens"]) == PROMPT_TOKENS + 1
        await http.post(CHAT, json=DETERMINISTIC)
        refused = await http.post(CHAT, json=DETERMINISTIC)  # a fourth request: over the RPM
        assert refused.status_code == 429
    assert gw.engine.calls == 1


# ---- the stores --------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = MemoryResponseCache(ttl_s=10, max_bytes=1 << 20, clock=clock)
    await cache.put("a", b"x")
    clock.now += 9.9
    assert await cache.get("a") == b"x"
    clock.now += 0.1
    assert await cache.get("a") is None and len(cache) == 0 and cache.bytes == 0


async def test_memory_entries_are_bounded_by_bytes_least_recently_used_out_first() -> None:
    cost = 1 + 100 + ENTRY_OVERHEAD
    cache = MemoryResponseCache(ttl_s=60, max_bytes=3 * cost)
    for name in "abc":
        await cache.put(name, b"v" * 100)
    assert await cache.get("a") is not None  # a is now the most recently used
    await cache.put("d", b"v" * 100)
    assert [await cache.get(k) is not None for k in "abcd"] == [True, False, True, True]
    assert cache.bytes == 3 * cost
    await cache.put("huge", b"v" * (3 * cost))  # larger than the whole cache: not stored
    assert await cache.get("huge") is None and len(cache) == 3


def test_a_streams_chunks_pack_and_unpack() -> None:
    chunks = [b"", b"abc", b"\x00" * 300]
    assert unpack(pack(chunks)) == chunks


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


async def test_redis_entries_are_shared_by_two_gateway_stacks(redis_url: str) -> None:
    k1, k2 = keys.mint_key(SECRET), keys.mint_key(SECRET)
    a_cache = RedisResponseCache(redis_url, 60, 1 << 20, prefix="bud:rc:shared:")
    b_cache = RedisResponseCache(redis_url, 60, 1 << 20, prefix="bud:rc:shared:")
    try:
        async with (
            _gateway(a_cache, k1=k1, k2=k2) as a,
            _gateway(b_cache, k1=k1, k2=k2) as b,
            a.client() as on_a,
            b.client() as on_b,
        ):
            first = await on_a.post(CHAT, json=DETERMINISTIC)
            second = await on_b.post(CHAT, json=DETERMINISTIC)
            streamed = await on_a.post(CHAT, json={**DETERMINISTIC, "stream": True})
            replayed = await on_b.post(CHAT, json={**DETERMINISTIC, "stream": True})
            other_project = await on_b.post(
                CHAT, json=DETERMINISTIC, headers={"authorization": f"Bearer {k2.secret}"}
            )
        assert [r.headers["x-bud-cache"] for r in (first, second, streamed, replayed, other_project)] == [
            "miss",
            "hit",
            "miss",
            "hit",
            "miss",
        ]
        assert (a.engine.calls, b.engine.calls) == (2, 1)  # b answered both of p1's from a's entries
        assert _streamed_text(_events(replayed)) == _streamed_text(_events(streamed))
        assert [r.cached for r in b.usage.records] == [True, True, False]
    finally:
        await a_cache.close()
        await b_cache.close()


async def test_redis_entries_expire_and_are_bounded_by_bytes(redis_url: str) -> None:
    prefix = "bud:rc:bounds:"
    cost = len(prefix) + 1 + 100 + ENTRY_OVERHEAD
    cache = RedisResponseCache(redis_url, 60, 3 * cost, prefix=prefix)
    other = RedisResponseCache(redis_url, 60, 3 * cost, prefix=prefix)  # a second gateway's view
    try:
        for name in "abc":
            await cache.put(name, b"v" * 100)
        assert await other.get("a") is not None  # a, read by the other gateway, is now the most recent
        await other.put("d", b"v" * 100)
        assert [await cache.get(k) is not None for k in "abcd"] == [True, False, True, True]
        assert await cache.total_bytes() == 3 * cost
        await cache.put("a", b"v" * 100)  # replaced, not counted twice
        assert await cache.total_bytes() == 3 * cost
        short = RedisResponseCache(redis_url, 0.05, 3 * cost, prefix=prefix)
        await short.put("e", b"v" * 100)  # evicts the least recently used (c)
        await asyncio.sleep(0.1)
        assert await cache.get("e") is None  # expired
        await cache.put("f", b"v" * 1)  # the expired entry's bytes are forgotten here
        assert await cache.total_bytes() == 3 * cost - 99
        await short.close()
    finally:
        await cache.close()
        await other.close()


async def test_an_unreachable_redis_serves_from_the_engine_without_a_header() -> None:
    cache = RedisResponseCache("redis://127.0.0.1:1", 60, 1 << 20)
    try:
        async with _gateway(cache) as gw, gw.client() as http:
            replies = [await http.post(CHAT, json=DETERMINISTIC) for _ in range(2)]
        assert all(r.status_code == 200 and "x-bud-cache" not in r.headers for r in replies)
        assert gw.engine.calls == 2
    finally:
        await cache.close()


# ---- the gRPC face -----------------------------------------------------------------------------
@pytest.mark.parametrize("rpm", [0, 100], ids=["no-limits", "limits"])
async def test_the_grpc_face_says_hit_or_miss_in_its_initial_metadata(rpm: int) -> None:
    async with _gateway(rpm=rpm) as gw:
        server = GrpcServer(
            "127.0.0.1:0",
            [
                ServiceBinding(
                    gw.servicer, openai_service_pb2_grpc.add_OpenAiServiceServicer_to_server, OPENAI_SERVICE
                )
            ],
        )
        await server.start()
        try:
            async with service_channel(f"127.0.0.1:{server.port}") as channel:
                stub = openai_service_pb2_grpc.OpenAiServiceStub(channel)
                request = chat_pb2.ChatCompletionRequest(model="chat", temperature=0)
                request.messages.add(role="user", content_text="hello")
                auth = (("authorization", f"Bearer {gw.k1.secret}"),)
                seen = []
                for _ in range(2):
                    call = stub.CreateChatCompletion(request, metadata=auth)
                    answer = await call
                    seen.append(dict(await call.initial_metadata()).get("x-bud-cache"))
                    stream = stub.StreamChatCompletion(request, metadata=auth)
                    chunks = [c async for c in stream]
                    seen.append(dict(await stream.initial_metadata()).get("x-bud-cache"))
        finally:
            await server.stop(0)
    assert seen == ["miss", "miss", "hit", "hit"]
    assert answer.choices[0].message.content == "ok" and len(chunks) == 5
    assert gw.engine.calls == 2


async def test_the_grpc_face_streams_cached_responses() -> None:
    """A streamed Responses call sends its first event before the chat stream under it runs: the
    limits and the cache are looked at first, so that the metadata goes out before it."""
    async with _gateway() as gw:
        server = GrpcServer(
            "127.0.0.1:0",
            [
                ServiceBinding(
                    gw.servicer, openai_service_pb2_grpc.add_OpenAiServiceServicer_to_server, OPENAI_SERVICE
                )
            ],
        )
        await server.start()
        try:
            async with service_channel(f"127.0.0.1:{server.port}") as channel:
                stub = openai_service_pb2_grpc.OpenAiServiceStub(channel)
                request = response_pb2.ResponseRequest(
                    model="chat", temperature=0, store=False, input_text="hello"
                )
                auth = (("authorization", f"Bearer {gw.k1.secret}"),)
                seen, kinds = [], []
                for _ in range(2):
                    stream = stub.StreamResponse(request, metadata=auth)
                    kinds.append([e.type async for e in stream])
                    seen.append(dict(await stream.initial_metadata()).get("x-bud-cache"))
        finally:
            await server.stop(0)
    assert seen == ["miss", "hit"] and kinds[0] == kinds[1] and kinds[0][-1] == "response.incomplete"
    assert gw.engine.calls == 1


# ---- settings ----------------------------------------------------------------------------------
async def test_the_settings_choose_the_store_and_its_bounds(tmp_path: Any) -> None:
    memory = response_cache(
        GatewaySettings(data_dir=tmp_path, response_cache_ttl_s=5, response_cache_max_bytes=1000)
    )
    assert isinstance(memory, MemoryResponseCache) and (memory.ttl_s, memory.max_bytes) == (5, 1000)
    shared = response_cache(GatewaySettings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1"))
    assert isinstance(shared, RedisResponseCache) and shared.max_bytes == 256 << 20 and shared.ttl_s == 300
    await shared.close()
    for bad in ({"response_cache_ttl_s": 0}, {"response_cache_max_bytes": -1}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            GatewaySettings(data_dir=tmp_path, **bad)


async def test_a_hit_takes_no_concurrency_slot() -> None:
    """A deployment at its max_concurrency still answers its cache hits at once: a hit runs
    nothing on the engines, so it neither waits for a slot nor is refused for want of one."""
    engine = InstantEngine(["m1"], chunks=40, chunk_delay=0.5)  # a long stream holds the one slot
    async with _gateway(engine=engine) as gw, gw.client() as http:
        gw.servicer.concurrency = MemoryConcurrencyLimiter(queue_timeout=0.2, queue_length=1)
        assert (await http.post(CHAT, json=DETERMINISTIC)).headers["x-bud-cache"] == "miss"
        limited = routing_pb2.WatchRoutingResponse(revision=2)
        _deployment(limited, "d1", "p1", "chat")
        limited.upsert_deployments[0].max_concurrency = 1
        gw.tables.apply(limited)
        async with http.stream(
            "POST", CHAT, json={**DETERMINISTIC, "temperature": 1, "stream": True}
        ) as held:
            assert held.status_code == 200
            lines = held.aiter_lines()  # kept: a dropped iterator would close the stream
            await lines.__anext__()  # the stream is running: the slot is taken
            assert gw.servicer.concurrency.in_flight("dep:d1") == 1, gw.tables.deployments["d1"]
            hit = await http.post(CHAT, json=DETERMINISTIC)
            assert hit.status_code == 200 and hit.headers["x-bud-cache"] == "hit"
            missed = await http.post(CHAT, json={**DETERMINISTIC, "temperature": 1})
            assert missed.status_code == 429  # an engine call still waits for the slot, then is refused
