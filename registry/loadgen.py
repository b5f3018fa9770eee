"""A small closed-loop load generator for `budrt bench`: `concurrency` workers, each sending
streamed chat completions back to back, through the gateway's OpenAI face (httpx, HTTP/1.1
keep-alive, one connection per worker).

Per request it measures TTFT (send → the first chunk carrying generated text), end-to-end latency
(send → the stream's end) and TPOT ((e2e − TTFT) / (output tokens − 1), for answers of at least two
tokens); output tokens are the usage the stream reports (`stream_options.include_usage`), else
the chunks with text. A level's throughput is answered requests and output tokens over its wall
time. Why closed-loop and not the open-loop tool of tests/performance: a benchmark at a fixed
concurrency is what serving engines publish (vLLM's `bench serve --max-concurrency`), and it
needs TTFT, which that tool (non-streaming, any HTTP target) does not measure.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bud.registry.v1 import registry_pb2

# A request not finished this long after it was sent counts as an error.
DEFAULT_TIMEOUT_S = 300.0
_WORDS = ("the", "model", "serves", "tokens", "under", "load", "and", "we", "measure", "latency")


def prompt_of(tokens: int) -> str:
    """About `tokens` prompt tokens of plain words (one word is about one token)."""
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(max(1, tokens)))


@dataclass
class Sample:
    """One answered request (seconds)."""

    ttft: float
    e2e: float
    output_tokens: int
    input_tokens: int

    @property
    def tpot(self) -> float | None:
        return (self.e2e - self.ttft) / (self.output_tokens - 1) if self.output_tokens > 1 else None


@dataclass
class Level:
    """What one concurrency level saw."""

    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0

    def point(self) -> registry_pb2.BenchmarkLoadPoint:
        """The level as a load point (percentiles in ms, nearest rank)."""
        ttft = [s.ttft * 1000 for s in self.samples]
        e2e = [s.e2e * 1000 for s in self.samples]
        tpot = [t * 1000 for s in self.samples if (t := s.tpot) is not None]
        out = sum(s.output_tokens for s in self.samples)
        n = len(self.samples)
        wall = self.duration or 1e-9
        return registry_pb2.BenchmarkLoadPoint(
            concurrency=self.concurrency,
            requests=n,
            errors=len(self.errors),
            duration_s=self.duration,
            requests_per_s=n / wall,
            output_tokens_per_s=out / wall,
            ttft_p50_ms=percentile(ttft, 50),
            ttft_p90_ms=percentile(ttft, 90),
            ttft_p99_ms=percentile(ttft, 99),
            tpot_p50_ms=percentile(tpot, 50),
            tpot_p90_ms=percentile(tpot, 90),
            tpot_p99_ms=percentile(tpot, 99),
            e2e_p50_ms=percentile(e2e, 50),
            e2e_p90_ms=percentile(e2e, 90),
            e2e_p99_ms=percentile(e2e, 99),
            input_tokens_mean=sum(s.input_tokens for s in self.samples) / n if n else 0.0,
            output_tokens_mean=out / n if n else 0.0,
        )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    data = sorted(values)
    return data[max(1, min(len(data), math.ceil(q / 100 * len(data)))) - 1]


class ChatLoad:
    """Streamed chat completions against `base_url` (the gateway) with a project API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        *,
        input_tokens: int = 64,
        output_tokens: int = 64,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._url = base_url.rstrip("/") + "/v1/chat/completions"
        self._headers = {"authorization": f"Bearer {api_key}"}
        self._body = orjson.dumps(
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt_of(input_tokens)}],
                "max_tokens": output_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        self._timeout = timeout

    async def one(self, client: httpx.AsyncClient) -> Sample:
        """One request; raises on a refusal, a broken stream or the timeout."""
        start = time.perf_counter()
        first: float | None = None
        chunks = 0
        usage: dict[str, Any] = {}
        async with asyncio.timeout(self._timeout):
            async with client.stream(
                "POST",
                self._url,
                content=self._body,
                headers={**self._headers, "content-type": "application/json"},
            ) as response:
                if response.status_code != 200:
                    body = (await response.aread())[:300].decode(errors="replace")
                    raise RuntimeError(f"HTTP {response.status_code}: {body}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = orjson.loads(data)
                    if event.get("error"):
                        raise RuntimeError(f"stream error: {event['error']}")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"):
                            chunks += 1
                            if first is None:
                                first = time.perf_counter()
        end = time.perf_counter()
        if first is None:
            raise RuntimeError("the stream ended without generated text")
        return Sample(
            ttft=first - start,
            e2e=end - start,
            output_tokens=int(usage.get("completion_tokens") or chunks),
            input_tokens=int(usage.get("prompt_tokens") or 0),
        )

    async def level(self, concurrency: int, requests: int) -> Level:
        """`requests` requests, `concurrency` at a time (each worker sends its next one when its
        previous one is done)."""
        result = Level(concurrency)
        remaining = requests
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=httpx.Timeout(self._timeout), limits=limits) as client:

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    try:
                        result.samples.append(await self.one(client))
                    except (httpx.HTTPError, RuntimeError, TimeoutError, ValueError) as err:
                        result.errors.append(str(err) or type(err).__name__)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
            result.duration = time.perf_counter() - start
        return result
