"""The gateway's HTTP application answers errors in two dialects: OpenAI routes with OpenAI error
JSON, management routes with the google.rpc.Status JSON grpc-gateway writes (ErrorInfo and
BadRequest details under `@type`), each with the HTTP status of the canonical mapping; the
README's examples of both are what the gateway answers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from app.validation import check_deployment
from auth import keys
from bud.app.v1 import deployment_pb2, deployment_pb2_grpc, project_pb2, project_pb2_grpc
from bud.auth.v1 import routing_pb2
from budrt.errors import ERROR_DOMAIN, Reason, not_found, unauthenticated
from gateway.backends import LocalBackend
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.server import build_transcoder
from gateway.tables import RoutingTables
from tests.gateway.conftest import http_server

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "test-hash-secret"
KEY = keys.mint_key(SECRET)
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


class Management(project_pb2_grpc.ProjectServiceServicer, deployment_pb2_grpc.DeploymentServiceServicer):
    """Stands in for the app's servicers behind the gateway's management backend."""

    async def GetProject(self, request: project_pb2.GetProjectRequest, context: Any) -> Any:
        raise not_found(f"project {request.project_id!r} not found", param="project_id")

    async def ListProjects(self, request: project_pb2.ListProjectsRequest, context: Any) -> Any:
        raise unauthenticated("invalid access token", reason=Reason.INVALID_TOKEN)

    async def CreateDeployment(self, request: deployment_pb2.CreateDeploymentRequest, context: Any) -> Any:
        check_deployment(request.deployment)  # the app's own validation
        raise AssertionError("the README's example deployment must be refused")


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    tables = RoutingTables()
    snapshot = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    snapshot.upsert_keys.add(id="k1", prefix=KEY.prefix, key_hash=KEY.key_hash, project_id="p1")
    tables.apply(snapshot)
    pool = EnginePool()
    servicer = OpenAiServicer(tables, pool, SECRET, usage=None, limiter=None)
    management = Management()
    fronted = [
        (service, LocalBackend(management, service))
        for service in (
            project_pb2.DESCRIPTOR.services_by_name["ProjectService"],
            deployment_pb2.DESCRIPTOR.services_by_name["DeploymentService"],
        )
    ]
    async with http_server(build_transcoder(servicer, tables, fronted)) as url:
        yield url
    await pool.close()


async def test_management_route_answers_google_rpc_status(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.get("/v1/projects/prj_9")
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        message = "project 'prj_9' not found"
        assert r.json() == {
            "code": 5,
            "message": message,
            "details": [
                {"@type": ERROR_INFO, "reason": "NOT_FOUND", "domain": ERROR_DOMAIN, "metadata": {}},
                {
                    "@type": BAD_REQUEST,
                    "fieldViolations": [{"field": "project_id", "description": message, "reason": ""}],
                },
            ],
        }
        r = await client.get("/v1/projects")
        assert r.status_code == 401
        assert r.json() == {
            "code": 16,
            "message": "invalid access token",
            "details": [
                {"@type": ERROR_INFO, "reason": "INVALID_TOKEN", "domain": ERROR_DOMAIN, "metadata": {}}
            ],
        }
        # Refused by the transcoder itself (management services reject unknown fields): same dialect.
        r = await client.post("/v1/projects", json={"name": "a", "colour": "red"})
        assert r.status_code == 400 and r.json()["code"] == 3
        [bad] = [d for d in r.json()["details"] if d["@type"] == BAD_REQUEST]
        assert bad["fieldViolations"][0]["field"] == "project.colour"


async def test_openai_route_answers_openai_error_json(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.get("/v1/models")
        assert r.status_code == 401
        assert r.json() == {
            "error": {
                "message": "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                "type": "authentication_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        r = await client.post(
            "/v1/chat/completions", content=b"{not json", headers={"authorization": "Bearer x"}
        )
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def _readme_error_examples() -> list[Any]:
    section = README.read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    return [orjson.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.DOTALL)]


async def test_readme_error_examples_are_what_the_gateway_answers(base_url: str) -> None:
    openai_example, status_example = _readme_error_examples()
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {KEY.secret}"},
            json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 404 and r.json() == openai_example
        r = await client.post("/v1/projects/p1/deployments", json={"model": {"builtin": "tiny-llama"}})
        assert r.status_code == 400 and r.json() == status_example
