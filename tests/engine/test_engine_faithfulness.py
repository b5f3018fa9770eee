"""The engine serves exactly what vLLM computes: through the gateway, with the real `openai` SDK,
the mesh's tokens (and their logprobs) equal what vLLM's offline `LLM` produces for the same
prompt, model directory and SamplingParams; streaming equals non-streaming; structured outputs,
named tool calls and embeddings work and match.

The offline references run in subprocesses (`offline_reference.py`), started in the background
when this module starts so they overlap with the tests that need only the mesh.

Why the comparisons are strong: the tiny model has random weights, so its next-token distribution
is nearly flat (every logprob is about -6.9, the top two a few hundredths apart). Seeded sampling
then picks near-uniformly among ~2k tokens, and any difference in prompt rendering, sampling
parameters, seeding or numerics changes the tokens within a few steps. The contract has no
`return_tokens_as_token_ids`, so tokens are compared as vLLM's decoded token strings together
with their logprobs and top alternatives at every position (the same string with the same
logprob to 1e-5 at the same position is the same token), plus the token counts.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import openai
import pytest

from bud.app.v1 import deployment_pb2, deployment_pb2_grpc
from bud.engine.v1 import engine_service_pb2 as engine_pb
from bud.engine.v1 import engine_service_pb2_grpc
from tests.support.mesh import REPO, Mesh
from tests.support.mesh_admin import admin_metadata, default_project_id, engine_model_name

pytestmark = pytest.mark.mesh

OFFLINE_SCRIPT = Path(__file__).with_name("offline_reference.py")
LOGPROB_TOL = 1e-5
EMBEDDING_TOL = 1e-5
TOP = 2  # top logprobs asked for at every position

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "Tokyo", "Lima"]},
        "temp": {"type": "integer", "minimum": 0, "maximum": 40},
    },
    "required": ["city", "temp"],
    "additionalProperties": False,
}

CHAT_MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name three rivers in Europe and say why they matter."},
]
COMPLETION_PROMPT = "The quick brown fox jumps over the lazy dog because"

# name -> (kind, OpenAI request arguments, the SamplingParams vLLM's server derives from them).
# Sampling extras (top_k, min_p, repetition_penalty) travel in extra_body, as with vLLM's server.
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "chat-greedy": (
        "chat",
        {"temperature": 0, "max_tokens": 32, "logprobs": True, "top_logprobs": TOP},
        {"temperature": 0, "max_tokens": 32, "logprobs": TOP},
    ),
    "chat-seeded": (
        "chat",
        {
            "temperature": 1.0,
            "top_p": 0.9,
            "seed": 1234,
            "max_tokens": 48,
            "logprobs": True,
            "top_logprobs": TOP,
            "extra_body": {"top_k": 50, "min_p": 0.05, "repetition_penalty": 1.2},
        },
        {
            "temperature": 1.0,
            "top_p": 0.9,
            "seed": 1234,
            "max_tokens": 48,
            "logprobs": TOP,
            "top_k": 50,
            "min_p": 0.05,
            "repetition_penalty": 1.2,
        },
    ),
    "completion-greedy": (
        "completion",
        {"temperature": 0, "max_tokens": 32, "logprobs": TOP},
        {"temperature": 0, "max_tokens": 32, "logprobs": TOP},
    ),
    "completion-seeded": (
        "completion",
        {
            "temperature": 1.0,
            "top_p": 0.9,
            "seed": 1234,
            "max_tokens": 48,
            "logprobs": TOP,
            "presence_penalty": 0.4,
            "frequency_penalty": 0.3,
            "extra_body": {"top_k": 40, "min_p": 0.8, "repetition_penalty": 1.3},
        },
        {
            "temperature": 1.0,
            "top_p": 0.9,
            "seed": 1234,
            "max_tokens": 48,
            "logprobs": TOP,
            "presence_penalty": 0.4,
            "frequency_penalty": 0.3,
            "top_k": 40,
            "min_p": 0.8,
            "repetition_penalty": 1.3,
        },
    ),
    # Structured outputs go through vLLM's grammar backend on both sides: the grammar bitmask must
    # not change anything either. (Greedy JSON never closes on the random model: see the json test.)
    "chat-json-schema-seeded": (
        "chat",
        {
            "temperature": 1.0,
            "seed": 1234,
            "max_tokens": 200,
            "logprobs": True,
            "top_logprobs": TOP,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
            },
        },
        {
            "temperature": 1.0,
            "seed": 1234,
            "max_tokens": 200,
            "logprobs": TOP,
            "structured_outputs": {"json": WEATHER_SCHEMA},
        },
    ),
}

EMBED_INPUTS = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar.",
    "The stock market fell sharply today.",
    "Paris is the capital of France.",
]


# ---- helpers ---------------------------------------------------------------------------------
def client(mesh: Mesh) -> openai.OpenAI:
    return openai.OpenAI(base_url=mesh.openai_base_url, api_key=mesh.api_key, max_retries=0, timeout=300)


def served_model(mesh: Mesh, deployment_name: str) -> engine_pb.ServedModel:
    """The engine's model behind a deployment of the default project (the engine serves it under
    the deployment id)."""
    name = engine_model_name(mesh, deployment_name)
    with mesh.channel(mesh.engine_grpc) as channel:
        models = (
            engine_service_pb2_grpc.EngineServiceStub(channel)
            .ListModels(engine_pb.ListModelsRequest(), timeout=30)
            .models
        )
    (model,) = [m for m in models if m.name == name]
    return model


def mesh_request(mesh: Mesh, kind: str, kwargs: dict[str, Any], stream: bool = False) -> Any:
    c = client(mesh)
    if kind == "chat":
        return c.chat.completions.create(model="tiny-llama", messages=CHAT_MESSAGES, stream=stream, **kwargs)
    return c.completions.create(model="tiny-llama", prompt=COMPLETION_PROMPT, stream=stream, **kwargs)


def mesh_tokens(kind: str, choice: Any) -> list[tuple[str, float, dict[str, float]]]:
    """(decoded token, logprob, {top token: logprob}) per generated position of a mesh choice."""
    lp = choice.logprobs
    if kind == "chat":
        return [(p.token, p.logprob, {t.token: t.logprob for t in p.top_logprobs}) for p in lp.content or []]
    return [(tok, lp.token_logprobs[i], dict(lp.top_logprobs[i])) for i, tok in enumerate(lp.tokens or [])]


def offline_tokens(kind: str, result: dict[str, Any]) -> list[tuple[str, float, dict[str, float]]]:
    """The same view of an offline result, built the way vLLM's server builds its logprobs: chat
    lists the first `top_logprobs` entries of vLLM's per-position dict (sampled token first),
    completions the first `logprobs + 1`."""
    keep = TOP if kind == "chat" else TOP + 1
    rows = []
    for position in result["logprobs"]:
        top = {t["token"]: max(t["logprob"], -9999.0) for t in position["top"][:keep]}
        rows.append((position["token"], position["logprob"], top))
    return rows


def assert_same_tokens(kind: str, mesh_rows: list[Any], offline_rows: list[Any]) -> None:
    assert len(mesh_rows) == len(offline_rows)
    for i, ((m_tok, m_lp, m_top), (o_tok, o_lp, o_top)) in enumerate(
        zip(mesh_rows, offline_rows, strict=True)
    ):
        assert m_tok == o_tok, f"position {i}: mesh token {m_tok!r} != offline {o_tok!r}"
        assert m_lp == pytest.approx(o_lp, abs=LOGPROB_TOL), f"position {i}: logprob of {m_tok!r}"
        assert m_top.keys() == o_top.keys(), f"position {i}: top alternatives differ"
        for token, value in o_top.items():
            assert m_top[token] == pytest.approx(value, abs=LOGPROB_TOL), (
                f"position {i}: logprob of {token!r}"
            )


def choice_text(kind: str, choice: Any) -> str:
    return choice.message.content if kind == "chat" else choice.text


class OfflineRun:
    """offline_reference.py running in the background."""

    def __init__(self, name: str, spec: dict[str, Any], workdir: Path) -> None:
        self.name = name
        self.input = workdir / f"{name}.in.json"
        self.output = workdir / f"{name}.out.json"
        self.log = workdir / f"{name}.log"
        self.input.write_text(json.dumps(spec))
        env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(OFFLINE_SCRIPT), str(self.input), str(self.output)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._result: dict[str, Any] | None = None

    def result(self, timeout: float = 900) -> dict[str, Any]:
        if self._result is None:
            try:
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                pytest.fail(f"offline reference {self.name} still running after {timeout}s:\n{self._tail()}")
            assert code == 0, f"offline reference {self.name} exited with {code}:\n{self._tail()}"
            self._result = json.loads(self.output.read_text())
        return self._result

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module", autouse=True)
def offline(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, OfflineRun]]:
    """Starts the offline references for the generation cases and for the embeddings, with the
    engine settings the mesh's models run with (vLLM's defaults otherwise; torch.compile on as in
    the mesh, since eager mode rounds differently), each request in its own batch."""
    from engine.builtin_models.minilm import minilm_dir

    workdir = tmp_path_factory.mktemp("offline")
    chat_model = served_model(mesh, "tiny-llama")
    embedding_model = served_model(mesh, "all-minilm-l6-v2")
    requests = []
    for kind, _kwargs, params in CASES.values():
        request: dict[str, Any] = {"kind": kind, "params": params}
        if kind == "chat":
            request["messages"] = CHAT_MESSAGES
        else:
            request["prompt"] = COMPLETION_PROMPT
        requests.append(request)
    generate = {
        "jobs": [
            {
                "engine": {
                    "model": str(mesh.data_dir / "models" / "tiny-llama"),
                    "dtype": "float32",  # as the engine loads it
                    "max_model_len": chat_model.max_model_len,
                    "seed": 0,
                },
                "requests": requests,
            }
        ]
    }
    embed = {
        "jobs": [
            {
                "engine": {
                    "model": str(minilm_dir()),
                    "runner": "pooling",
                    "max_model_len": embedding_model.max_model_len,
                    "dtype": embedding_model.args.dtype if embedding_model.args.HasField("dtype") else "auto",
                },
                "requests": [{"kind": "embed", "inputs": EMBED_INPUTS}],
            }
        ]
    }
    runs = {
        "generate": OfflineRun("generate", generate, workdir),
        "embed": OfflineRun("embed", embed, workdir),
    }
    try:
        yield runs
    finally:
        for run in runs.values():
            run.stop()


def offline_result(offline: dict[str, OfflineRun], case: str) -> dict[str, Any]:
    return offline["generate"].result()["jobs"][0]["results"][list(CASES).index(case)]


# ---- tests that need only the mesh (they run while the offline references start) -------------
def test_named_tool_call_with_a_hermes_deployment(mesh: Mesh) -> None:
    """A deployment with tool_call_parser=hermes, created through the app's DeploymentService;
    a named tool_choice makes vLLM force the call (a structural tag; `strict` pins the arguments to
    the parameters schema: without it vLLM 0.32 constrains only the call envelope)."""
    name = "faithfulness-tools"
    parameters = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "enum": ["Paris", "Tokyo", "Lima"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather forecast for a city",
                "parameters": parameters,
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "The time now",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]
    with mesh.channel(mesh.app_grpc, identity="operator") as channel:
        metadata = admin_metadata(mesh, channel)
        project_id = default_project_id(channel, metadata)
        deployments = deployment_pb2_grpc.DeploymentServiceStub(channel)
        created = deployments.CreateDeployment(
            deployment_pb2.CreateDeploymentRequest(
                project_id=project_id,
                deployment=deployment_pb2.Deployment(
                    name=name,
                    model=deployment_pb2.ModelSource(builtin="tiny-llama"),
                    runner=engine_pb.RUNNER_GENERATE,
                    engine_args=engine_pb.EngineArgs(
                        tool_call_parser="hermes", max_model_len=1024, kv_cache_space_gib=0.25
                    ),
                ),
            ),
            timeout=30,
            metadata=metadata,
        ).deployment
        try:
            deadline = time.monotonic() + 600
            while True:
                got = deployments.GetDeployment(
                    deployment_pb2.GetDeploymentRequest(project_id=project_id, deployment_id=created.id),
                    timeout=30,
                    metadata=metadata,
                ).deployment
                assert got.status != deployment_pb2.DEPLOYMENT_STATUS_FAILED, got.status_message
                if got.status == deployment_pb2.DEPLOYMENT_STATUS_READY:
                    break
                assert time.monotonic() < deadline, (
                    f"deployment not ready: {deployment_pb2.DeploymentStatus.Name(got.status)}"
                )
                time.sleep(1)
            c = client(mesh)
            request = {
                "model": name,
                "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                "tools": tools,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "max_tokens": 200,
                "temperature": 1.0,
                "seed": 7,
            }
            deadline = time.monotonic() + 30
            while True:  # the gateway learns of READY through its routing watch: moments later
                try:
                    completion = c.chat.completions.create(**request)
                    break
                except (openai.NotFoundError, openai.APIStatusError) as err:
                    if getattr(err, "status_code", 0) not in (404, 503) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            message = completion.choices[0].message
            assert message.tool_calls, f"no tool call: {message.content!r}"
            call = message.tool_calls[0]
            assert call.type == "function" and call.function.name == "get_weather"
            arguments = json.loads(call.function.arguments)
            jsonschema.validate(arguments, parameters)

            chunks = list(c.chat.completions.create(**request, stream=True))
            deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
            streamed_calls = [tc for d in deltas for tc in d.tool_calls or []]
            assert streamed_calls and streamed_calls[0].function.name == "get_weather"
            streamed_arguments = "".join(tc.function.arguments or "" for tc in streamed_calls)
            assert (
                json.loads(streamed_arguments) == arguments
            )  # same tokens; non-streamed text is re-serialised
        finally:
            deployments.DeleteDeployment(
                deployment_pb2.DeleteDeploymentRequest(project_id=project_id, deployment_id=created.id),
                timeout=120,
                metadata=metadata,
            )


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_json_schema_response_format_parses_and_validates(mesh: Mesh, kind: str) -> None:
    """Bounded schema (enums, small ints, additionalProperties false) with seeded sampling: on
    the random model, greedy decoding under a JSON grammar emits whitespace until max_tokens
    unless the engine sets structured_outputs_config.disable_any_whitespace."""
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
    }
    for seed in (1, 2, 3):
        kwargs = {"temperature": 1.0, "seed": seed, "max_tokens": 200}
        if kind == "chat":
            kwargs["response_format"] = response_format
        else:
            kwargs["extra_body"] = {"response_format": response_format}
        result = mesh_request(mesh, kind, kwargs)
        choice = result.choices[0]
        assert choice.finish_reason == "stop", f"seed {seed}: did not close: {choice_text(kind, choice)!r}"
        value = json.loads(choice_text(kind, choice))
        jsonschema.validate(value, WEATHER_SCHEMA)


@pytest.mark.parametrize("case", list(CASES))
def test_streaming_gives_the_same_tokens_as_non_streaming(mesh: Mesh, case: str) -> None:
    kind, kwargs, _ = CASES[case]
    whole = mesh_request(mesh, kind, kwargs)
    chunks = list(
        mesh_request(mesh, kind, {**kwargs, "stream_options": {"include_usage": True}}, stream=True)
    )
    choices = [ch.choices[0] for ch in chunks if ch.choices]
    if kind == "chat":
        text = "".join(c.delta.content or "" for c in choices)
    else:
        text = "".join(c.text for c in choices)
    assert text == choice_text(kind, whole.choices[0])
    streamed_rows = [row for c in choices if c.logprobs is not None for row in mesh_tokens(kind, c)]
    assert_same_tokens(kind, streamed_rows, mesh_tokens(kind, whole.choices[0]))
    assert choices[-1].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def _sse_chunks(mesh: Mesh, body: dict[str, Any]) -> list[dict[str, Any]]:
    chunks = []
    with httpx.stream(
        "POST",
        f"{mesh.openai_base_url}/chat/completions",
        json=body,
        timeout=120,
        headers={"authorization": f"Bearer {mesh.api_key}"},
    ) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    return chunks


def _stream_summary(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a stream says, independent of how vLLM happened to batch tokens into chunks: per
    choice its role chunks, text, finish and stop reasons; the JSON keys of each kind of chunk;
    the usage chunk; where system_fingerprint appears."""
    out: dict[str, Any] = {"choices": {}, "shapes": set(), "usage": None, "fingerprints": []}
    for chunk in chunks:
        out["shapes"].add(
            (
                tuple(sorted(chunk)),
                tuple(sorted(k for c in chunk["choices"] for k in c)),
                tuple(sorted(k for c in chunk["choices"] for k in c["delta"])),
            )
        )
        out["fingerprints"].append(("system_fingerprint" in chunk, bool(chunk["choices"])))
        if not chunk["choices"]:
            out["usage"] = chunk["usage"]
        for c in chunk["choices"]:
            seen = out["choices"].setdefault(c["index"], {"roles": [], "text": "", "finish": [], "stop": []})
            if "role" in c["delta"]:
                seen["roles"].append((c["delta"]["role"], c["delta"].get("content")))
            seen["text"] += c["delta"].get("content") or ""
            if c["finish_reason"] is not None:
                seen["finish"].append(c["finish_reason"])
                seen["stop"].append(c.get("stop_reason"))
    out["fingerprints"] = sorted(set(out["fingerprints"]))
    return out


