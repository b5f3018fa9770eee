"""The gateway as a component of the mesh (`budrt serve gateway`): it fronts over REST every
service an installed component asks for (`rest_services`), and calls an engine co-hosted in its
process directly (`budrt up` co-hosts one unless `engine_in_gateway` is false)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Awaitable, Callable

from budrt.components import Component, Host
from gateway.engines import ENGINE_SERVICE
from gateway.server import serve
from gateway.settings import GatewaySettings


def _start(host: Host) -> Callable[[], Awaitable[None]]:
    settings = host.settings(GatewaySettings)
    # Run time, not build time: the engine offers its servicer when it is built, in any order.
    return lambda: serve(settings, host.stop, host.offered(ENGINE_SERVICE), host.rest_services())


def _ready(settings: GatewaySettings, default_deployments: int) -> bool:
    """Whether the gateway has its routing tables and every deployment in them is ready (and,
    when first start creates deployments, that there is one)."""
    url = f"http://{settings.gateway_http_host}:{settings.gateway_http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            state = json.loads(response.read())
    except (OSError, ValueError):
        return False
    least = 1 if default_deployments else 0
    return state.get("deployments", 0) >= least and state.get("deployments_ready") == state.get("deployments")


def _announce(settings: GatewaySettings) -> list[str]:
    base = f"http://{settings.gateway_http_host}:{settings.gateway_http_port}/v1"
    return [
        f"  OpenAI base URL: OPENAI_BASE_URL={base}",
        f"  gRPC (OpenAI service): {settings.gateway_grpc_address}   management gRPC: {settings.app_address}",
    ]


component = Component(
    name="gateway",
    settings=GatewaySettings,
    address_setting="gateway_grpc_address",
    start=_start,
    ready=_ready,
    announce=_announce,
)
