"""Structural caps on OpenAI requests (how many messages, content parts, tools, inputs, stop
sequences..., how deep a JSON schema), checked before the expensive conversions: on the parsed
JSON of a REST body, before it becomes a protobuf message (the transcoder's `check` hook), and on
the protobuf message of a typed gRPC caller, before the servicer (`RequestLimitsInterceptor` on
the gateway's gRPC face).

One implementation of the limits: each request kind has an extractor per representation (JSON
or protobuf) that yields what it measures, in order, as `(cap, param, value)`, and `check`
compares each with its cap and refuses the first one over it. The extractors are generators, so
a list over its cap is refused before its items are looked at (200,000 messages cost one
`len`). The `param` is the JSON path of the field at fault, the same in both dialects.

What the caps leave unbounded (long prompts, token-id lists: legitimately large) is bounded by
the body size; the transcoder converts large bodies off the event loop (`OFFLOAD_BODY_BYTES`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import orjson
from google.protobuf.message import Message

from budrt.errors import invalid_argument
from budrt.interceptors import Behavior, CallInterceptor
from budrt.json_face import MAX_RAW_JSON_DEPTH

# A measure: (the cap's field name in RequestLimits, the JSON path at fault, the value measured).
# A schema's depth is measured lazily (a callable given the cap), only when everything before it
# passed, and only as deep as the cap.
Measure = tuple[str, str, "int | Callable[[int], int]"]


@dataclass(frozen=True)
class RequestLimits:
    """The caps (GatewaySettings fields of the same names; README "Configuration"). Defaults are
    above what OpenAI itself accepts (or, where OpenAI has no cap, above any real conversation)."""

    # Chat messages / Responses input items in one request.
    max_messages: int = 4096
    # Content parts in all the messages (or Responses input items) of one request, and tool
    # calls in all its assistant messages: totals, not per message, as what they cost (most in
    # the engine's conversion to vLLM's request: ~40 µs each here) adds up over the request
    # (OpenAI: 500 images per request).
    max_content_parts: int = 8192
    max_tool_calls: int = 4096
    # Tools offered in one request (OpenAI: 128).
    max_tools: int = 1024
    # Nesting of a JSON schema (tool parameters, response_format / text.format schemas), in
    # levels of arrays and objects (`{}` is 1; each level of properties is 2: OpenAI's strict
    # schemas, 10 levels, are ≈ 21). At most the codec's hard cap on free-form JSON, its default.
    max_schema_depth: int = MAX_RAW_JSON_DEPTH
    # Embedding inputs or completion prompts in one request (OpenAI embeddings: 2048).
    max_inputs: int = 2048
    # Stop sequences (`stop`) and stop token ids (`stop_token_ids`), each (OpenAI: 4).
    max_stop_sequences: int = 64
    # `logit_bias` entries (OpenAI: 300).
    max_logit_bias: int = 1024
    # `metadata` entries (OpenAI: 16).
    max_metadata_entries: int = 64

    @classmethod
    def from_settings(cls, settings: Any) -> RequestLimits:
        """The limits named by `settings` (GatewaySettings, or anything with the same fields)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    def check(self, measures: Iterator[Measure]) -> None:
        """INVALID_ARGUMENT (param: the field at fault) for the first measure over its cap."""
        for cap, param, value in measures:
            limit: int = getattr(self, cap)
            if callable(value):
                if value(limit) > limit:
                    raise invalid_argument(
                        f"Invalid '{param}': the JSON schema is nested deeper than {limit} levels.",
                        param=param,
                    )
            elif value > limit:
                if cap in _TOTAL_CAPS:
                    what = _TOTAL_CAPS[cap]
                    message = (
                        f"Invalid '{param}': too many {what}. A request may carry at most {limit} {what} "
                        f"in all, but this one has {value} up to here."
                    )
                elif cap in _MAP_CAPS:
                    message = f"Invalid '{param}': object has too many entries. Expected at most {limit}, but got {value} instead."
                else:
                    message = (
                        f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
                        f"but got an array with length {value} instead."
                    )
                raise invalid_argument(message, param=param)

    def check_json(self, input_type: str, body: Any) -> None:
        """Checks a REST body (parsed JSON) of a request of `input_type` (a message's full name);
        other types and malformed shapes pass (the codec refuses a wrong shape, naming it)."""
        extract = _JSON.get(input_type)
        if extract is not None and isinstance(body, dict):
            self.check(extract(body))

    def check_message(self, request: Message) -> None:
        """Checks a typed (protobuf) request; other message types pass."""
        extract = _PROTO.get(request.DESCRIPTOR.full_name)
        if extract is not None:
            self.check(extract(request))


