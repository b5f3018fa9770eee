"""One served model: a vLLM `AsyncLLM` plus vLLM's own OpenAI serving objects (the ones
`vllm serve` builds, from the same CLI arguments), so sampling defaults, chat templating, tool and
reasoning parsers and structured outputs behave exactly as in vLLM's own server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.datastructures import State

from bud.engine.v1 import engine_service_pb2 as pb
from engine import call_usage, fast_stream

log = logging.getLogger(__name__)
GiB = 1024**3


def vllm_cli_args(
    name: str, model_path: str, runner: int, args: pb.EngineArgs, revision: str = ""
) -> list[str]:
    """The `vllm serve` arguments equivalent to a LoadModel request (`model_path` and `revision`:
    its source, resolved by `engine.sources`)."""
    argv = ["--model", model_path, "--served-model-name", name, "--disable-log-stats"]
    if revision:
        argv += ["--revision", revision]
    if runner == pb.RUNNER_POOLING:
        argv += ["--runner", "pooling"]
    elif runner == pb.RUNNER_GENERATE:
        argv += ["--runner", "generate"]
    if args.HasField("max_model_len"):
        argv += ["--max-model-len", str(args.max_model_len)]
    if args.HasField("dtype"):
        argv += ["--dtype", args.dtype]
    if args.HasField("kv_cache_space_gib"):
        argv += ["--kv-cache-memory-bytes", str(int(args.kv_cache_space_gib * GiB))]
    if args.HasField("gpu_memory_utilization"):
        argv += ["--gpu-memory-utilization", str(args.gpu_memory_utilization)]
    if args.HasField("tensor_parallel_size"):
        argv += ["--tensor-parallel-size", str(args.tensor_parallel_size)]
    if args.HasField("max_num_seqs"):
        argv += ["--max-num-seqs", str(args.max_num_seqs)]
    if args.HasField("tool_call_parser"):
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", args.tool_call_parser]
    if args.HasField("reasoning_parser"):
        argv += ["--reasoning-parser", args.reasoning_parser]
    if args.HasField("chat_template"):
        argv += ["--chat-template", args.chat_template]
    if args.HasField("enforce_eager") and args.enforce_eager:
        argv += ["--enforce-eager"]
    if args.HasField("enable_prefix_caching"):
        argv += ["--enable-prefix-caching" if args.enable_prefix_caching else "--no-enable-prefix-caching"]
    if args.HasField("seed"):
        argv += ["--seed", str(args.seed)]
    if args.HasField("tokenizer"):
        argv += ["--tokenizer", args.tokenizer]
    return argv


def parse_vllm_args(argv: list[str]) -> argparse.Namespace:
    """Parses `vllm serve` arguments with vLLM's own parser (its defaults and validation)."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    namespace = parser.parse_args(argv)
    validate_parsed_serve_args(namespace)
    return namespace


class VllmModel:
    """A loaded model and its serving objects."""

    def __init__(self, name: str, source: pb.ModelSource, runner: int, args: pb.EngineArgs) -> None:
        self.name = name
        self.source = source
        self.runner = runner
        self.args = args
        self.state = State()
        self.engine: Any = None
        self.max_model_len = 0
        self.inflight = 0
        self.loaded_at = 0.0
        # Updated by the stats collector vLLM calls after each engine step.
        self.running = 0
        self.waiting = 0
        self.kv_cache_usage = 0.0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self._stack = contextlib.AsyncExitStack()

    async def start(self, model_path: str, revision: str = "") -> None:
        """Starts the vLLM engine on `model_path` (a directory or a Hugging Face id, at `revision`
        when given): minutes for big models; seconds for the tiny one."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        namespace = parse_vllm_args(vllm_cli_args(self.name, model_path, self.runner, self.args, revision))
        engine_args = AsyncEngineArgs.from_cli_args(namespace)
        try:

            def construct() -> Any:
                vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
                # Stats go to our collector (GetStats), not to vLLM's periodic log lines.
                return AsyncLLM.from_vllm_config(
                    vllm_config=vllm_config,
                    usage_context=UsageContext.OPENAI_API_SERVER,
                    stat_loggers=[self._make_stats_logger],
                    disable_log_stats=False,
                )

            # Starting the engine core blocks for tens of seconds; off the event loop, the other
            # models keep serving meanwhile (AsyncLLM starts its output handler on first use).
            self.engine = await asyncio.to_thread(construct)
            self._stack.callback(self.engine.shutdown)
            call_usage.instrument(self.engine)  # the tokens of each call, for GetRequestUsage
            supported = await self.engine.get_supported_tasks()
            await init_app_state(self.engine, self.state, namespace, supported)
            chat = getattr(self.state, "openai_serving_chat", None)
            if chat is not None:
                fast_stream.install(chat)
        except BaseException:
            await self._stack.aclose()
            raise
        self.max_model_len = self.engine.model_config.max_model_len
        self.loaded_at = time.time()
        if self.runner == pb.RUNNER_UNSPECIFIED:
            self.runner = (
                pb.RUNNER_POOLING if getattr(self.state, "serving_embedding", None) else pb.RUNNER_GENERATE
            )

    async def stop(self) -> None:
        """Shuts the engine down (its worker processes included)."""
        await self._stack.aclose()

    def handler(self, attribute: str) -> Any:
        """A vLLM serving object (openai_serving_chat, openai_serving_completion, serving_embedding)."""
        return getattr(self.state, attribute, None)

    @property
    def dead(self) -> bool:
        """Whether vLLM's engine core has died (its process exited or its output loop failed);
        vLLM's own monitor notices a dead core process and sets this."""
        return self.engine is not None and bool(self.engine.errored)

    def _make_stats_logger(self, vllm_config: Any, engine_index: int = 0) -> Any:
        from vllm.v1.metrics.loggers import StatLoggerBase

        model = self

        class StatsCollector(StatLoggerBase):
            """Keeps the engine's latest scheduler stats and token totals for GetStats."""

            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(
                self,
                scheduler_stats: Any,
                iteration_stats: Any,
                mm_cache_stats: Any = None,
                engine_idx: int = 0,
            ) -> None:
                if scheduler_stats is not None:
                    model.running = scheduler_stats.num_running_reqs
                    model.waiting = scheduler_stats.num_waiting_reqs
                    model.kv_cache_usage = scheduler_stats.kv_cache_usage
                if iteration_stats is not None:
                    model.prompt_tokens_total += iteration_stats.num_prompt_tokens
                    model.generation_tokens_total += iteration_stats.num_generation_tokens

            def log_engine_initialized(self) -> None:
                pass

        return StatsCollector(vllm_config, engine_index)


def sse_payloads(text: str) -> list[str]:
    """The JSON payloads of one of vLLM's SSE strings (`data: {...}`), `[DONE]` dropped."""
    return [line[6:] for line in text.split("\n") if line.startswith("data: ") and line[6:] != "[DONE]"]
