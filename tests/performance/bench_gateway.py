"""Gateway overhead benchmark: open-loop load against the Bud gateway, the upstream it would add
to, and LiteLLM's proxy, at several constant arrival rates.

    python -m tests.performance.bench_gateway                      # --rates 100,500,1000 --duration 10
    python -m tests.performance.bench_gateway --quick              # 3 s a rate
    python -m tests.performance.bench_gateway --targets direct,bud --profile

Targets, each a separate process on loopback (plus this one, the load generator):

- direct:  `instant_openai_upstream` (minimal ASGI app, canned chat completion) called directly —
           the baseline to subtract.
- bud:     the Bud gateway's HTTP face (`build_transcoder` over `OpenAiServicer`, uvicorn with
           uvloop + httptools, access log off, as `gateway/server.py` configures it; routing
           tables with one key and one deployment; usage accounting on, flushed to a sink) in
           front of the instant engine (`tests/support/instant_engine.py`) over gRPC.
- bud-obs: the same gateway with everything an operator turns on: tracing exported over OTLP to
           a local receiver (a process of its own, `--role otlp`), its JSON logs at INFO (the
           per-request line) into its log file, and `/metrics` served (scraped once a second
           by the load generator's process). `bud` has tracing off (nothing installed) and logs
           at WARNING; both count the Prometheus series, which are always on.
- litellm: LiteLLM's proxy (`--num_workers 1`, its own venv under .bench/litellm-venv, installed
           on first run) with model "chat" → `openai/instant` at the instant upstream.

Every request is `POST /v1/chat/completions`, non-streaming, an 80-byte body. Latency is from each
request's scheduled instant (see loadgen.py: no coordinated omission); timeouts are errors.
Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.mesh import free_port
from tests.support.procs import tree_cpu_seconds

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / ".bench"
LITELLM_VENV = BENCH_DIR / "litellm-venv"
LOG_DIR = BENCH_DIR / "logs"
MODEL = "chat"  # what the client asks for, on every target
ENGINE_MODEL = "m1"  # the instant engine's served model name
BODY = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 16},
    separators=(",", ":"),
).encode()

ENGINE_CHAT_METHOD = "/bud.engine.v1.EngineService/CreateChatCompletion"  # the hop target's call

WARMUP_RATE = 20.0  # requests/s; LiteLLM saturates near 40 on the 2-core machines
TARGET_P99_MS = 1.5  # at 1000 rps, 0 errors
TARGET_LITELLM_RATIO = 5.0


# ==== the server processes this script starts (hidden --role entry points) ======================
def _routing_snapshot(api_key: str, hash_secret: str, engine_address: str) -> Any:
    from auth import keys
    from bud.auth.v1 import routing_pb2

    prefix = keys.key_prefix(api_key)
    snapshot = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    snapshot.upsert_projects.add(id="p1", name="bench")
    snapshot.upsert_keys.add(
        id="k1", prefix=prefix, key_hash=keys.hash_key(api_key, hash_secret), project_id="p1"
    )
    dep = snapshot.upsert_deployments.add(id="d1", project_id="p1", name=MODEL, ready=True)
    dep.endpoints.add(address=engine_address, served_model_name=ENGINE_MODEL)
    return snapshot


async def _serve_gateway(port: int, engine_address: str, usage_address: str) -> None:
    """The gateway's HTTP face exactly as gateway/server.py builds it, minus the app: routing
    tables applied from a fixed snapshot instead of the WatchRouting stream."""
    import uvicorn

    from gateway.engines import EnginePool
    from gateway.openai_service import OpenAiServicer
    from gateway.ratelimit import MemoryRateLimiter
    from gateway.server import build_transcoder
    from gateway.tables import RoutingTables
    from gateway.usage import UsageRecorder

    hash_secret = os.environ["BENCH_HASH_SECRET"]
    metrics_server = None
    if os.environ.get("BENCH_OTLP"):  # the bud-obs target: tracing, INFO logs and /metrics on
        from budrt import tracing
        from budrt.logs import setup_logging
        from budrt.metrics import MetricsServer

        setup_logging("INFO", service="gateway")
        tracing.configure(
            os.environ["BENCH_OTLP"], "gateway", sample_ratio=float(os.environ.get("BENCH_TRACE_RATIO", "1"))
        )
        metrics_server = MetricsServer(f"127.0.0.1:{os.environ['BENCH_METRICS_PORT']}")
        await metrics_server.start()
    tables = RoutingTables()
    tables.apply(_routing_snapshot(os.environ["BENCH_API_KEY"], hash_secret, engine_address))
    engines = EnginePool()
    usage = UsageRecorder(usage_address) if usage_address else None
    # The load is one key's: measured with its limits checked, but no default 100 a minute.
    servicer = OpenAiServicer(
        tables, engines, hash_secret, usage, MemoryRateLimiter(), default_key_requests_per_minute=0
    )
    config = uvicorn.Config(
        build_transcoder(servicer, tables),
        host="127.0.0.1",
        port=port,
        loop="none",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_keep_alive=30,
        backlog=4096,
    )
    server = uvicorn.Server(config)  # its own SIGTERM/SIGINT handlers stop it
    background = [
        asyncio.create_task(
            engines.run_checks(lambda: [e for d in tables.deployments.values() for e in d.endpoints])
        )
    ]
    if usage is not None:
        background.append(asyncio.create_task(usage.run()))
    try:
        await server.serve()
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await engines.close()
        if metrics_server is not None:
            await metrics_server.stop()


def _serve_otlp(port: int) -> None:
    """An OTLP/gRPC trace sink (what a collector's receiver does, minus the pipeline): accepts
    every export and counts the spans, so the gateway's exporter does its real work."""
    import threading
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Sink(trace_service_pb2_grpc.TraceServiceServicer):
        spans = 0

        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
            Sink.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    print(f"spans received: {Sink.spans}", flush=True)
    server.stop(0)


async def _serve_engine(port: int) -> None:
    """The instant engine, plus a UsageService sink standing in for the app."""
    from bud.app.v1 import usage_pb2, usage_pb2_grpc
    from budrt.grpc_server import ServiceBinding, install_stop_signals
    from tests.support.instant_engine import InstantEngine, serve_instant_engine

    class UsageSink(usage_pb2_grpc.UsageServiceServicer):
        async def RecordUsage(self, request: Any, context: Any) -> Any:
            return usage_pb2.RecordUsageResponse(stored=len(request.records))

    stop = asyncio.Event()
    install_stop_signals(stop)
    server = await serve_instant_engine(
        f"127.0.0.1:{port}",
        InstantEngine([ENGINE_MODEL]),
        extra=[
            ServiceBinding(
                UsageSink(),
                usage_pb2_grpc.add_UsageServiceServicer_to_server,
                usage_pb2.DESCRIPTOR.services_by_name["UsageService"],
            ),
        ],
    )
    await stop.wait()
    await server.stop(1)


def _engine_request() -> bytes:
    """What the gateway sends the instant engine for BODY (decoded as the transcoder does)."""
    from bud.openai.v1 import chat_pb2
    from budrt.json_face import from_json

    request = from_json(BODY, chat_pb2.ChatCompletionRequest(), lenient=True)
    request.model = ENGINE_MODEL
    return request.SerializeToString()


# ==== process management ============================================================================
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its descendants (LiteLLM may fork)."""
        if self.popen.poll() is not None:
            return float("nan")
        return sum(tree_cpu_seconds(self.popen.pid))

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    with open(log, "wb") as out:  # a file, never a pipe nobody drains
        popen = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    return Proc(name, popen, log)


def post_once(port: int, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=BODY,
        method="POST",
        headers={"content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_ready(proc: Proc, port: int, headers: dict[str, str], deadline_s: float) -> None:
    """Until a real chat completion through the target answers 200 with the canned reply."""
    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise SystemExit(f"{proc.name} exited ({proc.popen.returncode}); see {proc.log}")
        try:
            status, body = post_once(port, headers)
            if status == 200 and b'"ok"' in body:
                return
            last = (status, body[:300])
        except OSError as err:
            last = err
        time.sleep(0.3)
    raise SystemExit(f"{proc.name} not ready after {deadline_s:.0f}s (last: {last}); see {proc.log}")


def ensure_litellm() -> Path:
    """.bench/litellm-venv with litellm[proxy] (and py-spy, for --profile), made on first run."""
    litellm = LITELLM_VENV / "bin" / "litellm"
    if litellm.exists():
        return litellm
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    log = BENCH_DIR / "litellm-install.log"
    print(
        f"creating {LITELLM_VENV.relative_to(REPO)} and installing litellm[proxy] (first run; log: {log})",
        flush=True,
    )
    with open(log, "wb") as out:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, stdout=out, stderr=out)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "litellm[proxy]", "py-spy"],
            check=True,
            stdout=out,
            stderr=out,
        )
    return litellm


def litellm_config(upstream_port: int, master_key: str) -> Path:
    """Model "chat" → the instant upstream; a master key (LiteLLM ≥ 1.10x refuses to start without
    one), which clients send as their bearer token, like Bud's project key."""
    path = BENCH_DIR / "litellm-config.yaml"
    path.write_text(
        "general_settings:\n"
        f"  master_key: {master_key}\n"
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        "      model: openai/instant\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: sk-instant\n"
    )
    return path


def settle(procs: list[Proc], max_wait: float = 90.0) -> float:
    """Waits until the servers are idle (below 5 % of a core over 0.5 s), e.g. LiteLLM draining an
    overload; returns the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < max_wait:
        before = sum(p.cpu_seconds() for p in procs)
        time.sleep(0.5)
        if sum(p.cpu_seconds() for p in procs) - before < 0.025:
            break
    return time.monotonic() - began


# ==== measuring =====================================================================================
@dataclass
class Run:
    target: str
    rate: float
    duration: float
    scheduled: int
    completed: int
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p99_with_errors_ms: float  # errors counted as the timeout: what a client waiting on them sees
    p999_ms: float
    max_ms: float
    send_lag_p99_ms: float
    server_cpu_s: float  # the front process: gateway, LiteLLM, or the upstream itself for direct
    backend_cpu_s: float  # what it calls: engine (bud) or upstream (litellm); 0 for direct
    connections: int
    settle_s: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_pct(self) -> float:
        return 100.0 * self.error_count / self.scheduled if self.scheduled else 0.0


@dataclass
class Target:
    key: str
    label: str
    port: int
    headers: dict[str, str]
    front: Proc
    backend: Proc | None


def measure(
    target: Target,
    rate: float,
    duration: float,
    timeout: float,
    warmup: float,
    all_procs: list[Proc],
    connections: int = 256,
) -> Run:
    import uvloop

    from tests.performance.loadgen import grpc_open_loop, http_request, open_loop

    if target.key == "hop":  # a bare gRPC call to the instant engine: no HTTP, no gateway
        engine_request = _engine_request()

        def load(load_rate: float, seconds: float) -> Any:
            return grpc_open_loop(
                f"127.0.0.1:{target.port}", ENGINE_CHAT_METHOD, engine_request, load_rate, seconds, timeout
            )
    else:
        payload = http_request("127.0.0.1", target.port, "/v1/chat/completions", BODY, target.headers)

        def load(load_rate: float, seconds: float) -> Any:
            return open_loop("127.0.0.1", target.port, payload, load_rate, seconds, timeout, connections)

    settled = settle(all_procs)
    if warmup > 0:  # warm code paths at a rate every target sustains
        uvloop.run(load(min(rate, WARMUP_RATE), warmup))
        settled += settle(all_procs)
    front0 = target.front.cpu_seconds()
    back0 = target.backend.cpu_seconds() if target.backend else 0.0
    result = uvloop.run(load(rate, duration))
    front1 = target.front.cpu_seconds()
    back1 = target.backend.cpu_seconds() if target.backend else 0.0
    ms = 1000.0
    return Run(
        target=target.key,
        rate=rate,
        duration=duration,
        scheduled=result.scheduled,
        completed=result.completed,
        errors=dict(result.errors),
        p50_ms=result.percentile(50) * ms,
        p90_ms=result.percentile(90) * ms,
        p99_ms=result.percentile(99) * ms,
        p99_with_errors_ms=result.percentile_with_errors(99, timeout) * ms,
        p999_ms=result.percentile(99.9) * ms,
        max_ms=max(result.ok_latencies, default=float("nan")) * ms,
        send_lag_p99_ms=result.percentile(99, result.send_lags) * ms,
        server_cpu_s=front1 - front0,
        backend_cpu_s=back1 - back0,
        connections=result.max_connections_used,
        settle_s=settled,
    )


# ==== profiling =====================================================================================
def profile_gateway(
    target: Target,
    rate: float,
    duration: float,
    timeout: float,
    all_procs: list[Proc],
    native: bool = False,
    top: int = 25,
) -> Path:
    """Runs the Bud target once more under py-spy (sampling; with C frames when `native`, which
    pauses the gateway at each sample) and prints where its CPU goes, per function."""
    import uvloop

    from tests.performance.loadgen import http_request, open_loop

    py_spy = LITELLM_VENV / "bin" / "py-spy"
    if not py_spy.exists():
        ensure_litellm()
    out = BENCH_DIR / f"profile-bud-{int(rate)}rps{'-native' if native else ''}.txt"
    settle(all_procs)
    # Native stacks need the process paused per sample (py-spy cannot do them --nonblocking): sample less.
    mode = ["--native", "--rate", "200"] if native else ["--nonblocking", "--rate", "1000"]
    spy = subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(target.front.popen.pid),
            *mode,
            "--duration",
            str(int(duration + 1)),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(LOG_DIR / "py-spy.log", "wb"),
    )
    time.sleep(1.0)  # py-spy attaches
    payload = http_request("127.0.0.1", target.port, "/v1/chat/completions", BODY, target.headers)
    uvloop.run(open_loop("127.0.0.1", target.port, payload, rate, duration, timeout))
    spy.wait(60)
    if not out.exists():
        raise SystemExit(f"py-spy wrote no profile; see {LOG_DIR / 'py-spy.log'}")
    print_profile(out, top)
    return out


_LINE = re.compile(r":\d+\)$")
_IDLE = (
    "epoll_wait ",
    "epoll_pwait ",
    "poll ",
    "pthread_cond_timedwait",
    "pthread_cond_wait",
    "__futex_abstimed_wait",
)


def print_profile(path: Path, top: int = 25) -> None:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output; samples
    whose innermost frame is a wait (epoll, condition variables: native profiles see them) are
    counted apart as idle."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        raw = stack.split(";")
        thread = next((f for f in raw if f.startswith("thread ")), "")
        frames = [_LINE.sub(")", f) for f in raw if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1].startswith(_IDLE):
            idle += count
            continue
        total += count
        threads[thread.split(":")[-1].strip() or "?"] += count
        own[frames[-1]] += count
        for name in set(frames):
            incl[name] += count
    if not total:
        print(f"(no samples in {path})")
        return
    print(f"\nprofile: {total} busy samples of the gateway ({idle} idle left out; {path.relative_to(REPO)})")
    if len(threads) > 1:
        print(
            "  by thread: "
            + ", ".join(f"{name} {100 * c / total:.0f} %" for name, c in threads.most_common())
        )
    print(f"  {'self %':>7}  function")
    for name, count in own.most_common(top):
        print(f"  {100 * count / total:7.1f}  {name}")
    print(f"  {'incl %':>7}  function")
    for name, count in incl.most_common(top + 10):
        print(f"  {100 * count / total:7.1f}  {name}")


# ==== reporting =====================================================================================
def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b and b == b and a == a else "n/a"


def report(runs: list[Run], rates: list[float], labels: dict[str, str]) -> list[str]:
    """The table per rate, then the targets; returns the lines printed."""
    lines: list[str] = []
    by = {(r.target, r.rate): r for r in runs}
    for rate in rates:
        first = next((r for r in runs if r.rate == rate), None)
        if first is None:
            continue
        lines.append(
            f"\n== {rate:g} requests/s for {first.duration:g} s ({first.scheduled} requests per target) =="
        )
        lines.append(
            f"{'target':<28}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}"
            f"{'errors':>8}{'err %':>7}{'front CPU s':>12}{'µs/ok':>8}{'back CPU s':>11}{'tool lag p99':>13}"
        )
        for key in ("direct", "hop", "bud", "bud-obs", "litellm"):
            r = by.get((key, rate))
            if r is None:
                continue
            per_req = 1e6 * r.server_cpu_s / r.completed if r.completed else float("nan")
            lines.append(
                f"{labels[key]:<28}{r.p50_ms:8.2f}{r.p90_ms:8.2f}{r.p99_ms:9.2f}{r.p999_ms:10.2f}"
                f"{r.max_ms:9.1f}{r.error_count:8d}{r.error_pct:7.2f}{r.server_cpu_s:12.2f}{per_req:8.0f}"
                f"{r.backend_cpu_s:11.2f}{r.send_lag_p99_ms:13.2f}"
            )
            if r.errors:
                lines.append(f"{'':<28}errors: {', '.join(f'{k} {v}' for k, v in sorted(r.errors.items()))}")
        direct, bud, lite = by.get(("direct", rate)), by.get(("bud", rate)), by.get(("litellm", rate))
        if direct and bud:
            lines.append(
                f"Bud overhead over direct: p50 {bud.p50_ms - direct.p50_ms:+.2f} ms, "
                f"p99 {bud.p99_ms - direct.p99_ms:+.2f} ms"
            )
        observed = by.get(("bud-obs", rate))
        if observed and bud and bud.completed and observed.completed:
            cpu_off = bud.server_cpu_s / bud.completed
            cpu_on = observed.server_cpu_s / observed.completed
            lines.append(
                f"Tracing + INFO logs + /metrics on: gateway CPU per request {1e6 * cpu_on:.0f} µs vs "
                f"{1e6 * cpu_off:.0f} µs off ({100 * (cpu_on / cpu_off - 1):+.1f} %, target ≤ +5 %); "
                f"p50 {observed.p50_ms - bud.p50_ms:+.2f} ms, p99 {observed.p99_ms - bud.p99_ms:+.2f} ms"
            )
        hop = by.get(("hop", rate))
        if hop and bud:
            lines.append(
                f"Bud over the bare gRPC hop it makes: p50 {bud.p50_ms - hop.p50_ms:+.2f} ms, "
                f"p99 {bud.p99_ms - hop.p99_ms:+.2f} ms"
            )
        if lite and bud:
            bound = "≥ " if lite.error_pct > 1.0 else ""  # its p99 is then a timeout: a lower bound
            lines.append(
                f"LiteLLM p99 / Bud p99 (an error counts as a timeout): "
                f"{bound}{_ratio(lite.p99_with_errors_ms, bud.p99_with_errors_ms)}   "
                f"(successes only: {_ratio(lite.p99_ms, bud.p99_ms)}; p50 {_ratio(lite.p50_ms, bud.p50_ms)}; "
                f"errors LiteLLM {lite.error_pct:.1f} %, Bud {bud.error_pct:.1f} %)"
            )
    lines.append("\n== targets (reported, not asserted) ==")
    top = max(rates)
    bud_top = by.get(("bud", top))
    if bud_top:
        ok = bud_top.p99_ms <= TARGET_P99_MS and bud_top.error_count == 0
        lines.append(
            f"Bud p99 ≤ {TARGET_P99_MS} ms at {top:g} rps with 0 errors: "
            f"{'MET' if ok else 'MISSED'} (p99 {bud_top.p99_ms:.2f} ms, {bud_top.error_count} errors)"
        )
    hop_top = by.get(("hop", top))
    if hop_top:
        lines.append(
            f"  floor: the bare gRPC hop alone (grpc.aio client → instant engine, no HTTP) p99 "
            f"{hop_top.p99_ms:.2f} ms at {top:g} rps, {hop_top.error_count} errors"
        )
    for rate in rates:
        bud, lite = by.get(("bud", rate)), by.get(("litellm", rate))
        if bud and lite:
            # Errors count as the timeout: a LiteLLM run that fails requests must not look faster.
            ratio = (
                lite.p99_with_errors_ms / bud.p99_with_errors_ms if bud.p99_with_errors_ms else float("nan")
            )
            met = ratio >= TARGET_LITELLM_RATIO
            bound = "≥ " if lite.error_pct > 1.0 else ""
            lines.append(
                f"≥ {TARGET_LITELLM_RATIO:g}× lower p99 than LiteLLM at {rate:g} rps: {'MET' if met else 'MISSED'}"
                f" ({bound}{ratio:.1f}×{f'; LiteLLM failed {lite.error_pct:.1f} % of requests' if lite.error_pct else ''})"
            )
    for line in lines:
        print(line)
    return lines


class _Scraper:
    """Scrapes a `/metrics` URL once a second on a thread (what Prometheus does, more often)."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.done = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(1.0):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    response.read()
                self.scrapes += 1
            except OSError:
                pass

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)


