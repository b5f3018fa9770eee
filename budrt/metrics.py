"""Prometheus metrics of every process: one registry per process, every metric the platform
exports defined here (one list of names for the README and the Grafana dashboard), callback
collectors for what a component reads from its own state at scrape time (an engine's running
and waiting requests, the routing tables' replicas), and the `/metrics` endpoint.

`/metrics` is served on a port of its own per process (`<component>_metrics_address`, loopback
by default: the rule is that every listening port is authenticated or bound to loopback). On
another address it demands a bearer token (`metrics_token`, which Prometheus sends with
`authorization: {credentials: ...}` in its scrape config) unless `insecure` says that
unauthenticated scrapers are accepted; otherwise the process refuses to start.

Labels are bounded: route (the OpenAI operation), deployment and project names, HTTP status,
model, gRPC method and code. Never a request id, a key id or anything a client chooses freely.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from budrt.settings import SettingsError
from budrt.tls import address_host, is_loopback

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=False)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets (seconds): sub-millisecond gateway overheads up to two-minute generations.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# vLLM's own TTFT and TPOT buckets, with finer steps at the bottom (an instant engine, a cache).
_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0)
_TPOT = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

# ---- the gateway's requests ----------------------------------------------------------------
REQUESTS = Counter(
    "bud_requests",
    "OpenAI requests answered by the gateway, by route, deployment, project and HTTP status.",
    ["route", "deployment", "project", "status"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "bud_request_duration_seconds",
    "End-to-end duration of an OpenAI request at the gateway (a stream: until its last chunk).",
    ["route", "deployment"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "bud_time_to_first_token_seconds",
    "Seconds from a streamed request's arrival at the gateway to its first generated token.",
    ["deployment"],
    buckets=_TTFT,
    registry=REGISTRY,
)
TIME_PER_OUTPUT_TOKEN = Histogram(
    "bud_time_per_output_token_seconds",
    "Mean seconds between output tokens after the first, per streamed request.",
    ["deployment"],
    buckets=_TPOT,
    registry=REGISTRY,
)
INPUT_TOKENS = Counter(
    "bud_input_tokens", "Prompt tokens processed, as charged.", ["deployment", "project"], registry=REGISTRY
)
OUTPUT_TOKENS = Counter(
    "bud_output_tokens", "Tokens generated, as charged.", ["deployment", "project"], registry=REGISTRY
)
IN_FLIGHT = Gauge(
    "bud_requests_in_flight",
    "Requests admitted and not yet finished, per deployment (this gateway).",
    ["deployment"],
    registry=REGISTRY,
)
QUEUED = Gauge(
    "bud_requests_queued",
    "Requests waiting for a concurrency slot of their deployment (this gateway).",
    ["deployment"],
    registry=REGISTRY,
)
REJECTIONS = Counter(
    "bud_rejected_requests",
    "Requests refused before reaching an engine, by reason (rate_limit, concurrency, budget).",
    ["reason", "deployment"],
    registry=REGISTRY,
)
AUTH_ATTEMPTS = Counter(
    "bud_auth_attempts",
    "API-key authentications at the gateway, by outcome (success, invalid_key, missing_key).",
    ["outcome"],
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "bud_response_cache_lookups",
    "Response-cache lookups of cacheable requests, by result (hit, miss).",
    ["deployment", "result"],
    registry=REGISTRY,
)
COST = Counter(
    "bud_cost_usd",
    "Cost of the requests answered, in US dollars (requests whose price is known).",
    ["deployment", "project"],
    registry=REGISTRY,
)

# ---- every gRPC server ---------------------------------------------------------------------
GRPC_HANDLED = Counter(
    "bud_grpc_server_handled",
    "RPCs completed by this process's gRPC servers, by method and status code.",
    ["method", "code"],
    registry=REGISTRY,
)
GRPC_DURATION = Histogram(
    "bud_grpc_server_handling_seconds",
    "Duration of RPCs served by this process (a stream: until its end), by method.",
    ["method"],
    buckets=_LATENCY,
    registry=REGISTRY,
)

# Metric families produced by callbacks at scrape time (names listed for the README's table).
ENGINE_RUNNING = "bud_engine_requests_running"
ENGINE_WAITING = "bud_engine_requests_waiting"
ENGINE_KV_CACHE = "bud_engine_kv_cache_usage_ratio"
ENGINE_PROMPT_TOKENS = "bud_engine_prompt_tokens"
ENGINE_GENERATION_TOKENS = "bud_engine_generation_tokens"
DEPLOYMENT_REPLICAS = "bud_deployment_replicas"


class _Callbacks(Collector):
    """Families computed from a component's state when scraped: `add(name, fn)` (a later `fn`
    under the same name replaces the earlier one: a restarted component, another test's stack)."""

    def __init__(self) -> None:
        self._sources: dict[str, Callable[[], Iterable[Metric]]] = {}

    def add(self, name: str, source: Callable[[], Iterable[Metric]]) -> None:
        self._sources[name] = source

    def remove(self, name: str) -> None:
        self._sources.pop(name, None)

    def collect(self) -> Iterable[Metric]:
        for name, source in list(self._sources.items()):
            try:
                yield from source()
            except Exception:  # a scrape never fails for one source
                log.exception("metrics source %s failed", name)

    def describe(self) -> Iterable[Metric]:
        return []


CALLBACKS = _Callbacks()
REGISTRY.register(CALLBACKS)


