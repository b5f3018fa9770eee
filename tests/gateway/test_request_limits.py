"""The request caps (issue 11, finding 6: one request froze the gateway for everyone): a body
with too many messages, content parts, tool calls, tools, inputs, stop sequences, logit-bias or
metadata entries, or a JSON schema nested too deep, is refused with INVALID_ARGUMENT naming the
field — over REST (OpenAI error JSON, checked on the parsed JSON before it is converted) and over
gRPC (BadRequest details, checked before the servicer) — and never reaches an engine; a request
at every cap still passes. The issue's attack, 200,000 empty messages in 6.6 MB, is refused
without being converted."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import orjson
import pytest
from google.rpc import error_details_pb2, status_pb2

from auth import keys
from bud.openai.v1 import chat_pb2, completion_pb2, embedding_pb2, openai_service_pb2_grpc, response_pb2
from budrt.errors import ServiceError
from budrt.grpc_server import service_channel
from budrt.json_face import MAX_RAW_JSON_DEPTH, JsonFaceError, from_python, to_json
from gateway import transcoder
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.request_limits import RequestLimits
from gateway.server import build_transcoder, grpc_face
from gateway.settings import GatewaySettings
from tests.gateway.conftest import http_server
from tests.gateway.test_openai_gateway import SECRET, _tables
from tests.support import instant_engine
from tests.support.instant_engine import InstantEngine, start_instant_engine
from tests.support.mesh import free_port

KEY = keys.mint_key(SECRET)
# The issue's attack: 200,000 empty messages (5.8 MB).
ATTACK = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": ""}] * 200_000})
USER = {"role": "user", "content": "x"}
# Small caps, so that "over" and "at" bodies stay small.
SMALL = RequestLimits(
    max_messages=3,
    max_content_parts=2,
    max_tool_calls=2,
    max_tools=2,
    max_schema_depth=5,
    max_inputs=3,
    max_stop_sequences=2,
    max_logit_bias=2,
    max_metadata_entries=2,
)


class Gateway:
    """The gateway's HTTP face and gRPC face (built as `gateway/server.py` builds them) over one
    OpenAI servicer, an instant engine behind them."""

    def __init__(self, http: httpx.AsyncClient, stub: Any, engine: InstantEngine) -> None:
        self.http = http
        self.stub = stub
        self.engine = engine


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, InstantEngine]]:
    address = f"127.0.0.1:{free_port()}"
    server, instant = await start_instant_engine(address, ["m1"])
    yield address, instant
    await server.stop(0)


async def _gateway(
    engine: tuple[str, InstantEngine],
    limits: RequestLimits,
    offload_bytes: int = transcoder.OFFLOAD_BODY_BYTES,
) -> AsyncIterator[Gateway]:
    address, instant = engine
    tables = _tables(KEY, [address])
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, SECRET)
    grpc_server = grpc_face(servicer, "127.0.0.1:0", limits, transcoder.MAX_BODY_BYTES)
    await grpc_server.start()
    headers = {"authorization": f"Bearer {KEY.secret}"}
    app = build_transcoder(servicer, tables, limits=limits)
    app.offload_bytes = offload_bytes
    try:
        async with (
            http_server(app) as url,
            httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http,
            # The gateway's gRPC face is public (API keys), plaintext like its HTTP face.
            service_channel(f"127.0.0.1:{grpc_server.port}", tls=None) as channel,
        ):
            yield Gateway(http, openai_service_pb2_grpc.OpenAiServiceStub(channel), instant)
    finally:
        await grpc_server.stop(0)
        await pool.close()


@pytest.fixture
async def small(engine: tuple[str, InstantEngine]) -> AsyncIterator[Gateway]:
    """A gateway with the SMALL caps."""
    async for gateway in _gateway(engine, SMALL):
        yield gateway


@pytest.fixture
async def default(engine: tuple[str, InstantEngine]) -> AsyncIterator[Gateway]:
    """A gateway with the default caps."""
    async for gateway in _gateway(engine, RequestLimits()):
        yield gateway


@pytest.fixture
async def on_the_loop(engine: tuple[str, InstantEngine]) -> AsyncIterator[Gateway]:
    """A gateway with the default caps that converts every body on its event loop (where a test
    can watch the codec)."""
    async for gateway in _gateway(engine, RequestLimits(), offload_bytes=10**9):
        yield gateway


def _schema(depth: int) -> dict[str, Any]:
    """A JSON schema nested exactly `depth` levels of objects (odd depths: 2 per properties level)."""
    schema: dict[str, Any] = {}
    for _ in range((depth - 1) // 2):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _function(name: str, depth: int = 1) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": _schema(depth)}}


def _call(i: int) -> dict[str, Any]:
    return {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def _parts(n: int) -> list[dict[str, str]]:
    return [{"type": "text", "text": "x"}] * n


def _response_tool(depth: int = 1) -> dict[str, Any]:
    return {"type": "function", "name": "f", "parameters": _schema(depth)}


CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
)
# The REST path, its gRPC method and request type.
RPCS = {
    CHAT: ("CreateChatCompletion", chat_pb2.ChatCompletionRequest),
    COMPLETIONS: ("CreateCompletion", completion_pb2.CompletionRequest),
    EMBEDDINGS: ("CreateEmbedding", embedding_pb2.EmbeddingRequest),
    RESPONSES: ("CreateResponse", response_pb2.ResponseRequest),
}

# (case, path, a body just over a SMALL cap, the param the refusal names, the same body at the cap)
CASES: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
    ("messages", CHAT, {"messages": [USER] * 4}, "messages", {"messages": [USER] * 3}),
    (
        "content-parts",
        CHAT,
        {"messages": [USER, {"role": "user", "content": _parts(3)}]},
        "messages[1].content",
        {"messages": [USER, {"role": "user", "content": _parts(2)}]},
    ),
    (
        "content-parts-in-all",
        CHAT,
        {"messages": [{"role": "user", "content": _parts(2)}, USER, {"role": "user", "content": _parts(1)}]},
        "messages[2].content",
        {"messages": [{"role": "user", "content": _parts(1)}, USER, {"role": "user", "content": _parts(1)}]},
    ),
    (
        "tool-calls-in-all",
        CHAT,
        {
            "messages": [
                USER,
                {"role": "assistant", "tool_calls": [_call(1)]},
                {"role": "assistant", "tool_calls": [_call(2), _call(3)]},
            ]
        },
        "messages[2].tool_calls",
        {
            "messages": [
                USER,
                {"role": "assistant", "tool_calls": [_call(1)]},
                {"role": "assistant", "tool_calls": [_call(2)]},
            ]
        },
    ),
    (
        "tool-calls",
        CHAT,
        {"messages": [USER, {"role": "assistant", "tool_calls": [_call(i) for i in range(3)]}]},
        "messages[1].tool_calls",
        {"messages": [USER, {"role": "assistant", "tool_calls": [_call(i) for i in range(2)]}]},
    ),
    (
        "tools",
        CHAT,
        {"messages": [USER], "tools": [_function(f"f{i}") for i in range(3)]},
        "tools",
        {"messages": [USER], "tools": [_function(f"f{i}") for i in range(2)]},
    ),
    (
        "tool-schema-depth",
        CHAT,
        {"messages": [USER], "tools": [_function("a"), _function("b", 7)]},
        "tools[1].function.parameters",
        {"messages": [USER], "tools": [_function("a"), _function("b", 5)]},
    ),
    (
        "response-format-depth",
        CHAT,
        {
            "messages": [USER],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": _schema(7)}},
        },
        "response_format.json_schema.schema",
        {
            "messages": [USER],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": _schema(5)}},
        },
    ),
    (
        "stop",
        CHAT,
        {"messages": [USER], "stop": ["a", "b", "c"]},
        "stop",
        {"messages": [USER], "stop": ["a", "b"]},
    ),
    (
        "stop-token-ids",
        CHAT,
        {"messages": [USER], "stop_token_ids": [1, 2, 3]},
        "stop_token_ids",
        {"messages": [USER], "stop_token_ids": [1, 2]},
    ),
    (
        "logit-bias",
        CHAT,
        {"messages": [USER], "logit_bias": {"1": 1, "2": 1, "3": 1}},
        "logit_bias",
        {"messages": [USER], "logit_bias": {"1": 1, "2": 1}},
    ),
    (
        "metadata",
        CHAT,
        {"messages": [USER], "metadata": {"a": "1", "b": "2", "c": "3"}},
        "metadata",
        {"messages": [USER], "metadata": {"a": "1", "b": "2"}},
    ),
    ("prompts", COMPLETIONS, {"prompt": ["a", "b", "c", "d"]}, "prompt", {"prompt": ["a", "b", "c"]}),
    (
        "prompt-token-lists",
        COMPLETIONS,
        {"prompt": [[1], [2], [3], [4]]},
        "prompt",
        {"prompt": [[1], [2], [3]]},
    ),
    (
        "completion-stop",
        COMPLETIONS,
        {"prompt": "x", "stop": ["a", "b", "c"]},
        "stop",
        {"prompt": "x", "stop": ["a", "b"]},
    ),
    (
        "completion-response-format-depth",
        COMPLETIONS,
        {
            "prompt": "x",
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": _schema(7)}},
        },
        "response_format.json_schema.schema",
        {
            "prompt": "x",
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": _schema(5)}},
        },
    ),
    ("embedding-inputs", EMBEDDINGS, {"input": ["a", "b", "c", "d"]}, "input", {"input": ["a", "b", "c"]}),
    (
        "embedding-token-lists",
        EMBEDDINGS,
        {"input": [[1], [2], [3], [4]]},
        "input",
        {"input": [[1], [2], [3]]},
    ),
    ("response-input", RESPONSES, {"input": [USER] * 4}, "input", {"input": [USER] * 3}),
    (
        "response-content",
        RESPONSES,
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}] * 3}]},
        "input[0].content",
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}] * 2}]},
    ),
    (
        "response-tools",
        RESPONSES,
        {"input": "x", "tools": [_response_tool()] * 3},
        "tools",
        {"input": "x", "tools": [_response_tool()] * 2},
    ),
    (
        "response-tool-depth",
        RESPONSES,
        {"input": "x", "tools": [_response_tool(7)]},
        "tools[0].parameters",
        {"input": "x", "tools": [_response_tool(5)]},
    ),
    (
        "response-text-format-depth",
        RESPONSES,
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "s", "schema": _schema(7)}}},
        "text.format.schema",
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "s", "schema": _schema(5)}}},
    ),
    (
        "response-metadata",
        RESPONSES,
        {"input": "x", "metadata": {"a": "1", "b": "2", "c": "3"}},
        "metadata",
        {"input": "x", "metadata": {"a": "1", "b": "2"}},
    ),
]


def _message(path: str, body: dict[str, Any]) -> Any:
    return from_python({"model": "chat", **body}, RPCS[path][1](), lenient=True)


def _auth() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {KEY.secret}"),)


@pytest.mark.parametrize(("path", "over", "param", "at"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_each_cap_refuses_over_rest_and_grpc_and_passes_at_the_cap(
    small: Gateway, path: str, over: dict[str, Any], param: str, at: dict[str, Any]
) -> None:
    reply = await small.http.post(path, json={"model": "chat", **over})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_argument",
        param,
    )
    assert f"Invalid '{param}'" in error["message"], error
    method = getattr(small.stub, RPCS[path][0])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await method(_message(path, over), metadata=_auth())
    err = ServiceError.from_rpc_error(info.value)
    assert (err.code, err.param, err.message) == (grpc.StatusCode.INVALID_ARGUMENT, param, error["message"])
    assert small.engine.calls == 0  # no engine saw any of them
    # At the cap, both faces serve it.
    reply = await small.http.post(path, json={"model": "chat", **at})
    assert reply.status_code == 200, reply.text
    await method(_message(path, at), metadata=_auth())
    assert small.engine.calls == 2


async def test_a_grpc_refusal_carries_a_bad_request_field_violation(small: Gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await small.stub.CreateChatCompletion(_message(CHAT, {"messages": [USER] * 4}), metadata=_auth())
    [details] = [v for k, v in info.value.trailing_metadata() if k == "grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    bad = error_details_pb2.BadRequest()
    assert [d.Unpack(bad) for d in status.details if d.Is(bad.DESCRIPTOR)] == [True]
    assert [v.field for v in bad.field_violations] == ["messages"]


async def test_streams_are_refused_before_the_first_event(small: Gateway) -> None:
    body = {"model": "chat", "messages": [USER] * 4, "stream": True}
    reply = await small.http.post(CHAT, json=body)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "messages"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in small.stub.StreamChatCompletion(_message(CHAT, body), metadata=_auth()):
            pass
    assert ServiceError.from_rpc_error(info.value).param == "messages"
    reply = await small.http.post(RESPONSES, json={"model": "chat", "input": [USER] * 4, "stream": True})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "input"
    assert small.engine.calls == 0


async def test_a_single_prompt_of_many_token_ids_is_one_input(small: Gateway) -> None:
    tokens = list(range(100))
    for path, body in ((COMPLETIONS, {"prompt": tokens}), (EMBEDDINGS, {"input": tokens})):
        reply = await small.http.post(path, json={"model": "chat", **body})
        assert reply.status_code == 200, reply.text
        await getattr(small.stub, RPCS[path][0])(_message(path, body), metadata=_auth())


async def test_the_issue_attack_is_refused_without_converting_it(
    on_the_loop: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted: list[int] = []

    def counting_from_python(obj: Any, msg: Any, lenient: bool = False) -> Any:
        converted.append(len(obj.get("messages", ())) if isinstance(obj, dict) else 0)
        return from_python(obj, msg, lenient)

    monkeypatch.setattr(transcoder, "from_python", counting_from_python)
    reply = await on_the_loop.http.post(CHAT, content=ATTACK, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (
        error["param"] == "messages"
        and "maximum length 4096, but got an array with length 200000" in error["message"]
    )
    assert converted == [] and on_the_loop.engine.calls == 0
    # The same over gRPC (where the message arrives already parsed by grpc's C core).
    with pytest.raises(grpc.aio.AioRpcError) as info:
        request = chat_pb2.ChatCompletionRequest(model="chat")
        request.messages.add(role="user", content_text="")
        request.messages.extend([request.messages[0]] * 199_999)
        await on_the_loop.stub.CreateChatCompletion(request, metadata=_auth())
    assert ServiceError.from_rpc_error(info.value).param == "messages"
    assert on_the_loop.engine.calls == 0


async def test_requests_at_the_default_caps_pass(default: Gateway) -> None:
    limits = RequestLimits()
    bodies = [
        (CHAT, {"messages": [USER] * limits.max_messages}),
        (CHAT, {"messages": [{"role": "user", "content": _parts(limits.max_content_parts)}]}),
        (CHAT, {"messages": [{"role": "user", "content": _parts(2)}] * (limits.max_content_parts // 2)}),
        (
            CHAT,
            {
                "messages": [{"role": "assistant", "tool_calls": [_call(1)] * 2}]
                * (limits.max_tool_calls // 2)
            },
        ),
        (CHAT, {"messages": [USER], "tools": [_function(f"f{i}") for i in range(limits.max_tools)]}),
        (CHAT, {"messages": [USER], "tools": [_function("f", MAX_RAW_JSON_DEPTH - 1)]}),
        (CHAT, {"messages": [USER], "stop": ["s"] * limits.max_stop_sequences}),
        (EMBEDDINGS, {"input": ["x"] * limits.max_inputs}),
        (COMPLETIONS, {"prompt": ["x"] * limits.max_inputs}),
    ]
    for path, body in bodies:
        reply = await default.http.post(path, json={"model": "chat", **body})
        assert reply.status_code == 200, (path, reply.text[:300])
        await getattr(default.stub, RPCS[path][0])(_message(path, body), metadata=_auth())
    over = {"model": "chat", "messages": [USER] * (limits.max_messages + 1)}
    assert (await default.http.post(CHAT, json=over)).status_code == 400


async def test_large_bodies_are_converted_off_the_event_loop(
    default: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted: list[str] = []

    def recording_from_python(obj: Any, msg: Any, lenient: bool = False) -> Any:
        converted.append(threading.current_thread().name)
        return from_python(obj, msg, lenient)

    monkeypatch.setattr(transcoder, "from_python", recording_from_python)
    small_body = {"model": "chat", "messages": [USER]}
    large_text = "x" * transcoder.OFFLOAD_BODY_BYTES
    large_body = {"model": "chat", "messages": [{"role": "user", "content": large_text}]}
    assert (await default.http.post(CHAT, json=small_body)).status_code == 200
    assert converted == [threading.current_thread().name]  # a small body: on the loop
    # A large one in a conversion process (the codec here never sees it), served the same.
    reply = await default.http.post(CHAT, json=large_body)
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "ok"
    streamed = await default.http.post(CHAT, json={**large_body, "stream": True})
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]"), streamed.text
    assert len(converted) == 1 and transcoder._PROCESSES is not None
    # Refusals made there are answered as on the loop: the codec's and the caps'.
    reply = await default.http.post(CHAT, json={**large_body, "temperature": "hot"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "temperature", reply.text
    reply = await default.http.post(CHAT, content=ATTACK, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "messages", reply.text
    assert "maximum length 4096, but got an array with length 200000" in reply.json()["error"]["message"]
    reply = await default.http.post(CHAT, content=b"{" + b" " * transcoder.OFFLOAD_BODY_BYTES)
    assert reply.status_code == 400 and "could not parse" in reply.json()["error"]["message"]
    assert len(converted) == 1 and default.engine.calls == 3


def test_the_settings_carry_the_documented_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings()
    assert RequestLimits.from_settings(settings) == RequestLimits()
    assert (settings.max_messages, settings.max_tools, settings.max_inputs) == (4096, 1024, 2048)
    assert (settings.max_schema_depth, settings.max_stop_sequences) == (MAX_RAW_JSON_DEPTH, 64)
    monkeypatch.setenv("BUD_MAX_MESSAGES", "10")
    assert RequestLimits.from_settings(GatewaySettings()).max_messages == 10
    with pytest.raises(ValueError):
        GatewaySettings(max_schema_depth=MAX_RAW_JSON_DEPTH + 1)  # the codec refuses deeper anyway
    with pytest.raises(ValueError):
        GatewaySettings(max_tools=0)


@pytest.mark.parametrize(("path", "over", "param"), [c[1:4] for c in CASES], ids=[c[0] for c in CASES])
def test_the_json_and_protobuf_checks_agree(path: str, over: dict[str, Any], param: str) -> None:
    body = {"model": "chat", **over}
    with pytest.raises(ServiceError) as from_json:
        SMALL.check_json(RPCS[path][1].DESCRIPTOR.full_name, body)
    with pytest.raises(ServiceError) as from_message:
        SMALL.check_message(_message(path, over))
    assert from_json.value.param == from_message.value.param == param
    assert from_json.value.message == from_message.value.message


def test_a_schema_text_too_deep_for_the_json_parser_is_too_deep() -> None:
    request = chat_pb2.ChatCompletionRequest(model="chat")
    request.tools.add(type="function").function.parameters = "[" * 2000 + "]" * 2000
    with pytest.raises(ServiceError) as info:
        RequestLimits().check_message(request)
    assert info.value.param == "tools[0].function.parameters"


def test_the_codecs_fast_lists_decode_and_refuse_as_item_by_item() -> None:
    # Millions of token ids take one C call; items the C call refuses take the item-by-item path,
    # which accepts what it always did and names the item at fault.
    tokens = from_python({"prompt": list(range(100_000))}, completion_pb2.CompletionRequest())
    assert list(tokens.prompt_tokens.values) == list(range(100_000))
    mixed = from_python({"prompt": [1, "2", 3.0]}, completion_pb2.CompletionRequest())
    assert list(mixed.prompt_tokens.values) == [1, 2, 3]
    for bad, at in (([1, 2**40], "[1]"), ([1, True], "[1]"), ([[1], [2, -(2**40)]], "[1][1]")):
        with pytest.raises(JsonFaceError) as info:
            from_python({"prompt": bad}, completion_pb2.CompletionRequest())
        assert info.value.param.endswith(at), info.value.param
    stops = from_python({"stop": ["a", "b"], "stop_token_ids": [7, 8]}, chat_pb2.ChatCompletionRequest())
    assert (list(stops.stop_list.values), list(stops.stop_token_ids)) == (["a", "b"], [7, 8])


def test_the_codecs_fast_float_lists_encode_as_item_by_item() -> None:
    answer = embedding_pb2.EmbeddingList(object="list")
    answer.data.add(index=0).embedding_floats.values.extend([0.5, -1.0])
    answer.data.add(index=1).embedding_floats.values.extend([float("nan"), float("inf")])
    data = orjson.loads(to_json(answer))["data"]
    assert [d["embedding"] for d in data] == [[0.5, -1.0], ["NaN", "Infinity"]]


async def test_large_answers_are_encoded_off_the_event_loop(
    default: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[str] = []
    real = transcoder._encode

    def recording_encode(response: Any, response_body: str) -> bytes:
        encoded.append(type(response).__name__)
        return real(response, response_body)

    monkeypatch.setattr(transcoder, "_encode", recording_encode)
    monkeypatch.setattr(instant_engine, "EMBEDDING_DIMENSIONS", 64)  # 2048 × 64 floats: 0.5 MB
    reply = await default.http.post(EMBEDDINGS, json={"model": "chat", "input": ["x"] * 2048})
    assert reply.status_code == 200, reply.text[:300]
    data = reply.json()["data"]
    assert len(data) == 2048 and all(len(d["embedding"]) == 64 for d in data)
    assert data[7]["index"] == 7 and data[7]["embedding"][0] == 7.0
    reply = await default.http.post(EMBEDDINGS, json={"model": "chat", "input": ["x"]})
    assert reply.status_code == 200
    assert encoded == ["EmbeddingList"]  # only the small answer was encoded here


async def test_the_grpc_face_parses_no_message_over_the_body_cap(default: Gateway) -> None:
    # Over the body cap a message is refused by grpc before it is parsed (parsing a map of a
    # million logit-bias entries would take seconds on the loop, before any cap could look).
    request = chat_pb2.ChatCompletionRequest(model="chat")
    request.messages.add(role="user", content_text="x" * transcoder.MAX_BODY_BYTES)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await default.stub.CreateChatCompletion(request, metadata=_auth())
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert default.engine.calls == 0


async def test_a_grpc_stream_the_caps_let_through_is_still_cancelled_down_to_the_engine(
    default: Gateway,
) -> None:
    default.engine.chunk_delay = 0.2
    default.engine.chunks = 50
    call = default.stub.StreamChatCompletion(
        _message(CHAT, {"messages": [USER], "stream": True}), metadata=_auth()
    )
    await call.read()  # the first chunk: the engine's stream is open
    assert default.engine.open_streams == 1
    call.cancel()
    for _ in range(100):
        if default.engine.open_streams == 0:
            break
        await asyncio.sleep(0.05)
    assert default.engine.open_streams == 0
