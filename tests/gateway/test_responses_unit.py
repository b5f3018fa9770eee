"""Unit tests of gateway/responses.py: the Responses API mapped onto the engine's chat contract
(request → chat request, chat completion → Response, chat chunks → named stream events with
sequence numbers). Requests are written as the JSON a client sends; no server runs.
`tests/gateway/test_responses_mesh.py` checks the same surface end to end with the OpenAI SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import orjson
import pytest

from bud.openai.v1 import chat_pb2, common_pb2, response_pb2
from budrt.errors import ServiceError
from budrt.json_face import from_python, to_json
from gateway import responses

RESPONSE_ID, CREATED = "resp_test", 1_700_000_000


def request(**body: Any) -> response_pb2.ResponseRequest:
    """A ResponseRequest from its JSON body (model "m" unless given)."""
    return from_python({"model": "m", **body}, response_pb2.ResponseRequest())


def chat_of(**body: Any) -> Any:
    """The chat request (as JSON) that a Responses body maps to."""
    return orjson.loads(to_json(responses.to_chat_request(request(**body))))


def refused(**body: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        responses.to_chat_request(request(**body))
    return info.value


# ---- request → chat request --------------------------------------------------------------------
def test_text_input_and_instructions_become_system_and_user_messages() -> None:
    chat = chat_of(input="hello", instructions="be brief")
    assert chat["model"] == "m"
    assert chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]


def test_sampling_limits_and_user_carry_over() -> None:
    chat = chat_of(
        input="x", max_output_tokens=7, temperature=0.5, top_p=0.9, parallel_tool_calls=False, user="u1"
    )
    assert (
        chat["max_completion_tokens"],
        chat["temperature"],
        chat["top_p"],
        chat["parallel_tool_calls"],
        chat["user"],
    ) == (7, 0.5, 0.9, False, "u1")
    assert "max_tokens" not in chat


def test_input_items_map_messages_parts_and_tool_turns() -> None:
    chat = chat_of(
        input=[
            {"role": "user", "content": "plain"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://x/i.png"},
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "earlier"}]},
            {"type": "function_call", "call_id": "call_1", "name": "add", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "2"},
            {"content": "no role"},
        ]
    )
    assert chat["messages"] == [
        {"role": "user", "content": "plain"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/i.png"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "earlier"}]},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "2"},
        {"role": "user", "content": "no role"},
    ]


def test_function_tools_and_tool_choice() -> None:
    tool = {
        "type": "function",
        "name": "add",
        "description": "adds",
        "parameters": {"type": "object"},
        "strict": True,
    }
    chat = chat_of(input="x", tools=[tool], tool_choice="required")
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "adds",
                "parameters": {"type": "object"},
                "strict": True,
            },
        }
    ]
    assert chat["tool_choice"] == "required"
    named = chat_of(input="x", tools=[tool], tool_choice={"type": "function", "name": "add"})
    assert named["tool_choice"] == {"type": "function", "function": {"name": "add"}}


def test_text_format_becomes_the_response_format() -> None:
    schema = {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
    chat = chat_of(input="x", text={"format": schema})
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    }
    assert chat_of(input="x", text={"format": {"type": "json_object"}})["response_format"] == {
        "type": "json_object"
    }
    assert "response_format" not in chat_of(input="x", text={"format": {"type": "text"}})


@pytest.mark.parametrize(
    ("body", "code", "param", "words"),
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "input", "input is required"),
        ({"input": "x", "prompt": {"id": "p1"}}, grpc.StatusCode.UNIMPLEMENTED, "prompt", "prompt service"),
        (
            {"input": "x", "previous_response_id": "resp_1"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "previous_response_id",
            "not stored",
        ),
        (
            {"input": "x", "tools": [{"type": "web_search"}]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "tools",
            "'web_search'",
        ),
        (
            {"input": [{"role": "user", "content": "ok"}, {"type": "reasoning"}]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "input[1].type",
            "'reasoning'",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "input[0].content",
            "'input_file'",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "input[0].content",
            "'input_image'",
        ),
    ],
)
def test_requests_the_mapping_cannot_serve_are_refused(
    body: dict[str, Any], code: grpc.StatusCode, param: str, words: str
) -> None:
    err = refused(**body)
    assert (err.code, err.param) == (code, param)
    assert words in err.message


# ---- chat completion → Response -------------------------------------------------------------------
def completion(
    content: str | None = "hi",
    finish: str = "stop",
    tool_calls: Iterable[tuple[str, str, str]] = (),
    usage: tuple[int, int] = (3, 2),
    cached: int = 0,
    reasoning: int = 0,
) -> chat_pb2.ChatCompletion:
    message = chat_pb2.ChatCompletionMessage(role="assistant")
    if content is not None:
        message.content = content
    for call_id, name, arguments in tool_calls:
        message.tool_calls.add(
            id=call_id, type="function", function=common_pb2.FunctionCall(name=name, arguments=arguments)
        )
    reply = chat_pb2.ChatCompletion(
        id="chatcmpl-1",
        model="m",
        choices=[chat_pb2.ChatCompletionChoice(index=0, finish_reason=finish, message=message)],
    )
    reply.usage.prompt_tokens, reply.usage.completion_tokens = usage
    reply.usage.total_tokens = sum(usage)
    reply.usage.prompt_tokens_details.cached_tokens = cached
    reply.usage.completion_tokens_details.reasoning_tokens = reasoning
    return reply


def test_completion_becomes_a_completed_response_with_the_request_echoed() -> None:
    req = request(input="x", instructions="sys", temperature=0.2, max_output_tokens=9, metadata={"k": "v"})
    out = responses.to_response(
        req, completion("hello", usage=(4, 3), cached=2, reasoning=1), RESPONSE_ID, CREATED
    )
    assert (out.id, out.object, out.created_at, out.model, out.status) == (
        RESPONSE_ID,
        "response",
        CREATED,
        "m",
        "completed",
    )
    assert (out.instructions, out.temperature, out.max_output_tokens) == ("sys", 0.2, 9)
    assert dict(out.metadata) == {"k": "v"} and out.store is False and out.parallel_tool_calls is True
    assert (out.text.format.type, out.tool_choice_mode) == ("text", "auto")
    (item,) = out.output
    assert (item.type, item.status, item.role) == ("message", "completed", "assistant")
    assert item.id.startswith("msg_")
    assert [(c.type, c.text) for c in item.content] == [("output_text", "hello")]
    assert (out.usage.input_tokens, out.usage.output_tokens, out.usage.total_tokens) == (4, 3, 7)
    assert out.usage.input_tokens_details.cached_tokens == 2
    assert out.usage.output_tokens_details.reasoning_tokens == 1
    assert not out.HasField("incomplete_details")


def test_length_finish_is_an_incomplete_response() -> None:
    out = responses.to_response(request(input="x"), completion("cut", finish="length"), RESPONSE_ID, CREATED)
    assert (out.status, out.incomplete_details.reason) == ("incomplete", "max_output_tokens")


def test_tool_calls_become_function_call_items_without_an_empty_message() -> None:
    calls = [("call_1", "add", '{"a":1}'), ("call_2", "mul", "{}")]
    req = request(input="x", tool_choice={"type": "function", "name": "add"})
    out = responses.to_response(
        req, completion("", finish="tool_calls", tool_calls=calls), RESPONSE_ID, CREATED
    )
    assert [(i.type, i.call_id, i.name, i.arguments, i.status) for i in out.output] == [
        ("function_call", "call_1", "add", '{"a":1}', "completed"),
        ("function_call", "call_2", "mul", "{}", "completed"),
    ]
    assert all(i.id.startswith("fc_") for i in out.output)
    assert out.tool_choice_named.name == "add" and out.status == "completed"
    # Text beside tool calls is kept, first.
    out = responses.to_response(req, completion("thinking", tool_calls=calls[:1]), RESPONSE_ID, CREATED)
    assert [i.type for i in out.output] == ["message", "function_call"]


def test_completion_without_choices_is_an_empty_completed_response() -> None:
    out = responses.to_response(request(input="x"), chat_pb2.ChatCompletion(), RESPONSE_ID, CREATED)
    assert list(out.output) == [] and out.status == "completed"


def test_new_ids_are_unique_response_ids() -> None:
    (first, created), (second, _) = responses.new_ids(), responses.new_ids()
    assert first.startswith("resp_") and first != second and created > CREATED


# ---- chat chunks → stream events ------------------------------------------------------------------
async def _chunks(
    items: Iterable[chat_pb2.ChatCompletionChunk],
) -> AsyncIterator[chat_pb2.ChatCompletionChunk]:
    for item in items:
        yield item


def text_chunk(
    content: str | None = None, finish: str | None = None, role: str | None = None
) -> chat_pb2.ChatCompletionChunk:
    delta = chat_pb2.ChatCompletionDelta()
    if role is not None:
        delta.role = role
    if content is not None:
        delta.content = content
    choice = chat_pb2.ChatCompletionChunkChoice(index=0, delta=delta)
    if finish is not None:
        choice.finish_reason = finish
    return chat_pb2.ChatCompletionChunk(id="c", model="m", choices=[choice])


def tool_chunk(
    index: int, call_id: str | None = None, name: str | None = None, arguments: str | None = None
) -> chat_pb2.ChatCompletionChunk:
    chunk = text_chunk()
    call = chunk.choices[0].delta.tool_calls.add(index=index)
    if call_id is not None:
        call.id = call_id
    if name is not None:
        call.function.name = name
    if arguments is not None:
        call.function.arguments = arguments
    return chunk


def usage_chunk(prompt: int, completion_tokens: int) -> chat_pb2.ChatCompletionChunk:
    return chat_pb2.ChatCompletionChunk(
        id="c",
        model="m",
        usage=common_pb2.Usage(
            prompt_tokens=prompt, completion_tokens=completion_tokens, total_tokens=prompt + completion_tokens
        ),
    )


async def events_of(
    req: response_pb2.ResponseRequest, chunks: Iterable[chat_pb2.ChatCompletionChunk]
) -> list[response_pb2.ResponseStreamEvent]:
    return [e async for e in responses.to_events(req, _chunks(chunks), RESPONSE_ID, CREATED)]


async def test_text_stream_events_in_order_with_sequence_numbers() -> None:
    events = await events_of(
        request(input="x"),
        [
            text_chunk("", role="assistant"),
            text_chunk("Hel"),
            text_chunk("lo"),
            text_chunk(finish="stop"),
            usage_chunk(3, 2),
        ],
    )
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    created = events[0].response
    assert (created.id, created.status, created.created_at, list(created.output)) == (
        RESPONSE_ID,
        "in_progress",
        CREATED,
        [],
    )
    added = events[2]
    assert (added.output_index, added.item.type, added.item.status) == (0, "message", "in_progress")
    item_id = added.item.id
    assert [(e.delta, e.item_id, e.output_index, e.content_index) for e in events[4:6]] == [
        ("Hel", item_id, 0, 0),
        ("lo", item_id, 0, 0),
    ]
    assert (events[6].text, events[7].part.text, events[8].item.content[0].text) == (
        "Hello",
        "Hello",
        "Hello",
    )
    final = events[-1].response
    assert final.status == "completed" and [i.id for i in final.output] == [item_id]
    assert final.output[0].content[0].text == "Hello"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (3, 2, 5)


async def test_stream_cut_by_length_ends_incomplete() -> None:
    events = await events_of(request(input="x", max_output_tokens=1), [text_chunk("a", finish="length")])
    assert events[-1].type == "response.incomplete"
    assert (events[-1].response.status, events[-1].response.incomplete_details.reason) == (
        "incomplete",
        "max_output_tokens",
    )


async def test_streamed_tool_calls_are_assembled_into_items() -> None:
    events = await events_of(
        request(input="x"),
        [
            text_chunk("", role="assistant"),
            tool_chunk(0, call_id="call_1", name="add", arguments='{"a"'),
            tool_chunk(0, arguments=":1}"),
            tool_chunk(1, call_id="call_2", name="mul", arguments="{}"),
            text_chunk(finish="tool_calls"),
        ],
    )
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    # As OpenAI streams a call: announced without arguments, which then come as deltas.
    assert [
        (e.item.call_id, e.item.name, e.item.arguments, e.item.status)
        for e in events
        if e.type == "response.output_item.added"
    ] == [("call_1", "add", "", "in_progress"), ("call_2", "mul", "", "in_progress")]
    assert [
        (e.output_index, e.delta) for e in events if e.type == "response.function_call_arguments.delta"
    ] == [(0, '{"a":1}'), (1, "{}")]
    assert [
        (e.output_index, e.item.call_id, e.item.name, e.item.arguments)
        for e in events
        if e.HasField("item") and e.type == "response.output_item.done"
    ] == [(0, "call_1", "add", '{"a":1}'), (1, "call_2", "mul", "{}")]
    assert [e.arguments for e in events if e.type == "response.function_call_arguments.done"] == [
        '{"a":1}',
        "{}",
    ]
    assert [i.type for i in events[-1].response.output] == ["function_call", "function_call"]


async def test_text_then_tool_call_items_are_numbered_in_output_order() -> None:
    events = await events_of(
        request(input="x"),
        [text_chunk("let me add"), tool_chunk(0, call_id="call_1", name="add", arguments="{}")],
    )
    added = [(e.output_index, e.item.type) for e in events if e.type == "response.output_item.added"]
    assert added == [(0, "message"), (1, "function_call")]


async def test_empty_stream_still_creates_and_completes() -> None:
    events = await events_of(request(input="x"), [])
    assert [(e.type, e.sequence_number) for e in events] == [
        ("response.created", 0),
        ("response.in_progress", 1),
        ("response.completed", 2),
    ]
    assert list(events[-1].response.output) == []


async def test_stream_events_serialise_as_the_responses_api_json() -> None:
    (first, *_) = await events_of(request(input="x"), [text_chunk("a")])
    body = orjson.loads(to_json(first))
    assert body["type"] == "response.created" and body["sequence_number"] == 0
    assert body["response"]["id"] == RESPONSE_ID and body["response"]["object"] == "response"
