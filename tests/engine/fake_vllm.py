"""A fake vLLM for the engine's unit tests: `FakeAsyncLLM` in place of vLLM's `AsyncLLM`, and
fake serving objects in place of the ones `init_app_state` builds, so that `engine/manager.py`,
`engine/vllm_model.py`, `engine/service.py` and `engine/fast_stream.py` run in process, in
milliseconds, without an engine core.

What stays real: vLLM's argument parser and `AsyncEngineArgs` (the LoadModel → `vllm serve`
arguments path), its request/response pydantic models (`ChatCompletionRequest`,
`ChatCompletionResponse`, `ErrorResponse`, ...), `RequestOutput`/`CompletionOutput`, its error
helpers (`create_error_response`, `_raise_if_error`, ...) and the stat-logger interface. What is
fake: the engine core (outputs come from a script of words, one per step), tokenisation (one
token per word) and the chat template (messages joined). `install` swaps the fakes in.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any

import pytest
from vllm.entrypoints.generate.base.serving import GenerateBaseServing
from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
from vllm.entrypoints.serve.engine.serving import BaseServing


@dataclass
class FakeVllm:
    """What the fake engines do, and what they saw. One per test (`install` returns it)."""

    words: list[str] = field(default_factory=lambda: ["Hello", " there", " friend"])
    step_delay: float = 0.0  # seconds between the outputs of a request
    start_delay: float = 0.0  # seconds an engine takes to start (in its thread)
    start_error: BaseException | None = None  # raised by the next engine start
    # The next engine start launches a real "engine core" process that never gets ready (it
    # sleeps) and waits on it, as vLLM does: without a limit, failing only once the process ends.
    start_hangs: bool = False
    hung_cores: list[Any] = field(default_factory=list)  # the processes those starts launched
    # (VLLM_CPU_OMP_THREADS_BIND, OMP_NUM_THREADS) as each start saw them: what vLLM's engine core
    # and worker would inherit.
    threads_seen: list[tuple[str | None, str | None]] = field(default_factory=list)
    tasks: tuple[str, ...] = ("generate",)  # what the next engine supports ("embed": a pooling model)
    error_response: Any = None  # a vLLM ErrorResponse the serving objects return instead of serving
    handler_error: BaseException | None = None  # raised by the serving objects instead of serving
    finish_with_error: bool = False  # the last output's finish_reason is "error"
    engines: list[FakeAsyncLLM] = field(default_factory=list)
    starting: int = 0  # engines starting now
    max_starting: int = 0  # the most that ever started at once


def hang_like_a_stuck_engine_core(fake: FakeVllm) -> None:
    """What vLLM's start does when its engine core never reports ready: it launches the core (a
    spawned process; this one sleeps for an hour) and waits, with no limit, for its handshake or
    its end (`vllm.v1.engine.utils.wait_for_engine_startup` polls the core's sentinel); its end
    is an error."""
    core = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(3600,), daemon=True)
    core.start()
    fake.hung_cores.append(core)
    multiprocessing.connection.wait([core.sentinel])
    raise RuntimeError(f"Engine core initialization failed. Failed core proc(s): {{'core': {core.exitcode}}}")


class FakeAsyncLLM:
    """vLLM's `AsyncLLM` as the engine uses it: built by `from_vllm_config`, `generate` yielding
    `RequestOutput`s (delta outputs) and aborting on close or cancellation, `encode`, `abort`,
    `errored`, `shutdown`, `model_config`, `get_supported_tasks`, and stat loggers fed after
    each step."""

    fake: FakeVllm  # set by `install`

    def __init__(self, vllm_config: Any, stat_loggers: list[Any]) -> None:
        self.vllm_config = vllm_config
        self.model_config = vllm_config.model_config
        self.stat_loggers = [factory(vllm_config, 0) for factory in stat_loggers]
        self.dead = False
        self.is_shut_down = False
        self.requests: list[str] = []
        self.aborted: list[str] = []
        self.finished: list[str] = []
        self.running = 0

    @classmethod
    def from_vllm_config(
        cls,
        vllm_config: Any,
        usage_context: Any = None,
        stat_loggers: Any = None,
        disable_log_stats: bool = False,
        **kwargs: Any,
    ) -> FakeAsyncLLM:
        fake = cls.fake
        if fake.start_error is not None:
            error, fake.start_error = fake.start_error, None
            raise error
        fake.threads_seen.append(
            (os.environ.get("VLLM_CPU_OMP_THREADS_BIND"), os.environ.get("OMP_NUM_THREADS"))
        )
        if fake.start_hangs:
            fake.start_hangs = False
            hang_like_a_stuck_engine_core(fake)
        fake.starting += 1
        fake.max_starting = max(fake.max_starting, fake.starting)
        try:
            if fake.start_delay:
                time.sleep(fake.start_delay)  # a thread: AsyncLLM's construction blocks
        finally:
            fake.starting -= 1
        engine = cls(vllm_config, list(stat_loggers or ()))
        fake.engines.append(engine)
        return engine

    @property
    def errored(self) -> bool:
        return self.dead

    def die(self) -> None:
        """The engine core process exits (vLLM's monitor then reports `errored`)."""
        self.dead = True

    def shutdown(self, timeout: float | None = None) -> None:
        self.is_shut_down = True

    async def get_supported_tasks(self) -> tuple[str, ...]:
        return self.fake.tasks

    async def abort(self, request_id: str | list[str], internal: bool = False) -> None:
        self.aborted.extend([request_id] if isinstance(request_id, str) else request_id)

    def _record_step(self, prompt_tokens: int, generated: int) -> None:
        scheduler = SimpleNamespace(num_running_reqs=self.running, num_waiting_reqs=1, kv_cache_usage=0.25)
        iteration = SimpleNamespace(num_prompt_tokens=prompt_tokens, num_generation_tokens=generated)
        for stat_logger in self.stat_loggers:
            stat_logger.record(scheduler, iteration)

    async def generate(
        self, prompt: Any, sampling_params: Any, request_id: str, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """One `RequestOutput` per scripted word (at most `sampling_params.max_tokens`), the last
        finished ("length" when cut short, else "stop"; "error" when scripted)."""
        from vllm.outputs import CompletionOutput, RequestOutput

        prompt_ids = list(prompt["prompt_token_ids"])
        words = self.fake.words[: sampling_params.max_tokens]
        cut = len(words) < len(self.fake.words)
        self.requests.append(request_id)
        self.running += 1
        try:
            for i, word in enumerate(words):
                if self.fake.step_delay:
                    await asyncio.sleep(self.fake.step_delay)
                last = i == len(words) - 1
                finish = None
                if last:
                    finish = "error" if self.fake.finish_with_error else "length" if cut else "stop"
                output = CompletionOutput(
                    index=0,
                    text=word,
                    token_ids=[100 + i],
                    cumulative_logprob=None,
                    logprobs=None,
                    finish_reason=finish,
                )
                self._record_step(len(prompt_ids) if i == 0 else 0, 1)
                yield RequestOutput(
                    request_id=request_id,
                    prompt=None,
                    prompt_token_ids=prompt_ids,
                    prompt_logprobs=None,
                    outputs=[output],
                    finished=last,
                    num_cached_tokens=0,
                )
            self.finished.append(request_id)
        except (asyncio.CancelledError, GeneratorExit):
            await self.abort(request_id, internal=True)  # as AsyncLLM.generate does
            raise
        finally:
            self.running -= 1

    async def encode(
        self, prompt: Any, pooling_params: Any, request_id: str, **kwargs: Any
    ) -> AsyncIterator[Any]:
        yield SimpleNamespace(
            request_id=request_id,
            outputs=SimpleNamespace(data=[0.5] * 4),
            finished=True,
            prompt_token_ids=list(prompt["prompt_token_ids"]),
        )


# ---- serving objects (what init_app_state builds over the engine) ----------------------------------
def _tokens(text: str) -> list[int]:
    return list(range(1, len(text.split()) + 1))


class _FakeServing:
    """The parts of vLLM's serving base classes the engine's paths touch, the real ones where
    they do not need a tokenizer or a renderer."""

    create_error_response = staticmethod(BaseServing.create_error_response)
    create_streaming_error_response = GenerateBaseServing.create_streaming_error_response
    _raise_if_error = GenerateBaseServing._raise_if_error
    _convert_generation_error_to_streaming_response = (
        GenerateBaseServing._convert_generation_error_to_streaming_response
    )

    def __init__(self, engine: FakeAsyncLLM, model_name: str) -> None:
        self.engine_client = engine
        self.model_name = model_name
        self.fake = engine.fake

    def _scripted_failure(self) -> Any:
        if self.fake.handler_error is not None:
            raise self.fake.handler_error
        return self.fake.error_response

    def _sampling(self, request: Any) -> Any:
        limit = getattr(request, "max_completion_tokens", None) or request.max_tokens
        return SimpleNamespace(max_tokens=limit or 16)


class FakeServingChat(_FakeServing):
    """`OpenAIServingChat` as the engine calls it: `create_chat_completion` renders the messages
    (joined), starts `engine_client.generate` and hands its outputs to
    `chat_completion_stream_generator` (the method fast_stream.install wraps), whose own
    version yields vLLM's SSE lines; unary requests get a `ChatCompletionResponse`."""

    parser_cls = None
    enable_force_include_usage = False
    enable_prompt_tokens_details = False
    enable_log_outputs = False
    system_fingerprint = None
    response_role = "assistant"
    get_chat_request_role = OpenAIServingChat.get_chat_request_role

    def __init__(self, engine: FakeAsyncLLM, model_name: str) -> None:
        super().__init__(engine, model_name)
        self.generic_streams = 0  # streams served by this (vLLM's) generator, not the lean one

    async def create_chat_completion(self, request: Any, raw_request: Any = None) -> Any:
        failure = self._scripted_failure()
        if failure is not None:
            return failure
        text = " ".join(str(m.get("content") or "") for m in request.messages)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        generator = self.engine_client.generate(
            {"prompt_token_ids": _tokens(text)}, self._sampling(request), request_id
        )
        if request.stream:
            return self.chat_completion_stream_generator(
                request, generator, request_id, self.model_name, [], None, None, mm_token_counts=None
            )
        return await self._full(request, generator, request_id)

    async def _full(self, request: Any, generator: AsyncIterator[Any], request_id: str) -> Any:
        from vllm.entrypoints.openai.chat_completion.protocol import (
            ChatCompletionResponse,
            ChatCompletionResponseChoice,
            ChatMessage,
        )
        from vllm.entrypoints.serve.engine.protocol import UsageInfo

        text, tokens, prompt, finish = "", 0, 0, None
        async for res in generator:
            prompt = len(res.prompt_token_ids)
            for output in res.outputs:
                self._raise_if_error(output.finish_reason, request_id)
                text += output.text
                tokens += len(output.token_ids)
                finish = output.finish_reason
        return ChatCompletionResponse(
            id=request_id,
            model=self.model_name,
            choices=[
                ChatCompletionResponseChoice(
                    index=0, message=ChatMessage(role="assistant", content=text), finish_reason=finish
                )
            ],
            usage=UsageInfo(prompt_tokens=prompt, completion_tokens=tokens, total_tokens=prompt + tokens),
        )

    async def chat_completion_stream_generator(
        self,
        request: Any,
        result_generator: AsyncIterator[Any],
        request_id: str,
        model_name: str,
        conversation: Any,
        tokenizer: Any,
        request_metadata: Any,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        """vLLM's generic generator, reduced: `data: {json}` lines, then `data: [DONE]`."""
        self.generic_streams += 1

        def line(obj: dict[str, Any]) -> str:
            return f"data: {json.dumps(obj)}\n\n"

        base = {"id": request_id, "object": "chat.completion.chunk", "created": 1, "model": model_name}
        yield line({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        async for res in result_generator:
            for output in res.outputs:
                if output.finish_reason == "error":
                    yield line(
                        json.loads(
                            self.create_streaming_error_response(
                                "Internal server error",
                                err_type="InternalServerError",
                                status_code=HTTPStatus.INTERNAL_SERVER_ERROR,
                            )
                        )
                    )
                    return
                yield line(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"content": output.text},
                                "finish_reason": output.finish_reason,
                            }
                        ],
                    }
                )
        yield "data: [DONE]\n\n"


class FakeServingCompletion(_FakeServing):
    """`OpenAIServingCompletion.create_completion`: a `CompletionResponse`, or SSE lines."""

    async def create_completion(self, request: Any, raw_request: Any = None) -> Any:
        from vllm.entrypoints.openai.completion.protocol import CompletionResponse, CompletionResponseChoice
        from vllm.entrypoints.serve.engine.protocol import UsageInfo

        failure = self._scripted_failure()
        if failure is not None:
            return failure
        request_id = f"cmpl-{uuid.uuid4().hex}"
        prompt = request.prompt if isinstance(request.prompt, str) else ""
        generator = self.engine_client.generate(
            {"prompt_token_ids": _tokens(prompt)}, self._sampling(request), request_id
        )
        if request.stream:
            return self._stream(generator, request_id)
        text, tokens, finish = "", 0, None
        async for res in generator:
            for output in res.outputs:
                text, tokens, finish = (
                    text + output.text,
                    tokens + len(output.token_ids),
                    output.finish_reason,
                )
        return CompletionResponse(
            id=request_id,
            model=self.model_name,
            choices=[CompletionResponseChoice(index=0, text=text, finish_reason=finish)],
            usage=UsageInfo(
                prompt_tokens=len(_tokens(prompt)),
                completion_tokens=tokens,
                total_tokens=len(_tokens(prompt)) + tokens,
            ),
        )

    async def _stream(self, generator: AsyncIterator[Any], request_id: str) -> AsyncIterator[str]:
        async for res in generator:
            for output in res.outputs:
                chunk = {
                    "id": request_id,
                    "object": "text_completion",
                    "created": 1,
                    "model": self.model_name,
                    "choices": [{"index": 0, "text": output.text, "finish_reason": output.finish_reason}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"


class FakeServingEmbedding(_FakeServing):
    """`ServingEmbedding`: called with the request, answers a starlette response (JSON body)."""

    async def __call__(self, request: Any, raw_request: Any = None) -> Any:
        from starlette.responses import JSONResponse

        failure = self._scripted_failure()
        if failure is not None:
            return JSONResponse(failure.model_dump(), status_code=failure.error.code)
        inputs = request.input if isinstance(request.input, list) else [request.input]
        data = []
        for index, text in enumerate(inputs):
            async for res in self.engine_client.encode(
                {"prompt_token_ids": _tokens(str(text))}, None, f"embd-{uuid.uuid4().hex}"
            ):
                data.append({"object": "embedding", "index": index, "embedding": res.outputs.data})
        tokens = sum(len(_tokens(str(t))) for t in inputs)
        return JSONResponse(
            {
                "object": "list",
                "model": self.model_name,
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


async def fake_init_app_state(
    engine_client: FakeAsyncLLM, state: Any, args: Any, supported_tasks: tuple[str, ...] | None = None
) -> None:
    """`init_app_state`: the serving objects of the supported tasks."""
    name = args.served_model_name[0] if args.served_model_name else args.model
    tasks = supported_tasks or ()
    if "generate" in tasks:
        state.openai_serving_chat = FakeServingChat(engine_client, name)
        state.openai_serving_completion = FakeServingCompletion(engine_client, name)
    if "embed" in tasks:
        state.serving_embedding = FakeServingEmbedding(engine_client, name)


def _fake_engine_config(self: Any, usage_context: Any = None, **kwargs: Any) -> Any:
    """`AsyncEngineArgs.create_engine_config` without reading a model: the arguments as given."""
    model_config = SimpleNamespace(
        max_model_len=self.max_model_len or 2048,
        model=self.model,
        served_model_name=self.served_model_name,
        dtype=self.dtype,
    )
    return SimpleNamespace(model_config=model_config, engine_args=self)


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeVllm | None = None) -> FakeVllm:
    """Swaps vLLM's engine, engine config and app state for the fakes (undone after the test, as
    is what a load sets in the environment)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.api_server import app_state
    from vllm.v1.engine import async_llm

    fake = fake or FakeVllm()
    engine_class = type("BoundFakeAsyncLLM", (FakeAsyncLLM,), {"fake": fake})
    monkeypatch.setattr(async_llm, "AsyncLLM", engine_class)
    monkeypatch.setattr(app_state, "init_app_state", fake_init_app_state)
    monkeypatch.setattr(AsyncEngineArgs, "create_engine_config", _fake_engine_config)
    # A load sets vLLM's CPU thread variables in this process's environment
    # (`engine.vllm_model.unbind_cpu_threads`): as they were after the test.
    for name in ("VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if not os.environ[name]:
            monkeypatch.delenv(name)
    return fake
