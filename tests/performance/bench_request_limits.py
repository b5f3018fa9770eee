"""The worst requests the gateway accepts (issue 11, finding 6): how long each takes to answer,
and how long `/healthz` stalls meanwhile, on the gateway's HTTP face in this process (uvicorn +
the transcoder over `OpenAiServicer`, as `gateway/server.py` builds them) in front of the
instant engine (`tests/support/instant_engine.py`, on the same event loop: a co-hosted engine).

    python -m tests.performance.bench_request_limits                 # caps and off-loop conversion on
    python -m tests.performance.bench_request_limits --before        # no caps, all on the loop (the old gateway)
    python -m tests.performance.bench_request_limits --engine        # + the engine's own conversion (vLLM's pydantic)

Each body is the largest of its shape that fits the 8 MiB body cap and the default request caps
(`gateway/request_limits.py`): the most objects the caps allow, since the conversions cost per
object, not per byte. The issue's attack (200,000 empty messages) is the first row. A probe
process sends `GET /healthz` every 5 ms on its own connection; the stall is the longest probe
answer while the body is being served (the probe's idle baseline is printed too). Numbers are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import orjson
import uvicorn

from auth import keys
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.request_limits import RequestLimits
from gateway.server import build_transcoder
from gateway.transcoder import MAX_BODY_BYTES, OFFLOAD_BODY_BYTES, warm_conversion_processes
from tests.gateway.test_openai_gateway import SECRET, _tables
from tests.support import instant_engine
from tests.support.mesh import free_port

LIMITS = RequestLimits()
BIG = 10**9  # "no cap"

PROBE = r"""
import http.client, sys, time, json
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
while True:
    start = time.time()
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    print(json.dumps([start, time.time() - start]), flush=True)
    time.sleep(0.005)
"""


def _fill(make: Callable[[int], Any], wrap: Callable[[list[Any]], dict[str, Any]], most: int = BIG) -> bytes:
    """The body `wrap([make(0), make(1), ...])` with as many items as fit MAX_BODY_BYTES (and `most`)."""
    one = len(orjson.dumps(make(0))) + 1
    n = min(most, (MAX_BODY_BYTES - 1024) // one)
    while True:
        body = orjson.dumps(wrap([make(i) for i in range(n)]))
        if len(body) <= MAX_BODY_BYTES:
            return body
        n = int(n * 0.98)


def _padded(build: Callable[[str], dict[str, Any]], strings: int) -> bytes:
    """`build(text)` with `text` as long as lets the body (holding it `strings` times) fit the
    body cap: the caps' most objects, each as large as the body allows."""
    overhead = len(orjson.dumps(build("")))
    size = (MAX_BODY_BYTES - overhead) // strings
    while True:
        body = orjson.dumps(build("x" * size))
        if len(body) <= MAX_BODY_BYTES:
            return body
        size -= 1 + size // 100


