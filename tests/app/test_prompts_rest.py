"""PromptService over REST, through the gateway's transcoder in front of the app (on SQLite and
PostgreSQL) over gRPC: the lifecycle from the annotations, errors as google.rpc.Status JSON naming
the field, and keys masked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.component import component
from app.server import RunningApp
from budrt.grpc_server import service_channel
from gateway.backends import RemoteBackend
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.server import build_transcoder
from gateway.tables import RoutingTables
from tests.app.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, HASH_SECRET
from tests.gateway.conftest import http_server

BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


@pytest.fixture
async def rest(app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's HTTP face fronting the app's services over gRPC, logged in as the admin."""
    channel = service_channel(app.address)
    backend = RemoteBackend(channel)
    tables = RoutingTables()
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, HASH_SECRET, usage=None, limiter=None)
    transcoder = build_transcoder(servicer, tables, [(s, backend) for s in component.rest_services])
    async with http_server(transcoder) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        login = await client.post(
            "/v1/auth/login", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        client.headers["authorization"] = f"Bearer {login.json()['access_token']}"
        yield client
    await pool.close()
    await channel.close()


def _violations(reply: httpx.Response) -> list[str]:
    return [
        v["field"] for d in reply.json()["details"] if d["@type"] == BAD_REQUEST for v in d["fieldViolations"]
    ]


def _ok(reply: httpx.Response) -> Any:
    assert reply.status_code == 200, reply.text
    return reply.json()


VERSION = {
    "model": "chat",
    "system_prompt": "You are terse. Answer in {{ language }}.",
    "messages": [{"role": "user", "template": "{{ question }}"}],
    "parameters": {"temperature": 0.2, "max_tokens": 128, "extra": {"ignore_eos": False}},
    "input": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [
            {
                "name": "question",
                "type": "VARIABLE_TYPE_STRING",
                "validation": "VALIDATION_MODE_BASIC",
                "constraints": {"max_length": 2000},
            },
            {"name": "language", "type": "VARIABLE_TYPE_ENUM", "options": ["en", "fr"], "default": "en"},
        ],
    },
    "output": {
        "mode": "IO_MODE_STRUCTURED",
        "variables": [{"name": "answer", "type": "VARIABLE_TYPE_STRING"}],
    },
    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    "integration_tools": [
        {"integration": "notion", "active": True, "access_keys": {"api_key": "secret_notion_9z9z"}}
    ],
    "note": "first",
}


async def test_rest_lifecycle(rest: httpx.AsyncClient, engine_host: Any) -> None:
    project = _ok(await rest.post("/v1/projects", json={"name": "prompts-rest"}))["project"]["id"]
    _ok(
        await rest.post(
            f"/v1/projects/{project}/deployments",
            json={
                "name": "chat",
                "model": {"builtin": "tiny-llama"},
            },
        )
    )
    base = f"/v1/projects/{project}/prompts"
    created = _ok(await rest.post(base, json={"name": "faq", "description": "answers", "version": VERSION}))
    prompt_id = created["prompt"]["id"]
    version = created["version"]
    assert version["version"] == 1 and version["integration_tools"][0]["access_keys"] == {
        "api_key": "****9z9z"
    }
    assert version["input"]["variables"][1]["default"] == "en" and version["parameters"]["extra"] == {
        "ignore_eos": False
    }
    assert "secret_notion" not in str(created)

    v2 = dict(VERSION, note="shorter", system_prompt="Be terse; answer in {{ language }}.")
    v2["integration_tools"] = version["integration_tools"]  # masked: keeps the stored key
    saved = _ok(await rest.post(f"{base}/{prompt_id}/versions", json=v2))
    assert saved["version"]["version"] == 2
    stale = await rest.post(f"{base}/{prompt_id}/versions?expected_version=1", json=v2)
    assert stale.status_code == 409 and stale.json()["code"] == 10, stale.text

    label = _ok(await rest.put(f"{base}/{prompt_id}/labels/production", json={"version": 2}))
    assert label["label"] == {
        "name": "production",
        "version": 2,
        **{k: label["label"][k] for k in ("update_time", "update_user_id")},
    }
    assert _ok(await rest.get(f"{base}/{prompt_id}/labels/production"))["version"]["note"] == "shorter"
    versions = _ok(await rest.get(f"{base}/{prompt_id}/versions"))["versions"]
    assert [(v["version"], v["labels"]) for v in versions] == [(2, ["latest", "production"]), (1, [])]
    history = _ok(await rest.get(f"{base}/{prompt_id}/labels:history"))["changes"]
    assert [(c["label"], c["to_version"]) for c in history] == [("production", 2)]
    diff = _ok(await rest.get(f"{base}/{prompt_id}/versions/1:diff?other=2"))
    assert [c["field"] for c in diff["changes"]] == ["system_prompt"]
    everywhere = _ok(await rest.get("/v1/prompts"))["prompts"]
    assert [p["id"] for p in everywhere] == [prompt_id]
    patched = _ok(
        await rest.patch(
            f"{base}/{prompt_id}?update_mask=default_label", json={"default_label": "production"}
        )
    )
    assert patched["prompt"]["default_label"] == "production"

    # A template that does not compile: 400 naming the field and the line.
    bad = dict(VERSION, messages=[{"role": "user", "template": "{{ question "}])
    refused = await rest.post(f"{base}/{prompt_id}/versions", json=bad)
    assert refused.status_code == 400 and _violations(refused) == ["version.messages[0].template"], (
        refused.text
    )
    assert "line 1" in refused.json()["message"]
    # Warnings come back with the save.
    unused = dict(VERSION, messages=[{"role": "user", "template": "hi"}])
    warned = _ok(await rest.post(f"{base}/{prompt_id}/versions", json=unused))
    assert [w["field"] for w in warned["warnings"]] == ["version.input.variables[0]"]

    assert (await rest.delete(f"{base}/{prompt_id}")).status_code == 200
    assert (await rest.get(f"{base}/{prompt_id}")).status_code == 404
