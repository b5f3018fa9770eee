"""The response cache's hit next to its miss (issue 15, "Caching"): the latency of a request the
gateway answers from its cache beside the same request answered by the engine, on the gateway's
HTTP face in this process (uvicorn + the transcoder over `OpenAiServicer`, as
`gateway/server.py` builds them) in front of the instant engine (`tests/support/instant_engine.py`,
co-hosted: no gRPC hop), with the cache in memory and in a throwaway redis-server.

    python -m tests.performance.bench_cache                     # 400 requests a row
    python -m tests.performance.bench_cache --requests 1000 --engine-ms 20
    python -m tests.performance.bench_cache --mesh --requests 30   # + the tiny model (`budrt up`, vLLM)

`--engine-ms` makes each engine call take that long (the instant engine answers at once: a miss
there costs only the gateway's own path, the least a miss can cost); a stream has `--chunks`
chunks. A miss is a request never seen (its message differs), a hit the same request again. A
client on its own thread sends the requests one after another on a keep-alive connection; rows
are latency percentiles of the whole HTTP request (a stream: to its last byte). Numbers are
printed, never asserted.

`--mesh` also starts the mesh (`budrt up`, the tiny model alone, vLLM on this machine's CPUs),
switches the chat deployment's `caching` on through the management API, waits for the gateway to
route the reloaded model, and measures the same rows there (max_tokens 16).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from auth import keys
from bud.auth.v1 import routing_pb2
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.response_cache import MemoryResponseCache, RedisResponseCache, ResponseCache
from gateway.server import build_transcoder
from gateway.tables import RoutingTables
from tests.support.instant_engine import InstantEngine
from tests.support.mesh import free_port
from tests.support.redis_server import redis_server

SECRET = "bench-hash-secret"
ADDRESS = "127.0.0.1:1"  # the engine is co-hosted: never dialled


def _tables(key: keys.NewKey) -> RoutingTables:
    tables = RoutingTables()
    snapshot = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    snapshot.upsert_projects.add(id="p1", name="bench")
    snapshot.upsert_keys.add(id="k1", prefix=key.prefix, key_hash=key.key_hash, project_id="p1")
    dep = snapshot.upsert_deployments.add(id="d1", project_id="p1", name="chat", ready=True, caching=True)
    dep.endpoints.add(address=ADDRESS, served_model_name="m1")
    tables.apply(snapshot)
    return tables


@contextlib.contextmanager
def _gateway(cache: ResponseCache, engine: InstantEngine, key: keys.NewKey) -> Iterator[int]:
    """The gateway on its own event loop thread; yields its port."""
    port = free_port()
    started = threading.Event()
    server: list[uvicorn.Server] = []

    async def run() -> None:
        tables = _tables(key)
        pool = EnginePool(local={ADDRESS: engine})
        servicer = OpenAiServicer(tables, pool, SECRET, response_cache=cache)
        config = uvicorn.Config(
            build_transcoder(servicer, tables),
            host="127.0.0.1",
            port=port,
            loop="none",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_config=None,
        )
        server.append(uvicorn.Server(config))
        server[0].install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.create_task(server[0].serve())
        while not server[0].started:
            await asyncio.sleep(0.01)
        started.set()
        await task
        if isinstance(cache, RedisResponseCache):
            await cache.close()
        await pool.close()

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    started.wait(30)
    try:
        yield port
    finally:
        server[0].should_exit = True
        thread.join(30)


def _timed(port: int, secret: str, bodies: list[dict[str, Any]], expect: str) -> list[float]:
    """Sends each body in turn; each one's latency (ms), checking its `x-bud-cache`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    out = []
    for body in bodies:
        raw = json.dumps(body)
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", raw, headers)
        reply = conn.getresponse()
        reply.read()
        out.append((time.perf_counter() - start) * 1000)
        assert reply.status == 200 and reply.getheader("x-bud-cache") == expect, (reply.status, expect)
    conn.close()
    return out


