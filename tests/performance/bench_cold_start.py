"""Cold start and scale to zero on the real engine (vLLM's CPU build here).

    python -m tests.performance.bench_cold_start                       # both models, 2 cycles each
    python -m tests.performance.bench_cold_start --models tiny-llama --cycles 1

For the builtin tiny chat model (`tiny-llama`, a streamed chat) and the embedding model
(`all-minilm-l6-v2`, one embedding), each cycle goes unloaded → LoadModel → first request →
warm requests → UnloadModel, through the engine's own servicer in this process (as a gateway
co-hosting the engine calls it, `budrt up`'s default layout), and prints:

- **cold first byte**: from LoadModel on an unloaded model to the first byte of the first answer
  (the first streamed chunk; the embedding response), split into LoadModel's time — and inside
  it vLLM's `AsyncLLM` construction alone (engine config, engine core process, weights, KV cache,
  warm-up: timed around `AsyncLLM.from_vllm_config`) — and the first request after the load;
- **warm first byte**: the same request on the loaded model (median of `--warm` calls), and the
  ratio cold / warm, both measured in the same cycle;
- **RSS** of this process plus its children (vLLM's engine core and worker processes) before the
  load, loaded, and after UnloadModel, with how much the unload returned and how far the process
  stayed above where it was before the load; and the processes the load started that are left.

Cycle 1 of the first model also pays the process's first vLLM use (lazy imports); later cycles
are the scale-to-zero case: an engine process that has served before, a model unloaded for
idleness and loaded again. The builtin models are built (tiny-llama) or found before timing
starts, in `.bench/cold-start/` (kept between runs). `VLLM_CPU_KVCACHE_SPACE` is ignored: the
models get `--kv-cache-gib` (default 0.25 GiB; the chat model `--max-model-len` 256). A benchmark:
it prints, it asserts nothing; run it once or twice on a shared machine, not in loops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]
MiB = 1024**2
CHAT_MODEL = "tiny-llama"
EMBEDDING_MODEL = "all-minilm-l6-v2"


def tree_rss() -> tuple[int, int]:
    """(RSS of this process, RSS of all its descendants) in bytes; zombies count nothing."""
    me = psutil.Process()
    own = me.memory_info().rss
    below = 0
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            below += child.memory_info().rss
    return own, below


def child_pids() -> dict[int, str]:
    """This process's descendants (zombies included: a process not reaped is left too), but
    multiprocessing's resource tracker (13 MiB, started by the first load, kept for the
    process's life)."""
    found = {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "resource_tracker" not in " ".join(child.cmdline()):
                found[child.pid] = child.status()
    return found


@contextlib.contextmanager
def timed_construction(spent: list[float]) -> Iterator[None]:
    """Appends the seconds each `AsyncLLM.from_vllm_config` takes (vLLM's engine construction
    alone: engine core process start, weights, KV cache, warm-up) while the block runs."""
    from vllm.v1.engine.async_llm import AsyncLLM

    original = AsyncLLM.__dict__["from_vllm_config"]

    def wrapper(cls: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original.__func__(cls, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    AsyncLLM.from_vllm_config = classmethod(wrapper)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        AsyncLLM.from_vllm_config = original  # type: ignore[method-assign]


@dataclass
class Cycle:
    """One unloaded → loaded → unloaded cycle of one model."""

    model: str
    cycle: int
    load_s: float = 0.0
    construct_s: float = 0.0
    first_request_s: float = 0.0
    warm_first_byte_s: float = 0.0
    unload_s: float = 0.0
    rss_before: tuple[int, int] = (0, 0)
    rss_loaded: tuple[int, int] = (0, 0)
    rss_after: tuple[int, int] = (0, 0)
    left: dict[int, str] = field(default_factory=dict)

    @property
    def cold_first_byte_s(self) -> float:
        return self.load_s + self.first_request_s


async def first_byte(servicer: Any, model: str) -> float:
    """Seconds from sending one request to `model` to the first byte of its answer: the first
    chunk of a streamed chat, or the embedding response (unary: its first byte is all of it)."""
    from bud.openai.v1 import chat_pb2, embedding_pb2

    started = time.perf_counter()
    if model == EMBEDDING_MODEL:
        await servicer.CreateEmbedding(
            embedding_pb2.EmbeddingRequest(model=model, input_text="The quick brown fox"), None
        )
        return time.perf_counter() - started
    request = chat_pb2.ChatCompletionRequest(model=model, max_tokens=16, stream=True)
    request.messages.add(role="user", content_text="Once upon a time")
    stream = servicer.StreamChatCompletion(request, None)
    try:
        async for _ in stream:
            return time.perf_counter() - started
    finally:
        await stream.aclose()
    raise RuntimeError(f"{model} streamed nothing")


async def run_cycle(servicer: Any, model: str, n: int, opts: argparse.Namespace) -> Cycle:
    from bud.engine.v1 import engine_service_pb2 as pb

    cycle = Cycle(model, n)
    if model == CHAT_MODEL:
        runner = pb.RUNNER_GENERATE
        args = pb.EngineArgs(max_model_len=256, kv_cache_space_gib=opts.kv_cache_gib)
    else:  # vLLM's CPU backend sizes its memory from the machine's without one
        runner, args = pb.RUNNER_POOLING, pb.EngineArgs(kv_cache_space_gib=opts.kv_cache_gib)
    before_children = set(child_pids())
    cycle.rss_before = tree_rss()
    spent: list[float] = []
    started = time.perf_counter()
    with timed_construction(spent):
        reply = await servicer.LoadModel(
            pb.LoadModelRequest(name=model, source=pb.ModelSource(builtin=model), runner=runner, args=args),
            None,
        )
    cycle.load_s = time.perf_counter() - started
    if reply.model.state != pb.MODEL_STATE_READY:
        raise RuntimeError(f"{model} did not load: {reply.model.error}")
    cycle.construct_s = sum(spent)
    cycle.first_request_s = await first_byte(servicer, model)
    cycle.warm_first_byte_s = statistics.median([await first_byte(servicer, model) for _ in range(opts.warm)])
    cycle.rss_loaded = tree_rss()
    started = time.perf_counter()
    await servicer.UnloadModel(pb.UnloadModelRequest(name=model), None)
    cycle.unload_s = time.perf_counter() - started
    cycle.rss_after = tree_rss()
    cycle.left = {pid: status for pid, status in child_pids().items() if pid not in before_children}
    return cycle


def mib(pair: tuple[int, int]) -> str:
    own, below = pair
    return f"{(own + below) / MiB:.0f} ({own / MiB:.0f}+{below / MiB:.0f})"


def report(cycles: list[Cycle], start: dict[str, float]) -> None:
    print(
        f"\nengine process start: import vLLM {start['import_s']:.1f} s; "
        f"RSS {start['rss_start'] / MiB:.0f} MiB before, {start['rss_imported'] / MiB:.0f} MiB after"
    )
    print(
        "\n| model | cycle | cold first byte s | = LoadModel s | (AsyncLLM construction s) | + first request s "
        "| warm first byte ms | cold / warm | UnloadModel s | RSS MiB before (own+children) | loaded "
        "| after unload | returned MiB | after − before MiB | processes left |"
    )
    print("|---" * 15 + "|")
    for c in cycles:
        total = lambda pair: sum(pair)  # noqa: E731
        print(
            f"| {c.model} | {c.cycle} | {c.cold_first_byte_s:.2f} | {c.load_s:.2f} | {c.construct_s:.2f} "
            f"| {c.first_request_s:.3f} | {c.warm_first_byte_s * 1000:.1f} "
            f"| {c.cold_first_byte_s / c.warm_first_byte_s:.0f}x | {c.unload_s:.2f} | {mib(c.rss_before)} "
            f"| {mib(c.rss_loaded)} | {mib(c.rss_after)} "
            f"| {(total(c.rss_loaded) - total(c.rss_after)) / MiB:.0f} "
            f"| {(total(c.rss_after) - total(c.rss_before)) / MiB:+.0f} | {len(c.left) or 'none'} |"
        )
    for c in cycles:
        if c.left:
            print(f"left after unloading {c.model} (cycle {c.cycle}): {c.left}")


async def bench(opts: argparse.Namespace) -> None:
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the engine arguments size the KV cache
    rss_start = psutil.Process().memory_info().rss
    started = time.perf_counter()
    import vllm  # noqa: F401 - timed: the engine's first LoadModel imports it
    from vllm.v1.engine.async_llm import AsyncLLM  # noqa: F401

    start = {
        "import_s": time.perf_counter() - started,
        "rss_start": rss_start,
        "rss_imported": psutil.Process().memory_info().rss,
    }
    from bud.engine.v1 import engine_service_pb2 as pb
    from engine.manager import ModelManager
    from engine.service import EngineServicer
    from engine.settings import EngineSettings
    from engine.sources import resolve_source

    data_dir = Path(opts.data_dir).resolve()
    settings = EngineSettings(data_dir=data_dir)
    for model in opts.models:  # built or found before any timing
        await asyncio.to_thread(
            resolve_source, pb.ModelSource(builtin=model), data_dir, settings.model_roots()
        )
    servicer = EngineServicer(ModelManager(settings))
    cycles = []
    try:
        for model in opts.models:
            for n in range(1, opts.cycles + 1):
                print(f"[bench] {model}: cycle {n}/{opts.cycles}", flush=True)
                cycles.append(await run_cycle(servicer, model, n, opts))
                print(f"[bench] {cycles[-1]}", flush=True)  # kept if a later cycle fails
    finally:
        await servicer.manager.close()
    report(cycles, start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=[CHAT_MODEL, EMBEDDING_MODEL])
    parser.add_argument("--cycles", type=int, default=2, help="load/unload cycles per model")
    parser.add_argument("--warm", type=int, default=3, help="warm requests per cycle (the median is shown)")
    parser.add_argument("--kv-cache-gib", type=float, default=0.25)
    parser.add_argument("--data-dir", default=str(REPO / ".bench" / "cold-start"))
    opts = parser.parse_args()
    sys.path.insert(0, str(REPO))
    asyncio.run(bench(opts))


if __name__ == "__main__":
    main()
