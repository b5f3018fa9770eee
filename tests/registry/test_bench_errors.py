"""`budrt bench`'s wording of the admin REST API's error answers (registry/bench.py over
budrt/admin_api.py): the action, the HTTP status, the answer's message."""

from __future__ import annotations

import httpx
import pytest

from bud.registry.v1 import registry_pb2
from registry.bench import BenchError, Options, Platform


def _gateway(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/auth/login":
        return httpx.Response(401, json={"code": 16, "message": "bad credentials"})
    if request.url.path == "/v1/registry/benchmarks":
        return httpx.Response(
            400, json={"error": {"message": "no load points", "type": "invalid_request_error"}}
        )
    return httpx.Response(503, text="<html>unavailable</html>")


async def test_bench_words_error_answers_as_before() -> None:
    async with httpx.AsyncClient(base_url="http://gw", transport=httpx.MockTransport(_gateway)) as client:
        options = Options(deployment="chat", url="http://gw", api_key="k", password="wrong")
        with pytest.raises(BenchError, match=r"^login as 'admin' refused: HTTP 401: bad credentials$"):
            await Platform.login(client, options)
        with pytest.raises(BenchError, match=r"^an admin token is needed to find the deployment"):
            await Platform.login(client, Options(deployment="chat", url="http://gw", api_key="k"))
        admin = await Platform.login(
            client, Options(deployment="chat", url="http://gw", api_key="k", token="t")
        )
        with pytest.raises(BenchError, match=r"^GET /v1/projects: HTTP 503$"):
            await admin.deployment("chat", "")
        with pytest.raises(BenchError, match=r"^recording the result was refused: HTTP 400: no load points$"):
            await admin.record(registry_pb2.BenchmarkResult())