_MAP_CAPS = frozenset({"max_logit_bias", "max_metadata_entries"})
# Caps counted over the whole request (measured as running totals: the field named is where the
# total passes the cap), and what they count.
_TOTAL_CAPS = {"max_content_parts": "content parts", "max_tool_calls": "tool calls"}


class RequestLimitsInterceptor(CallInterceptor):
    """Checks the requests of a gRPC face's calls before its servicer runs (the error-mapping
    interceptor outside turns the refusal into INVALID_ARGUMENT with a BadRequest detail)."""

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        check = self.limits.check_message

        async def limited(request: Any, context: Any) -> Any:
            check(request)
            return await behavior(request, context)

        return limited

    def wrap_stream(self, behavior: Behavior, method: str) -> Behavior:
        check = self.limits.check_message

        async def limited(request: Any, context: Any) -> Any:
            check(request)
            items = behavior(request, context)
            try:
                async for item in items:
                    yield item
            finally:
                await items.aclose()  # a cancelled call closes the servicer's stream at once

        return limited


# ---- schema depth ---------------------------------------------------------------------------
def _depth(value: Any, limit: int) -> int:
    """Levels of arrays and objects in `value` (as `budrt.json_face` counts them), counted level
    by level without recursion and stopping once past `limit`."""
    level = [value]
    depth = 0
    while level and depth <= limit:
        containers = [v for v in level if isinstance(v, (dict, list))]
        if not containers:
            break
        depth += 1
        level = [item for c in containers for item in (c.values() if isinstance(c, dict) else c)]
    return depth


def _json_depth(value: Any) -> Callable[[int], int]:
    return lambda limit: _depth(value, limit)


def _text_depth(text: str) -> Callable[[int], int]:
    """The depth of a schema sent as JSON text (the protobuf face); text that does not parse is
    left to the engine to refuse, unless orjson gave up on its depth."""

    def measure(limit: int) -> int:
        try:
            return _depth(orjson.loads(text), limit)
        except orjson.JSONDecodeError as err:
            # orjson refuses nesting past 1024 levels, deeper than any cap allows.
            return limit + 1 if "depth limit" in str(err) else 0

    return measure


# ---- JSON extractors ------------------------------------------------------------------------
def _list(obj: Any, key: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, list) else []


def _dict(obj: Any, key: str) -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _json_sampling(body: dict[str, Any]) -> Iterator[Measure]:
    """The caps shared by chat and completions: stops, logit bias, metadata, response format."""
    yield "max_stop_sequences", "stop", len(_list(body, "stop"))
    yield "max_stop_sequences", "stop_token_ids", len(_list(body, "stop_token_ids"))
    yield "max_logit_bias", "logit_bias", len(_dict(body, "logit_bias"))
    yield "max_metadata_entries", "metadata", len(_dict(body, "metadata"))
    spec = _dict(_dict(body, "response_format"), "json_schema")
    if "schema" in spec:
        yield "max_schema_depth", "response_format.json_schema.schema", _json_depth(spec["schema"])


def _json_chat(body: dict[str, Any]) -> Iterator[Measure]:
    messages = _list(body, "messages")
    yield "max_messages", "messages", len(messages)
    parts = calls = 0
    for i, message in enumerate(messages):
        parts += len(_list(message, "content"))
        yield "max_content_parts", f"messages[{i}].content", parts
        calls += len(_list(message, "tool_calls"))
        yield "max_tool_calls", f"messages[{i}].tool_calls", calls
    tools = _list(body, "tools")
    yield "max_tools", "tools", len(tools)
    yield from _json_sampling(body)
    for i, tool in enumerate(tools):
        function = _dict(tool, "function")
        if "parameters" in function:
            yield "max_schema_depth", f"tools[{i}].function.parameters", _json_depth(function["parameters"])


def _inputs(value: Any) -> int:
    """How many prompts or inputs a `prompt` / `input` value holds: a list of strings or of
    token lists is one each; a string or a list of token ids is one."""
    if not isinstance(value, list) or not value or isinstance(value[0], int):
        return 1
    return len(value)


def _json_completion(body: dict[str, Any]) -> Iterator[Measure]:
    yield "max_inputs", "prompt", _inputs(body.get("prompt"))
    yield from _json_sampling(body)


def _json_embedding(body: dict[str, Any]) -> Iterator[Measure]:
    yield "max_inputs", "input", _inputs(body.get("input"))


