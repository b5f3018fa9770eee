"""Engine benchmark: the mesh (through the gateway) against `vllm serve` and offline `LLM.generate`.

    python -m tests.performance.bench_engine [--quick] [--concurrency 1 16 64] [--json OUT]

One run, one machine, one after the other, the same model directory (the tiny model the mesh
builds) and equivalent engine settings (float32, max_model_len 2048, the same KV-cache bytes):

(a) the mesh (`budrt up` on free ports), driven through its gateway with vLLM's own load tool
    (`vllm bench serve`: `vllm.benchmarks.serve`), backend openai-chat, random dataset with fixed
    input/output lengths and --ignore-eos, at each concurrency level;
(b) `python -m vllm.entrypoints.openai.api_server` with the same model and settings, same load;
(c) offline `LLM.chat` on the same prompts (all at once): the ceiling no server can beat.

The servers are measured one at a time in rounds whose order alternates (mesh then vllm serve,
then vllm serve then mesh, ...; `--rounds`), each level after one unmeasured wave at its
concurrency, so that a shared machine's slow drifts hit both alike; rows are the means over the
rounds. Prints request throughput, output tokens/s, TTFT p50/p99 and TPOT p50/p99 per target and
level, and the ratios mesh/vllm-serve and mesh/offline. It measures; it asserts nothing about
timings. The load tool shares the machine's cores with the servers, so quote ratios from one run.

    python -m tests.performance.bench_engine --quick --profile-mesh --profile-dir DIR

instead runs only the mesh at the highest level with cProfile switched on (by signal, after the
warm-up) in the gateway and engine processes, and prints their top costs (DIR/*.prof keep them).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.mesh import free_port
from tests.support.procs import service_pids, tree_cpu_seconds

REPO = Path(__file__).resolve().parents[2]
GiB = 1024**3
MODEL_NAME = "tiny-llama"

METRICS = (
    "request_throughput",
    "output_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "completed",
    "failed",
    "duration",
)


# ---- the load tool ------------------------------------------------------------------------------
def load_tool_args(
    opts: argparse.Namespace,
    base_url: str,
    model_dir: str,
    concurrency: int,
    num_prompts: int,
    warmups: int = 0,
) -> argparse.Namespace:
    from vllm.benchmarks.serve import add_cli_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    return parser.parse_args(
        [
            "--backend",
            "openai-chat",
            "--base-url",
            base_url,
            "--endpoint",
            "/v1/chat/completions",
            "--model",
            MODEL_NAME,
            "--served-model-name",
            MODEL_NAME,
            "--tokenizer",
            model_dir,
            "--dataset-name",
            "random",
            "--random-input-len",
            str(opts.input_len),
            "--random-output-len",
            str(opts.output_len),
            "--num-prompts",
            str(num_prompts),
            "--max-concurrency",
            str(concurrency),
            "--ignore-eos",
            "--temperature",
            "0",
            "--seed",
            str(opts.seed),
            "--percentile-metrics",
            "ttft,tpot,itl,e2el",
            "--metric-percentiles",
            "50,99",
            "--num-warmups",
            str(warmups),
            "--disable-tqdm",
            "--ready-check-timeout-sec",
            "120",
        ]
    )


def run_load(
    opts: argparse.Namespace,
    base_url: str,
    api_key: str | None,
    model_dir: str,
    concurrency: int,
    num_prompts: int,
    log: Path,
    warmups: int = 0,
) -> dict[str, Any]:
    """One `vllm bench serve` run; its chatter goes to `log`."""
    from vllm.benchmarks.serve import main as bench_main

    args = load_tool_args(opts, base_url, model_dir, concurrency, num_prompts, warmups)
    saved_key = os.environ.pop("OPENAI_API_KEY", None)
    if api_key:
        os.environ["OPENAI_API_KEY"] = api_key  # the openai-chat backend reads it from here
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            result = bench_main(args)
    finally:
        os.environ.pop("OPENAI_API_KEY", None)
        if saved_key is not None:
            os.environ["OPENAI_API_KEY"] = saved_key
        with open(log, "a") as f:
            f.write(f"\n===== {base_url} concurrency={concurrency} prompts={num_prompts}\n{out.getvalue()}")
    return {k: result.get(k) for k in METRICS}


def levels(opts: argparse.Namespace) -> list[tuple[int, int]]:
    """(concurrency, number of prompts) per level: a few waves of requests per level."""
    waves = 2 if opts.quick else 4
    return [(c, opts.num_prompts or max(8 if opts.quick else 32, waves * c)) for c in opts.concurrency]


@dataclass
class Server:
    """A started target: where to send load and which processes serve it."""

    label: str
    base_url: str
    api_key: str | None
    pids: dict[str, int]  # the serving front's processes, by name


def measure_level(
    opts: argparse.Namespace, server: Server, model_dir: str, concurrency: int, num_prompts: int, log: Path
) -> dict[str, Any]:
    """One level against one server, plus the CPU time its processes used meanwhile: the serving
    front (HTTP, OpenAI layer) and their descendants (vLLM's EngineCore and Worker, the same in
    both servers). CPU seconds per request hold up on a busy machine, where latencies do not."""
    # One unmeasured wave at this concurrency first: vLLM's CPU backend compiles for batch
    # shapes it has not seen yet (seconds-long stalls that otherwise land in whichever target
    # meets them first).
    run_load(opts, server.base_url, server.api_key, model_dir, concurrency, concurrency, log)
    before = {name: tree_cpu_seconds(pid) for name, pid in server.pids.items()}
    row = {
        "target": server.label,
        "concurrency": concurrency,
        "num_prompts": num_prompts,
        **run_load(opts, server.base_url, server.api_key, model_dir, concurrency, num_prompts, log),
    }
    after = {name: tree_cpu_seconds(pid) for name, pid in server.pids.items()}
    completed = row.get("completed") or num_prompts
    per_req = {
        name: (
            (after[name][0] - before[name][0]) * 1000 / completed,
            (after[name][1] - before[name][1]) * 1000 / completed,
        )
        for name in server.pids
    }
    row["front_cpu_ms_per_req"] = sum(front for front, _ in per_req.values())
    row["core_cpu_ms_per_req"] = sum(core for _, core in per_req.values())
    row["front_cpu_ms_per_req_by_process"] = {name: front for name, (front, _) in per_req.items()}
    return row


def run_rounds(
    opts: argparse.Namespace, targets: dict[str, Callable[[], Any]], model_dir: str, log: Path
) -> list[dict[str, Any]]:
    """Every level against every target in `opts.rounds` rounds whose target order alternates
    (A B, B A, A B, ...), one server up at a time (an idle vLLM server still takes CPU from the
    one measured): slow drifts of a shared machine then hit every target alike instead of
    whichever ran last. Back-to-back rounds of one target share its start. One row per target
    and level: the mean over the rounds (per-round throughputs in `rounds_req_s`)."""
    labels = list(targets)
    schedule = [label for r in range(opts.rounds) for label in (labels if r % 2 == 0 else labels[::-1])]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    i = 0
    while i < len(schedule):
        label = schedule[i]
        repeat = 1
        while i + repeat < len(schedule) and schedule[i + repeat] == label:
            repeat += 1
        with targets[label]() as server:
            run_load(opts, server.base_url, server.api_key, model_dir, 8, 16, log)  # lazy initialisation
            for _ in range(repeat):
                round_ = len(runs.get((label, levels(opts)[0][0]), [])) + 1  # rounds this target has had
                for concurrency, num_prompts in levels(opts):
                    print(
                        f"[bench] {label}: concurrency {concurrency}, {num_prompts} prompts, "
                        f"round {round_}/{opts.rounds}",
                        flush=True,
                    )
                    runs.setdefault((label, concurrency), []).append(
                        measure_level(opts, server, model_dir, concurrency, num_prompts, log)
                    )
        i += repeat
    return [_mean_row(runs[(label, concurrency)]) for label in labels for concurrency, _ in levels(opts)]


def _mean_row(measured: list[dict[str, Any]]) -> dict[str, Any]:
    row = dict(measured[0])
    for key, value in measured[0].items():
        if isinstance(value, (int, float)) and key not in ("concurrency", "num_prompts"):
            values = [m[key] for m in measured if isinstance(m.get(key), (int, float))]
            row[key] = sum(values) / len(values)
    split = measured[0].get("front_cpu_ms_per_req_by_process") or {}
    row["front_cpu_ms_per_req_by_process"] = {
        name: sum(m["front_cpu_ms_per_req_by_process"][name] for m in measured) / len(measured)
        for name in split
    }
    row["rounds_req_s"] = [m.get("request_throughput") for m in measured]
    return row


# ---- targets ------------------------------------------------------------------------------------
@contextlib.contextmanager
def mesh_server(opts: argparse.Namespace, workdir: Path, split: bool = False) -> Iterator[tuple[Server, Any]]:
    """The mesh as `budrt up` runs it: the engine inside the gateway process, or (`split`, target
    mesh-split) in a process of its own behind a loopback gRPC hop."""
    sys.path.insert(0, str(REPO))
    from tests.support.mesh import start_mesh

    label = "mesh-split" if split else "mesh"
    print(f"[bench] starting the mesh (budrt up{', engine in its own process' if split else ''})", flush=True)
    started = time.monotonic()
    # The chat model alone, as `vllm serve` runs it: no default embedding model beside it.
    extra_env = {
        "BUD_KV_CACHE_SPACE_GIB": str(opts.kv_cache_gib),
        "BUD_MAX_MODEL_LEN": str(opts.max_model_len),
        "BUD_DEFAULT_EMBEDDING_MODEL_NAME": "",
        "BUD_DEFAULT_IMAGE_MODEL_NAME": "",
        "BUD_ENGINE_IN_GATEWAY": str(not split).lower(),
        "BUD_DEFAULT_KEY_REQUESTS_PER_MINUTE": "0",  # the load is one key's: no default rate limit
    }
    if opts.profile_mesh:
        extra_env.update(profile_env(Path(opts.profile_dir).resolve()))
    data = workdir / label
    n = 1
    while data.exists():  # a fresh mesh per start (its first start prints the API key)
        n += 1
        data = workdir / f"{label}-{n}"
    mesh = start_mesh(data, extra_env=extra_env)
    print(f"[bench] {label} up in {time.monotonic() - started:.0f}s", flush=True)
    try:
        # The mesh's serving front: the gateway and the engine (its vLLM serving objects), one
        # process or two (engine_in_gateway), and the app (usage records arrive there).
        yield Server(label, mesh.http_url, mesh.api_key, service_pids(mesh.process.pid)), mesh
    finally:
        mesh.stop()


@contextlib.contextmanager
def _mesh_only(opts: argparse.Namespace, workdir: Path, split: bool) -> Iterator[Server]:
    with mesh_server(opts, workdir, split) as (server, _):
        yield server


@contextlib.contextmanager
def vllm_serve_server(opts: argparse.Namespace, model_dir: Path, workdir: Path) -> Iterator[Server]:
    """`vllm serve` (its OpenAI API server module) on the same model directory and settings."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        MODEL_NAME,
        "--dtype",
        "float32",
        "--max-model-len",
        str(opts.max_model_len),
        "--kv-cache-memory-bytes",
        str(int(opts.kv_cache_gib * GiB)),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    print(f"[bench] starting vllm serve: {' '.join(cmd[1:])}", flush=True)
    server_log = open(workdir / "vllm-serve.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        cmd, cwd=workdir, env=child_env(), stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        started = time.monotonic()
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"vllm serve exited with {process.returncode}; see {workdir / 'vllm-serve.log'}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - started > 900:
                raise RuntimeError("vllm serve not ready after 900s")
            time.sleep(1)
        print(f"[bench] vllm serve up in {time.monotonic() - started:.0f}s", flush=True)
        yield Server("vllm-serve", f"http://127.0.0.1:{port}", None, {"api_server": process.pid})
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        server_log.close()


def sample_prompts(opts: argparse.Namespace, model_dir: Path, num_prompts: int) -> list[str]:
    """The prompts the load tool sends at a level of `num_prompts` (same dataset code and seed)."""
    import random

    import numpy as np
    from vllm.benchmarks.datasets import get_samples
    from vllm.tokenizers import get_tokenizer

    args = load_tool_args(opts, "http://unused", str(model_dir), 1, num_prompts)
    random.seed(args.seed)
    np.random.seed(args.seed)
    return [r.prompt for r in get_samples(args, get_tokenizer(str(model_dir)))]


def bench_offline(opts: argparse.Namespace, model_dir: Path, workdir: Path) -> dict[str, Any]:
    num_prompts = max(n for _, n in levels(opts))
    spec = {
        "model": str(model_dir),
        "max_model_len": opts.max_model_len,
        "kv_cache_bytes": int(opts.kv_cache_gib * GiB),
        "output_len": opts.output_len,
        "prompts": sample_prompts(opts, model_dir, num_prompts),
    }
    spec_path, out_path = workdir / "offline.in.json", workdir / "offline.out.json"
    spec_path.write_text(json.dumps(spec))
    print(f"[bench] offline LLM.chat on {num_prompts} prompts", flush=True)
    with open(workdir / "offline.log", "wb") as log:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.performance.bench_engine",
                "--offline-worker",
                str(spec_path),
                str(out_path),
            ],
            cwd=REPO,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return json.loads(out_path.read_text())