def _schema(depth: int, width: int = 1) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for _ in range((depth - 1) // 2):
        schema = {"type": "object", "properties": {f"p{i}": schema for i in range(width)}}
    return schema


def _everything(text: str) -> dict[str, Any]:
    """A chat request at every cap at once: the most objects a request may carry."""
    m = LIMITS
    half = m.max_messages // 2  # half the messages carry the tool calls, half the content parts
    call = {"id": "", "type": "function", "function": {"name": "f", "arguments": text}}
    part = {"type": "text", "text": text}
    messages = [{"role": "assistant", "tool_calls": [call] * (m.max_tool_calls // half)}] * half
    messages += [{"role": "user", "content": [part] * (m.max_content_parts // half)}] * half
    return {
        "model": "chat",
        "messages": messages,
        "tools": [
            {"type": "function", "function": {"name": f"f{i}", "parameters": {}}} for i in range(m.max_tools)
        ],
        "stop": ["s"] * m.max_stop_sequences,
        "logit_bias": {str(i): 1 for i in range(m.max_logit_bias)},
        "metadata": {str(i): "" for i in range(m.max_metadata_entries)},
    }


def _cases() -> dict[str, tuple[str, bytes]]:
    """name → (path, body)."""
    m = LIMITS
    user = {"role": "user", "content": ""}
    parts_each = m.max_content_parts // m.max_messages
    tool_schema = _schema(m.max_schema_depth - 1)
    per_tool = MAX_BODY_BYTES // m.max_tools - 200
    wide = {"type": "object", "properties": {f"p{i}": {} for i in range(per_tool // 12)}}
    tokens_per_input = (MAX_BODY_BYTES // m.max_inputs) // 2 - 16
    chat = "/v1/chat/completions"
    return {
        "attack: 200,000 empty messages": (
            chat,
            orjson.dumps({"model": "chat", "messages": [user] * 200_000}),
        ),
        f"chat: {m.max_messages} messages filling 8 MiB": (
            chat,
            _padded(
                lambda t: {"model": "chat", "messages": [{"role": "user", "content": t}] * m.max_messages},
                m.max_messages,
            ),
        ),
        f"chat: {m.max_messages} messages, {m.max_content_parts} content parts filling 8 MiB": (
            chat,
            _padded(
                lambda t: {
                    "model": "chat",
                    "messages": [{"role": "user", "content": [{"type": "text", "text": t}] * parts_each}]
                    * m.max_messages,
                },
                m.max_content_parts,
            ),
        ),
        f"chat: {m.max_tool_calls} tool calls filling 8 MiB": (
            chat,
            _padded(
                lambda t: {
                    "model": "chat",
                    "messages": [
                        {
                            "role": "assistant",
                            "tool_calls": [
                                {"id": "", "type": "function", "function": {"name": "f", "arguments": t}}
                            ],
                        }
                    ]
                    * m.max_tool_calls,
                },
                m.max_tool_calls,
            ),
        ),
        "chat: every cap at once, filling 8 MiB": (
            chat,
            _padded(_everything, m.max_tool_calls + m.max_content_parts),
        ),
        f"chat: {m.max_tools} tools, wide schemas filling 8 MiB": (
            chat,
            orjson.dumps(
                {
                    "model": "chat",
                    "messages": [user],
                    "tools": [
                        {"type": "function", "function": {"name": f"f{i}", "parameters": wide}}
                        for i in range(m.max_tools)
                    ],
                }
            ),
        ),
        f"chat: {m.max_tools} tools with schemas {m.max_schema_depth - 1} deep": (
            chat,
            _fill(
                lambda i: {"type": "function", "function": {"name": f"f{i}", "parameters": tool_schema}},
                lambda tools: {"model": "chat", "messages": [user], "tools": tools},
                m.max_tools,
            ),
        ),
        f"responses: {m.max_messages} input items, {m.max_content_parts} parts filling 8 MiB": (
            "/v1/responses",
            _padded(
                lambda t: {
                    "model": "chat",
                    "input": [{"role": "user", "content": [{"type": "input_text", "text": t}] * parts_each}]
                    * m.max_messages,
                },
                m.max_content_parts,
            ),
        ),
        "completions: one prompt of token ids filling 8 MiB": (
            "/v1/completions",
            _fill(lambda i: 1, lambda tokens: {"model": "chat", "prompt": tokens}),
        ),
        f"embeddings: {m.max_inputs} token lists filling 8 MiB": (
            "/v1/embeddings",
            orjson.dumps({"model": "chat", "input": [[1] * tokens_per_input] * m.max_inputs}),
        ),
        f"embeddings: {m.max_inputs} inputs, 1536-float answers": (
            "/v1/embeddings",
            orjson.dumps({"model": "chat", "input": ["x"] * m.max_inputs}),
        ),
    }


class LoopLag:
    """The gateway's event loop's own lateness: a task asking to wake every millisecond records
    how late it woke (what any other request on the loop waits, at least)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            late = loop.time() - before - 0.001
            self.samples.append((time.time(), late))

    def worst(self, start: float, end: float) -> float:
        return max((late for at, late in self.samples if start <= at <= end + 0.1), default=0.0)


class Probe:
    """A process polling /healthz; `worst(start, end)` is the longest answer begun in a window."""

    def __init__(self, port: int) -> None:
        self.samples: list[tuple[float, float]] = []
        self.process = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(port)], stdout=subprocess.PIPE, text=True
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            start, took = json.loads(line)
            self.samples.append((start, took))

    def worst(self, start: float, end: float) -> tuple[float, int]:
        """(longest answer in s, how many) among the probes sent between `start` and `end`
        (one begun before `start` and still waiting counts too)."""
        inside = [took for sent, took in self.samples if start <= sent + took and sent <= end]
        return (max(inside) if inside else 0.0), len(inside)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def _post(port: int, path: str, body: bytes, secret: str) -> tuple[int, bytes, float, float]:
    """(status, answer, sent at, answered at) of one blocking POST."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"content-type": "application/json", "authorization": f"Bearer {secret}"}
    start = time.time()
    conn.request("POST", path, body=body, headers=headers)
    reply = conn.getresponse()
    data = reply.read()
    end = time.time()
    conn.close()
    return reply.status, data, start, end


async def run(args: argparse.Namespace) -> None:
    cases = _cases()  # built before the gateway starts: their cost is not the gateway's
    instant_engine.EMBEDDING_DIMENSIONS = 1536  # answers the size of a real embedding model's
    engine_address = f"127.0.0.1:{free_port()}"
    engine_server, _ = await instant_engine.start_instant_engine(engine_address, ["m1"])
    key = keys.mint_key(SECRET)
    tables = _tables(key, [engine_address])
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, SECRET)
    limits = RequestLimits(**{f.name: BIG for f in fields(RequestLimits)} | {"max_schema_depth": 64})
    limits = limits if args.before else LIMITS
    app = build_transcoder(servicer, tables, limits=limits)
    app.offload_bytes = BIG if args.before else OFFLOAD_BODY_BYTES
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="none", http="httptools", lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    if not args.before:  # as gateway/server.py does at start; measured once they are up
        for future in warm_conversion_processes():
            await asyncio.wrap_future(future)
    probe = Probe(port)
    lag = LoopLag()
    await asyncio.sleep(3.0)
    mode = "before: no caps, conversions on the loop" if args.before else "caps on, large bodies off the loop"
    print(f"# {mode}; body cap {MAX_BODY_BYTES} bytes; offload above {app.offload_bytes} bytes")
    idle = sorted(took for _, took in probe.samples)
    print(
        f"# /healthz idle: p50 {1e3 * idle[len(idle) // 2]:.1f} ms, max {1e3 * idle[-1]:.1f} ms ({len(idle)} probes)"
    )
    print("| body | bytes | status | answered in | loop lag worst | /healthz worst | probes |")
    print("|---|---|---|---|---|---|---|")
    for name, (path, body) in cases.items():
        for _ in range(args.repeat):
            status, data, start, end = await asyncio.to_thread(_post, port, path, body, key.secret)
            await asyncio.sleep(0.2)  # the probe's answers to arrive
            worst, count = probe.worst(start, end)
            note = ""
            if status != 200:
                error = orjson.loads(data).get("error", {})
                note = f" ({error.get('param')})"
            print(
                f"| {name} | {len(body) / 1e6:.1f} MB | {status}{note} | {1e3 * (end - start):.0f} ms "
                f"| {1e3 * lag.worst(start, end):.0f} ms | {1e3 * worst:.0f} ms | {count} |",
                flush=True,
            )
    probe.stop()
    lag.task.cancel()
    server.should_exit = True
    await serving
    await pool.close()
    await engine_server.stop(0)
    if args.engine:
        _engine_conversions()


def _engine_conversions() -> None:
    """What a co-hosted engine spends on the largest accepted chat bodies before vLLM sees them:
    the contract message → JSON → vLLM's pydantic request (`engine/service.py` `_to_vllm`)."""
    from bud.openai.v1 import chat_pb2
    from budrt.json_face import from_json
    from engine import service

    chat = "vllm.entrypoints.openai.chat_completion.protocol:ChatCompletionRequest"
    module, name = chat.split(":")
    request_type = getattr(__import__(module, fromlist=[name]), name)
    print("| body (engine side) | to_json + pydantic |")
    print("|---|---|")
    for title, (path, body) in _cases().items():
        if path != "/v1/chat/completions" or title.startswith("attack"):
            continue
        message = from_json(body, chat_pb2.ChatCompletionRequest(), lenient=True)
        start = time.perf_counter()
        try:
            service._to_vllm(request_type, message)
            outcome = ""
        except Exception as err:  # a refusal still costs the conversion
            outcome = f" (refused: {type(err).__name__})"
        print(f"| {title} | {1e3 * (time.perf_counter() - start):.0f} ms{outcome} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", action="store_true", help="no caps, every conversion on the event loop")
    parser.add_argument(
        "--engine", action="store_true", help="also time the engine's conversion (imports vLLM)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="sends of each body")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