def _json_response(body: dict[str, Any]) -> Iterator[Measure]:
    items = _list(body, "input")
    yield "max_messages", "input", len(items)
    parts = 0
    for i, item in enumerate(items):
        parts += len(_list(item, "content"))
        yield "max_content_parts", f"input[{i}].content", parts
    tools = _list(body, "tools")
    yield "max_tools", "tools", len(tools)
    yield "max_metadata_entries", "metadata", len(_dict(body, "metadata"))
    for i, tool in enumerate(tools):
        if isinstance(tool, dict) and "parameters" in tool:
            yield "max_schema_depth", f"tools[{i}].parameters", _json_depth(tool["parameters"])
    text_format = _dict(_dict(body, "text"), "format")
    if "schema" in text_format:
        yield "max_schema_depth", "text.format.schema", _json_depth(text_format["schema"])


# ---- protobuf extractors --------------------------------------------------------------------
def _members(msg: Message, oneof: str, lists: tuple[str, ...]) -> int:
    """How many items the set member of `oneof` holds: a list member (one of `lists`, a
    wrapper with `values`) its length, a scalar member 1, none 0."""
    which = msg.WhichOneof(oneof)
    if which is None:
        return 0
    return len(getattr(msg, which).values) if which in lists else 1


def _parts(message: Message, member: str) -> int:
    """The content parts of a message whose `content` oneof is text or `member` (a list)."""
    return len(getattr(message, member).values) if message.WhichOneof("content") == member else 0


def _proto_sampling(request: Any) -> Iterator[Measure]:
    yield "max_stop_sequences", "stop", _members(request, "stop", ("stop_list",))
    yield "max_stop_sequences", "stop_token_ids", len(request.stop_token_ids)
    yield "max_logit_bias", "logit_bias", len(request.logit_bias)
    if "metadata" in request.DESCRIPTOR.fields_by_name:
        yield "max_metadata_entries", "metadata", len(request.metadata)
    spec = request.response_format.json_schema
    if spec.HasField("schema"):
        yield "max_schema_depth", "response_format.json_schema.schema", _text_depth(spec.schema)


def _proto_chat(request: Any) -> Iterator[Measure]:
    yield "max_messages", "messages", len(request.messages)
    parts = calls = 0
    for i, message in enumerate(request.messages):
        parts += _parts(message, "content_parts")
        yield "max_content_parts", f"messages[{i}].content", parts
        calls += len(message.tool_calls)
        yield "max_tool_calls", f"messages[{i}].tool_calls", calls
    yield "max_tools", "tools", len(request.tools)
    yield from _proto_sampling(request)
    for i, tool in enumerate(request.tools):
        if tool.function.HasField("parameters"):
            yield "max_schema_depth", f"tools[{i}].function.parameters", _text_depth(tool.function.parameters)


def _proto_completion(request: Any) -> Iterator[Measure]:
    yield "max_inputs", "prompt", _members(request, "prompt", ("prompt_texts", "prompt_token_lists"))
    yield from _proto_sampling(request)


def _proto_embedding(request: Any) -> Iterator[Measure]:
    yield "max_inputs", "input", _members(request, "input", ("input_texts", "input_token_lists"))


def _proto_response(request: Any) -> Iterator[Measure]:
    items = request.input_items.values if request.WhichOneof("input") == "input_items" else []
    yield "max_messages", "input", len(items)
    parts = 0
    for i, item in enumerate(items):
        parts += _parts(item, "content_parts")
        yield "max_content_parts", f"input[{i}].content", parts
    yield "max_tools", "tools", len(request.tools)
    yield "max_metadata_entries", "metadata", len(request.metadata)
    for i, tool in enumerate(request.tools):
        if tool.HasField("parameters"):
            yield "max_schema_depth", f"tools[{i}].parameters", _text_depth(tool.parameters)
    text_format = request.text.format
    if text_format.HasField("schema"):
        yield "max_schema_depth", "text.format.schema", _text_depth(text_format.schema)


_CHAT, _COMPLETION = "bud.openai.v1.ChatCompletionRequest", "bud.openai.v1.CompletionRequest"
_EMBEDDING, _RESPONSE = "bud.openai.v1.EmbeddingRequest", "bud.openai.v1.ResponseRequest"
_JSON: dict[str, Callable[[dict[str, Any]], Iterator[Measure]]] = {
    _CHAT: _json_chat,
    _COMPLETION: _json_completion,
    _EMBEDDING: _json_embedding,
    _RESPONSE: _json_response,
}
_PROTO: dict[str, Callable[[Any], Iterator[Measure]]] = {
    _CHAT: _proto_chat,
    _COMPLETION: _proto_completion,
    _EMBEDDING: _proto_embedding,
    _RESPONSE: _proto_response,
}
