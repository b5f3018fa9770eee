"""engine.fast_stream checks the vLLM internals it uses once, and falls back to vLLM's own chat
stream generator (with a warning) when one is missing.

vLLM's modules are replaced by small fakes here (importing the real ones takes seconds), so an
internal can be taken away; the last test checks that the pinned vLLM has them all.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bud.openai.v1 import chat_pb2
from engine import fast_stream

SERVING = "vllm.entrypoints.openai.chat_completion.serving"
API_UTILS = "vllm.entrypoints.serve.utils.api_utils"
EXCEPTIONS = "vllm.exceptions"
OUTPUTS = "vllm.outputs"


class GenerationError(Exception):
    pass


@dataclasses.dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    stop_reason: int | str | None = None


class RequestOutput:
    def __init__(
        self,
        request_id: str,
        prompt: str | None,
        prompt_token_ids: list[int] | None,
        prompt_logprobs: Any,
        outputs: list[CompletionOutput],
        finished: bool,
        encoder_prompt_token_ids: list[int] | None = None,
        num_cached_tokens: int | None = None,
        num_cache_creation_tokens: int | None = None,
    ) -> None:
        self.prompt_token_ids = prompt_token_ids
        self.outputs = outputs
        self.encoder_prompt_token_ids = encoder_prompt_token_ids
        self.num_cached_tokens = num_cached_tokens
        self.num_cache_creation_tokens = num_cache_creation_tokens


def _should_include_usage(stream_options: Any, force: bool) -> tuple[bool, bool]:
    include = force or bool(stream_options and stream_options.include_usage)
    return include, include and bool(stream_options and stream_options.continuous_usage_stats)


def _make_prompt_tokens_details(enabled: bool, cached: int | None, creation: int | None, mm: Any) -> Any:
    return types.SimpleNamespace(cached_tokens=cached) if enabled else None


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, types.ModuleType]]:
    """Fake vLLM modules holding every internal the lean path uses; the internals' cache is
    cleared before and after."""
    modules = {name: types.ModuleType(name) for name in (SERVING, API_UTILS, EXCEPTIONS, OUTPUTS)}
    modules[SERVING]._make_prompt_tokens_details = _make_prompt_tokens_details  # type: ignore[attr-defined]
    modules[API_UTILS].should_include_usage = _should_include_usage  # type: ignore[attr-defined]
    modules[EXCEPTIONS].GenerationError = GenerationError  # type: ignore[attr-defined]
    modules[OUTPUTS].RequestOutput = RequestOutput  # type: ignore[attr-defined]
    modules[OUTPUTS].CompletionOutput = CompletionOutput  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    fast_stream.vllm_internals.cache_clear()
    yield modules
    fast_stream.vllm_internals.cache_clear()


class Serving:
    """The attributes of vLLM's OpenAIServingChat that the lean path uses."""

    parser_cls = None
    enable_force_include_usage = False
    system_fingerprint = None
    enable_prompt_tokens_details = False

    def __init__(self) -> None:
        self.original_calls = 0

    def chat_completion_stream_generator(
        self, request: Any, results: Any, request_id: str, model_name: str, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        self.original_calls += 1

        async def lines() -> AsyncIterator[Any]:
            yield 'data: {"from": "vllm"}\n\n'

        return lines()

    def get_chat_request_role(self, request: Any) -> str:
        return "assistant"

    def _raise_if_error(self, finish_reason: str | None, request_id: str) -> None:
        pass

    def _convert_generation_error_to_streaming_response(self, err: Exception) -> str:
        return '{"error": "generation"}'

    def create_streaming_error_response(self, err: Exception) -> str:
        return '{"error": "stream"}'


def _request(**fields: Any) -> Any:
    values = {"n": 1, "logprobs": False, "echo": False, "stream_options": None, **fields}
    return types.SimpleNamespace(**values)


async def _results() -> AsyncIterator[RequestOutput]:
    yield RequestOutput("r", None, [1, 2, 3], None, [CompletionOutput(0, "Hel", [7])], False)
    yield RequestOutput("r", None, [1, 2, 3], None, [CompletionOutput(0, "lo", [8], "stop")], True)


async def _drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def test_plain_streams_take_the_lean_path_when_the_internals_are_there(fake_vllm: Any) -> None:
    serving = Serving()
    assert fast_stream.install(serving) is True
    chunks = await _drain(serving.chat_completion_stream_generator(_request(), _results(), "r", "m"))
    assert serving.original_calls == 0
    assert all(isinstance(c, chat_pb2.ChatCompletionChunk) for c in chunks)
    assert [c.choices[0].delta.content for c in chunks] == ["", "Hel", "lo"]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "stop"
    # A request the lean path does not cover still goes to vLLM's generator.
    lines = await _drain(
        serving.chat_completion_stream_generator(_request(logprobs=True), _results(), "r", "m")
    )
    assert lines == ['data: {"from": "vllm"}\n\n'] and serving.original_calls == 1


@pytest.mark.parametrize(
    "module, name",
    [
        (SERVING, "_make_prompt_tokens_details"),
        (API_UTILS, "should_include_usage"),
        (EXCEPTIONS, "GenerationError"),
        (OUTPUTS, "RequestOutput"),
    ],
)
async def test_a_missing_internal_sends_every_stream_to_vllms_generator(
    fake_vllm: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    module: str,
    name: str,
) -> None:
    monkeypatch.delattr(fake_vllm[module], name)
    serving = Serving()
    with caplog.at_level(logging.WARNING, logger="engine.fast_stream"):
        assert fast_stream.install(serving) is False
        assert fast_stream.install(Serving()) is False  # a second model: no second warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{module}.{name}" in warnings[0] and "own generator" in warnings[0]
    lines = await _drain(serving.chat_completion_stream_generator(_request(), _results(), "r", "m"))
    assert lines == ['data: {"from": "vllm"}\n\n'] and serving.original_calls == 1


async def test_a_changed_output_shape_is_a_missing_internal(
    fake_vllm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class RenamedOutput:
        def __init__(self, request_id: str, outputs: list[Any], cached_tokens: int | None = None) -> None:
            pass

    monkeypatch.setattr(fake_vllm[OUTPUTS], "RequestOutput", RenamedOutput)
    assert fast_stream.vllm_internals() is None


async def test_a_serving_object_without_an_attribute_keeps_vllms_generator(
    fake_vllm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class OlderServing(Serving):
        def __getattribute__(self, name: str) -> Any:
            if name == "_raise_if_error":
                raise AttributeError(name)
            return super().__getattribute__(name)

    serving = OlderServing()
    with caplog.at_level(logging.WARNING, logger="engine.fast_stream"):
        assert fast_stream.install(serving) is False
    assert any("_raise_if_error" in r.getMessage() for r in caplog.records)
    lines = await _drain(serving.chat_completion_stream_generator(_request(), _results(), "r", "m"))
    assert lines == ['data: {"from": "vllm"}\n\n']


def test_the_pinned_vllm_has_every_internal() -> None:
    """The real vLLM (the release the extras pin) offers all the lean path uses."""
    pytest.importorskip("vllm")
    fast_stream.vllm_internals.cache_clear()
    try:
        _, missing = fast_stream._missing_internals()
        assert missing == []
        from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat

        # Instance attributes are set in __init__; the methods must be on the class.
        methods = [a for a in fast_stream.SERVING_ATTRIBUTES if callable(getattr(Serving, a, None))]
        assert [a for a in methods if not hasattr(OpenAIServingChat, a)] == []
    finally:
        fast_stream.vllm_internals.cache_clear()
