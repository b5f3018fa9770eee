"""The HTTP face against clients that leave, dawdle or send too much (issue 11, findings 6–8):
a unary call whose client left is cancelled down to the engine; slow or unfinished headers and
bodies are answered 408 and closed; an oversized body is refused 413 before it is parsed; the
connection limit answers 503."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from auth import keys
from gateway.engines import EnginePool
from gateway.http_protocol import header_timeout_protocol
from gateway.openai_service import OpenAiServicer
from gateway.server import build_transcoder, http_config
from gateway.settings import GatewaySettings
from gateway.transcoder import MAX_BODY_BYTES, Transcoder
from tests.gateway.conftest import http_server
from tests.gateway.test_openai_gateway import SECRET, _tables
from tests.support.instant_engine import InstantEngine, start_instant_engine
from tests.support.mesh import free_port

pytestmark = pytest.mark.unit

TIMEOUT = 0.5  # the header and body timeouts of the slow-client tests
MARGIN = 2.0  # how much later than the timeout the server may close
CHAT = "/v1/chat/completions"


def _gateway(key: keys.NewKey, address: str, pool: EnginePool, **limits: Any) -> Transcoder:
    tables = _tables(key, [address])
    return build_transcoder(OpenAiServicer(tables, pool, SECRET, usage=None, limiter=None), tables, **limits)


async def _wait_for(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


# ---- finding 7: a unary call whose client left ----------------------------------------------
async def _leave_mid_call(url: str, key: keys.NewKey, engine: InstantEngine, clients: int) -> None:
    """`clients` unary chat calls whose clients give up after 0.3 s; then no engine call runs."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    headers = {"authorization": f"Bearer {key.secret}"}

    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=0.3) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(CHAT, json=body)

    await asyncio.gather(*(one() for _ in range(clients)))
    assert engine.calls == clients
    # The engine would answer after 30 s: its calls end only if the gateway cancelled them.
    assert await _wait_for(lambda: engine.open_unary == 0, 2.0), engine.open_unary


async def test_unary_call_is_cancelled_when_the_client_leaves_co_hosted_engine() -> None:
    key = keys.mint_key(SECRET)
    address = f"127.0.0.1:{free_port()}"  # never listened on: the engine is in this process
    engine = InstantEngine(["m1"])
    engine.unary_delay = 30.0
    pool = EnginePool(local={address: engine})
    async with http_server(_gateway(key, address, pool)) as url:
        await _leave_mid_call(url, key, engine, clients=10)
    await pool.close()


async def test_unary_call_is_cancelled_when_the_client_leaves_remote_engine() -> None:
    key = keys.mint_key(SECRET)
    address = f"127.0.0.1:{free_port()}"
    server, engine = await start_instant_engine(address, ["m1"])
    engine.unary_delay = 30.0
    pool = EnginePool()
    try:
        async with http_server(_gateway(key, address, pool)) as url:
            await _leave_mid_call(url, key, engine, clients=10)
    finally:
        await pool.close()
        await server.stop(0)


# ---- finding 8: slow and unfinished requests --------------------------------------------------
@pytest.fixture
async def slow_url() -> AsyncIterator[str]:
    """A gateway with TIMEOUT-second header and body timeouts (no engine is ever reached)."""
    key = keys.mint_key(SECRET)
    app = _gateway(key, "127.0.0.1:1", EnginePool(), body_timeout=TIMEOUT)
    async with http_server(app, http=header_timeout_protocol(TIMEOUT)) as url:
        yield url


