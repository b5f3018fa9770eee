"""The gateway's OpenAI service against instant engines: auth from the watched tables, routing,
usage filtering in streams, rate-limit answers, health checks and failover before the first byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from auth import keys
from bud.auth.v1 import routing_pb2
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.ratelimit import MemoryRateLimiter
from gateway.server import build_transcoder
from gateway.tables import RoutingTables
from tests.gateway.conftest import http_server
from tests.support.instant_engine import InstantEngine, start_instant_engine
from tests.support.mesh import free_port

SECRET = "test-hash-secret"


def _tables(key: keys.NewKey, endpoints: list[str], rpm: int = 0) -> RoutingTables:
    tables = RoutingTables()
    snapshot = routing_pb2.WatchRoutingResponse(revision=7, reset=True)
    snapshot.upsert_projects.add(id="p1", name="team")
    snapshot.upsert_keys.add(id="k1", prefix=key.prefix, key_hash=key.key_hash, project_id="p1")
    dep = snapshot.upsert_deployments.add(
        id="d1", project_id="p1", name="chat", ready=True, requests_per_minute=rpm
    )
    for address in endpoints:
        dep.endpoints.add(address=address, served_model_name="m1")
    snapshot.upsert_deployments.add(
        id="d2", project_id="other", name="secret-model", ready=True
    ).endpoints.add(address=endpoints[0], served_model_name="m1")
    tables.apply(snapshot)
    return tables


@pytest.fixture
async def engine_address() -> AsyncIterator[str]:
    address = f"127.0.0.1:{free_port()}"
    server, _ = await start_instant_engine(address, ["m1"])
    yield address
    await server.stop(0)


async def _serve(tables: RoutingTables, pool: EnginePool, limiter: Any = None) -> Any:
    servicer = OpenAiServicer(tables, pool, SECRET, usage=None, limiter=limiter)
    return http_server(build_transcoder(servicer, tables))


async def test_chat_models_and_isolation(engine_address: str) -> None:
    key = keys.mint_key(SECRET)
    pool = EnginePool()
    async with await _serve(_tables(key, [engine_address]), pool) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
        reply = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}]
        )
        assert (
            reply.model == "chat"
            and reply.choices[0].message.content == "ok"
            and reply.usage.total_tokens == 6
        )
        models = await client.models.list()
        assert [(m.id, m.owned_by) for m in models.data] == [("chat", "team")]  # not the other project's
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="secret-model", messages=[{"role": "user", "content": "x"}]
            )
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}], stream=True
        )
        chunks = [c async for c in stream]
        assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "length"
    await pool.close()


async def test_rate_limited_request_gets_429_with_headers(engine_address: str) -> None:
    key = keys.mint_key(SECRET)
    pool = EnginePool()
    async with await _serve(_tables(key, [engine_address], rpm=2), pool, MemoryRateLimiter()) as url:
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key.secret}"}) as http:
            body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
            first = await http.post("/v1/chat/completions", json=body)
            assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "1"
            await http.post("/v1/chat/completions", json=body)
            third = await http.post("/v1/chat/completions", json=body)
            assert third.status_code == 429
            assert third.json()["error"]["code"] == "rate_limit_exceeded"
            assert (
                int(third.headers["retry-after"]) >= 1
                and third.headers["x-ratelimit-remaining-requests"] == "0"
            )
            streamed = await http.post("/v1/chat/completions", json={**body, "stream": True})
            assert streamed.status_code == 429  # refused before the stream starts: a plain error
    await pool.close()


async def test_failover_to_a_healthy_replica_and_503_when_none(engine_address: str) -> None:
    key = keys.mint_key(SECRET)
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    pool = EnginePool(check_timeout=0.5)
    tables = _tables(key, [dead, engine_address])
    async with await _serve(tables, pool) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
        for _ in range(3):  # whichever replica is tried first, every call succeeds
            reply = await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}]
            )
            assert reply.choices[0].message.content == "ok"
            stream = await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}], stream=True
            )
            assert len([c async for c in stream]) == 5
        await pool.check(tables.deployments["d1"].endpoints)
        assert not pool.healthy(tables.deployments["d1"].endpoints[0])
        assert pool.healthy(tables.deployments["d1"].endpoints[1])
    await pool.close()
    only_dead = _tables(key, [dead])
    pool = EnginePool()
    async with await _serve(only_dead, pool) as url:
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key.secret}"}) as http:
            r = await http.post(
                "/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "x"}]}
            )
            assert r.status_code == 503 and "unavailable" in r.json()["error"]["message"]
    await pool.close()


async def test_revoked_key_stops_working_when_the_change_arrives(engine_address: str) -> None:
    key = keys.mint_key(SECRET)
    tables = _tables(key, [engine_address])
    pool = EnginePool()
    async with await _serve(tables, pool) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
        await client.models.list()
        tables.apply(routing_pb2.WatchRoutingResponse(revision=8, delete_key_ids=["k1"]))
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    await pool.close()


async def _observe(url: str, key: keys.NewKey) -> dict[str, Any]:
    """What a client sees from a gateway: plain and streamed answers and an engine-side error."""
    seen: dict[str, Any] = {}
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0)
    reply = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    seen["reply"] = (reply.model, reply.choices[0].message.content, reply.usage.total_tokens)
    stream = await client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    seen["chunks"] = [
        (
            c.model,
            [(ch.delta.content, ch.finish_reason) for ch in c.choices],
            c.usage.total_tokens if c.usage else None,
        )
        async for c in stream
    ]
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key.secret}"}) as http:
        body = {"model": "unserved", "messages": [{"role": "user", "content": "x"}]}
        for stream_it in (False, True):
            r = await http.post("/v1/chat/completions", json={**body, "stream": stream_it})
            seen[f"error stream={stream_it}"] = (r.status_code, r.text)
    return seen


async def test_a_co_hosted_engine_is_called_in_process_and_answers_as_over_grpc(engine_address: str) -> None:
    """An engine in the gateway's process (`budrt up`'s default): requests skip the gRPC hop, and
    clients see exactly what a remote engine gives them, errors included."""
    key = keys.mint_key(SECRET)

    def tables() -> RoutingTables:
        t = _tables(key, [engine_address])
        extra = routing_pb2.WatchRoutingResponse(revision=8)
        dep = extra.upsert_deployments.add(id="d3", project_id="p1", name="unserved", ready=True)
        dep.endpoints.add(address=engine_address, served_model_name="not-on-the-engine")
        t.apply(extra)
        return t

    remote_pool = EnginePool()
    async with await _serve(tables(), remote_pool) as url:
        over_grpc = await _observe(url, key)
    await remote_pool.close()

    co_hosted = InstantEngine(["m1"], chunk_delay=0.05)
    local_pool = EnginePool(local={engine_address: co_hosted})
    async with await _serve(tables(), local_pool) as url:
        in_process = await _observe(url, key)
        assert co_hosted.calls == 4  # the in-process engine answered, not the one behind the port
        assert in_process == over_grpc
        assert (
            in_process["error stream=False"][0] == 404 and "`unserved`" in in_process["error stream=False"][1]
        )
        # A client that leaves mid-stream closes the engine's stream at once.
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key.secret}"}) as http:
            body = {"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": True}
            async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        break
                assert co_hosted.open_streams == 1
        for _ in range(100):
            if co_hosted.open_streams == 0:
                break
            await asyncio.sleep(0.02)
        assert co_hosted.open_streams == 0
    await local_pool.close()
