"""The reconciler's client of the engines: one cached channel per engine address and the
EngineService calls it makes (ListModels, LoadModel, UnloadModel, GetStats), with their timeouts.

Calls raise `grpc.aio.AioRpcError` as they fail (except `unload`, best effort); what a failure
means for the deployments (backoff, status) is the loop's business.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from budrt.grpc_server import service_channel

log = logging.getLogger(__name__)


class EngineClient:
    """Engine calls over channels cached per address."""

    def __init__(
        self,
        *,
        list_timeout: float = 10.0,
        load_timeout: float = 3600.0,
        unload_timeout: float = 60.0,
        stats_timeout: float = 10.0,
        channel_factory: Callable[[str], grpc.aio.Channel] = service_channel,
    ) -> None:
        self.list_timeout = list_timeout
        self.load_timeout = load_timeout
        self.unload_timeout = unload_timeout
        self.stats_timeout = stats_timeout
        self._channel_factory = channel_factory
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, address: str) -> engine_service_pb2_grpc.EngineServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._channel_factory(address)
        return engine_service_pb2_grpc.EngineServiceStub(channel)

    async def list_models(self, address: str) -> dict[str, engine_service_pb2.ServedModel]:
        """The engine's models by name."""
        reply = await self._stub(address).ListModels(
            engine_service_pb2.ListModelsRequest(), timeout=self.list_timeout
        )
        return {m.name: m for m in reply.models}

    async def load_model(
        self, address: str, request: engine_service_pb2.LoadModelRequest
    ) -> engine_service_pb2.ServedModel:
        """Loads a model; returns it READY, FAILED or still loading."""
        reply = await self._stub(address).LoadModel(request, timeout=self.load_timeout)
        return reply.model

    async def unload(self, address: str, name: str, owner: engine_service_pb2.ModelOwner) -> None:
        """Unloads `name` as its `owner`, best effort: a failure is logged, a model already gone
        is fine, and a model the engine serves for another owner is left alone (the engine
        refuses: FAILED_PRECONDITION)."""
        try:
            await self._stub(address).UnloadModel(
                engine_service_pb2.UnloadModelRequest(name=name, owner=owner), timeout=self.unload_timeout
            )
            log.info("model unloaded", extra={"address": address, "model": name})
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                log.warning(
                    "unloading a model failed",
                    extra={"address": address, "model": name, "error": f"{err.code().name}: {err.details()}"},
                )

    async def get_stats(self, address: str) -> engine_service_pb2.GetStatsResponse:
        """The engine's load per model."""
        return await self._stub(address).GetStats(
            engine_service_pb2.GetStatsRequest(), timeout=self.stats_timeout
        )

    def drop_channel(self, address: str) -> grpc.aio.Channel | None:
        """Forgets the channel to `address` (the next call opens a fresh one); the caller closes
        the one returned."""
        return self._channels.pop(address, None)

    async def close(self) -> None:
        """Closes every channel."""
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)