@pytest.mark.parametrize(
    "stream_options", [None, {"include_usage": True}, {"include_usage": True, "continuous_usage_stats": True}]
)
@pytest.mark.parametrize("sampling", [{"temperature": 0.0}, {"temperature": 1.0, "seed": 7, "n": 2}])
def test_lean_chat_stream_says_what_vllms_own_generator_says(
    mesh: Mesh, sampling: dict[str, Any], stream_options: dict[str, Any] | None
) -> None:
    """Plain chat streams take engine.fast_stream; asking for logprobs sends the same request
    through vLLM's own generator. Apart from the logprobs, clients must see the same thing."""
    body: dict[str, Any] = {
        "model": "tiny-llama",
        "messages": CHAT_MESSAGES,
        "max_tokens": 12,
        "stream": True,
        **sampling,
    }
    if stream_options:
        body["stream_options"] = stream_options
    lean = _sse_chunks(mesh, body)
    vllms = _sse_chunks(mesh, {**body, "logprobs": True})
    assert all(c.get("logprobs") is None for ch in lean for c in ch["choices"])
    assert any(c.get("logprobs") for ch in vllms for c in ch["choices"])  # it did take vLLM's generator
    a, b = _stream_summary(lean), _stream_summary(vllms)
    assert a["choices"] == b["choices"]
    assert a["shapes"] == b["shapes"]
    assert a["usage"] == b["usage"] and a["fingerprints"] == b["fingerprints"]
    if stream_options and stream_options.get("continuous_usage_stats"):
        assert all(ch.get("usage") for ch in lean)
        assert [ch["usage"]["prompt_tokens"] for ch in lean] == [
            ch["usage"]["prompt_tokens"] for ch in lean[:1]
        ] * len(lean)