def offline_worker(spec_path: str, out_path: str) -> None:
    """Runs in its own process: offline LLM.chat throughput on the given prompts."""
    from vllm import LLM, SamplingParams

    spec = json.loads(Path(spec_path).read_text())
    llm = LLM(
        model=spec["model"],
        dtype="float32",
        max_model_len=spec["max_model_len"],
        kv_cache_memory_bytes=spec["kv_cache_bytes"],
    )
    conversations = [[{"role": "user", "content": [{"type": "text", "text": p}]}] for p in spec["prompts"]]
    params = SamplingParams(temperature=0, max_tokens=spec["output_len"], ignore_eos=True)
    llm.chat(conversations[:16], params, use_tqdm=False)  # warm-up
    started = time.perf_counter()
    outputs = llm.chat(conversations, params, use_tqdm=False)
    elapsed = time.perf_counter() - started
    output_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    Path(out_path).write_text(
        json.dumps(
            {
                "target": "offline",
                "concurrency": len(conversations),
                "num_prompts": len(conversations),
                "request_throughput": len(conversations) / elapsed,
                "output_throughput": output_tokens / elapsed,
                "duration": elapsed,
                "completed": len(outputs),
                "failed": 0,
                "prompt_tokens": sum(len(o.prompt_token_ids or []) for o in outputs),
                "output_tokens": output_tokens,
            }
        )
    )
    llm.llm_engine.engine_core.shutdown()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Otherwise vLLM's CPU platform overrides the per-engine KV bytes (the mesh passes them as
    # --kv-cache-memory-bytes, as vllm serve does here).
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ---- profiling ----------------------------------------------------------------------------------
# Installed into the mesh's processes through PYTHONPATH (only the processes serving the gateway
# or the engine act on it): SIGUSR1 starts cProfile on the main thread (the event loop), SIGUSR2 stops it and writes
# the stats, so start-up and warm-up stay out of the profile.
PROFILE_HOOK = """
import os, sys
_names = sys.orig_argv[sys.orig_argv.index("serve") + 1:] if "serve" in sys.orig_argv else []
if os.environ.get("BENCH_PROFILE_DIR") and {"gateway", "engine"} & set(_names):
    import cProfile, signal
    _profile = cProfile.Profile()
    _path = os.path.join(os.environ["BENCH_PROFILE_DIR"], "+".join(_names) + ".prof")
    def _start(*_):
        _profile.enable()
    def _stop(*_):
        _profile.disable()
        _profile.dump_stats(_path)
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
"""


