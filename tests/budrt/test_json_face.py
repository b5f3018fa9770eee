"""The JSON face writes and reads OpenAI's JSON shapes exactly."""

from __future__ import annotations

import orjson
import pytest

from bud.openai.v1 import chat_pb2, common_pb2, completion_pb2, embedding_pb2
from budrt.json_face import MAX_RAW_JSON_DEPTH, JsonFaceError, from_json, from_python, to_json


def test_chat_request_round_trip_keeps_unions_raw_schema_and_numbers() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "user", "content": [{"type": "text", "text": "x"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
        ],
        "stop": ["a", "b"],
        "temperature": 0.7,
        "seed": 3,
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "schema": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}},
            },
        },
    }
    msg = from_python(body, chat_pb2.ChatCompletionRequest())
    assert msg.temperature == 0.7  # double: reaches vLLM unchanged
    assert msg.WhichOneof("stop") == "stop_list"
    assert msg.messages[1].WhichOneof("content") == "content_parts"
    assert msg.WhichOneof("tool_choice") == "tool_choice_named"
    out = orjson.loads(to_json(msg))
    body["messages"][2].pop("content")  # null in, unset: omitted out
    assert out == body
    assert b'"minimum":1}' in to_json(msg)  # not 1.0


def test_response_nulls_and_zero_values_are_written() -> None:
    chunk = chat_pb2.ChatCompletionChunk(
        id="c",
        object="chat.completion.chunk",
        created=1_700_000_000,
        model="m",
        choices=[
            chat_pb2.ChatCompletionChunkChoice(index=0, delta=chat_pb2.ChatCompletionDelta(content="x"))
        ],
    )
    assert orjson.loads(to_json(chunk)) == {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}],
    }
    usage_chunk = chat_pb2.ChatCompletionChunk(
        id="c",
        object="chat.completion.chunk",
        created=1,
        model="m",
        usage=common_pb2.Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5),
    )
    assert orjson.loads(to_json(usage_chunk))["choices"] == []


@pytest.mark.parametrize(
    ("value", "member"),
    [
        ("text", "prompt_text"),
        (["a", "b"], "prompt_texts"),
        ([1, 2], "prompt_tokens"),
        ([[1], [2, 3]], "prompt_token_lists"),
    ],
)
def test_inline_oneof_is_chosen_by_json_type(value: object, member: str) -> None:
    msg = from_python({"model": "m", "prompt": value}, completion_pb2.CompletionRequest())
    assert msg.WhichOneof("prompt") == member
    assert orjson.loads(to_json(msg))["prompt"] == value


def test_embedding_floats_or_base64() -> None:
    msg = from_json(
        b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-1.0]}],'
        b'"model":"e","usage":{"prompt_tokens":2,"total_tokens":2}}',
        embedding_pb2.EmbeddingList(),
    )
    assert list(msg.data[0].embedding_floats.values) == [0.5, -1.0]
    msg.data[0].embedding_base64 = "AAAA"
    assert orjson.loads(to_json(msg))["data"][0]["embedding"] == "AAAA"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": 1}, "model"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"stop": [1]}, "stop[0]"),
        ({"n": 1.5}, "n"),
        ({"max_tokens": 2**40}, "max_tokens"),
        ({"messages": "hi"}, "messages"),
    ],
)
def test_bad_values_name_the_param(body: dict[str, object], param: str) -> None:
    with pytest.raises(JsonFaceError) as err:
        from_python(body, chat_pb2.ChatCompletionRequest())
    assert err.value.param == param


def test_unknown_fields_rejected_unless_lenient() -> None:
    with pytest.raises(JsonFaceError):
        from_python({"model": "m", "surprise": 1}, chat_pb2.ChatCompletionRequest())
    assert (
        from_python({"model": "m", "surprise": 1}, chat_pb2.ChatCompletionRequest(), lenient=True).model
        == "m"
    )


def test_malformed_json_is_a_clear_error() -> None:
    with pytest.raises(JsonFaceError, match="not valid JSON"):
        from_json(b'{"model": ', chat_pb2.ChatCompletionRequest())


def _nested(depth: int) -> object:
    value: object = {}
    for _ in range(depth - 1):
        value = {"a": [value]} if depth % 2 else [value]
    return value


@pytest.mark.parametrize("depth", [MAX_RAW_JSON_DEPTH + 1, 300, 1000])
def test_a_raw_json_value_nested_too_deep_is_refused_with_its_param(depth: int) -> None:
    text = b'{"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": '
    text += b'{"name": "s", "schema": ' + b"[" * depth + b"]" * depth + b"}}}"
    with pytest.raises(JsonFaceError) as info:
        from_json(text, chat_pb2.ChatCompletionRequest(), lenient=True)
    assert info.value.param == "response_format.json_schema.schema"
    assert f"{MAX_RAW_JSON_DEPTH} levels" in info.value.message


def test_a_raw_json_value_at_the_depth_limit_is_kept() -> None:
    schema = _nested(MAX_RAW_JSON_DEPTH)
    request = {
        "model": "m",
        "messages": [],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }
    parsed = from_python(request, chat_pb2.ChatCompletionRequest(), lenient=True)
    assert orjson.loads(parsed.response_format.json_schema.schema) == schema
