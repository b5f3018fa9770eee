"""engine/vllm_model.py: a LoadModel request's engine arguments as `vllm serve` arguments, read
back by vLLM's own parser and `AsyncEngineArgs` (no engine starts), and the SSE payload helper."""

from __future__ import annotations

from typing import Any

import pytest
from vllm.engine.arg_utils import AsyncEngineArgs

from bud.engine.v1 import engine_service_pb2 as pb
from engine.vllm_model import chat_template_file, parse_vllm_args, sse_payloads, vllm_cli_args


def engine_args(runner: int, args: pb.EngineArgs) -> tuple[Any, AsyncEngineArgs]:
    with chat_template_file(args) as template:
        namespace = parse_vllm_args(vllm_cli_args("served", "/models/x", runner, args, "", template))
    return namespace, AsyncEngineArgs.from_cli_args(namespace)


def test_every_engine_argument_reaches_vllm() -> None:
    args = pb.EngineArgs(
        max_model_len=256,
        dtype="float32",
        kv_cache_space_gib=0.5,
        gpu_memory_utilization=0.7,
        tensor_parallel_size=2,
        max_num_seqs=8,
        tool_call_parser="hermes",
        reasoning_parser="deepseek_r1",
        chat_template="{{ messages }}",
        enforce_eager=True,
        enable_prefix_caching=False,
        seed=3,
        tokenizer="/tokenizers/t",
        pipeline_parallel_size=2,
        distributed_executor_backend="ray",
    )
    # Every field of EngineArgs is set above: a new one must be mapped (and added here).
    assert {f.name for f in pb.EngineArgs.DESCRIPTOR.fields} == {f.name for f, _ in args.ListFields()}
    namespace, parsed = engine_args(pb.RUNNER_GENERATE, args)
    assert (parsed.model, parsed.served_model_name, parsed.runner) == ("/models/x", ["served"], "generate")
    assert (parsed.max_model_len, parsed.dtype, parsed.kv_cache_memory_bytes) == (
        256,
        "float32",
        512 * 1024**2,
    )
    assert (parsed.gpu_memory_utilization, parsed.tensor_parallel_size, parsed.max_num_seqs) == (0.7, 2, 8)
    assert (parsed.enforce_eager, parsed.enable_prefix_caching, parsed.seed) == (True, False, 3)
    assert (parsed.tokenizer, parsed.reasoning_parser) == ("/tokenizers/t", "deepseek_r1")
    assert (parsed.pipeline_parallel_size, parsed.distributed_executor_backend) == (2, "ray")
    assert parsed.disable_log_stats is True  # stats go to the engine's own collector
    assert (namespace.enable_auto_tool_choice, namespace.tool_call_parser) == (True, "hermes")
    assert namespace.chat_template.endswith("chat_template.jinja")  # the engine's own file


@pytest.mark.parametrize(
    ("runner", "expected"),
    [(pb.RUNNER_UNSPECIFIED, "auto"), (pb.RUNNER_GENERATE, "generate"), (pb.RUNNER_POOLING, "pooling")],
)
def test_runner_and_vllm_defaults_for_unset_arguments(runner: int, expected: str) -> None:
    namespace, parsed = engine_args(runner, pb.EngineArgs())
    assert parsed.runner == expected
    assert (parsed.max_model_len, parsed.dtype, parsed.enforce_eager) == (None, "auto", False)
    assert namespace.enable_auto_tool_choice is False and namespace.tool_call_parser is None


def test_prefix_caching_can_be_switched_on_as_well_as_off() -> None:
    _, parsed = engine_args(pb.RUNNER_GENERATE, pb.EngineArgs(enable_prefix_caching=True))
    assert parsed.enable_prefix_caching is True
    assert "--enforce-eager" not in vllm_cli_args("m", "/x", 0, pb.EngineArgs(enforce_eager=False))


def test_sse_payloads_drop_done_and_other_lines() -> None:
    text = 'data: {"a": 1}\n\ndata: {"b": 2}\nevent: x\n: comment\n\ndata: [DONE]\n\n'
    assert sse_payloads(text) == ['{"a": 1}', '{"b": 2}']
    assert sse_payloads("data: [DONE]\n\n") == []
