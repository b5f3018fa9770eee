"""Bad scaling and rate-limit settings of a deployment, model or prompt, on create and on update:
400 (INVALID_ARGUMENT) naming the field, over REST (the gateway's transcoder in front of the app)
and gRPC. The gateways enforce max_concurrency (tests/gateway/test_concurrency.py), so a limit
below the capacity kept warm, or a negative one, must never be stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from app.component import component
from app.server import RunningApp
from bud.app.v1 import deployment_pb2, project_pb2
from budrt.grpc_server import service_channel
from gateway.backends import RemoteBackend
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.server import build_transcoder
from gateway.tables import RoutingTables
from tests.app.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, HASH_SECRET
from tests.gateway.conftest import http_server

D = deployment_pb2
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
CHAT = {"name": "chat", "model": {"builtin": "tiny-llama"}}

# (scaling and rate limits as JSON, the field the 400 names)
BAD_SETTINGS = [
    ({"scaling": {"minConcurrency": 4, "maxConcurrency": 2}}, "deployment.scaling.max_concurrency"),
    ({"scaling": {"minConcurrency": -1}}, "deployment.scaling.min_concurrency"),
    ({"scaling": {"maxConcurrency": -3}}, "deployment.scaling.max_concurrency"),
    ({"rateLimits": {"requestsPerMinute": -1}}, "deployment.rate_limits.requests_per_minute"),
    ({"rateLimits": {"tokensPerMinute": -5}}, "deployment.rate_limits.tokens_per_minute"),
]


@pytest.fixture
async def rest(app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's HTTP face fronting the app's management services, logged in as the admin."""
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


def _violation(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    (field,) = [
        v["field"] for d in body["details"] if d["@type"] == BAD_REQUEST for v in d["fieldViolations"]
    ]
    return str(field)


async def _project(rest: httpx.AsyncClient) -> str:
    created = await rest.post("/v1/projects", json={"name": "limits"})
    assert created.status_code == 200, created.text
    return str(created.json()["project"]["id"])


@pytest.mark.parametrize(("settings", "field"), BAD_SETTINGS)
async def test_bad_settings_on_create_answer_400_naming_the_field(
    rest: httpx.AsyncClient, engine_host: Any, settings: dict[str, Any], field: str
) -> None:
    project_id = await _project(rest)
    refused = await rest.post(f"/v1/projects/{project_id}/deployments", json={**CHAT, **settings})
    assert _violation(refused) == field
    listed = await rest.get(f"/v1/projects/{project_id}/deployments")
    assert listed.json().get("deployments", []) == []  # nothing was stored


async def test_bad_settings_on_update_answer_400_and_keep_the_old_ones(
    rest: httpx.AsyncClient, engine_host: Any
) -> None:
    project_id = await _project(rest)
    created = await rest.post(
        f"/v1/projects/{project_id}/deployments",
        json={**CHAT, "scaling": {"minConcurrency": 2, "maxConcurrency": 4}},
    )
    assert created.status_code == 200, created.text
    url = f"/v1/projects/{project_id}/deployments/{created.json()['deployment']['id']}"
    # Below the stored min_concurrency: the merged settings are checked, not the patch alone.
    below = await rest.patch(
        url, params={"update_mask": "scaling.max_concurrency"}, json={"scaling": {"maxConcurrency": 1}}
    )
    assert _violation(below) == "deployment.scaling.max_concurrency"
    negative = await rest.patch(
        url, params={"update_mask": "scaling.min_concurrency"}, json={"scaling": {"minConcurrency": -2}}
    )
    assert _violation(negative) == "deployment.scaling.min_concurrency"
    kept = (await rest.get(url)).json()["deployment"]["scaling"]
    assert (kept["min_concurrency"], kept["max_concurrency"]) == (2, 4)
    raised = await rest.patch(
        url, params={"update_mask": "scaling.max_concurrency"}, json={"scaling": {"maxConcurrency": 8}}
    )
    assert raised.status_code == 200 and raised.json()["deployment"]["scaling"]["max_concurrency"] == 8


@pytest.mark.parametrize(
    ("scaling", "field"),
    [
        (D.ScalingSettings(min_concurrency=3, max_concurrency=1), "deployment.scaling.max_concurrency"),
        (D.ScalingSettings(max_concurrency=-1), "deployment.scaling.max_concurrency"),
        (D.ScalingSettings(min_concurrency=-1), "deployment.scaling.min_concurrency"),
    ],
)
async def test_a_prompt_deployment_is_checked_alike(
    stubs: Any, helpers: Any, engine_host: Any, scaling: D.ScalingSettings, field: str
) -> None:
    project_id = (
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="prompts"))
        )
    ).project.id
    await helpers.expect_error(
        stubs.deployments.CreateDeployment(
            D.CreateDeploymentRequest(
                project_id=project_id,
                deployment=D.Deployment(
                    name="greeter", prompt=D.PromptTarget(prompt_id="prm_any", version=1), scaling=scaling
                ),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )
