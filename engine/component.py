"""The engine as a component of the mesh (`budrt serve engine`). It offers its servicer to the
components co-hosted in its process, so a gateway there calls it without a loopback gRPC hop;
`budrt up` runs it inside the gateway's process unless `engine_in_gateway` is false."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from budrt.components import Component, Host
from engine.server import ENGINE_SERVICE, build_servicer, serve
from engine.settings import EngineSettings


def _start(host: Host) -> Callable[[], Awaitable[None]]:
    settings = host.settings(EngineSettings)
    servicer = build_servicer(settings)
    host.offer(ENGINE_SERVICE, settings.engine_address, servicer)
    return lambda: serve(settings, host.stop, servicer)


def _joins(settings: EngineSettings) -> str:
    return "gateway" if settings.engine_in_gateway else ""


component = Component(
    name="engine",
    settings=EngineSettings,
    address_setting="engine_address",
    start=_start,
    joins=_joins,
)