def _row(name: str, samples: list[float], peer: list[float] | None = None) -> str:
    """A table row; with `peer` (the misses of the same run), the p50 ratio peer / this."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    p50 = statistics.median(ordered)
    ratio = f"{statistics.median(peer) / p50:.1f}x" if peer else "1.0x"
    return f"| {name} | {p50:.2f} | {p99:.2f} | {statistics.mean(ordered):.2f} | {ratio} |"


def _body(i: int, stream: bool, model: str = "chat") -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": f"request {i}: say something"}],
        "temperature": 0,
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return body


def _measure(label: str, make_cache: Callable[[], ResponseCache], args: argparse.Namespace) -> list[str]:
    engine = InstantEngine(["m1"], chunks=args.chunks)
    engine.unary_delay = args.engine_ms / 1000
    engine.chunk_delay = args.engine_ms / 1000 / args.chunks
    key = keys.mint_key(SECRET)
    rows = []
    with _gateway(make_cache(), engine, key) as port:
        rows += _rows(label, port, key.secret, "chat", args.requests)
    return rows


def _rows(label: str, port: int, secret: str, model: str, requests: int) -> list[str]:
    """Misses then hits, unary then streamed; each a table row."""
    rows = []
    for stream in (False, True):
        kind = "stream" if stream else "unary"
        _timed(
            port, secret, [_body(-1 - i, stream, model) for i in range(min(20, requests))], "miss"
        )  # warm-up
        misses = _timed(port, secret, [_body(i, stream, model) for i in range(requests)], "miss")
        hits = _timed(port, secret, [_body(0, stream, model)] * requests, "hit")
        rows += [_row(f"{label}, {kind}, miss", misses), _row(f"{label}, {kind}, hit", hits, misses)]
    return rows


def _measure_mesh(args: argparse.Namespace) -> list[str]:
    """The rows on the tiny model: `budrt up`, the chat deployment's caching switched on."""
    import requests as rq

    from tests.support.mesh import start_mesh

    with tempfile.TemporaryDirectory() as tmp:
        mesh = start_mesh(
            Path(tmp), {"BUD_DEFAULT_EMBEDDING_MODEL_NAME": "", "BUD_DEFAULT_IMAGE_MODEL_NAME": ""}
        )
        try:
            url = mesh.http_url
            login = rq.post(
                f"{url}/v1/auth/login",
                json={"username": "admin", "password": mesh.admin_password},
                timeout=30,
            )
            admin = {"authorization": f"Bearer {login.json()['access_token']}"}
            (project,) = [
                p for p in rq.get(f"{url}/v1/projects", headers=admin, timeout=30).json()["projects"]
            ]
            base = f"{url}/v1/projects/{project['id']}/deployments"
            (chat,) = [
                d
                for d in rq.get(base, headers=admin, timeout=30).json()["deployments"]
                if d["runner"] != "RUNNER_POOLING"
            ]
            reply = rq.patch(
                f"{base}/{chat['id']}",
                params={"update_mask": "caching"},
                json={"caching": True},
                headers=admin,
            )
            assert reply.status_code == 200, reply.text
            key = {"authorization": f"Bearer {mesh.api_key}"}
            deadline = time.monotonic() + 900
            while True:  # the model reloads (a new generation), then the gateway routes it
                probe = rq.post(
                    f"{url}/v1/chat/completions",
                    json=_body(-100, False, chat["name"]),
                    headers=key,
                    timeout=120,
                )
                if probe.status_code == 200 and "x-bud-cache" in probe.headers:
                    break
                assert time.monotonic() < deadline, "caching never reached the gateway"
                time.sleep(1)
            port = int(url.rsplit(":", 1)[1])
            return _rows("tiny model (mesh), memory", port, mesh.api_key, chat["name"], args.requests)
        finally:
            mesh.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--engine-ms", type=float, default=0.0)
    parser.add_argument("--mesh", action="store_true", help="also measure on the tiny model (budrt up)")
    args = parser.parse_args()
    rows = _measure("memory", lambda: MemoryResponseCache(300, 256 << 20), args)
    with redis_server() as url:
        rows += _measure("redis", lambda: RedisResponseCache(url, 300, 256 << 20), args)
    if args.mesh:
        rows += _measure_mesh(args)
    print(
        f"{args.requests} requests a row, engine {args.engine_ms} ms a call, streams of {args.chunks} chunks"
    )
    print("| cache, call, outcome | p50 ms | p99 ms | mean ms | miss p50 / this p50 |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
