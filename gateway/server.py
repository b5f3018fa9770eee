"""The gateway process: the HTTP face (uvicorn + the transcoder) and the gRPC face of the
OpenAI service on one event loop, the routing watch and the usage flusher beside them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import uvicorn
from google.protobuf.descriptor import ServiceDescriptor

from bud.app.v1.response_store_pb2 import StoredResponse
from bud.openai.v1 import openai_service_pb2, openai_service_pb2_grpc
from budrt import metrics
from budrt.grpc_server import GrpcServer, ServiceBinding, service_channel
from budrt.interceptors import DEFAULT_INTERCEPTORS
from gateway.backends import Backend, LocalBackend, RemoteBackend
from gateway.budgets import BudgetEnforcer, MemoryBudgetLedger, RedisBudgetLedger
from gateway.cold_start import ColdStarts
from gateway.concurrency import ConcurrencyLimiter, MemoryConcurrencyLimiter, RedisConcurrencyLimiter
from gateway.control import ControlPlane
from gateway.engines import EnginePool
from gateway.http_protocol import header_timeout_protocol
from gateway.images.links import LinkSigner, link_secret
from gateway.images.service import ImageConfig
from gateway.images.store import ImageStore, LocalImageStore, S3ImageStore, run_sweeper
from gateway.load import report_load
from gateway.openai_service import GenerationCaps, OpenAiServicer
from gateway.openapi import DocumentedService, OpenApiDocument
from gateway.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from gateway.request_limits import RequestLimits, RequestLimitsInterceptor
from gateway.response_cache import MemoryResponseCache, RedisResponseCache, ResponseCache
from gateway.response_store import ResponseStore
from gateway.settings import GatewaySettings
from gateway.studio import ASGIApp, StudioRoute
from gateway.tables import RoutingTables, RoutingWatcher
from gateway.transcoder import (
    BODY_TIMEOUT_S,
    MAX_BODY_BYTES,
    FrontedService,
    Transcoder,
    warm_conversion_processes,
)
from gateway.usage import UsageRecorder
from gateway.usage_spool import UsageSpool

log = logging.getLogger(__name__)

OPENAI_SERVICE = openai_service_pb2.DESCRIPTOR.services_by_name["OpenAiService"]


def build_transcoder(
    servicer: OpenAiServicer,
    tables: RoutingTables,
    management: Sequence[tuple[ServiceDescriptor, Backend]] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    body_timeout: float = BODY_TIMEOUT_S,
    limits: RequestLimits | None = None,
) -> Transcoder:
    """The HTTP application: the OpenAI service in-process, each of the `management` services
    through its backend, plus liveness/readiness probes and `/openapi.json` (body limits: see
    `Transcoder`; the OpenAI requests' caps, checked before their JSON is converted: `limits`,
    default ones)."""

    async def healthz(scope: dict[str, Any]) -> tuple[int, bytes]:
        return 200, b'{"status":"ok"}'

    async def readyz(scope: dict[str, Any]) -> tuple[int, bytes]:
        if not tables.loaded.is_set():
            return 503, b'{"status":"waiting for routing tables"}'
        ready = sum(1 for d in tables.deployments.values() if d.ready)
        return 200, orjson.dumps(
            {
                "status": "ready",
                "revision": tables.revision,
                "deployments": len(tables.deployments),
                "deployments_ready": ready,
            }
        )

    check = (limits or RequestLimits()).check_json
    fronted = [
        FrontedService(OPENAI_SERVICE, LocalBackend(servicer, OPENAI_SERVICE), lenient=True, check=check)
    ]
    fronted += [FrontedService(service, backend) for service, backend in management]
    # The OpenAPI document of every fronted route, built once here; no auth (gateway/openapi.py).
    openapi = OpenApiDocument(DocumentedService(f.descriptor, f.lenient) for f in fronted)
    return Transcoder(
        fronted,
        plain_routes={
            ("GET", "/healthz"): healthz,
            ("GET", "/readyz"): readyz,
            ("GET", "/openapi.json"): openapi.handler,
        },
        max_body_bytes=max_body_bytes,
        body_timeout=body_timeout,
    )


def grpc_face(
    servicer: OpenAiServicer, address: str, limits: RequestLimits, max_message_bytes: int
) -> GrpcServer:
    """The gRPC face of the OpenAI service: typed callers meet the REST face's limits, the body
    cap as the largest message grpc parses (RESOURCE_EXHAUSTED beyond) and the request caps
    before the servicer (INVALID_ARGUMENT with a BadRequest field violation)."""
    binding = ServiceBinding(
        servicer, openai_service_pb2_grpc.add_OpenAiServiceServicer_to_server, OPENAI_SERVICE
    )
    return GrpcServer(
        address,
        [binding],
        interceptors=(*DEFAULT_INTERCEPTORS, RequestLimitsInterceptor(limits)),
        max_receive_bytes=max_message_bytes,
        edge=True,  # the public gRPC face: API keys, like the HTTP face; TLS at the ingress
    )


def concurrency_limiter(settings: GatewaySettings) -> ConcurrencyLimiter:
    """Deployments' max_concurrency: leases in Redis shared by the gateways when `redis_url` is
    set (like the rate limits), else counted in this process."""
    queue = {
        "queue_timeout": settings.concurrency_queue_timeout,
        "queue_length": settings.concurrency_queue_length,
    }
    if settings.redis_url:
        return RedisConcurrencyLimiter(settings.redis_url, lease_ttl=settings.concurrency_lease_ttl, **queue)
    return MemoryConcurrencyLimiter(**queue)


def response_cache(settings: GatewaySettings) -> ResponseCache:
    """The response cache: in Redis when the gateways share one (`redis_url`, like the rate
    limits), else in this process."""
    ttl, size = settings.response_cache_ttl_s, settings.response_cache_max_bytes
    if settings.redis_url:
        return RedisResponseCache(settings.redis_url, ttl, size)
    return MemoryResponseCache(ttl, size)


def image_config(settings: GatewaySettings) -> ImageConfig:
    """The image store (files under the data dir, or an S3 bucket) and the links' signer (its
    key derived from the key-hash secret every gateway shares)."""
    store: ImageStore
    if settings.image_store == "s3":
        if not settings.image_s3_bucket:
            raise ValueError("image_store is 's3' but image_s3_bucket is not set")
        store = S3ImageStore(
            settings.image_s3_bucket, settings.image_s3_prefix, settings.image_s3_endpoint_url
        )
    else:
        store = LocalImageStore(settings.image_dir or settings.data_dir / "images")
    return ImageConfig(
        store,
        LinkSigner(link_secret(settings.secret("key_hash_secret"))),
        retention_s=settings.image_retention_hours * 3600,
        url_ttl_s=settings.image_url_ttl_s,
        public_base_url=settings.image_public_base_url,
        fallback_base=f"http://{settings.gateway_http_host}:{settings.gateway_http_port}",
    )


def http_config(app: ASGIApp, settings: GatewaySettings) -> uvicorn.Config:
    """uvicorn's configuration of the HTTP face: httptools with the header-read timeout, the
    connection limit and keep-alive timeout of `settings` (the body limits are the app's)."""
    return uvicorn.Config(
        app,
        host=settings.gateway_http_host,
        port=settings.gateway_http_port,
        loop="none",
        http=header_timeout_protocol(settings.http_header_timeout),
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_keep_alive=settings.http_keep_alive_timeout,
        limit_concurrency=settings.http_max_connections,
        backlog=4096,
        proxy_headers=False,
    )


async def serve(
    settings: GatewaySettings,
    stop: asyncio.Event,
    local_engines: dict[str, Any] | None = None,
    management: Sequence[tuple[ServiceDescriptor, str]] = (),
    prompts: Callable[[], Any] | None = None,
    offer: Callable[[OpenAiServicer], None] | None = None,
) -> None:
    """Runs the gateway until `stop` is set. `local_engines`: engine servicers co-hosted in this
    process, by the address their gRPC server listens on (see EnginePool). `management`: the
    services to front over REST (the app authenticates each call), each with the address of the
    gRPC server hosting it. `prompts`: the prompt executor as a stub, looked up per call
    (`gateway/component.py`); `offer`: given the OpenAI servicer once built (a co-hosted prompt
    executor calls it in process)."""
    tables = RoutingTables()
    engines = EnginePool(local=local_engines)
    # Undelivered usage survives restarts in the data dir (gateway/usage_spool.py).
    usage = UsageRecorder(settings.app_address, spool=UsageSpool(settings.data_dir / "usage-spool"))
    limiter: RateLimiter = RedisRateLimiter(settings.redis_url) if settings.redis_url else MemoryRateLimiter()
    concurrency = concurrency_limiter(settings)
    budgets = BudgetEnforcer(
        RedisBudgetLedger(settings.redis_url) if settings.redis_url else MemoryBudgetLedger(),
        webhook_timeout_s=settings.budget_webhook_timeout_s,
        allow_private_webhooks=settings.budget_webhook_allow_private,
    )
    cache = response_cache(settings)
    caps = GenerationCaps(max_choices=settings.max_choices, max_total_tokens=settings.max_total_tokens)
    # Stored responses: written in batches like usage, spooled beside it (gateway/response_store.py).
    stored = ResponseStore(
        settings.app_address,
        flush_interval=settings.response_flush_interval,
        spool=UsageSpool(settings.data_dir / "response-spool", StoredResponse),
    )
    # Load reports and wakes go to the app's RoutingService, as this gateway (like the watch).
    gateway_id = socket.gethostname()
    control = ControlPlane(settings.app_address, gateway_id)
    cold_starts = ColdStarts(
        tables,
        wake=control.wake,
        timeout=settings.cold_start_timeout,
        queue_length=settings.cold_start_queue_length,
        unimplemented=lambda: "WakeDeployment" in control.unimplemented,
    )
    servicer = OpenAiServicer(
        tables,
        engines,
        settings.secret("key_hash_secret"),
        usage,
        limiter,
        caps,
        response_store=stored,
        prompts=prompts,
        concurrency=concurrency,
        default_key_requests_per_minute=settings.default_key_requests_per_minute,
        default_key_tokens_per_minute=settings.default_key_tokens_per_minute,
        response_cache=cache,
        cold_starts=cold_starts,
        budgets=budgets,
        images=image_config(settings),
    )
    servicer.load.idle_after = settings.load_report_interval
    if offer is not None:
        offer(servicer)
    limits = RequestLimits.from_settings(settings)
    grpc_server = grpc_face(servicer, settings.gateway_grpc_address, limits, settings.http_max_body_bytes)
    channels = {address: service_channel(address) for _, address in management}
    backends = {address: RemoteBackend(channel) for address, channel in channels.items()}
    app = build_transcoder(
        servicer,
        tables,
        [(service, backends[address]) for service, address in management],
        max_body_bytes=settings.http_max_body_bytes,
        body_timeout=settings.http_body_timeout,
        limits=limits,
    )
    # The prompt studio's web app at /studio/ (static files) in front of the API routes.
    http_server = uvicorn.Server(http_config(StudioRoute(app, settings.studio_dir), settings))
    http_server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # we own signals
    # The routing tables' replicas per model deployment, read when /metrics is scraped.
    metrics.CALLBACKS.add(
        "gateway.replicas",
        metrics.replicas(
            lambda: [
                (d.name, tables.projects.get(d.project_id, d.project_id), len(d.endpoints), d.ready)
                for d in tables.deployments.values()
                if not d.prompt_id
            ]
        ),
    )
    await grpc_server.start()
    warm_conversion_processes()
    watcher = asyncio.create_task(
        RoutingWatcher(settings.app_address, tables, gateway_id, channel=control.channel).run()
    )
    reporter = asyncio.create_task(report_load(servicer.load, control, settings.load_report_interval))
    flusher = asyncio.create_task(usage.run())
    storer = asyncio.create_task(stored.run())
    checker = asyncio.create_task(
        engines.run_checks(lambda: [e for d in tables.deployments.values() for e in d.endpoints])
    )
    sweeper = asyncio.create_task(run_sweeper(servicer.images.store, settings.image_sweep_interval_s))
    http_task = asyncio.create_task(http_server.serve())
    log.info(
        "gateway HTTP listening",
        extra={"url": f"http://{settings.gateway_http_host}:{settings.gateway_http_port}/v1"},
    )
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait([stop_task, http_task], return_when=asyncio.FIRST_COMPLETED)
    http_server.should_exit = True
    with contextlib.suppress(Exception):
        await http_task
    await grpc_server.stop(5)
    metrics.CALLBACKS.remove("gateway.replicas")
    for task in (watcher, reporter, flusher, storer, checker, sweeper):
        task.cancel()
    await asyncio.gather(watcher, reporter, flusher, storer, checker, sweeper, return_exceptions=True)
    await cold_starts.close()
    await control.close()
    await engines.close()
    for channel in channels.values():
        await channel.close()
    await budgets.close()
    if isinstance(limiter, RedisRateLimiter):
        await limiter.close()
    if isinstance(concurrency, RedisConcurrencyLimiter):
        await concurrency.close()
    if isinstance(cache, RedisResponseCache):
        await cache.close()