# ==== main ==========================================================================================
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Open-loop gateway overhead benchmark: Bud vs direct vs LiteLLM."
    )
    parser.add_argument(
        "--rates", default="100,500,1000", help="requests/s, comma-separated (default 100,500,1000)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of load per rate and target (default 10)"
    )
    parser.add_argument("--quick", action="store_true", help="3 s per rate and target, 1 s warm-up")
    parser.add_argument(
        "--targets",
        default="direct,hop,bud,litellm",
        help="any of direct,hop,bud,bud-obs,litellm (hop: a bare grpc.aio call to the instant engine, "
        "the floor under any Python gateway's p99; bud-obs: the gateway with tracing, INFO logs "
        "and /metrics on)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds after its scheduled instant a request fails"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of warm-up (20 rps) before each run"
    )
    parser.add_argument(
        "--connections", type=int, default=256, help="most connections the load generator opens"
    )
    parser.add_argument(
        "--no-usage", action="store_true", help="Bud without usage accounting (on by default, as deployed)"
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="python",
        choices=["python", "native"],
        help="then profile the Bud gateway under py-spy at the top rate (native: with C frames)",
    )
    parser.add_argument(
        "--trace-ratio", type=float, default=1.0, help="bud-obs: the share of traces sampled (default 1)"
    )
    parser.add_argument("--json", type=Path, help="also write the runs as JSON here")
    parser.add_argument("--role", choices=["gateway", "engine", "otlp"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="", help=argparse.SUPPRESS)
    parser.add_argument("--usage", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.role:
        import uvloop

        if args.role == "otlp":
            _serve_otlp(args.port)
        elif args.role == "gateway":
            uvloop.run(_serve_gateway(args.port, args.engine, args.usage))
        else:
            uvloop.run(_serve_engine(args.port))
        return 0

    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    duration, warmup = (3.0, 1.0) if args.quick else (args.duration, args.warmup)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - {"direct", "hop", "bud", "bud-obs", "litellm"}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    litellm_bin = ensure_litellm() if "litellm" in targets else None

    from auth import keys

    hash_secret = "bench-hash-secret"
    api_key = keys.mint_key(hash_secret).secret
    py = sys.executable
    procs: list[Proc] = []
    labels = {
        "direct": "direct upstream (baseline)",
        "hop": "gRPC hop alone (no HTTP)",
        "bud": "Bud gateway → instant engine",
        "bud-obs": "  + tracing, logs, /metrics",
        "litellm": "LiteLLM proxy → upstream",
    }
    runs: list[Run] = []
    try:
        upstream_port = free_port()
        upstream = start(
            "upstream", [py, "-m", "tests.performance.instant_openai_upstream", "--port", str(upstream_port)]
        )
        procs.append(upstream)
        wait_ready(upstream, upstream_port, {}, 30)
        all_targets: dict[str, Target] = {
            "direct": Target("direct", labels["direct"], upstream_port, {}, upstream, None)
        }
        if {"bud", "bud-obs", "hop"} & set(targets):
            engine_port = free_port()
            engine = start(
                "engine",
                [py, "-m", "tests.performance.bench_gateway", "--role", "engine", "--port", str(engine_port)],
            )
            procs.append(engine)
            all_targets["hop"] = Target("hop", labels["hop"], engine_port, {}, engine, None)

        def start_gateway(name: str, env: dict[str, str]) -> Target:
            gateway_port = free_port()
            usage = "" if args.no_usage else f"127.0.0.1:{engine_port}"
            gateway = start(
                name,
                [
                    py,
                    "-m",
                    "tests.performance.bench_gateway",
                    "--role",
                    "gateway",
                    "--port",
                    str(gateway_port),
                    "--engine",
                    f"127.0.0.1:{engine_port}",
                    "--usage",
                    usage,
                ],
                env={"BENCH_API_KEY": api_key, "BENCH_HASH_SECRET": hash_secret, **env},
            )
            procs.append(gateway)
            headers = {"Authorization": f"Bearer {api_key}"}
            wait_ready(gateway, gateway_port, headers, 60)
            return Target(name, labels[name], gateway_port, headers, gateway, engine)

        scraper: Any = None
        if "bud" in targets:
            all_targets["bud"] = start_gateway("bud", {})
        if "bud-obs" in targets:
            otlp_port, metrics_port = free_port(), free_port()
            procs.append(
                start(
                    "otlp",
                    [py, "-m", "tests.performance.bench_gateway", "--role", "otlp", "--port", str(otlp_port)],
                )
            )
            all_targets["bud-obs"] = start_gateway(
                "bud-obs",
                {
                    "BENCH_OTLP": f"http://127.0.0.1:{otlp_port}",
                    "BENCH_METRICS_PORT": str(metrics_port),
                    "BENCH_TRACE_RATIO": str(args.trace_ratio),
                },
            )
            scraper = _Scraper(f"http://127.0.0.1:{metrics_port}/metrics")
        print(
            f"load: open loop, {duration:g} s per rate and target after {warmup:g} s warm-up at "
            f"{WARMUP_RATE:g} rps, timeout {args.timeout:g} s; {os.cpu_count()} CPUs shared by the load generator "
            f"and every server (noisy: compare within one run)",
            flush=True,
        )

        def record(run: Run) -> None:
            runs.append(run)
            print(
                f"  {run.rate:>6g} rps  {run.target:<8} p50 {run.p50_ms:8.2f} ms  p99 {run.p99_ms:9.2f} ms  "
                f"errors {run.error_count}  front CPU {run.server_cpu_s:.2f} s",
                flush=True,
            )

        for rate in rates:
            for key in ("direct", "hop", "bud", "bud-obs"):
                if key in all_targets and key in targets:
                    record(
                        measure(
                            all_targets[key], rate, duration, args.timeout, warmup, procs, args.connections
                        )
                    )
        if args.profile and "bud" in all_targets:
            profile_gateway(
                all_targets["bud"], max(rates), duration, args.timeout, procs, args.profile == "native"
            )
        # LiteLLM last, a fresh process per rate: an overloaded run leaves a backlog it would chew
        # through for minutes, loading the machine under the other targets' runs.
        for rate in rates if litellm_bin is not None else []:
            litellm_port = free_port()
            master_key = "sk-bench-" + secrets.token_urlsafe(24)
            proxy = start(
                "litellm",
                [
                    str(litellm_bin),
                    "--config",
                    str(litellm_config(upstream_port, master_key)),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(litellm_port),
                    "--num_workers",
                    "1",
                ],
                env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
            )
            procs.append(proxy)
            try:
                headers = {"Authorization": f"Bearer {master_key}"}
                wait_ready(proxy, litellm_port, headers, 180)
                target = Target("litellm", labels["litellm"], litellm_port, headers, proxy, upstream)
                record(measure(target, rate, duration, args.timeout, warmup, procs, args.connections))
            finally:
                procs.remove(proxy)
                proxy.popen.kill()
                proxy.popen.wait()
        if scraper is not None:
            scraper.stop()
        lines = report(runs, rates, labels)
        if args.json:
            args.json.write_text(json.dumps({"runs": [r.__dict__ for r in runs], "report": lines}, indent=1))
    finally:
        for proc in reversed(procs):
            proc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
