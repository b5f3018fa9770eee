"""On a running mesh with real vLLM (issue 11, finding 4): a stream the client cuts, and a unary
call whose client gives up, are recorded — one record each, as an error — with the tokens vLLM
processed for them (the prompt and more than the events the client read), and the key's
tokens-per-minute limit is charged those tokens rather than refunded."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from bud.app.v1 import usage_pb2, usage_pb2_grpc
from bud.auth.v1 import auth_pb2, auth_pb2_grpc
from bud.engine.v1 import engine_service_pb2 as engine_pb
from bud.engine.v1 import engine_service_pb2_grpc
from tests.support.mesh import Mesh
from tests.support.mesh_admin import admin_metadata, default_project_id, engine_model_name

pytestmark = pytest.mark.mesh

TPM = 1_000_000
# No seed, no ignore_eos, no min_tokens: requests with any of them are generated to their end before
# vLLM hands out their first output on this CPU build (see tests/performance/README.md) — nothing
# to cut mid-way.
LONG = {"max_tokens": 2000, "temperature": 1.0}
MESSAGES = [{"role": "user", "content": "Tell me a very long story."}]


def _new_key(mesh: Mesh, name: str) -> tuple[str, str, str]:
    """(project id, key id, secret) of a new default-project key with a tokens-per-minute limit."""
    with mesh.channel(mesh.app_grpc, identity="operator") as channel:
        metadata = admin_metadata(mesh, channel)
        project_id = default_project_id(channel, metadata)
        reply = auth_pb2_grpc.ApiKeyServiceStub(channel).CreateApiKey(
            auth_pb2.CreateApiKeyRequest(project_id=project_id, name=name, tokens_per_minute=TPM),
            timeout=30,
            metadata=metadata,
        )
    return project_id, reply.api_key.id, reply.secret


def _client(mesh: Mesh, secret: str, timeout: float = 120) -> openai.OpenAI:
    return openai.OpenAI(base_url=mesh.openai_base_url, api_key=secret, max_retries=0, timeout=timeout)


def _wait(what: str, condition: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _key_works(mesh: Mesh, secret: str) -> bool:
    try:
        _client(mesh, secret, timeout=10).models.list()
    except openai.APIError:
        return False
    return True


def _bucket(mesh: Mesh, project_id: str, key_id: str) -> usage_pb2.UsageBucket | None:
    """The key's usage (one deployment, today), once a record has arrived."""
    with mesh.channel(mesh.app_grpc, identity="operator") as channel:
        buckets = (
            usage_pb2_grpc.UsageServiceStub(channel)
            .QueryUsage(
                usage_pb2.QueryUsageRequest(project_id=project_id, api_key_id=key_id),
                timeout=30,
                metadata=admin_metadata(mesh, channel),
            )
            .buckets
        )
    return buckets[0] if buckets and buckets[0].requests else None


def _tokens_charged(mesh: Mesh, secret: str) -> int:
    """The key's tokens in this minute, read from the next request's rate-limit headers (less the
    one token that request reserves beyond its prompt estimate)."""
    reply = httpx.post(
        f"{mesh.openai_base_url}/chat/completions",
        headers={"authorization": f"Bearer {secret}"},
        json={"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return TPM - int(reply.headers["x-ratelimit-remaining-tokens"])


def test_a_cut_stream_is_recorded_and_charged_with_what_vllm_generated(mesh: Mesh) -> None:
    project_id, key_id, secret = _new_key(mesh, "cut-stream")
    _wait("the new key at the gateway", lambda: _key_works(mesh, secret), timeout=30)
    minute = int(time.time() // 60)
    stream = _client(mesh, secret).chat.completions.create(
        model="tiny-llama", stream=True, messages=MESSAGES, **LONG
    )
    read = 0
    for _chunk in stream:
        read += 1
        if read == 20:
            break
    stream.close()
    # The key's first request was the models list; this is its only generation until below.
    bucket = _wait("the cut stream's usage", lambda: _bucket(mesh, project_id, key_id), timeout=60)
    assert bucket.requests == 1 and bucket.errors == 1  # cancelled by its client
    assert bucket.prompt_tokens > 0
    assert bucket.completion_tokens >= 19  # every word the client read, and what vLLM made after
    if int(time.time() // 60) == minute:  # the limiter's window is still the stream's
        assert _tokens_charged(mesh, secret) >= bucket.prompt_tokens + bucket.completion_tokens


def _generated_tokens(mesh: Mesh, engine_name: str) -> int:
    """What the engine has generated for the model since it started (its own count)."""
    with mesh.channel(mesh.engine_grpc) as channel:
        stats = engine_service_pb2_grpc.EngineServiceStub(channel).GetStats(
            engine_pb.GetStatsRequest(), timeout=30
        )
    return sum(m.generation_tokens_total for m in stats.models if m.name == engine_name)


def test_a_unary_call_whose_client_left_is_recorded_with_its_tokens(mesh: Mesh) -> None:
    """The client sends a long unary request on a raw connection and closes it once the engine
    has generated some of it (the engine's own counter, not a guess of how long the call takes)."""
    project_id, key_id, secret = _new_key(mesh, "left-unary")
    _wait("the new key at the gateway", lambda: _key_works(mesh, secret), timeout=30)
    engine_name = engine_model_name(mesh, "tiny-llama")
    before = _generated_tokens(mesh, engine_name)
    url = httpx.URL(mesh.openai_base_url)
    body = json.dumps({"model": "tiny-llama", "messages": MESSAGES, **LONG})
    head = (
        f"POST {url.path.rstrip('/')}/chat/completions HTTP/1.1\r\nhost: {url.host}\r\n"
        f"authorization: Bearer {secret}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((url.host, url.port), timeout=30) as conn:
        conn.sendall(head.encode() + body.encode())
        _wait(
            "the engine generating for the call",
            lambda: _generated_tokens(mesh, engine_name) > before + 10,
            60,
        )
    # The connection is closed mid-generation: the gateway cancels the call and charges it.
    bucket = _wait("the unary call's usage", lambda: _bucket(mesh, project_id, key_id), timeout=60)
    assert bucket.requests == 1 and bucket.errors == 1
    assert bucket.prompt_tokens > 0 and 10 < bucket.completion_tokens < LONG["max_tokens"]
