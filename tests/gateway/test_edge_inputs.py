"""Hostile input at the gateway's edge (issue 11, findings 3 and 10): request ids a client sends
that are too long or have odd characters are replaced (the response header, the usage record and
the engine call carry a generated id), tool parameters nested 500 deep answer a 400 in OpenAI
JSON, and `GET`/`DELETE /v1/responses/{id}` answer a 404 in OpenAI JSON over HTTP and NOT_FOUND
over gRPC (they answered a bare 500/501 and UNIMPLEMENTED)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from auth import keys
from bud.auth.v1 import routing_pb2
from bud.openai.v1 import chat_pb2, openai_service_pb2_grpc, response_pb2
from budrt.errors import ServiceError
from budrt.grpc_server import GrpcServer, ServiceBinding, service_channel
from budrt.json_face import MAX_RAW_JSON_DEPTH, from_python
from gateway.engines import EnginePool
from gateway.openai_service import OpenAiServicer
from gateway.server import OPENAI_SERVICE, build_transcoder
from gateway.tables import RoutingTables
from tests.gateway.conftest import http_server
from tests.support.instant_engine import start_instant_engine
from tests.support.mesh import free_port

SECRET = "test-hash-secret"
KEY = keys.mint_key(SECRET)
GENERATED = re.compile(r"[0-9a-f]{32}")
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}


class Usage:
    """Stands in for the gateway's UsageRecorder: keeps the request id of each queued record."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []

    def record(self, request_id: str, *rest: Any, **flags: Any) -> None:
        self.request_ids.append(request_id)


class Gateway:
    """The gateway's HTTP face and its gRPC face over one OpenAI servicer, an instant engine
    behind them."""

    def __init__(self, url: str, grpc_address: str, usage: Usage) -> None:
        self.url = url
        self.grpc_address = grpc_address
        self.usage = usage


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    engine_address = f"127.0.0.1:{free_port()}"
    engine_server, _ = await start_instant_engine(engine_address, ["m1"])
    tables = RoutingTables()
    snapshot = routing_pb2.WatchRoutingResponse(revision=1, reset=True)
    snapshot.upsert_projects.add(id="p1", name="team")
    snapshot.upsert_keys.add(id="k1", prefix=KEY.prefix, key_hash=KEY.key_hash, project_id="p1")
    deployment = snapshot.upsert_deployments.add(id="d1", project_id="p1", name="chat", ready=True)
    deployment.endpoints.add(address=engine_address, served_model_name="m1")
    tables.apply(snapshot)
    pool = EnginePool()
    usage = Usage()
    servicer = OpenAiServicer(tables, pool, SECRET, usage=usage, limiter=None)  # type: ignore[arg-type]
    grpc_server = GrpcServer(
        "127.0.0.1:0",
        [
            ServiceBinding(
                servicer, openai_service_pb2_grpc.add_OpenAiServiceServicer_to_server, OPENAI_SERVICE
            )
        ],
    )
    await grpc_server.start()
    async with http_server(build_transcoder(servicer, tables)) as url:
        yield Gateway(url, f"127.0.0.1:{grpc_server.port}", usage)
    await grpc_server.stop(0)
    await pool.close()
    await engine_server.stop(0)


def _client(gateway: Gateway, **headers: str | bytes) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=gateway.url, headers={"authorization": f"Bearer {KEY.secret}", **headers}, timeout=30
    )


@pytest.mark.parametrize(
    "sent",
    ["r" * 129, "id with spaces", "id\u00e9".encode(), "../../etc/passwd", 'quote"s'],
    ids=["129-chars", "spaces", "non-ascii", "slashes", "quotes"],
)
async def test_a_bad_request_id_is_replaced_in_the_header_and_the_usage_record(
    gateway: Gateway, sent: str | bytes
) -> None:
    async with _client(gateway, **{"x-request-id": sent}) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text
    replaced = r.headers["x-request-id"]
    assert GENERATED.fullmatch(replaced), replaced
    assert gateway.usage.request_ids == [replaced]


async def test_a_good_request_id_is_kept(gateway: Gateway) -> None:
    sent = "req_01J:abc-def." + "x" * 112  # 128 characters, all of the allowed kinds
    async with _client(gateway, **{"x-request-id": sent}) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.headers["x-request-id"] == sent
    assert gateway.usage.request_ids == [sent]


async def test_a_bad_grpc_request_id_is_replaced_in_the_usage_record(gateway: Gateway) -> None:
    async with service_channel(gateway.grpc_address) as channel:
        stub = openai_service_pb2_grpc.OpenAiServiceStub(channel)
        request = from_python(CHAT, chat_pb2.ChatCompletionRequest(), lenient=True)
        auth = ("authorization", f"Bearer {KEY.secret}")
        await stub.CreateChatCompletion(request, metadata=(auth, ("x-request-id", "g" * 129)))
        await stub.CreateChatCompletion(request, metadata=(auth, ("x-request-id", "kept-1")))
    [replaced, kept] = gateway.usage.request_ids
    assert GENERATED.fullmatch(replaced) and kept == "kept-1"


def _deep_tool(levels: int) -> bytes:
    # Built as text: the JSON libraries refuse to write values this deep themselves.
    schema = '{"type":"object","properties":{"a":' * levels + "{}" + "}}" * levels
    return (
        b'{"model":"chat","messages":[{"role":"user","content":"x"}],'
        b'"tools":[{"type":"function","function":{"name":"f","parameters":' + schema.encode() + b"}}]}"
    )


@pytest.mark.parametrize("levels", [MAX_RAW_JSON_DEPTH // 2 + 1, 250, 500])
async def test_tool_parameters_nested_too_deep_answer_400_in_openai_json(
    gateway: Gateway, levels: int
) -> None:
    async with _client(gateway) as client:
        r = await client.post(
            "/v1/chat/completions", content=_deep_tool(levels), headers={"content-type": "application/json"}
        )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_argument"
    assert error["param"] == "tools[0].function.parameters"
    assert f"{MAX_RAW_JSON_DEPTH} levels" in error["message"]


async def test_tool_parameters_within_the_depth_limit_pass(gateway: Gateway) -> None:
    # Each level of this schema is two levels of JSON; the function object adds none.
    async with _client(gateway) as client:
        r = await client.post(
            "/v1/chat/completions",
            content=_deep_tool(MAX_RAW_JSON_DEPTH // 2 - 1),
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_stored_response_routes_answer_404_in_openai_json(gateway: Gateway, method: str) -> None:
    async with _client(gateway) as client:
        r = await client.request(method, "/v1/responses/resp_123")
        assert r.status_code == 404, r.text
        error = r.json()["error"]
        assert error["type"] == "not_found_error" and error["param"] == "response_id"
        assert "resp_123" in error["message"] and "not stored yet" in error["message"]
        r = await client.request(method, "/v1/responses/resp_123", headers={"authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_stored_response_rpcs_answer_not_found_over_grpc(gateway: Gateway) -> None:
    auth = (("authorization", f"Bearer {KEY.secret}"),)
    async with service_channel(gateway.grpc_address) as channel:
        stub = openai_service_pb2_grpc.OpenAiServiceStub(channel)
        for call, request in (
            (stub.GetResponse, response_pb2.GetResponseRequest(response_id="resp_1")),
            (stub.DeleteResponse, response_pb2.DeleteResponseRequest(response_id="resp_1")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(request, metadata=auth)
            err = ServiceError.from_rpc_error(info.value)
            assert err.code == grpc.StatusCode.NOT_FOUND and err.param == "response_id", err
