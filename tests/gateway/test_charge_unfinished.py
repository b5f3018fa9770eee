"""Cancelled and failed requests are charged what the engine processed (issue 11, finding 4): a
stream the client cuts after N events, a unary call whose client leaves, and a call that fails
midway each leave one usage record with the engine's counts (GetRequestUsage) and their real
outcome, and the token rate limit settles to those counts — above the reservation when the
engine did more — never refunded to zero. When the engine cannot say, the gateway charges what it
saw streamed plus the prompt estimate it reserved for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from auth import keys
from bud.app.v1 import usage_pb2
from bud.auth.v1 import routing_pb2
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.ratelimit import Limit, MemoryRateLimiter
from gateway.server import build_transcoder
from gateway.tables import RoutingTables
from gateway.usage import UsageRecorder
from tests.gateway.conftest import http_server
from tests.support.instant_engine import PROMPT_TOKENS, InstantEngine, serve_instant_engine
from tests.support.mesh import free_port

pytestmark = pytest.mark.unit

SECRET = "test-hash-secret"
TPM = 1_000_000
CHAT = "/v1/chat/completions"
BODY = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}


class CollectedUsage(UsageRecorder):
    """The gateway's recorder, keeping what it would send (never flushed here)."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1:1")
        self.records: list[usage_pb2.UsageRecord] = []

    def add(self, rec: usage_pb2.UsageRecord) -> None:
        self.records.append(rec)


def _tables(key: keys.NewKey, address: str) -> RoutingTables:
    tables = RoutingTables()
    snapshot = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    snapshot.upsert_projects.add(id="p1", name="team")
    snapshot.upsert_keys.add(
        id="k1", prefix=key.prefix, key_hash=key.key_hash, project_id="p1", tokens_per_minute=TPM
    )
    dep = snapshot.upsert_deployments.add(id="d1", project_id="p1", name="chat", ready=True)
    dep.endpoints.add(address=address, served_model_name="m1")
    tables.apply(snapshot)
    return tables


@dataclass
class Gateway:
    url: str
    key: keys.NewKey
    engine: InstantEngine
    servicer: OpenAiServicer
    usage: CollectedUsage
    limiter: MemoryRateLimiter

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key.secret}"}

    async def record(self) -> usage_pb2.UsageRecord:
        """The one usage record, once made (the gateway notices a client left a moment later, and
        then charges off the client's path)."""
        deadline = asyncio.get_running_loop().time() + 5
        while not self.usage.records and asyncio.get_running_loop().time() < deadline:
            await self.servicer.drain()
            await asyncio.sleep(0.01)
        # The record is made before the limits settle, in the same charge task: wait for it.
        await self.servicer.drain()
        await asyncio.sleep(0.05)  # a second record would show here
        (record,) = self.usage.records
        return record

    async def tokens_charged(self) -> int:
        """The key's token count in this minute, as the limiter holds it."""
        decision = await self.limiter.admit([Limit("key:k1:tok", TPM, "tokens")], 0)
        return TPM - int(dict(decision.headers)["x-ratelimit-remaining-tokens"])


@contextlib.asynccontextmanager
async def _gateway(engine: InstantEngine, remote: bool) -> AsyncIterator[Gateway]:
    key = keys.mint_key(SECRET)
    address = f"127.0.0.1:{free_port()}"
    server = await serve_instant_engine(address, engine) if remote else None
    pool = EnginePool() if remote else EnginePool(local={address: engine})
    usage, limiter = CollectedUsage(), MemoryRateLimiter()
    tables = _tables(key, address)
    servicer = OpenAiServicer(tables, pool, SECRET, usage=usage, limiter=limiter)
    try:
        async with http_server(build_transcoder(servicer, tables)) as url:
            yield Gateway(url, key, engine, servicer, usage, limiter)
    finally:
        await pool.close()
        if server is not None:
            await server.stop(0)


async def _cut_stream(gw: Gateway, events: int, **extra: Any) -> int:
    """Reads `events` SSE events of a chat stream and leaves; the content events it read."""
    content = 0
    async with (
        httpx.AsyncClient(base_url=gw.url, headers=gw.headers, timeout=10) as http,
        http.stream("POST", CHAT, json={**BODY, "stream": True, **extra}) as response,
    ):
        assert response.status_code == 200
        read = 0
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                read += 1
                content += '"content":"w' in line
                if read == events:
                    break
    return content


