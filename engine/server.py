"""The engine process: EngineService on `grpc.aio`, models loaded on request (LoadModel)."""

from __future__ import annotations

import asyncio

from auth.service_identity import ServiceIdentityPolicy
from bud.engine.v1 import engine_service_pb2, engine_service_pb2_grpc
from budrt import metrics
from budrt.grpc_server import GrpcServer, ServiceBinding
from engine.announcer import Announcer
from engine.manager import ModelManager
from engine.service import EngineServicer
from engine.settings import EngineSettings

ENGINE_SERVICE = engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"]


def build_servicer(settings: EngineSettings) -> EngineServicer:
    """The engine's servicer (its models not loaded yet): `serve` hosts it over gRPC; a gateway
    co-hosted in the same process also calls it directly."""
    return EngineServicer(ModelManager(settings))


async def serve(
    settings: EngineSettings, stop: asyncio.Event, servicer: EngineServicer | None = None
) -> None:
    """Runs the engine (`servicer`, or a new one) until `stop` is set, then unloads every model.
    With `announce_address` set it announces itself to the app meanwhile (`engine.announcer`)."""
    servicer = servicer or build_servicer(settings)
    server = GrpcServer(
        settings.engine_address,
        [
            ServiceBinding(
                servicer, engine_service_pb2_grpc.add_EngineServiceServicer_to_server, ENGINE_SERVICE
            )
        ],
        authorization=ServiceIdentityPolicy(),  # engine RPCs: gateways and the app only
    )
    servicer.manager.health = server.health
    # Its models' running/waiting requests, KV-cache use and token counts, read when scraped.
    manager = servicer.manager
    metrics.CALLBACKS.add(
        "engine", metrics.engine_stats(lambda: [(slot.name, slot.model) for slot in manager.slots.values()])
    )
    await server.start()
    watchdog = asyncio.create_task(servicer.manager.watch())
    announcing = (
        asyncio.create_task(Announcer(settings).run(stop), name="announce engine")
        if settings.announce_address
        else None
    )
    try:
        await stop.wait()
    finally:
        watchdog.cancel()
        if announcing is not None:
            announcing.cancel()
            await asyncio.gather(announcing, return_exceptions=True)
        metrics.CALLBACKS.remove("engine")
        await server.stop(5)
        await servicer.manager.close()