def test_sampling_extras_reach_vllm(mesh: Mesh) -> None:
    """top_k/min_p/repetition_penalty (extra_body) change the seeded output: they are not dropped
    on the way (the offline comparison then shows they act exactly as in vLLM)."""
    kind, kwargs, _ = CASES["completion-seeded"]
    with_extras = mesh_request(mesh, kind, kwargs)
    without = mesh_request(mesh, kind, {k: v for k, v in kwargs.items() if k != "extra_body"})
    assert choice_text(kind, with_extras.choices[0]) != choice_text(kind, without.choices[0])


# ---- comparisons with the offline references --------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_tokens_equal_offline_vllm(mesh: Mesh, offline: dict[str, OfflineRun], case: str) -> None:
    kind, kwargs, _ = CASES[case]
    got = mesh_request(mesh, kind, kwargs)
    want = offline_result(offline, case)
    choice = got.choices[0]
    # The same prompt tokens (chat template, BOS), then the same generated tokens.
    assert got.usage.prompt_tokens == len(want["prompt_token_ids"])
    assert got.usage.completion_tokens == len(want["token_ids"])
    assert len(want["token_ids"]) >= 8 or want["finish_reason"] == "stop"
    assert_same_tokens(kind, mesh_tokens(kind, choice), offline_tokens(kind, want))
    assert choice_text(kind, choice) == want["text"]
    assert choice.finish_reason == want["finish_reason"]
    if case == "chat-json-schema-seeded":
        jsonschema.validate(json.loads(want["text"]), WEATHER_SCHEMA)