def profile_env(profile_dir: Path) -> dict[str, str]:
    hook = profile_dir / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(PROFILE_HOOK)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "BENCH_PROFILE_DIR": str(profile_dir)}


def profile_mesh(opts: argparse.Namespace, mesh: Any, model_dir: Path, log: Path) -> list[dict[str, Any]]:
    """The highest level (4x the prompts) with cProfile on in the gateway and engine processes;
    prints where their event loops spend the time. cProfile slows Python code down, so this
    run's numbers are not comparable with the others."""
    import pstats

    profile_dir = Path(opts.profile_dir).resolve()
    run_load(opts, mesh.http_url, mesh.api_key, str(model_dir), 8, 16, log)
    pids = {
        label: pid
        for label, pid in service_pids(mesh.process.pid).items()
        if {"gateway", "engine"} & set(label.split("+"))
    }
    concurrency, num_prompts = levels(opts)[-1]
    num_prompts *= 4
    for pid in pids.values():
        os.kill(pid, signal.SIGUSR1)
    row = {
        "target": "mesh+cProf",
        "concurrency": concurrency,
        "num_prompts": num_prompts,
        **run_load(opts, mesh.http_url, mesh.api_key, str(model_dir), concurrency, num_prompts, log),
    }
    for pid in pids.values():
        os.kill(pid, signal.SIGUSR2)
    time.sleep(3)
    for name in pids:
        path = profile_dir / f"{name}.prof"
        print(f"\n[bench] ===== {name}: {path} (run {row['duration']:.1f}s) =====", flush=True)
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
    return [row]


