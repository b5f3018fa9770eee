"""Connections to engine replicas: one channel per address, active health checks per served
model, least-outstanding-requests choice among the healthy ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from budrt.endpoints import Endpoint
from budrt.errors import Reason, ServiceError
from budrt.grpc_server import service_channel
from budrt.interceptors import call_request_id
from gateway.backends import LocalBackend

log = logging.getLogger(__name__)

# The metadata naming an engine call's processed-token counts, one new id per request, so that
# the engine can answer GetRequestUsage for it (the engine's `engine.call_usage.USAGE_ID_KEY`;
# a test checks they agree).
USAGE_ID_KEY = "x-bud-usage-id"

ENGINE_SERVICE = engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"]


@dataclass
class EngineConnection:
    """A channel and stub to one engine, the requests in flight on it, and which of its models
    answered their last health check."""

    address: str
    channel: grpc.aio.Channel
    stub: engine_service_pb2_grpc.EngineServiceStub | LocalBackend
    health: health_pb2_grpc.HealthStub
    outstanding: int = 0
    unhealthy: set[str] = field(default_factory=set)  # served model names that failed a check


class EnginePool:
    """Engine connections by address.

    `local` maps the address of an engine co-hosted in this process to its servicer: requests
    to it are direct calls (no loopback gRPC hop, no serialisation), while health checks still go
    over gRPC to the same engine's server, as for any other replica."""

    def __init__(
        self, check_interval: float = 1.0, check_timeout: float = 1.0, local: dict[str, Any] | None = None
    ) -> None:
        self._connections: dict[str, EngineConnection] = {}
        # Requests in flight by (deployment id, endpoint): the one count of engine calls, read by
        # the load reports (gateway/load.py); an entry goes when its count is back to zero.
        self.in_flight: dict[tuple[str, Endpoint], int] = {}
        self._local = dict(local or {})
        self.check_interval = check_interval
        self.check_timeout = check_timeout

    def connection(self, address: str) -> EngineConnection:
        """The (cached) connection to an engine."""
        conn = self._connections.get(address)
        if conn is None:
            channel = service_channel(address)
            servicer = self._local.get(address)
            stub = (
                LocalBackend(servicer, ENGINE_SERVICE)
                if servicer is not None
                else engine_service_pb2_grpc.EngineServiceStub(channel)
            )
            conn = EngineConnection(address, channel, stub, health_pb2_grpc.HealthStub(channel))
            self._connections[address] = conn
        return conn

    def candidates(self, endpoints: list[Endpoint]) -> list[tuple[Endpoint, EngineConnection]]:
        """Every endpoint in the order to try them: healthy before unhealthy (a failed check may be
        stale, so they stay a last resort), then fewest requests in flight."""
        pairs = [(e, self.connection(e.address)) for e in endpoints]
        pairs.sort(key=lambda pair: (pair[0].served_model_name in pair[1].unhealthy, pair[1].outstanding))
        return pairs

    def healthy(self, endpoint: Endpoint) -> bool:
        """Whether the endpoint passed its last health check (true until checked)."""
        return endpoint.served_model_name not in self.connection(endpoint.address).unhealthy

    @contextlib.contextmanager
    def lease(
        self, conn: EngineConnection, endpoint: Endpoint | None = None, deployment_id: str = ""
    ) -> Iterator[EngineConnection]:
        """Counts a request in flight on `conn` while the block runs (a stream: until its last
        byte or its client leaving), and on `endpoint` for `deployment_id` when named."""
        key = (deployment_id, endpoint) if endpoint is not None else None
        conn.outstanding += 1
        if key is not None:
            self.in_flight[key] = self.in_flight.get(key, 0) + 1
        try:
            yield conn
        finally:
            conn.outstanding -= 1
            if key is not None:
                left = self.in_flight.get(key, 1) - 1
                if left > 0:
                    self.in_flight[key] = left
                else:
                    self.in_flight.pop(key, None)

    def mark_unhealthy(self, endpoint: Endpoint) -> None:
        """Takes an endpoint out of rotation until its next successful check."""
        self.connection(endpoint.address).unhealthy.add(endpoint.served_model_name)

    async def check(self, endpoints: list[Endpoint]) -> None:
        """Checks every endpoint once (grpc.health.v1, service = served model name)."""

        async def one(endpoint: Endpoint) -> None:
            conn = self.connection(endpoint.address)
            try:
                reply = await conn.health.Check(
                    health_pb2.HealthCheckRequest(service=endpoint.served_model_name),
                    timeout=self.check_timeout,
                )
                ok = reply.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.aio.AioRpcError:
                ok = False
            was_healthy = endpoint.served_model_name not in conn.unhealthy
            if ok:
                conn.unhealthy.discard(endpoint.served_model_name)
            else:
                conn.unhealthy.add(endpoint.served_model_name)
            if ok != was_healthy:
                log.warning(
                    "engine endpoint %s",
                    "healthy" if ok else "unhealthy",
                    extra={"address": endpoint.address, "model": endpoint.served_model_name},
                )

        await asyncio.gather(*(one(e) for e in endpoints))

    async def run_checks(self, endpoints_of: Callable[[], list[Endpoint]]) -> None:
        """Checks the endpoints `endpoints_of()` names every check_interval, until cancelled."""
        while True:
            try:
                await self.check(endpoints_of())
            except Exception:
                log.exception("health checks failed")
            await asyncio.sleep(self.check_interval)

    async def close(self) -> None:
        """Closes every channel."""
        for conn in self._connections.values():
            await conn.channel.close()
        self._connections.clear()


def engine_metadata(context: Any, usage_id: str) -> tuple[tuple[str, str], ...]:
    """The metadata of an engine call made for the request of `context`: its request id, and
    `usage_id` naming the call's token counts for GetRequestUsage."""
    return (("x-request-id", call_request_id(context)), (USAGE_ID_KEY, usage_id))


def engine_error(err: grpc.aio.AioRpcError, model: str, served_name: str) -> ServiceError:
    """The engine's error as the client should read it: about the model it named, not the engine's
    internal name for it."""
    error = ServiceError.from_rpc_error(err)
    message, reason = error.message, error.reason
    if served_name and served_name != model:
        message = message.replace(served_name, model)
    if error.code == grpc.StatusCode.UNAVAILABLE:
        message = f"The model `{model}` is unavailable: {message}"
        reason = reason or Reason.MODEL_UNAVAILABLE
    # A new error, so that the rewritten message is bounded like any other.
    return replace(error, message=message, reason=reason)
