"""The Responses API (`/v1/responses`) for direct model calls, translated to the engine's chat
contract: request → ChatCompletionRequest, ChatCompletion → Response, and chat chunks → the named
stream events (response.created … response.completed). Stored responses and prompt references
come with the prompt service."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from google.protobuf.message import Message

from bud.openai.v1 import chat_pb2, common_pb2, response_pb2
from budrt.errors import ServiceError, echo, invalid_argument, not_found, unimplemented


def to_chat_request(request: response_pb2.ResponseRequest) -> chat_pb2.ChatCompletionRequest:
    """The chat request a Responses request means."""
    if request.HasField("prompt"):
        raise unimplemented(
            "A prompt reference is run by the prompt service, not converted here.",
            reason=None,
            param="prompt",
        )
    if request.HasField("previous_response_id"):
        raise invalid_argument(
            "Responses are not stored yet, so previous_response_id cannot be resolved.",
            param="previous_response_id",
        )
    chat = chat_pb2.ChatCompletionRequest(model=request.model)
    if request.HasField("instructions"):
        chat.messages.add(role="system", content_text=request.instructions)
    which = request.WhichOneof("input")
    if which == "input_text":
        chat.messages.add(role="user", content_text=request.input_text)
    elif which == "input_items":
        for index, item in enumerate(request.input_items.values):
            _add_item(chat, item, f"input[{index}]")
    else:
        raise invalid_argument("input is required", param="input")
    _copy_set(request, chat, "temperature", "top_p", "parallel_tool_calls")
    _copy_set(request, chat, max_output_tokens="max_completion_tokens")
    for tool in request.tools:
        if tool.type != "function":
            raise invalid_argument(
                f"tool type {tool.type!r} is not supported; use function tools", param="tools"
            )
        function = common_pb2.FunctionDefinition(name=tool.name)
        _copy_set(tool, function, "description", "parameters", "strict")
        chat.tools.add(type="function", function=function)
    choice = request.WhichOneof("tool_choice")
    if choice == "tool_choice_mode":
        chat.tool_choice_mode = request.tool_choice_mode
    elif choice == "tool_choice_named":
        chat.tool_choice_named.type = "function"
        chat.tool_choice_named.function.name = request.tool_choice_named.name
    fmt = request.text.format
    if fmt.type == "json_schema":
        chat.response_format.type = "json_schema"
        chat.response_format.json_schema.name = fmt.name
        _copy_set(fmt, chat.response_format.json_schema, "schema", "strict")
    elif fmt.type == "json_object":
        chat.response_format.type = "json_object"
    _copy_set(request, chat, "user")
    return chat


def _copy_set(source: Message, target: Message, *names: str, **renamed: str) -> None:
    """Copies the optional scalar fields that are set on `source` to `target`: each of `names`
    under the same name, each `source_name=target_name` of `renamed` under its new name."""
    for source_name, target_name in [*((name, name) for name in names), *renamed.items()]:
        if source.HasField(source_name):
            setattr(target, target_name, getattr(source, source_name))


def _add_item(chat: chat_pb2.ChatCompletionRequest, item: response_pb2.ResponseInputItem, where: str) -> None:
    kind = item.type if item.HasField("type") else "message"
    if kind == "message":
        message = chat.messages.add(role=item.role or "user")
        which = item.WhichOneof("content")
        if which == "content_text":
            message.content_text = item.content_text
        elif which == "content_parts":
            for part in item.content_parts.values:
                if part.type in ("input_text", "output_text"):
                    message.content_parts.values.add(type="text", text=part.text)
                elif part.type == "input_image" and part.HasField("image_url"):
                    message.content_parts.values.add(type="image_url").image_url.url = part.image_url
                else:
                    raise invalid_argument(
                        f"content part type {part.type!r} is not supported", param=f"{where}.content"
                    )
    elif kind == "function_call":
        message = chat.messages.add(role="assistant")
        message.tool_calls.add(
            id=item.call_id,
            type="function",
            function=common_pb2.FunctionCall(name=item.name, arguments=item.arguments),
        )
    elif kind == "function_call_output":
        chat.messages.add(role="tool", tool_call_id=item.call_id, content_text=item.output)
    else:
        raise invalid_argument(f"input item type {kind!r} is not supported", param=f"{where}.type")


def _base(request: response_pb2.ResponseRequest, response_id: str, created: int) -> response_pb2.Response:
    out = response_pb2.Response(
        id=response_id,
        object="response",
        created_at=created,
        status="in_progress",
        model=request.model,
        parallel_tool_calls=request.parallel_tool_calls if request.HasField("parallel_tool_calls") else True,
        store=False,
    )
    for name in ("instructions", "max_output_tokens", "temperature", "top_p", "user"):
        if request.HasField(name):
            setattr(out, name, getattr(request, name))
    out.text.CopyFrom(request.text)
    if not out.text.format.type:
        out.text.format.type = "text"
    out.tools.extend(request.tools)
    if request.WhichOneof("tool_choice") == "tool_choice_named":
        out.tool_choice_named.CopyFrom(request.tool_choice_named)
    else:
        out.tool_choice_mode = request.tool_choice_mode or "auto"
    out.metadata.update(request.metadata)
    return out


def _finish(out: response_pb2.Response, finish_reason: str, usage: common_pb2.Usage) -> None:
    if finish_reason == "length":
        out.status = "incomplete"
        out.incomplete_details.reason = "max_output_tokens"
    else:
        out.status = "completed"
    out.usage.input_tokens = usage.prompt_tokens
    out.usage.output_tokens = usage.completion_tokens
    out.usage.total_tokens = usage.total_tokens
    out.usage.input_tokens_details.cached_tokens = usage.prompt_tokens_details.cached_tokens
    out.usage.output_tokens_details.reasoning_tokens = usage.completion_tokens_details.reasoning_tokens


def _message_item(item_id: str, text: str, status: str) -> response_pb2.ResponseOutputItem:
    item = response_pb2.ResponseOutputItem(type="message", id=item_id, status=status, role="assistant")
    item.content.add(type="output_text", text=text)
    return item


def not_stored(response_id: str) -> ServiceError:
    """What `GET`/`DELETE /v1/responses/{id}` answer: no response is stored yet (every response
    says `store: false`), so no id names one. A 404, as OpenAI answers for an unknown id, whose
    message says why (stored responses come with the prompt service)."""
    return not_found(
        f"Response with id {echo(response_id)} not found: responses are not stored yet "
        "(they come with the prompt service), so they cannot be retrieved or deleted.",
        param="response_id",
    )


def new_ids() -> tuple[str, int]:
    """A response id and its creation time."""
    return f"resp_{uuid.uuid4().hex}", int(time.time())


def to_response(
    request: response_pb2.ResponseRequest, completion: chat_pb2.ChatCompletion, response_id: str, created: int
) -> response_pb2.Response:
    """The Response for a finished chat completion."""
    out = _base(request, response_id, created)
    choice = completion.choices[0] if completion.choices else chat_pb2.ChatCompletionChoice()
    message = choice.message
    if message.HasField("content") and (message.content or not message.tool_calls):
        out.output.append(_message_item(f"msg_{uuid.uuid4().hex}", message.content, "completed"))
    for call in message.tool_calls:
        out.output.add(
            type="function_call",
            id=f"fc_{uuid.uuid4().hex}",
            status="completed",
            call_id=call.id,
            name=call.function.name,
            arguments=call.function.arguments,
        )
    _finish(out, choice.finish_reason, completion.usage)
    return out


async def to_events(
    request: response_pb2.ResponseRequest,
    chunks: AsyncIterator[chat_pb2.ChatCompletionChunk],
    response_id: str,
    created: int,
) -> AsyncIterator[response_pb2.ResponseStreamEvent]:
    """The Responses stream events for a stream of chat chunks."""
    sequence = 0

    def event(kind: str, **fields: object) -> response_pb2.ResponseStreamEvent:
        nonlocal sequence
        ev = response_pb2.ResponseStreamEvent(type=kind, sequence_number=sequence)
        for name, value in fields.items():
            if isinstance(
                value, (response_pb2.Response, response_pb2.ResponseOutputItem, response_pb2.ResponseContent)
            ):
                getattr(ev, name).CopyFrom(value)
            else:
                setattr(ev, name, value)
        sequence += 1
        return ev

    out = _base(request, response_id, created)
    yield event("response.created", response=out)
    yield event("response.in_progress", response=out)
    item_id = f"msg_{uuid.uuid4().hex}"
    text: list[str] = []
    started = False
    calls: dict[int, response_pb2.ResponseOutputItem] = {}
    finish_reason = ""
    usage = common_pb2.Usage()
    async for chunk in chunks:
        if chunk.HasField("usage"):
            usage.CopyFrom(chunk.usage)
        for choice in chunk.choices:
            delta = choice.delta
            if delta.HasField("content") and delta.content:
                if not started:
                    pending = response_pb2.ResponseOutputItem(
                        type="message", id=item_id, status="in_progress", role="assistant"
                    )
                    yield event("response.output_item.added", output_index=0, item=pending)
                    yield event(
                        "response.content_part.added",
                        output_index=0,
                        content_index=0,
                        item_id=item_id,
                        part=response_pb2.ResponseContent(type="output_text", text=""),
                    )
                    started = True
                text.append(delta.content)
                yield event(
                    "response.output_text.delta",
                    output_index=0,
                    content_index=0,
                    item_id=item_id,
                    delta=delta.content,
                )
            for call in delta.tool_calls:
                item = calls.setdefault(
                    call.index,
                    response_pb2.ResponseOutputItem(
                        type="function_call", id=f"fc_{uuid.uuid4().hex}", status="completed"
                    ),
                )
                if call.HasField("id"):
                    item.call_id = call.id
                if call.function.HasField("name"):
                    item.name = call.function.name
                if call.function.HasField("arguments"):
                    item.arguments = item.arguments + call.function.arguments
            if choice.HasField("finish_reason"):
                finish_reason = choice.finish_reason
    full = "".join(text)
    if started:
        part = response_pb2.ResponseContent(type="output_text", text=full)
        yield event("response.output_text.done", output_index=0, content_index=0, item_id=item_id, text=full)
        yield event("response.content_part.done", output_index=0, content_index=0, item_id=item_id, part=part)
        done_item = _message_item(item_id, full, "completed")
        yield event("response.output_item.done", output_index=0, item=done_item)
        out.output.append(done_item)
    for item in calls.values():
        index = len(out.output)
        # As OpenAI streams a call: added with no arguments yet, the arguments as a delta, done.
        pending = response_pb2.ResponseOutputItem()
        pending.CopyFrom(item)
        pending.status = "in_progress"
        pending.arguments = ""
        yield event("response.output_item.added", output_index=index, item=pending)
        if item.arguments:
            yield event(
                "response.function_call_arguments.delta",
                output_index=index,
                item_id=item.id,
                delta=item.arguments,
            )
        yield event(
            "response.function_call_arguments.done",
            output_index=index,
            item_id=item.id,
            arguments=item.arguments,
        )
        yield event("response.output_item.done", output_index=index, item=item)
        out.output.append(item)
    _finish(out, finish_reason, usage)
    yield event("response.incomplete" if out.status == "incomplete" else "response.completed", response=out)