def engine_stats(models: Callable[[], Iterable[tuple[str, Any]]]) -> Callable[[], Iterable[Metric]]:
    """A callback source of an engine's model statistics: `models()` gives (served name, model
    state) pairs whose state has `running`, `waiting`, `kv_cache_usage`, `prompt_tokens_total` and
    `generation_tokens_total` (vLLM's own counts; a slot without a loaded model: None)."""

    def collect() -> Iterable[Metric]:
        running = GaugeMetricFamily(
            ENGINE_RUNNING, "Requests the engine is generating for.", labels=["model"]
        )
        waiting = GaugeMetricFamily(
            ENGINE_WAITING, "Requests waiting in the engine's scheduler.", labels=["model"]
        )
        kv = GaugeMetricFamily(ENGINE_KV_CACHE, "Share of the KV cache in use (0 to 1).", labels=["model"])
        prompt = CounterMetricFamily(
            ENGINE_PROMPT_TOKENS, "Prompt tokens the engine processed.", labels=["model"]
        )
        generated = CounterMetricFamily(
            ENGINE_GENERATION_TOKENS, "Tokens the engine generated.", labels=["model"]
        )
        for name, state in models():
            if state is None:
                continue
            running.add_metric([name], float(getattr(state, "running", 0)))
            waiting.add_metric([name], float(getattr(state, "waiting", 0)))
            kv.add_metric([name], float(getattr(state, "kv_cache_usage", 0.0)))
            prompt.add_metric([name], float(getattr(state, "prompt_tokens_total", 0)))
            generated.add_metric([name], float(getattr(state, "generation_tokens_total", 0)))
        return [running, waiting, kv, prompt, generated]

    return collect


def replicas(
    deployments: Callable[[], Iterable[tuple[str, str, int, bool]]],
) -> Callable[[], Iterable[Metric]]:
    """A callback source of the routing tables' replicas: `deployments()` gives (deployment,
    project, endpoints, ready) for each routable model deployment."""

    def collect() -> Iterable[Metric]:
        family = GaugeMetricFamily(
            DEPLOYMENT_REPLICAS,
            "Engine replicas (endpoints) a deployment is routed to, and whether it is ready.",
            labels=["deployment", "project", "ready"],
        )
        for deployment, project, endpoints, ready in deployments():
            family.add_metric([deployment, project, "true" if ready else "false"], float(endpoints))
        return [family]

    return collect


# ---- the /metrics endpoint -------------------------------------------------------------------
def check_metrics_listen(address: str, token: str, insecure: bool) -> None:
    """Raises SettingsError when `/metrics` would be served unauthenticated on an address other
    machines can reach (no `metrics_token`) and `insecure` is not set."""
    if not address or is_loopback(address) or token or insecure:
        return
    raise SettingsError(
        f"refusing to serve /metrics on {address}, which other machines can reach, without "
        "authentication: set BUD_METRICS_TOKEN (Prometheus sends it as a bearer token), bind it "
        "to a loopback address, or set BUD_INSECURE=true to accept unauthenticated scrapers"
    )


class MetricsServer:
    """A minimal HTTP/1.1 server answering `GET /metrics` from :data:`REGISTRY` on the running
    event loop (so the callback sources read their component's state on its own thread);
    anything else is a 404. With a `token`, a request without `Authorization: Bearer <token>` is
    a 401. One request per connection; headers bounded (8 KiB, 5 s)."""

    def __init__(self, address: str, token: str = "", registry: CollectorRegistry = REGISTRY) -> None:
        self.address = address
        self.token = token
        self.registry = registry
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        host = address_host(self.address)
        port = int(self.address.rsplit(":", 1)[1])
        self._server = await asyncio.start_server(self._handle, host, port, limit=8192)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics listening", extra={"url": f"http://{host}:{self.port}/metrics"})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, *_ = (lines[0].split(" ") + ["", ""])[:3]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            }
            if method != "GET" or path.split("?", 1)[0] != "/metrics":
                status, body, kind = "404 Not Found", b"not found\n", "text/plain"
            elif self.token and not _bearer_matches(headers.get("authorization", ""), self.token):
                status, body, kind = "401 Unauthorized", b"unauthorized\n", "text/plain"
            else:
                status, body, kind = "200 OK", generate_latest(self.registry), CONTENT_TYPE
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, credential = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), token.encode())


def metrics_address(settings: Any, component: str) -> str:
    """The `/metrics` address of a process whose first component is `component`
    (`<component>_metrics_address`; empty: no endpoint)."""
    return str(getattr(settings, f"{component}_metrics_address", "") or "")


async def start_process_metrics(settings: Any, component: str) -> MetricsServer | None:
    """Serves this process's `/metrics` at its first component's metrics address (None when it
    has none, or the port cannot be had: logged at ERROR); SettingsError when that address is
    reachable and unauthenticated."""
    address = metrics_address(settings, component)
    if not address:
        return None
    token = settings.metrics_token
    check_metrics_listen(address, token, settings.insecure)
    server = MetricsServer(address, token)
    try:
        await server.start()
    except OSError as err:
        # Observability never takes inference down: the port is taken (another process of this
        # machine), so this process serves no metrics, and says so loudly.
        log.error(
            "cannot serve /metrics; this process exports no metrics",
            extra={"address": address, "error": str(err)},
        )
        return None
    return server
