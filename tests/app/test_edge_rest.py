"""Hostile input on the management routes, through the gateway's transcoder in front of the app
(on a real database) over gRPC, as the gateway runs it (issue 11, finding 10): a page size past
int32, non-ASCII `Authorization` and `X-Request-Id` headers and a 10,000-character project name
each answer a 4xx in google.rpc.Status JSON (they answered plain-text 500s, 500s, and a 429
"metadata size exceeds hard limit" because the error quoted the whole name)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from app.component import component
from app.server import RunningApp
from bud.app.v1 import project_pb2
from budrt.errors import MAX_MESSAGE_BYTES
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
    """The gateway's HTTP face fronting the app's management services over gRPC, logged in as
    the admin."""
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


def _violations(body: dict[str, Any]) -> list[str]:
    return [v["field"] for d in body["details"] if d["@type"] == BAD_REQUEST for v in d["fieldViolations"]]


@pytest.mark.parametrize("size", ["1000000000000", "-99999999999", "2147483648"])
async def test_a_page_size_past_int32_answers_400_naming_it(rest: httpx.AsyncClient, size: str) -> None:
    r = await rest.get(f"/v1/projects?page_size={size}")
    assert r.status_code == 400 and r.headers["content-type"] == "application/json", r.text
    assert r.json()["code"] == 3 and _violations(r.json()) == ["page_size"]


async def test_page_sizes_within_int32_are_clamped_or_refused_cleanly(rest: httpx.AsyncClient) -> None:
    r = await rest.get("/v1/projects?page_size=2147483647")  # clamped to the largest page (1000)
    assert r.status_code == 200, r.text
    r = await rest.get("/v1/projects?page_size=-1")
    assert r.status_code == 400 and _violations(r.json()) == ["page_size"]


async def test_a_non_ascii_authorization_header_answers_401(rest: httpx.AsyncClient) -> None:
    r = await rest.get("/v1/projects", headers={"authorization": "Bearer t\u00f6ken".encode()})
    assert r.status_code == 401 and r.json()["code"] == 16, r.text


async def test_a_non_ascii_request_id_is_replaced(rest: httpx.AsyncClient) -> None:
    r = await rest.get("/v1/projects", headers={"x-request-id": "r\u00e9q".encode()})
    assert r.status_code == 200, r.text
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


async def test_a_10000_character_project_name_answers_400_without_echoing_it(rest: httpx.AsyncClient) -> None:
    name = "n" * 10_000
    r = await rest.post("/v1/projects", json={"name": name})
    assert r.status_code == 400, r.text[:300]
    body = r.json()
    assert body["code"] == 3 and _violations(body) == ["project.name"]
    assert "longer than 100 characters" in body["message"] and name[:200] not in r.text
    # Any other refused name is quoted, cut short.
    r = await rest.post("/v1/projects", json={"name": "!" * 90})
    assert r.status_code == 400 and "!" * 90 not in r.json()["message"]


async def test_a_long_name_over_grpc_answers_invalid_argument(app: RunningApp, stubs: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.projects.CreateProject(
            project_pb2.CreateProjectRequest(project=project_pb2.Project(name="\u00e9" * 10_000))
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(info.value.details().encode()) <= MAX_MESSAGE_BYTES