# ---- report -------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def report(rows: list[dict[str, Any]]) -> str:
    lines = []
    header = (
        f"{'target':<12} {'conc':>5} {'reqs':>5} {'req/s':>7} {'out tok/s':>9} {'TTFT p50':>9} {'TTFT p99':>9} "
        f"{'TPOT p50':>9} {'TPOT p99':>9} {'failed':>6} {'front CPU':>9} {'core CPU':>9}"
    )
    lines += [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['target']:<12} {r['concurrency']:>5} {r['num_prompts']:>5} {_fmt(r.get('request_throughput'), 2):>7} "
            f"{_fmt(r.get('output_throughput')):>9} {_fmt(r.get('median_ttft_ms')):>9} {_fmt(r.get('p99_ttft_ms')):>9} "
            f"{_fmt(r.get('median_tpot_ms'), 2):>9} {_fmt(r.get('p99_tpot_ms'), 2):>9} {_fmt(r.get('failed')):>6} "
            f"{_fmt(r.get('front_cpu_ms_per_req')):>9} {_fmt(r.get('core_cpu_ms_per_req')):>9}"
        )
    lines.append(
        "(times in ms; TTFT = time to first token, TPOT = time per output token after the first;\n"
        " front/core CPU = CPU ms per request of the serving processes (mesh: gateway+engine + app;\n"
        " vllm serve: its API server) / of vLLM's EngineCore+Worker under them)"
    )
    for r in rows:
        split = r.get("front_cpu_ms_per_req_by_process") or {}
        if len(split) > 1:
            lines.append(
                f"{r['target']} conc {r['concurrency']}: front CPU ms/request by process: "
                + ", ".join(f"{name} {value:.1f}" for name, value in sorted(split.items()))
            )
    by = {(r["target"], r["concurrency"]): r for r in rows}
    offline = next((r for r in rows if r["target"] == "offline"), None)
    ratios = []
    for (target, concurrency), mesh in by.items():
        if target not in ("mesh", "mesh-split"):
            continue
        serve = by.get(("vllm-serve", concurrency))
        parts = [f"conc {concurrency:>3}:"]
        if serve:
            parts.append(
                f"{target}/vllm-serve "
                + ", ".join(
                    f"{label} {mesh[k] / serve[k]:.2f}"
                    for label, k in (
                        ("req/s", "request_throughput"),
                        ("out tok/s", "output_throughput"),
                        ("TTFT p50", "median_ttft_ms"),
                        ("TTFT p99", "p99_ttft_ms"),
                        ("TPOT p50", "median_tpot_ms"),
                        ("TPOT p99", "p99_tpot_ms"),
                        ("front CPU/req", "front_cpu_ms_per_req"),
                    )
                    if mesh.get(k) and serve.get(k)
                )
            )
        if offline:
            parts.append(
                f"| {target}/offline out tok/s {mesh['output_throughput'] / offline['output_throughput']:.2f}"
            )
            if serve:
                parts.append(
                    f"(vllm-serve/offline {serve['output_throughput'] / offline['output_throughput']:.2f})"
                )
        ratios.append(" ".join(parts))
    if ratios:
        lines += [
            "",
            "ratios (throughput: higher is better for the mesh; latency: lower is better):",
            *ratios,
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.performance.bench_engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer prompts per level (about 2 waves)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--num-prompts", type=int, default=0, help="prompts per level (default: a few waves)")
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--kv-cache-gib", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="rounds per level, target order alternating (default 2; 3 without --quick)",
    )
    parser.add_argument(
        "--targets",
        default="mesh,vllm-serve,offline",
        help="comma-separated subset of mesh,mesh-split,vllm-serve,offline "
        "(mesh-split: the engine in its own process, not in the gateway's)",
    )
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--workdir", help="keep logs and the model here (default: a temp dir)")
    parser.add_argument(
        "--profile-mesh",
        action="store_true",
        help="instead of the levels, run the highest level with cProfile in gateway and engine",
    )
    parser.add_argument("--profile-dir", default=".", help="where --profile-mesh writes its profiles")
    parser.add_argument("--offline-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    opts.rounds = opts.rounds or (2 if opts.quick else 3)
    if opts.offline_worker:
        offline_worker(*opts.offline_worker)
        return 0
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    targets = {"mesh"} if opts.profile_mesh else set(opts.targets.split(","))
    workdir = Path(opts.workdir or tempfile.mkdtemp(prefix="bench-engine-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "load-tool.log"
    print(f"[bench] logs in {workdir}", flush=True)
    rows: list[dict[str, Any]] = []
    from engine.builtin_models.tiny_llama import build_tiny_model

    model_dir = build_tiny_model(workdir / "models" / "tiny-llama")  # what the mesh builds, deterministically
    if opts.profile_mesh:
        with mesh_server(opts, workdir) as (_, mesh):
            rows += profile_mesh(opts, mesh, model_dir, log)
    else:
        servers: dict[str, Callable[[], Any]] = {}
        for label in ("mesh", "mesh-split"):
            if label in targets:
                servers[label] = functools.partial(_mesh_only, opts, workdir, label == "mesh-split")
        if "vllm-serve" in targets:
            servers["vllm-serve"] = functools.partial(vllm_serve_server, opts, model_dir, workdir)
        if servers:
            rows += run_rounds(opts, servers, str(model_dir), log)
    if "offline" in targets:
        rows.append(bench_offline(opts, model_dir, workdir))
    print("\n" + report(rows), flush=True)
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