def test_embeddings_equal_offline_vllm(mesh: Mesh, offline: dict[str, OfflineRun]) -> None:
    c = client(mesh)
    as_float = c.embeddings.create(model="all-minilm-l6-v2", input=EMBED_INPUTS, encoding_format="float")
    as_base64 = c.embeddings.create(model="all-minilm-l6-v2", input=EMBED_INPUTS, encoding_format="base64")
    assert [d.index for d in as_float.data] == list(range(len(EMBED_INPUTS)))
    mesh_float = np.array([d.embedding for d in as_float.data], dtype=np.float64)
    mesh_b64 = np.array(
        [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in as_base64.data], dtype=np.float64
    )
    want = offline["embed"].result()["jobs"][0]["results"][0]
    reference = np.array(want["embeddings"], dtype=np.float64)
    assert mesh_float.shape == reference.shape == (len(EMBED_INPUTS), 384)
    np.testing.assert_allclose(mesh_float, reference, rtol=0, atol=EMBEDDING_TOL)
    np.testing.assert_allclose(mesh_b64, reference, rtol=0, atol=EMBEDDING_TOL)
    assert as_float.usage.prompt_tokens == sum(len(ids) for ids in want["prompt_token_ids"])
    norms = np.linalg.norm(mesh_float, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)
    cos = mesh_float @ mesh_float.T
    assert cos[0, 1] > 0.5, "paraphrases should be close"
    assert cos[0, 1] > cos[0, 2] + 0.3 and cos[1, 2] < 0.3, "unrelated sentences should be far apart"
