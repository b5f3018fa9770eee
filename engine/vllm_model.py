"""One served model: a vLLM `AsyncLLM` plus vLLM's own OpenAI serving objects (the ones
`vllm serve` builds, from the same CLI arguments), so sampling defaults, chat templating, tool and
reasoning parsers and structured outputs behave exactly as in vLLM's own server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, NoReturn

from starlette.datastructures import State

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.errors import invalid_argument
from engine import call_usage, fast_stream

log = logging.getLogger(__name__)
GiB = 1024**3
# vLLM's CPU backend binds each model's worker threads to cores of its choosing (VLLM_CPU_OMP_THREADS_BIND
# "auto": the cores of one NUMA node but one it reserves for the engine core), the same cores for
# every model an engine serves and for every engine on the machine. A worker starting there beside
# a busy one got almost no CPU: measured on 2 cores, 0.16 s of CPU in 150 s while it imported torch
# (vLLM waits for it without a limit), and 10 % at once when let off the core. So, unless the
# operator chose (either variable set), the worker threads are left unbound — the kernel places
# them where there is room — and as many as auto binding would have made: with torch's default
# instead (a thread per core) the tiny model's throughput fell to 0.4 of bound, with auto's count
# it matched it (tests/performance/README.md, "CPU thread binding").
CPU_THREADS_BIND = "VLLM_CPU_OMP_THREADS_BIND"
OMP_THREADS = "OMP_NUM_THREADS"
# How long an unload waits for vLLM's engine processes to exit after vLLM's own shutdown.
REAP_TIMEOUT_S = 10.0


def vllm_cli_args(
    name: str,
    model_path: str,
    runner: int,
    args: pb.EngineArgs,
    revision: str = "",
    chat_template_path: Path | None = None,
) -> list[str]:
    """The `vllm serve` arguments equivalent to a LoadModel request (`model_path` and `revision`:
    its source, resolved by `engine.sources`; `chat_template_path`: the file that
    :func:`chat_template_file` wrote `args.chat_template` into, required when it is set).

    Every value is glued to its option (`--tokenizer=VALUE`): vLLM's parser reads a separate value
    that looks like an option (`-x`, `--config`, `-O3`) as one, which exits the process
    (argparse's SystemExit) or reads a config file the value names."""
    argv = [f"--model={model_path}", f"--served-model-name={name}", "--disable-log-stats"]
    if revision:
        argv.append(f"--revision={revision}")
    if runner == pb.RUNNER_POOLING:
        argv.append("--runner=pooling")
    elif runner == pb.RUNNER_GENERATE:
        argv.append("--runner=generate")
    if args.HasField("max_model_len"):
        argv.append(f"--max-model-len={args.max_model_len}")
    if args.HasField("dtype"):
        argv.append(f"--dtype={args.dtype}")
    if args.HasField("kv_cache_space_gib"):
        argv.append(f"--kv-cache-memory-bytes={int(args.kv_cache_space_gib * GiB)}")
    if args.HasField("gpu_memory_utilization"):
        argv.append(f"--gpu-memory-utilization={args.gpu_memory_utilization}")
    if args.HasField("tensor_parallel_size"):
        argv.append(f"--tensor-parallel-size={args.tensor_parallel_size}")
    if args.HasField("pipeline_parallel_size"):
        argv.append(f"--pipeline-parallel-size={args.pipeline_parallel_size}")
    if args.HasField("distributed_executor_backend"):
        argv.append(f"--distributed-executor-backend={args.distributed_executor_backend}")
    if args.HasField("max_num_seqs"):
        argv.append(f"--max-num-seqs={args.max_num_seqs}")
    if args.HasField("tool_call_parser"):
        argv += ["--enable-auto-tool-choice", f"--tool-call-parser={args.tool_call_parser}"]
    if args.HasField("reasoning_parser"):
        argv.append(f"--reasoning-parser={args.reasoning_parser}")
    if args.HasField("chat_template"):
        # Never the text itself: vLLM tries a chat template as a file path (and as the name of
        # one of its own templates) before it takes it as text.
        if chat_template_path is None:
            raise ValueError("an inline chat template reaches vLLM as the file chat_template_file wrote")
        argv.append(f"--chat-template={chat_template_path}")
    if args.HasField("enforce_eager") and args.enforce_eager:
        argv.append("--enforce-eager")
    if args.HasField("enable_prefix_caching"):
        argv.append("--enable-prefix-caching" if args.enable_prefix_caching else "--no-enable-prefix-caching")
    if args.HasField("seed"):
        argv.append(f"--seed={args.seed}")
    if args.HasField("tokenizer"):
        argv.append(f"--tokenizer={args.tokenizer}")
    return argv


@contextlib.contextmanager
def chat_template_file(args: pb.EngineArgs) -> Iterator[Path | None]:
    """The request's inline chat template written to a private file of the engine's (a new
    directory of mode 0700 in the system's temporary folder, the file 0600), for `--chat-template`;
    removed on exit. None when the request has no chat template. vLLM reads this file and nothing
    the request named: the template's text is never taken as a path."""
    if not args.HasField("chat_template"):
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="bud-chat-template-"))
    try:
        path = directory / "chat_template.jinja"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(args.chat_template)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def parse_vllm_args(argv: list[str]) -> argparse.Namespace:
    """Parses `vllm serve` arguments with vLLM's own parser (its defaults and validation). A value
    vLLM's parser refuses is INVALID_ARGUMENT (argparse would exit the process)."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())

    def refuse(message: str) -> NoReturn:
        raise invalid_argument(f"vLLM refuses the engine arguments: {message}", param="args")

    parser.error = refuse  # type: ignore[method-assign]
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

    async def start(self, model_path: str, revision: str = "", timeout: float | None = None) -> None:
        """Starts the vLLM engine on `model_path` (a directory or a Hugging Face id, at `revision`
        when given): minutes for big models; seconds for the tiny one.

        `timeout` (seconds, None for none) bounds the start from the engine core's launch until
        the serving objects are made. Past it the processes vLLM started are killed and
        TimeoutError is raised: vLLM itself waits for its engine core and workers without a limit,
        so a core or worker stuck while starting would otherwise hold the load (and the engine's
        load lock) for good."""
        await asyncio.to_thread(import_vllm)  # before this frame imports any of it: see there
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            template = self._stack.enter_context(chat_template_file(self.args))
            argv = vllm_cli_args(self.name, model_path, self.runner, self.args, revision, template)
            namespace = parse_vllm_args(argv)
            engine_args = AsyncEngineArgs.from_cli_args(namespace)

            unbind_cpu_threads()  # read by the engine core and worker vLLM spawns: they inherit it

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
            self.engine = await construct_within(
                construct, None if deadline is None else deadline - loop.time()
            )
            self._stack.push_async_callback(shutdown_engine, self.engine)
            call_usage.instrument(self.engine)  # the tokens of each call, for GetRequestUsage
            async with asyncio.timeout_at(deadline):  # what is left of it: the engine stops on expiry
                supported = await self.engine.get_supported_tasks()
                await init_app_state(self.engine, self.state, namespace, supported)
            chat = getattr(self.state, "openai_serving_chat", None)
            if chat is not None:
                fast_stream.install(chat)
        except TimeoutError as err:
            await self._stack.aclose()
            if deadline is None or loop.time() < deadline:
                raise  # vLLM's own, not this deadline's
            raise TimeoutError(
                f"vLLM did not start within {timeout:g} s; its processes were stopped"
            ) from err
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
        """Shuts the engine down (its worker processes included: gone, and reaped, when this
        returns) and lets go of the engine and its serving objects, so that whatever still
        holds this model (a finished stream's frame, a traceback) no longer holds them."""
        try:
            await self._stack.aclose()
        finally:
            self.engine = None
            self.state = State()

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


# The vLLM modules a load imports, `start`'s own and those `init_app_state` imports inside it.
VLLM_MODULES = (
    "vllm.engine.arg_utils",
    "vllm.entrypoints.launchers.api_server.app_state",
    "vllm.entrypoints.launchers.cli_args",
    "vllm.usage.usage_lib",
    "vllm.utils.argparse_utils",
    "vllm.v1.engine.async_llm",
    "vllm.v1.metrics.loggers",
    "vllm.parser.metrics",
    "vllm.entrypoints.generate.api_router",
    "vllm.entrypoints.generate.structured_decisions.api_router",
    "vllm.entrypoints.pooling.factories",
    "vllm.entrypoints.scale_out.factories",
    "vllm.entrypoints.speech_to_text.factories",
)
_vllm_imported = False


def import_vllm() -> None:
    """Imports `VLLM_MODULES` (once; run in a worker thread, where nothing of a model is on the
    stack). Some of vLLM's modules keep the exception of an optional import they tried
    (`vllm.multimodal.media.audio._torchcodec_import_exc`), whose traceback keeps every frame
    that was on the stack while the module was first imported — and each frame its locals. First
    imported from `VllmModel.start`, that pinned the first loaded model (its engine, serving
    objects, tokenizer) in the process for good, unloaded or not. Imported here, the frames kept
    are this function's and the worker thread's, which hold no model."""
    global _vllm_imported
    if _vllm_imported:
        return
    for name in VLLM_MODULES:
        with contextlib.suppress(ImportError):  # optional parts of vLLM (speech-to-text, ...)
            importlib.import_module(name)
    _vllm_imported = True


def engine_processes(engine: Any) -> list[BaseProcess]:
    """The processes vLLM started for `engine` (an `AsyncLLM`): its engine core process(es),
    which start the workers. Read from vLLM's internals (its core client's engine manager);
    empty when they are not there (an in-process core, another vLLM)."""
    core = getattr(engine, "engine_core", None)
    manager = getattr(getattr(core, "resources", None), "engine_manager", None)
    processes = getattr(manager, "processes", None)
    return [p for p in processes or () if isinstance(p, BaseProcess)]


def engine_tasks(engine: Any) -> list[asyncio.Task[Any]]:
    """The asyncio tasks vLLM runs for `engine` on the event loop (its output handler, its core
    client's output-queue and stats tasks), from vLLM's internals; those not there are skipped."""
    resources = getattr(getattr(engine, "engine_core", None), "resources", None)
    found = [
        getattr(engine, "output_handler", None),
        getattr(resources, "output_queue_task", None),
        getattr(resources, "stats_update_task", None),
    ]
    return [task for task in found if isinstance(task, asyncio.Task)]


async def shutdown_engine(engine: Any) -> None:
    """Stops `engine` and waits until its processes are gone and reaped.

    Off the event loop: vLLM's `shutdown` is synchronous and waits for the engine core to exit
    (VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS, 5 s, then it kills the process tree); run on the loop
    it stalled every other model's streams, and a co-hosted gateway, for those seconds at each
    unload. vLLM kills a core that outlives the grace period but never waits for it, which left
    the process a zombie of the engine until the next load; joining it here reaps it."""
    processes = engine_processes(engine)
    try:
        await asyncio.to_thread(engine.shutdown)
    finally:
        await asyncio.to_thread(_reap, processes)
        # vLLM cancels its tasks on this loop (the output handler, the core client's output
        # queue) from the shutdown; until they have ended, their frames hold the engine.
        tasks = engine_tasks(engine)
        if tasks:
            await asyncio.wait(tasks, timeout=REAP_TIMEOUT_S)


def unbind_cpu_threads() -> None:
    """On vLLM's CPU platform, unless the operator set VLLM_CPU_OMP_THREADS_BIND or OMP_NUM_THREADS:
    vLLM's worker threads unbound ("nobind"), and as many as its auto binding would make
    (:func:`auto_binding_threads`). Set in this process's environment, which the processes vLLM
    starts inherit."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu() or CPU_THREADS_BIND in os.environ or OMP_THREADS in os.environ:
        return
    os.environ[OMP_THREADS] = str(auto_binding_threads())
    os.environ[CPU_THREADS_BIND] = "nobind"


def auto_binding_threads() -> int:
    """How many threads vLLM's auto binding gives a model's worker: one per physical core of the
    first NUMA node this process may use, less the core it reserves for the engine core; at least
    one. (vLLM's own CPU topology helpers; this process's CPUs where they are missing.)"""
    try:
        from vllm.utils import cpu_resource_utils

        cpus = cpu_resource_utils.get_allowed_cpu_list()
        nodes = cpu_resource_utils.get_visible_memory_node()
        cores = {cpu.physical_core for cpu in cpus if not nodes or cpu.numa_node == nodes[0]}
    except (ImportError, AttributeError, OSError):
        cores = set(os.sched_getaffinity(0))
    return max(1, len(cores) - 1)


async def construct_within(construct: Callable[[], Any], timeout: float | None) -> Any:
    """Runs `construct` (AsyncLLM's construction: it launches vLLM's engine core process, which
    starts the workers, and waits until they are up) in a worker thread, for at most `timeout`
    seconds (None: no limit).

    Past the limit, the processes started meanwhile (this process's new multiprocessing children,
    with everything below them) are killed: vLLM watches its engine core processes while it waits,
    so their end ends the wait with an error, and the thread returns. An engine made in the
    moment between is shut down. Then TimeoutError. Loads run one at a time (the manager's load
    lock), so every new child is this construction's."""
    before = {child.pid for child in multiprocessing.active_children()}
    future = asyncio.get_running_loop().run_in_executor(None, construct)
    done, _ = await asyncio.wait({future}, timeout=timeout)
    if done:
        return future.result()
    started = [child for child in multiprocessing.active_children() if child.pid not in before]
    log.error(
        "vLLM did not start within %g s; stopping the processes it started: %s",
        timeout,
        "; ".join(describe_tree(child.pid) for child in started) or "none",
    )
    await asyncio.to_thread(kill_trees, started)
    done, _ = await asyncio.wait({future}, timeout=REAP_TIMEOUT_S)
    if not done:
        # Still in vLLM's construction with nothing of it left to wait for: let it end (or not)
        # on its own; whatever it returns is stopped then.
        future.add_done_callback(_shut_down_late)
    elif not future.cancelled() and future.exception() is None:
        await shutdown_engine(future.result())
    raise TimeoutError(f"vLLM did not start within {timeout:g} s")


_late_shutdowns: set[asyncio.Task[None]] = set()  # held until done: the loop keeps tasks weakly


def _shut_down_late(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        task = asyncio.ensure_future(shutdown_engine(future.result()))
        _late_shutdowns.add(task)
        task.add_done_callback(_late_shutdowns.discard)


def describe_tree(pid: int) -> str:
    """`pid` and its descendants as `pid name (status)`, for the log: where a stuck start stood."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return f"{pid} (gone)"
    parts = []
    for process in tree:
        with contextlib.suppress(psutil.Error):
            parts.append(f"{process.pid} {process.name()} ({process.status()})")
    return ", ".join(parts)


def kill_trees(processes: list[BaseProcess]) -> None:
    """Kills each of `processes` and everything below it (SIGKILL: a stuck start answers nothing
    else), then reaps them; their children, orphaned, are reaped by init."""
    import psutil

    for process in processes:
        below: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            below = psutil.Process(process.pid).children(recursive=True)
        for victim in below:
            with contextlib.suppress(psutil.Error):
                victim.kill()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    _reap(processes)


def _reap(processes: list[BaseProcess], timeout: float = REAP_TIMEOUT_S) -> None:
    """Waits for each of `processes` to exit (SIGKILL after `timeout`) and reaps it."""
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            log.warning("engine process %s outlived its shutdown; killing it", process.pid)
            process.kill()
            process.join(timeout)


def sse_payloads(text: str) -> list[str]:
    """The JSON payloads of one of vLLM's SSE strings (`data: {...}`), `[DONE]` dropped."""
    return [line[6:] for line in text.split("\n") if line.startswith("data: ") and line[6:] != "[DONE]"]
