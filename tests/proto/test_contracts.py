"""The contracts are lint-clean, formatted, and gen/ is exactly what proto/ generates."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import pytest
from google.api import annotations_pb2

from budrt import protogen


def test_buf_lint_and_format_pass() -> None:
    result = protogen.lint()
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_the_previous_commit(tmp_path: Path) -> None:
    # BUD_BREAKING_AGAINST names another base (e.g. the last release) when a change is meant to
    # be checked against more than one commit back.
    rev = os.environ.get("BUD_BREAKING_AGAINST", "HEAD~1")
    previous = protogen.proto_at(rev, tmp_path)
    if previous is None:
        pytest.skip(f"this checkout has no proto/ at {rev} (shallow clone or first commit)")
    result = protogen.breaking(previous)
    assert result.returncode == 0, result.stdout + result.stderr


def test_breaking_check_catches_a_removed_field(tmp_path: Path) -> None:
    # The check above can fail: the current contracts, less one field, break against themselves.
    changed = tmp_path / "proto"
    shutil.copytree(protogen.PROTO_DIR, changed)
    path = changed / "bud/app/v1/project.proto"
    text = path.read_text()
    field = next(line for line in text.splitlines() if line.strip().startswith("string description ="))
    path.write_text(text.replace(field + "\n", ""))
    result = protogen.breaking(protogen.PROTO_DIR, current=changed)
    assert result.returncode != 0
    assert "description" in result.stdout + result.stderr


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
        "bud.app.v1.budget_pb2": ["BudgetService"],
        "bud.app.v1.response_store_pb2": ["ResponseStoreService"],
        "bud.app.v1.engine_registry_pb2": ["EngineRegistryService"],
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
    assert annotated == 84  # every management and OpenAI RPC with a REST face (internal ones have none)
    openai = importlib.import_module("bud.openai.v1.openai_service_pb2").DESCRIPTOR.services_by_name[
        "OpenAiService"
    ]
    paths = {
        m.GetOptions().Extensions[annotations_pb2.http].post
        or m.GetOptions().Extensions[annotations_pb2.http].get
        for m in openai.methods
        if m.GetOptions().HasExtension(annotations_pb2.http)
    }
    assert {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/responses",
    } <= paths
