"""The contracts are lint-clean, formatted, and gen/ is exactly what proto/ generates."""

from __future__ import annotations

import importlib

from google.api import annotations_pb2

from budrt import protogen


def test_buf_lint_and_format_pass() -> None:
    result = protogen.lint()
    assert result.returncode == 0, result.stdout + result.stderr


def test_gen_matches_proto() -> None:
    assert protogen.check() == [], "gen/ is stale: run `python -m budrt.protogen`"


def test_every_service_is_defined_and_rest_faces_are_annotated() -> None:
    expected = {
        "bud.openai.v1.openai_service_pb2": ["OpenAiService"],
        "bud.engine.v1.engine_service_pb2": ["EngineService"],
        "bud.auth.v1.auth_pb2": ["ApiKeyService"],
        "bud.auth.v1.user_pb2": ["UserService"],
        "bud.auth.v1.routing_pb2": ["RoutingService"],
        "bud.app.v1.project_pb2": ["ProjectService"],
        "bud.app.v1.deployment_pb2": ["DeploymentService"],
        "bud.app.v1.usage_pb2": ["UsageService"],
        "bud.prompt.v1.prompt_pb2": ["PromptService", "PromptExecutionService"],
        "bud.registry.v1.registry_pb2": ["RegistryService"],
    }
    annotated = 0
    for module_name, services in expected.items():
        module = importlib.import_module(module_name)
        for name in services:
            service = module.DESCRIPTOR.services_by_name[name]
            for method in service.methods:
                if method.GetOptions().HasExtension(annotations_pb2.http):
                    annotated += 1
    assert annotated == 50  # every management and OpenAI RPC with a REST face (internal ones have none)
    openai = importlib.import_module("bud.openai.v1.openai_service_pb2").DESCRIPTOR.services_by_name["OpenAiService"]
    paths = {m.GetOptions().Extensions[annotations_pb2.http].post or m.GetOptions().Extensions[annotations_pb2.http].get
             for m in openai.methods if m.GetOptions().HasExtension(annotations_pb2.http)}
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/responses"} <= paths
