"""Components: found through entry points; `budrt up`'s process layout, the guests of the app's
process and the services a gateway fronts all follow from them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from budrt.components import Component, ComponentError, Host, discover, standalone, up_groups
from budrt.settings import load


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.upper().startswith("BUD_"):
            monkeypatch.delenv(key)
    load.cache_clear()
    yield
    load.cache_clear()


def test_every_service_package_is_a_discovered_component() -> None:
    components = discover()
    assert list(components) == ["app", "engine", "gateway", "prompt", "registry"]
    assert standalone(components) == ["app", "engine", "gateway", "prompt"]  # what `budrt serve` accepts
    assert {c.hosted_by for c in components.values() if c.hosted_by} == {"app"}


def test_budrt_up_runs_the_engine_in_the_gateway_process_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    components = discover()
    assert up_groups(components) == [["app"], ["gateway", "engine", "prompt"]]
    monkeypatch.setenv("BUD_ENGINE_IN_GATEWAY", "false")
    load.cache_clear()
    assert up_groups(components) == [["app"], ["engine"], ["gateway", "prompt"]]
    monkeypatch.setenv("BUD_PROMPT_IN_GATEWAY", "false")
    load.cache_clear()
    assert up_groups(components) == [["app"], ["engine"], ["gateway"], ["prompt"]]


def test_a_component_cannot_join_a_guest() -> None:
    components = {
        "a": Component("a", start=lambda host: lambda: asyncio.sleep(0), joins=lambda s: "b"),
        "b": Component("b", hosted_by="a"),
    }
    with pytest.raises(ComponentError, match="cannot join"):
        up_groups(components)


def test_the_app_process_hosts_the_registry() -> None:
    host = Host(discover(), ["app"], asyncio.Event())
    names = [binding.descriptor.full_name for binding in host.guest_bindings("app")]
    assert names == ["bud.registry.v1.RegistryService"]


def test_the_prompt_executor_and_the_gateway_find_each_other_in_process() -> None:
    """Co-hosted, each calls the other in process: the executor is offered when it is built, the
    gateway's OpenAI service when the gateway runs (the executor looks it up per call)."""
    from gateway.component import prompt_lookup
    from gateway.settings import GatewaySettings
    from prompt.component import OPENAI_SERVICE, PROMPT_EXECUTION_SERVICE
    from prompt.component import component as prompt

    components = discover()
    host = Host(components, ["gateway", "engine", "prompt"], asyncio.Event())
    assert prompt.start is not None
    prompt.start(host)
    executor = next(iter(host.offered(PROMPT_EXECUTION_SERVICE).values()))
    assert executor.openai() is None  # the gateway is not running yet
    from bud.openai.v1 import openai_service_pb2_grpc

    host.offer(OPENAI_SERVICE, "127.0.0.1:1", openai_service_pb2_grpc.OpenAiServiceServicer())
    assert executor.openai().service.methods  # an in-process stub of the offered servicer
    backend = prompt_lookup(host, GatewaySettings())()
    assert backend.service.methods["ExecutePrompt"]  # a LocalBackend of the co-hosted executor


def test_the_gateway_fronts_what_the_components_ask_for_at_their_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUD_APP_ADDRESS", "10.0.0.1:1")
    host = Host(discover(), ["gateway"], asyncio.Event())
    fronted = [(service.full_name, address) for service, address in host.rest_services()]
    assert fronted == [
        ("bud.app.v1.ProjectService", "10.0.0.1:1"),
        ("bud.app.v1.DeploymentService", "10.0.0.1:1"),
        ("bud.app.v1.EngineRegistryService", "10.0.0.1:1"),
        ("bud.app.v1.UsageService", "10.0.0.1:1"),
        ("bud.app.v1.BudgetService", "10.0.0.1:1"),
        ("bud.auth.v1.ApiKeyService", "10.0.0.1:1"),
        ("bud.auth.v1.UserService", "10.0.0.1:1"),
        ("bud.prompt.v1.PromptService", "10.0.0.1:1"),  # prompt authoring: the app's own
        ("bud.registry.v1.RegistryService", "10.0.0.1:1"),  # a guest of the app: at its address
        # (PromptExecutionService has no REST face: gateways call it for /v1/responses only)
    ]


def test_what_a_component_offers_is_found_by_the_others_in_its_process() -> None:
    from bud.engine.v1 import engine_service_pb2

    service = engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"]
    host = Host(discover(), ["gateway", "engine"], asyncio.Event())
    assert host.offered(service) == {}
    servicer = object()
    host.offer(service, "127.0.0.1:1", servicer)
    assert host.offered(service) == {"127.0.0.1:1": servicer}


def test_budrt_up_announces_the_front_door_first() -> None:
    from budrt.cli import _up_message

    lines = _up_message(discover()).splitlines()
    assert lines[:4] == [
        "",
        "Bud Runtime is up.",
        "  OpenAI base URL: OPENAI_BASE_URL=http://127.0.0.1:8000/v1",
        "  gRPC (OpenAI service): 127.0.0.1:50051   management gRPC: 127.0.0.1:50061",
    ]
    assert (
        lines[4].startswith("  models: tiny-llama (chat; random weights")
        and lines[-1] == "  Press Ctrl-C to stop."
    )
