"""The gateway as a component of the mesh (`budrt serve gateway`): it fronts over REST every
service an installed component asks for (`rest_services`), and calls an engine co-hosted in its
process directly (`budrt up` co-hosts one unless `engine_in_gateway` is false)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from bud.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from budrt.components import Component, Host
from budrt.grpc_server import service_channel
from gateway.backends import LocalBackend
from gateway.engines import ENGINE_SERVICE
from gateway.server import OPENAI_SERVICE, serve
from gateway.settings import GatewaySettings

PROMPT_EXECUTION_SERVICE = prompt_pb2.DESCRIPTOR.services_by_name["PromptExecutionService"]


def prompt_lookup(host: Host, settings: GatewaySettings) -> Callable[[], Any]:
    """The prompt executor: the one co-hosted in this process (offered when it is built; called
    in process), else PromptExecutionService at `prompt_address` over gRPC (mutual TLS). Looked
    up at the first prompt call, and held."""
    held: list[Any] = []

    def lookup() -> Any:
        if not held:
            offered = host.offered(PROMPT_EXECUTION_SERVICE)
            if offered:
                held.append(LocalBackend(next(iter(offered.values())), PROMPT_EXECUTION_SERVICE))
            elif "prompt" in host.components:
                channel = service_channel(settings.prompt_address)
                held.append(prompt_pb2_grpc.PromptExecutionServiceStub(channel))
            else:
                return None  # no prompt component installed: prompt references answer 501
        return held[0]

    return lookup


def _start(host: Host) -> Callable[[], Awaitable[None]]:
    settings = host.settings(GatewaySettings)

    def offer(servicer: Any) -> None:
        host.offer(OPENAI_SERVICE, settings.gateway_grpc_address, servicer)

    # Run time, not build time: the engine offers its servicer when it is built, in any order.
    return lambda: serve(
        settings,
        host.stop,
        host.offered(ENGINE_SERVICE),
        host.rest_services(),
        prompts=prompt_lookup(host, settings),
        offer=offer,
    )


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
