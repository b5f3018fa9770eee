"""engine/service.py (and engine/fast_stream.py under it) over the fake vLLM: the contract's
messages in and out of vLLM's serving objects, the lean and the generic chat stream, closing and
cancelling streams, vLLM's errors mapped to gRPC statuses, and model management and stats."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from pathlib import Path
from typing import Any

import grpc
import pytest
from vllm.entrypoints.serve.engine.serving import BaseServing
from vllm.exceptions import VLLMNotFoundError, VLLMValidationError

from bud.engine.v1 import engine_service_pb2 as pb
from bud.openai.v1 import chat_pb2, common_pb2, completion_pb2, embedding_pb2
from budrt.errors import ServiceError
from budrt.json_face import from_python
from engine.service import EngineServicer
from tests.engine.fake_vllm import FakeAsyncLLM, FakeVllm
from tests.engine.loading import load_request

PROMPT = "one two three four"  # four tokens to the fake tokenizer


async def loaded(servicer: EngineServicer, model_dir: Path, name: str = "m") -> FakeAsyncLLM:
    reply = await servicer.LoadModel(load_request(name, model_dir), None)
    assert reply.model.state == pb.MODEL_STATE_READY, reply.model.error
    return servicer.manager.ready(name).engine  # type: ignore[no-any-return]


def chat(model: str = "m", stream: bool = False, **fields: Any) -> chat_pb2.ChatCompletionRequest:
    request = chat_pb2.ChatCompletionRequest(model=model, **fields)
    request.messages.add(role="user", content_text=PROMPT)
    if stream:
        request.stream = True
    return request


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


async def refusal(call: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        await call
    return info.value


async def stream_refusal(stream: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        await collect(stream)
    return info.value


def text_of(chunks: list[chat_pb2.ChatCompletionChunk]) -> str:
    return "".join(c.delta.content for chunk in chunks for c in chunk.choices)


# ---- chat -----------------------------------------------------------------------------------------
async def test_chat_completion(servicer: EngineServicer, model_dir: Path) -> None:
    engine = await loaded(servicer, model_dir)
    reply = await servicer.CreateChatCompletion(chat(), None)
    assert (reply.model, reply.object) == ("m", "chat.completion")
    (choice,) = reply.choices
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant",
        "Hello there friend",
        "stop",
    )
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (4, 3, 7)
    assert engine.finished == [reply.id] and servicer.manager.ready("m").inflight == 0


async def test_chat_completion_cut_by_the_token_limit(servicer: EngineServicer, model_dir: Path) -> None:
    await loaded(servicer, model_dir)
    reply = await servicer.CreateChatCompletion(chat(max_completion_tokens=2), None)
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("Hello there", "length")


async def test_plain_chat_stream_takes_the_lean_path(servicer: EngineServicer, model_dir: Path) -> None:
    await loaded(servicer, model_dir)
    request = chat(stream=True, stream_options=common_pb2.StreamOptions(include_usage=True))
    chunks = await collect(servicer.StreamChatCompletion(request, None))
    assert all(isinstance(c, chat_pb2.ChatCompletionChunk) for c in chunks)
    first, *middle, last = chunks
    assert (first.choices[0].delta.role, first.choices[0].delta.content) == ("assistant", "")
    assert [c.choices[0].delta.content for c in middle] == ["Hello", " there", " friend"]
    assert [c.choices[0].finish_reason for c in middle if c.choices[0].HasField("finish_reason")] == ["stop"]
    assert list(last.choices) == [] and (last.usage.prompt_tokens, last.usage.completion_tokens) == (4, 3)
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert servicer.manager.ready("m").handler("openai_serving_chat").generic_streams == 0


async def test_chat_stream_with_logprobs_takes_vllms_generator_and_reads_the_same(
    servicer: EngineServicer,
    model_dir: Path,
) -> None:
    await loaded(servicer, model_dir)
    lean = await collect(servicer.StreamChatCompletion(chat(stream=True), None))
    generic = await collect(servicer.StreamChatCompletion(chat(stream=True, logprobs=True), None))
    assert servicer.manager.ready("m").handler("openai_serving_chat").generic_streams == 1
    assert text_of(generic) == text_of(lean) == "Hello there friend"
    assert generic[-1].choices[0].finish_reason == lean[-1].choices[0].finish_reason == "stop"


async def test_closing_a_stream_aborts_the_engine_request_without_waiting(
    servicer: EngineServicer,
    model_dir: Path,
    fake: FakeVllm,
) -> None:
    engine = await loaded(servicer, model_dir)
    fake.words = [f" w{i}" for i in range(50)]
    stream = servicer.StreamChatCompletion(chat(stream=True), None)
    assert (await anext(stream)).choices[0].delta.role == "assistant"
    assert (await anext(stream)).choices[0].delta.content == " w0"
    await stream.aclose()
    # No new token is waited for: the wrapper's inner generator is closed by asyncio's async-
    # generator finalizer, within a couple of turns of the event loop.
    for _ in range(10):
        if engine.aborted:
            break
        await asyncio.sleep(0)
    assert engine.aborted == engine.requests and len(engine.aborted) == 1
    assert engine.finished == [] and engine.running == 0
    assert servicer.manager.ready("m").inflight == 0


async def test_cancelling_a_stream_aborts_the_engine_request(
    servicer: EngineServicer,
    model_dir: Path,
    fake: FakeVllm,
) -> None:
    engine = await loaded(servicer, model_dir)
    fake.words, fake.step_delay = ["x"] * 100, 0.01
    received: list[Any] = []

    async def consume() -> None:
        async for chunk in servicer.StreamChatCompletion(chat(stream=True), None):
            received.append(chunk)

    task = asyncio.create_task(consume())
    while len(received) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(engine.aborted) == 1 and engine.finished == [] and engine.running == 0
    assert servicer.manager.ready("m").inflight == 0


@pytest.mark.parametrize("logprobs", [False, True], ids=["lean", "generic"])
async def test_an_error_during_generation_ends_the_stream_with_a_status(
    servicer: EngineServicer,
    model_dir: Path,
    fake: FakeVllm,
    logprobs: bool,
) -> None:
    await loaded(servicer, model_dir)
    fake.finish_with_error = True
    err = await stream_refusal(servicer.StreamChatCompletion(chat(stream=True, logprobs=logprobs), None))
    assert err.code == grpc.StatusCode.INTERNAL and "Internal server error" in err.message
    assert servicer.manager.ready("m").inflight == 0


# ---- errors ---------------------------------------------------------------------------------------
async def test_unknown_model_is_not_found(servicer: EngineServicer, model_dir: Path) -> None:
    await loaded(servicer, model_dir)
    err = await refusal(servicer.CreateChatCompletion(chat(model="other"), None))
    assert (err.code, err.reason, err.param) == (grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND", "model")
    assert err.message == "The model `other` does not exist."
    err = await stream_refusal(servicer.StreamChatCompletion(chat(model="other", stream=True), None))
    assert err.code == grpc.StatusCode.NOT_FOUND


async def test_an_operation_the_model_lacks_is_refused(servicer: EngineServicer, model_dir: Path) -> None:
    await loaded(servicer, model_dir)
    err = await refusal(
        servicer.CreateEmbedding(embedding_pb2.EmbeddingRequest(model="m", input_text="x"), None)
    )
    assert (err.code, err.reason, err.param) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNSUPPORTED_OPERATION",
        "model",
    )
    assert "does not support embeddings" in err.message


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (HTTPStatus.BAD_REQUEST, grpc.StatusCode.INVALID_ARGUMENT),
        (HTTPStatus.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (HTTPStatus.UNPROCESSABLE_ENTITY, grpc.StatusCode.INVALID_ARGUMENT),
        (HTTPStatus.TOO_MANY_REQUESTS, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (HTTPStatus.NOT_IMPLEMENTED, grpc.StatusCode.UNIMPLEMENTED),
        (HTTPStatus.SERVICE_UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
        (HTTPStatus.INTERNAL_SERVER_ERROR, grpc.StatusCode.INTERNAL),
        (HTTPStatus.IM_A_TEAPOT, grpc.StatusCode.INTERNAL),
    ],
)
async def test_vllm_error_responses_map_to_statuses(
    servicer: EngineServicer,
    model_dir: Path,
    fake: FakeVllm,
    status: HTTPStatus,
    code: grpc.StatusCode,
) -> None:
    await loaded(servicer, model_dir)
    fake.error_response = BaseServing.create_error_response(
        "it went wrong", "SomeError", status, param="top_p"
    )
    for call in (
        servicer.CreateChatCompletion(chat(), None),
        servicer.CreateCompletion(completion_pb2.CompletionRequest(model="m", prompt_text="x"), None),
    ):
        err = await refusal(call)
        assert (err.code, err.message, err.param) == (code, "it went wrong", "top_p")
    err = await stream_refusal(servicer.StreamChatCompletion(chat(stream=True), None))
    assert (err.code, err.message) == (code, "it went wrong")


@pytest.mark.parametrize(
    ("error", "code", "message", "param"),
    [
        (ValueError("bad value"), grpc.StatusCode.INVALID_ARGUMENT, "bad value", ""),
        (
            VLLMValidationError("too long", parameter="max_tokens"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "too long (parameter=max_tokens)",
            "max_tokens",
        ),
        (VLLMNotFoundError("no such adapter"), grpc.StatusCode.NOT_FOUND, "no such adapter", ""),
        (NotImplementedError(), grpc.StatusCode.UNIMPLEMENTED, "not supported by this model", ""),
        (RuntimeError("kaput"), grpc.StatusCode.INTERNAL, "RuntimeError: kaput", ""),
    ],
)
async def test_exceptions_of_vllm_map_to_statuses(
    servicer: EngineServicer,
    model_dir: Path,
    fake: FakeVllm,
    error: Exception,
    code: grpc.StatusCode,
    message: str,
    param: str,
) -> None:
    await loaded(servicer, model_dir)
    fake.handler_error = error
    err = await refusal(servicer.CreateChatCompletion(chat(), None))
    assert (err.code, err.message, err.param) == (code, message, param)
    err = await stream_refusal(servicer.StreamChatCompletion(chat(stream=True), None))
    assert err.code == code
    assert servicer.manager.ready("m").inflight == 0


async def test_a_request_vllm_validates_away_is_an_invalid_argument(
    servicer: EngineServicer, model_dir: Path
) -> None:
    await loaded(servicer, model_dir)
    request = chat(stream=True)
    request.tools.add(type="function")  # no function: vLLM's pydantic model requires one
    err = await stream_refusal(servicer.StreamChatCompletion(request, None))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "tools.0.function")
    assert err.message == "tools.0.function: Field required"


async def test_a_request_vllms_validators_refuse_is_an_invalid_argument(
    servicer: EngineServicer, model_dir: Path
) -> None:
    await loaded(servicer, model_dir)
    err = await refusal(servicer.CreateChatCompletion(chat(top_logprobs=2), None))  # needs logprobs=true
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "top_logprobs")


# ---- bad client input vLLM once answered with a 5xx (issue 11, finding 10) -------------------------
TOOLS = [{"type": "function", "function": {"name": "known", "parameters": {"type": "object"}}}]


def chat_json(**fields: Any) -> chat_pb2.ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], **fields}
    return from_python(body, chat_pb2.ChatCompletionRequest())


async def test_stream_options_without_stream_is_an_invalid_argument(
    servicer: EngineServicer, model_dir: Path
) -> None:
    await loaded(servicer, model_dir)
    options = common_pb2.StreamOptions(include_usage=True)
    for call in (
        servicer.CreateChatCompletion(chat(stream_options=options), None),
        servicer.CreateCompletion(
            completion_pb2.CompletionRequest(model="m", prompt_text=PROMPT, stream_options=options), None
        ),
    ):
        err = await refusal(call)
        assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "stream_options")


async def test_tool_choice_naming_an_unknown_tool_is_an_invalid_argument(
    servicer: EngineServicer, model_dir: Path
) -> None:
    await loaded(servicer, model_dir)
    choice = {"type": "function", "function": {"name": "unknown"}}
    err = await refusal(servicer.CreateChatCompletion(chat_json(tools=TOOLS, tool_choice=choice), None))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "tool_choice")
    request = chat_json(tools=TOOLS, tool_choice=choice, stream=True)
    err = await stream_refusal(servicer.StreamChatCompletion(request, None))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "tool_choice")


async def test_echo_with_logprobs_is_refused_before_generation(
    servicer: EngineServicer, model_dir: Path
) -> None:
    engine = await loaded(servicer, model_dir)
    request = completion_pb2.CompletionRequest(model="m", prompt_text=PROMPT, echo=True, logprobs=5)
    err = await refusal(servicer.CreateCompletion(request, None))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "echo")
    request.stream = True
    err = await stream_refusal(servicer.StreamCompletion(request, None))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "echo")
    assert engine.finished == [] and servicer.manager.ready("m").inflight == 0
    echoed = completion_pb2.CompletionRequest(model="m", prompt_text=PROMPT, echo=True)
    reply = await servicer.CreateCompletion(echoed, None)  # echo alone still works
    assert reply.choices[0].text.endswith("Hello there friend")


async def test_an_answer_the_contract_cannot_carry_is_an_internal_error(
    servicer: EngineServicer, model_dir: Path, fake: FakeVllm
) -> None:
    from vllm.entrypoints.openai.completion.protocol import (
        CompletionLogProbs,
        CompletionResponse,
        CompletionResponseChoice,
    )
    from vllm.entrypoints.serve.engine.protocol import UsageInfo

    await loaded(servicer, model_dir)
    # What vLLM answers to echo with logprobs: no log probability for the first prompt token.
    logprobs = CompletionLogProbs(text_offset=[0], token_logprobs=[None], tokens=["one"], top_logprobs=[None])
    choice = CompletionResponseChoice(index=0, text="one", logprobs=logprobs, finish_reason="stop")
    fake.error_response = CompletionResponse(model="m", choices=[choice], usage=UsageInfo())
    err = await refusal(
        servicer.CreateCompletion(completion_pb2.CompletionRequest(model="m", prompt_text=PROMPT), None)
    )
    assert err.code == grpc.StatusCode.INTERNAL and err.message.startswith("unexpected response from vLLM")
    assert servicer.manager.ready("m").inflight == 0


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$ref": "#", "description": "itself"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"type": "object", "properties": {"x": {"$ref": "#/properties/x"}}},
    ],
    ids=["root", "annotated", "two-step", "nested"],
)
async def test_a_schema_whose_refs_loop_is_an_invalid_argument(
    servicer: EngineServicer, model_dir: Path, schema: dict[str, Any]
) -> None:
    engine = await loaded(servicer, model_dir)
    request = chat_json(response_format=json_schema(schema))
    err = await refusal(servicer.CreateChatCompletion(request, None))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "response_format.json_schema.schema")
    request = completion_pb2.CompletionRequest(model="m", prompt_text=PROMPT)
    request.response_format.CopyFrom(chat_json(response_format=json_schema(schema)).response_format)
    err = await refusal(servicer.CreateCompletion(request, None))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert engine.finished == []


async def test_a_recursive_schema_with_a_base_case_is_served(
    servicer: EngineServicer, model_dir: Path
) -> None:
    await loaded(servicer, model_dir)
    tree = {
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
        "$defs": {"leaf": {"$ref": "#"}},  # refers to a schema with a base case
    }
    reply = await servicer.CreateChatCompletion(chat_json(response_format=json_schema(tree)), None)
    assert reply.choices[0].message.content == "Hello there friend"


# ---- completions and embeddings -------------------------------------------------------------------
async def test_completion_and_its_stream(servicer: EngineServicer, model_dir: Path) -> None:
    await loaded(servicer, model_dir)
    request = completion_pb2.CompletionRequest(model="m", prompt_text=PROMPT, max_tokens=2)
    reply = await servicer.CreateCompletion(request, None)
    assert (reply.object, reply.choices[0].text, reply.choices[0].finish_reason) == (
        "text_completion",
        "Hello there",
        "length",
    )
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 2)
    chunks = await collect(servicer.StreamCompletion(request, None))
    assert [c.choices[0].text for c in chunks] == ["Hello", " there"]
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_embeddings_of_a_pooling_model(
    servicer: EngineServicer, model_dir: Path, fake: FakeVllm
) -> None:
    fake.tasks = ("embed",)
    await loaded(servicer, model_dir, "emb")
    request = embedding_pb2.EmbeddingRequest(model="emb")
    request.input_texts.values.extend(["a b", "c"])
    reply = await servicer.CreateEmbedding(request, None)
    assert (reply.object, reply.model) == ("list", "emb")
    assert [(d.index, list(d.embedding_floats.values)) for d in reply.data] == [
        (0, [0.5] * 4),
        (1, [0.5] * 4),
    ]
    assert (reply.usage.prompt_tokens, reply.usage.total_tokens) == (3, 3)
    err = await refusal(servicer.CreateChatCompletion(chat(model="emb"), None))
    assert err.reason == "UNSUPPORTED_OPERATION"


async def test_embedding_errors_map_to_statuses(
    servicer: EngineServicer, model_dir: Path, fake: FakeVllm
) -> None:
    fake.tasks = ("embed",)
    await loaded(servicer, model_dir, "emb")
    fake.error_response = BaseServing.create_error_response(
        "input too long", "BadRequestError", HTTPStatus.BAD_REQUEST, param="input"
    )
    err = await refusal(
        servicer.CreateEmbedding(embedding_pb2.EmbeddingRequest(model="emb", input_text="x"), None)
    )
    assert (err.code, err.message, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "input too long", "input")


# ---- model management and stats ------------------------------------------------------------------
async def test_load_list_and_unload(servicer: EngineServicer, model_dir: Path, tmp_path: Path) -> None:
    reply = await servicer.LoadModel(load_request("m", model_dir, pb.RUNNER_GENERATE, max_model_len=64), None)
    assert (reply.model.name, reply.model.state, reply.model.runner, reply.model.max_model_len) == (
        "m",
        pb.MODEL_STATE_READY,
        pb.RUNNER_GENERATE,
        64,
    )
    failed = await servicer.LoadModel(load_request("broken", tmp_path / "missing"), None)
    assert failed.model.state == pb.MODEL_STATE_FAILED and "not a model directory" in failed.model.error
    listed = await servicer.ListModels(pb.ListModelsRequest(), None)
    assert {m.name: m.state for m in listed.models} == {
        "m": pb.MODEL_STATE_READY,
        "broken": pb.MODEL_STATE_FAILED,
    }
    assert [m for m in listed.models if m.name == "m"] == [reply.model]
    assert await servicer.UnloadModel(pb.UnloadModelRequest(name="m"), None) == pb.UnloadModelResponse()
    assert [m.name for m in (await servicer.ListModels(pb.ListModelsRequest(), None)).models] == ["broken"]
    err = await refusal(servicer.UnloadModel(pb.UnloadModelRequest(name="m"), None))
    assert err.code == grpc.StatusCode.NOT_FOUND


async def test_stats_come_from_vllms_stat_loggers(
    servicer: EngineServicer, model_dir: Path, tmp_path: Path
) -> None:
    await loaded(servicer, model_dir)
    await servicer.LoadModel(load_request("broken", tmp_path / "missing"), None)
    await servicer.CreateChatCompletion(chat(), None)
    await servicer.CreateChatCompletion(chat(max_completion_tokens=1), None)
    stats = {s.name: s for s in (await servicer.GetStats(pb.GetStatsRequest(), None)).models}
    assert stats["broken"] == pb.ModelStats(name="broken")
    m = stats["m"]
    assert (m.prompt_tokens_total, m.generation_tokens_total) == (8, 4)  # two prompts of 4; 3 + 1 tokens
    assert (m.waiting_requests, m.kv_cache_usage, m.inflight_requests) == (1, 0.25, 0)
    assert m.running_requests == 1  # as the last step reported it (its own request running)