@pytest.mark.parametrize("remote", [False, True], ids=["co-hosted", "remote"])
async def test_a_stream_cut_after_n_events_is_charged_what_the_engine_generated(remote: bool) -> None:
    engine = InstantEngine(["m1"], chunks=400, chunk_delay=0.005)
    async with _gateway(engine, remote) as gw:
        read = await _cut_stream(gw, events=30, max_tokens=10)
        record = await gw.record()
        ((prompt, generated),) = engine.processed.values()
        assert record.status_code == 499  # cancelled by the client, not an error
        assert (
            (record.prompt_tokens, record.completion_tokens)
            == (prompt, generated)
            == (
                PROMPT_TOKENS,
                generated,
            )
        )
        assert generated >= read == 29 and generated < 400  # the role event had no word
        assert engine.usage_calls == 1
        # The limit settles to what was processed — above the 10 tokens the request reserved
        # for — instead of refunding the reservation.
        assert await gw.tokens_charged() == PROMPT_TOKENS + generated


@pytest.mark.parametrize("remote", [False, True], ids=["co-hosted", "remote"])
async def test_a_unary_call_whose_client_left_is_charged_its_tokens(remote: bool) -> None:
    engine = InstantEngine(["m1"])
    engine.unary_tokens, engine.unary_delay = 20, 1.0
    async with _gateway(engine, remote) as gw:
        async with httpx.AsyncClient(base_url=gw.url, headers=gw.headers, timeout=0.4) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(CHAT, json=BODY)
        record = await gw.record()
        ((prompt, generated),) = engine.processed.values()
        assert engine.open_unary == 0  # it was aborted, not run to its end
        assert record.status_code == 499
        assert (record.prompt_tokens, record.completion_tokens) == (prompt, generated)
        assert prompt == PROMPT_TOKENS and 0 < generated < 20
        assert await gw.tokens_charged() == prompt + generated


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
async def test_a_failed_call_is_charged_what_the_engine_processed(stream: bool) -> None:
    engine = InstantEngine(["m1"], chunks=50)
    engine.unary_tokens, engine.fail_after = 50, 7
    async with _gateway(engine, remote=False) as gw:
        async with httpx.AsyncClient(base_url=gw.url, headers=gw.headers, timeout=10) as http:
            reply = await http.post(CHAT, json={**BODY, "stream": stream})
        if stream:
            assert reply.status_code == 200 and '"error"' in reply.text  # the stream's last event
        else:
            assert reply.status_code == 500
        record = await gw.record()
        assert record.status_code == 500
        assert (record.prompt_tokens, record.completion_tokens) == (PROMPT_TOKENS, 7)
        assert await gw.tokens_charged() == PROMPT_TOKENS + 7


async def test_when_the_engine_cannot_say_the_gateway_charges_what_it_saw() -> None:
    engine = InstantEngine(["m1"], chunks=400, chunk_delay=0.005)
    engine.keeps_usage = False  # as an engine that restarted: every id is unknown to it
    async with _gateway(engine, remote=False) as gw:
        read = await _cut_stream(gw, events=12)
        record = await gw.record()
        assert record.status_code == 499 and engine.usage_calls == 1
        # The words that reached the gateway (at least those the client read), and the prompt
        # estimate of the reservation (4 bytes of the request a token) in place of the prompt.
        assert record.completion_tokens >= read == 11
        assert record.prompt_tokens > 0
        assert await gw.tokens_charged() == record.prompt_tokens + record.completion_tokens


async def test_a_normal_stream_asks_the_engine_nothing() -> None:
    engine = InstantEngine(["m1"], chunks=5)
    async with _gateway(engine, remote=False) as gw:
        async with httpx.AsyncClient(base_url=gw.url, headers=gw.headers, timeout=10) as http:
            reply = await http.post(CHAT, json={**BODY, "stream": True})
            assert reply.text.rstrip().endswith("data: [DONE]")
        record = await gw.record()
        assert (record.status_code, record.prompt_tokens, record.completion_tokens) == (200, PROMPT_TOKENS, 5)
        assert engine.usage_calls == 0


async def test_the_charge_does_not_hold_the_client() -> None:
    """The client's answer does not wait for the engine's counts (a slow GetRequestUsage)."""
    engine = InstantEngine(["m1"])
    engine.fail_after = 0
    original = engine.GetRequestUsage

    async def slow(request: Any, context: Any) -> Any:
        await asyncio.sleep(0.5)
        return await original(request, context)

    engine.GetRequestUsage = slow  # type: ignore[method-assign]
    async with _gateway(engine, remote=False) as gw:
        async with httpx.AsyncClient(base_url=gw.url, headers=gw.headers, timeout=10) as http:
            loop = asyncio.get_running_loop()
            started = loop.time()
            reply = await http.post(CHAT, json=BODY)
            assert reply.status_code == 500 and loop.time() - started < 0.4
        assert not gw.usage.records  # the record comes with the engine's counts
        record = await gw.record()
        assert (record.status_code, record.prompt_tokens, record.completion_tokens) == (500, PROMPT_TOKENS, 0)
