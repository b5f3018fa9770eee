"""The generation caps (`max_choices`, `max_total_tokens`): `n=1000` and n × max_tokens beyond
the cap are refused with INVALID_ARGUMENT (OpenAI error JSON, the field as `param`) before the
rate limits reserve anything and before any engine is called — for chat, completions and the
Responses API, unary and streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from auth import keys
from gateway.engines import EnginePool
from gateway.openai_service import GenerationCaps, OpenAiServicer
from gateway.ratelimit import MemoryRateLimiter
from gateway.server import build_transcoder
from gateway.settings import GatewaySettings
from tests.gateway.conftest import http_server
from tests.gateway.test_openai_gateway import SECRET, _tables
from tests.support.instant_engine import InstantEngine, start_instant_engine
from tests.support.mesh import free_port

MESSAGES = [{"role": "user", "content": "x"}]


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, InstantEngine]]:
    address = f"127.0.0.1:{free_port()}"
    server, instant = await start_instant_engine(address, ["m1"])
    yield address, instant
    await server.stop(0)


@pytest.fixture
async def gateway(
    engine: tuple[str, InstantEngine],
) -> AsyncIterator[tuple[httpx.AsyncClient, InstantEngine]]:
    """A gateway with the default caps whose key's deployment allows 1 request a minute."""
    address, instant = engine
    key = keys.mint_key(SECRET)
    tables = _tables(key, [address], rpm=1)
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, SECRET, usage=None, limiter=MemoryRateLimiter())
    async with http_server(build_transcoder(servicer, tables)) as url:
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key.secret}"}) as http:
            yield http, instant
    await pool.close()


def test_the_settings_default_to_the_documented_caps() -> None:
    settings = GatewaySettings()
    assert (settings.max_choices, settings.max_total_tokens) == (16, 65536)
    assert GenerationCaps() == GenerationCaps(settings.max_choices, settings.max_total_tokens)
    with pytest.raises(ValueError):
        GatewaySettings(max_choices=0)


# (path, body, the param the error names)
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/chat/completions", {"messages": MESSAGES, "n": 1000}, "n"),
    ("/v1/chat/completions", {"messages": MESSAGES, "n": 1000, "stream": True}, "n"),
    ("/v1/chat/completions", {"messages": MESSAGES, "n": 0}, "n"),
    ("/v1/chat/completions", {"messages": MESSAGES, "n": -1}, "n"),
    ("/v1/chat/completions", {"messages": MESSAGES, "n": 16, "max_tokens": 4097}, "max_tokens"),
    ("/v1/chat/completions", {"messages": MESSAGES, "max_completion_tokens": 65537}, "max_completion_tokens"),
    (
        "/v1/chat/completions",
        {"messages": MESSAGES, "n": 2, "max_completion_tokens": 40000, "stream": True},
        "max_completion_tokens",
    ),
    ("/v1/completions", {"prompt": "x", "n": 17}, "n"),
    ("/v1/completions", {"prompt": "x", "best_of": 1000}, "best_of"),
    ("/v1/completions", {"prompt": "x", "n": 4, "max_tokens": 20000, "stream": True}, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "n": 2, "best_of": 8, "max_tokens": 10000}, "max_tokens"),
    ("/v1/responses", {"input": "x", "max_output_tokens": 100000}, "max_output_tokens"),
    ("/v1/responses", {"input": "x", "max_output_tokens": 100000, "stream": True}, "max_output_tokens"),
]


async def test_requests_beyond_the_caps_are_refused_before_limits_and_engines(
    gateway: tuple[httpx.AsyncClient, InstantEngine],
) -> None:
    http, instant = gateway
    for path, body, param in REFUSED:
        reply = await http.post(path, json={"model": "chat", **body})
        assert reply.status_code == 400, (path, body, reply.text)
        error = reply.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            "invalid_argument",
            param,
        ), (path, body, error)
    assert instant.calls == 0  # no engine saw any of them
    # Nor did the rate limit count them: the one request a minute is still there, at the caps.
    at_the_caps = {"model": "chat", "messages": MESSAGES, "n": 16, "max_tokens": 4096}
    assert (await http.post("/v1/chat/completions", json=at_the_caps)).status_code == 200
    assert instant.calls == 1
    assert (await http.post("/v1/chat/completions", json=at_the_caps)).status_code == 429


async def test_the_caps_come_from_the_settings(engine: tuple[str, InstantEngine]) -> None:
    address, instant = engine
    key = keys.mint_key(SECRET)
    tables = _tables(key, [address])
    pool = EnginePool()
    caps = GenerationCaps(max_choices=2, max_total_tokens=100)
    servicer = OpenAiServicer(tables, pool, SECRET, caps=caps)
    async with http_server(build_transcoder(servicer, tables)) as url:
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key.secret}"}) as http:
            chat = {"model": "chat", "messages": MESSAGES}
            three = await http.post("/v1/chat/completions", json={**chat, "n": 3})
            assert three.status_code == 400 and three.json()["error"]["param"] == "n"
            assert "between 1 and 2" in three.json()["error"]["message"]
            over = await http.post("/v1/chat/completions", json={**chat, "n": 2, "max_tokens": 51})
            assert over.status_code == 400 and over.json()["error"]["param"] == "max_tokens"
            assert "at most 100 tokens" in over.json()["error"]["message"]
            assert (
                await http.post("/v1/chat/completions", json={**chat, "n": 2, "max_tokens": 50})
            ).status_code == 200
            # Unauthenticated callers learn nothing about the caps: the key is checked first.
            anonymous = await http.post(
                "/v1/chat/completions", json={**chat, "n": 3}, headers={"authorization": "Bearer nope"}
            )
            assert anonymous.status_code == 401
    assert instant.calls == 1
    await pool.close()
