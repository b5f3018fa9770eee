"""What running a saved prompt adds to a `/v1/responses` call: open-loop load of prompt calls (a
template with three variables, structured input, text output) next to direct `/v1/responses` calls
of the same model carrying the same rendered text, in the same run, against the same stack.

    python -m tests.performance.bench_prompt                    # 200 rps, 10 s a round, 3 rounds
    python -m tests.performance.bench_prompt --rate 200 --duration 5 --rounds 2

The stack is one server process (`tests/gateway/prompt_stack.py`: the app on SQLite, the instant
engine, the gateway's `serve()` with the prompt executor co-hosted as `budrt up` runs them, each
calling the other in process); this process is the load generator (`loadgen.py`: latency from each
request's scheduled instant). Rounds alternate direct, prompt, prompt, direct ... so drift lands on
both. Target (issue 13): the prompt path adds ≤ 1 ms at p50 and ≤ 2 ms at p99 at 200 rps.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from tests.performance.loadgen import Result, http_request, open_loop

TEMPLATE = {
    "system_prompt": "You are a support assistant for {{ company }}.",
    "messages": [{"role": "user", "template": "Customer {{ customer }} asks: {{ question }}"}],
    "input": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [
            {"name": "company", "type": "VARIABLE_TYPE_STRING"},
            {"name": "customer", "type": "VARIABLE_TYPE_STRING"},
            {
                "name": "question",
                "type": "VARIABLE_TYPE_STRING",
                "validation": "VALIDATION_MODE_BASIC",
                "constraints": {"max_length": 2000},
            },
        ],
    },
}
VARIABLES = {"company": "Acme", "customer": "Ada", "question": "Where is my order?"}


def _serve() -> None:
    """The server process: the stack, a prompt saved; prints what the load needs, runs until
    stdin closes."""
    from budrt import tls
    from budrt.tls import LocalCa
    from tests.gateway.prompt_stack import prompt_stack

    with tempfile.TemporaryDirectory() as tmp:
        tls.configure(LocalCa(Path(tmp) / "tls").material("gateway"))
        with prompt_stack(Path(tmp)) as stack:
            prompt = stack.create_prompt("bench", TEMPLATE)
            print(
                "BENCH "
                + json.dumps(
                    {"url": stack.url, "key": stack.api_key, "prompt": prompt["id"], "model": stack.model}
                )
            )
            sys.stdout.flush()
            sys.stdin.read()


def _summary(name: str, results: list[Result]) -> tuple[float, float]:
    latencies = [x for r in results for x in r.ok_latencies]
    merged = Result(rate=results[0].rate, duration=sum(r.duration for r in results))
    merged.ok_latencies = latencies
    merged.scheduled = sum(r.scheduled for r in results)
    errors = sum(r.error_count for r in results)
    p50, p99 = merged.percentile(50) * 1000, merged.percentile(99) * 1000
    print(f"{name:8} n={len(latencies):6} errors={errors:4}  p50 {p50:7.3f} ms  p99 {p99:7.3f} ms")
    return p50, p99


async def _load(
    url: str, key: str, prompt_id: str, model: str, rate: float, duration: float, rounds: int
) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    headers = {"Authorization": f"Bearer {key}"}
    direct_input = [
        {"role": "system", "content": "You are a support assistant for Acme."},
        {"role": "user", "content": "Customer Ada asks: Where is my order?"},
    ]
    bodies = {
        "direct": json.dumps({"model": model, "input": direct_input}).encode(),
        "prompt": json.dumps({"prompt": {"id": prompt_id, "variables": VARIABLES}}).encode(),
    }
    payloads = {
        name: http_request(host, port, "/v1/responses", body, headers) for name, body in bodies.items()
    }
    for name in payloads:  # warm both paths (connections, compiled version, caches)
        await open_loop(host, port, payloads[name], rate, 2.0)
    results: dict[str, list[Result]] = {"direct": [], "prompt": []}
    order = ["direct", "prompt"]
    for i in range(rounds):
        for name in order if i % 2 == 0 else order[::-1]:
            results[name].append(await open_loop(host, port, payloads[name], rate, duration))
    print(f"open loop, {rate:g} rps, {rounds} rounds of {duration:g} s each (alternating)")
    d50, d99 = _summary("direct", results["direct"])
    p50, p99 = _summary("prompt", results["prompt"])
    print(f"prompt path adds: p50 {p50 - d50:+.3f} ms (target ≤ 1), p99 {p99 - d99:+.3f} ms (target ≤ 2)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--role", choices=["server"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        _serve()
        return
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.performance.bench_prompt", "--role", "server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = ""
        while not line.startswith("BENCH "):  # the app prints its bootstrap key first
            line = server.stdout.readline()
            if not line:
                raise SystemExit("the server process ended before it was ready")
        info = json.loads(line.removeprefix("BENCH "))
        asyncio.run(
            _load(
                info["url"], info["key"], info["prompt"], info["model"], args.rate, args.duration, args.rounds
            )
        )
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