async def _closed_after(url: str, sent: bytes) -> tuple[bytes, float]:
    """Sends `sent` on a raw connection and never more; (what came back, seconds to the close)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    writer.write(sent)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(), TIMEOUT + MARGIN)  # read() returns at EOF
    except TimeoutError:
        pytest.fail(f"the connection was still open {TIMEOUT + MARGIN} s after {sent!r}")
    finally:
        writer.close()
    return answer, time.monotonic() - started


def _status_and_body(answer: bytes) -> tuple[int, bytes]:
    """The status and (de-chunked) body of a raw HTTP/1.1 response."""
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        chunks = []
        while body:
            size, _, rest = body.partition(b"\r\n")
            length = int(size, 16)
            chunks.append(rest[:length])
            body = rest[length + 2 :]
        body = b"".join(chunks)
    return int(head.split(b" ", 2)[1]), body


_HEAD = b"POST " + CHAT.encode() + b" HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(_HEAD, id="partial-headers"),
        pytest.param(_HEAD + b"content-length: 100\r\n\r\n" + b'{"model": "ch', id="partial-body"),
        pytest.param(_HEAD + b'transfer-encoding: chunked\r\n\r\n5\r\n{"mod\r\n', id="unfinished-chunked"),
    ],
)
async def test_slow_clients_are_answered_408_and_closed(slow_url: str, sent: bytes) -> None:
    answer, seconds = await _closed_after(slow_url, sent)
    assert TIMEOUT * 0.8 <= seconds <= TIMEOUT + MARGIN
    status, body = _status_and_body(answer)
    assert status == 408
    if b"\r\n\r\n" in sent:  # the headers arrived: the route's dialect (OpenAI error JSON)
        assert orjson.loads(body)["error"]["code"] == "request_timeout", answer


async def test_connection_limit_answers_503() -> None:
    key = keys.mint_key(SECRET)
    app = _gateway(key, "127.0.0.1:1", EnginePool(), body_timeout=10.0)
    async with http_server(app, limit_concurrency=2) as url:
        host, port = url.removeprefix("http://").split(":")
        held = []
        for _ in range(2):  # two requests whose bodies never come hold both slots
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(_HEAD + b"content-length: 100\r\n\r\n{")
            await writer.drain()
            held.append(writer)
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/healthz")).status_code == 503
        for writer in held:
            writer.close()


# ---- finding 6 (body size): refused before it is parsed ----------------------------------------
async def test_oversized_bodies_are_refused_413() -> None:
    key = keys.mint_key(SECRET)
    app = _gateway(key, "127.0.0.1:1", EnginePool(), max_body_bytes=1000)
    async with http_server(app) as url:
        # Announced too large: refused from the headers alone, the body never sent.
        answer, _ = await _closed_after(url, _HEAD + b"content-length: 1000000000\r\n\r\n")
        status, body = _status_and_body(answer)
        assert status == 413 and orjson.loads(body)["error"]["code"] == "body_too_large"
        # A chunked body announces no length: refused once it passes the cap.
        chunk = b"x" * 600
        chunked = _HEAD + b"transfer-encoding: chunked\r\n\r\n" + (b"258\r\n" + chunk + b"\r\n") * 2
        answer, _ = await _closed_after(url, chunked)
        assert _status_and_body(answer)[0] == 413
        async with httpx.AsyncClient(base_url=url) as http:
            big = await http.post(CHAT, content=b" " * 1001)
            assert big.status_code == 413 and big.json()["error"]["type"] == "invalid_request_error"
            small = await http.post(CHAT, content=b" " * 1000)
            assert small.status_code == 401  # under the cap: on to authentication


def test_body_limit_defaults_are_documented_settings() -> None:
    assert MAX_BODY_BYTES == 8 * 1024 * 1024
    settings = GatewaySettings()
    assert settings.http_max_body_bytes == MAX_BODY_BYTES
    assert settings.http_header_timeout > 0 and settings.http_body_timeout > 0
    assert settings.http_max_connections > 0


def test_the_gateway_server_applies_the_http_settings() -> None:
    settings = GatewaySettings(http_header_timeout=1.5, http_max_connections=7, http_keep_alive_timeout=4.0)
    config = http_config(Transcoder([]), settings)
    assert config.limit_concurrency == 7 and config.timeout_keep_alive == 4.0
    assert issubclass(config.http, HttpToolsProtocol) and config.http.header_timeout == 1.5  # type: ignore[union-attr]
